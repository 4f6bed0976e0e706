//! The `gradnas` command line: parse, call the library, print. Progress and
//! diagnostics go to stderr, results to stdout.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use std::path::PathBuf;

use gradnas::data::{self, DataConfig, DataSource};
use gradnas::engine::{self, Gpu};
use gradnas::models::ModelSpec;
use gradnas::pipeline::{self, S4Config, SearchConfig};
use gradnas::progress::{Mode, Reporter};
use gradnas::search::s1::{self, S1Config};
use gradnas::search::supernet::SupernetConfig;
use gradnas::space::OpSet;
use gradnas::train::{self, TrainConfig};
use gradnas::{bench, verify};

#[derive(Parser)]
#[command(
    name = "gradnas",
    version,
    about = "Gradient architecture search and compression on any GPU (wgpu + WGSL)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// No progress on stderr, only errors (results still go to stdout).
    #[arg(long, global = true, conflicts_with = "log_json")]
    quiet: bool,
    /// Progress as JSON lines on stderr (one event per line), for CI.
    #[arg(long, global = true)]
    log_json: bool,
}

/// The network to train or time (`gradnas train`, `gradnas bench`).
#[derive(clap::Args, Clone)]
struct NetArgs {
    /// The network: builtin:cnn, a genotype JSON file (S1's
    /// genotype.json, a run's candidate.json), or random:SEED (a random
    /// pnas genotype, the baseline for a searched one).
    #[arg(long, default_value = "builtin:cnn")]
    model: String,
    /// Channels of the first cell of a genotype network [default: 16]
    /// (refused for builtin:cnn, whose shape is fixed).
    #[arg(long)]
    width: Option<usize>,
    /// Cells of a genotype network [default: 5] (refused for builtin:cnn).
    #[arg(long)]
    depth: Option<usize>,
}

impl NetArgs {
    fn spec(&self) -> Result<ModelSpec> {
        ModelSpec::parse(&self.model, self.width, self.depth).map_err(anyhow::Error::msg)
    }
}

/// Where the data comes from (default: the bundled Fashion-MNIST subset).
#[derive(clap::Args, Clone)]
struct DataArgs {
    /// A directory with MNIST/Fashion-MNIST IDX files or CIFAR-10 .bin batches.
    #[arg(long, conflicts_with = "full")]
    data: Option<PathBuf>,
    /// The full Fashion-MNIST from Debian's dataset-fashion-mnist package.
    #[arg(long)]
    full: bool,
    /// Share of the training files held out for validation [default: 0.1].
    #[arg(long)]
    val_fraction: Option<f64>,
}

impl DataArgs {
    fn source(&self) -> DataSource {
        match (&self.data, self.full) {
            (Some(d), _) => DataSource::Dir(d.clone()),
            (None, true) => DataSource::Full,
            (None, false) => DataSource::Bundled,
        }
    }
    fn load(&self, seed: u64) -> Result<data::Splits> {
        let mut cfg = DataConfig::default();
        self.apply(&mut cfg);
        Ok(cfg.load(seed)?)
    }
    /// Lay the flags that were given over `cfg`.
    fn apply(&self, cfg: &mut DataConfig) {
        if self.data.is_some() || self.full {
            cfg.source = self.source();
        }
        cfg.val_fraction = self.val_fraction.unwrap_or(cfg.val_fraction);
    }
    fn given(&self) -> bool {
        self.data.is_some() || self.full || self.val_fraction.is_some()
    }
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// The architecture search: the whole method S1 → S4 (no `--stage`),
    /// S1 alone (`--stage s1`), S1–S3 (`--stage s1-s3`), or S4 on an S1–S3
    /// run (`--stage s4 --from RUN_DIR`).
    Search {
        /// Which stage to run: s1, s1-s3 or s4 (default: all, S1 → S4).
        #[arg(long)]
        stage: Option<String>,
        /// quick (bundled data, minutes on lavapipe), standard, paper.
        #[arg(long, default_value = "quick")]
        preset: String,
        /// A TOML or JSON file laid over the preset (any part of a run's
        /// `config.json`); flags override it in turn.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Continue the run in RUN_DIR with its own `config.json`: finished
        /// phases are reused, the interrupted one starts again.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["stage", "config", "from", "out"])]
        resume: Option<PathBuf>,
        /// S1: channels of the supernet's first cell (the preset's unless
        /// given; S3 widens from it).
        #[arg(long)]
        width: Option<usize>,
        /// S1: cells of the supernet (S3 deepens from it).
        #[arg(long)]
        depth: Option<usize>,
        /// S1: images per batch of each bilevel step's two batches.
        #[arg(long)]
        batch: Option<usize>,
        /// S1: epochs of supernet training.
        #[arg(long)]
        epochs: Option<usize>,
        /// Bilevel steps per epoch (default: one pass over the training split).
        #[arg(long)]
        steps_per_epoch: Option<usize>,
        /// pnas (the presets' choice) or darts.
        #[arg(long)]
        op_set: Option<String>,
        /// The unrolled (second-order) architecture gradient, with a
        /// finite-difference Hessian-vector product (about 2.5× a step).
        #[arg(long)]
        second_order: bool,
        /// Partial-channel mixing (PC-DARTS): only 1/K of each edge's
        /// channels go through its mixed op; cuts the step's memory.
        #[arg(long)]
        partial_channels: Option<usize>,
        /// S2: cells kept and measured per level (K; the patent's ≥ 128).
        #[arg(long)]
        top_k: Option<usize>,
        /// S3: the validation accuracy a candidate must reach.
        #[arg(long)]
        gate: Option<f32>,
        /// S3: rounds of S1–S2 at most (each failed round widens/deepens).
        #[arg(long)]
        max_rounds: Option<usize>,
        /// S2: single paths the shared weights are trained on before
        /// cells are measured (0: measure S1's weights as they are).
        #[arg(long)]
        paths: Option<usize>,
        /// S2: epochs of each predictor fit.
        #[arg(long)]
        predictor_epochs: Option<usize>,
        /// S2: expansions measured at random beside the top K per level.
        #[arg(long)]
        explore: Option<usize>,
        /// S4: the S1–S3 run directory to compress (`--stage s4`).
        #[arg(long)]
        from: Option<PathBuf>,
        /// S4: the fraction of prunable channels removed.
        #[arg(long)]
        prune: Option<f32>,
        #[command(flatten)]
        data: DataArgs,
        /// The seed of the split, the search and S4 (default 1).
        #[arg(long)]
        seed: Option<u64>,
        /// The run directory to write: its config, each round's supernet
        /// and genotype, the candidate, the compressed final model and its
        /// ONNX file, report.html.
        #[arg(long, default_value = DEFAULT_OUT)]
        out: PathBuf,
    },
    /// Train a network (built-in, or the discrete network of a genotype) and
    /// evaluate it on the test set.
    Train {
        #[command(flatten)]
        net: NetArgs,
        #[command(flatten)]
        data: DataArgs,
        /// Passes over the training split.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
        /// Images per SGD step.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Initial learning rate of SGD with momentum, cosine-annealed over
        /// all steps.
        #[arg(long, default_value_t = 0.05)]
        lr: f32,
        /// The seed of the split, the initial weights and the batch order.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// No random-crop (and flip) augmentation.
        #[arg(long)]
        no_augment: bool,
        /// The model directory to write [default: runs/cnn for builtin:cnn,
        /// runs/genotype otherwise].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write RUN_DIR/report.html (one self-contained file: curves, α heat
    /// maps, the cells, predicted vs measured, pruning, the final table);
    /// `gradnas search` writes it at the end of a run.
    Report {
        #[arg(value_name = "RUN_DIR")]
        run: PathBuf,
    },
    /// Re-evaluate a trained model directory on the test set.
    Eval {
        /// A directory written by `gradnas train`.
        #[arg(long)]
        model: PathBuf,
        #[command(flatten)]
        data: DataArgs,
        /// Test images per forward pass (memory, not the result).
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
    /// Write a trained model directory as an ONNX model (opset 17): input
    /// `images`, float32 NCHW pixels / 255 with a dynamic batch (the data
    /// normalization is in the graph); output `logits`.
    Export {
        /// A directory written by `gradnas train`.
        #[arg(long)]
        model: PathBuf,
        /// The ONNX file to write.
        #[arg(long)]
        onnx: PathBuf,
    },
    /// List every adapter seen and the limits gradnas uses on the chosen one.
    Info {
        /// One JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run every op and gradient on the GPU against the CPU reference.
    Verify {
        /// One JSON object on stdout (every check, pass or not) instead of
        /// a table.
        #[arg(long)]
        json: bool,
        /// The test suite's full shape set instead of the quick one.
        #[arg(long)]
        full: bool,
        /// The seed of the random inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Per-op throughput (GFLOP/s, GB/s) on the chosen adapter.
    Bench {
        /// One JSON object on stdout instead of tables.
        #[arg(long)]
        json: bool,
        /// Only ops whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Timings per op (the median is reported); on a software adapter
        /// the search steps take at most 3 (1 for the costly variants).
        #[arg(long, default_value_t = 7)]
        repeats: usize,
        /// The search-step variants to time, comma-separated: small
        /// (bench-small), small-pc4 (partial channels 1/4), small-2nd
        /// (second order), medium (bench-medium: ~45 s a step on 2-core
        /// lavapipe, minutes with its warm-up).
        #[arg(
            long,
            default_value = "small,small-pc4,small-2nd",
            value_delimiter = ','
        )]
        search: Vec<String>,
        /// Also time each dispatch of the training and search steps and of
        /// one 5-block one-shot measurement (by GPU timestamps where the
        /// adapter has them) and print where the time goes, per entry point.
        #[arg(long)]
        profile: bool,
        /// The network of the training-step benchmark.
        #[command(flatten)]
        net: NetArgs,
        /// Batch of the training-step benchmark.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Serve steps instead of benchmarking: build the search step of
        /// the --search variant (one only), print "ready", then take one
        /// step per line read on stdin and print its milliseconds
        /// (benches/peers/duel.py alternates it with PyTorch's). Refused
        /// beside the options it would ignore: --json, --filter,
        /// --repeats, --profile, --model, --width, --depth, --batch.
        #[arg(
            long,
            conflicts_with_all = ["json", "filter", "repeats", "profile", "model", "width", "depth", "batch"]
        )]
        serve: bool,
    },
}

fn gpu() -> Result<&'static Gpu> {
    Gpu::shared().map_err(|e| anyhow::anyhow!("{e}"))
}

fn main() -> ExitCode {
    // Before any thread (the Ctrl-C handler's) and any instance: see the
    // function's comment for why two llvmpipe workers per core.
    gradnas::engine::default_llvmpipe_threads();
    // The first Ctrl-C asks the running phase to stop at its next step (S1
    // writes a checkpoint there); a second one ends the process at once.
    let handler = ctrlc::set_handler(|| {
        if gradnas::progress::interrupted() {
            std::process::exit(130);
        }
        eprintln!("\ngradnas: stopping at the next step (Ctrl-C again to quit now)");
        gradnas::progress::interrupt();
    });
    if let Err(e) = handler {
        eprintln!("gradnas: warning: no Ctrl-C handler ({e}); Ctrl-C ends the process at once");
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gradnas: error: {e:#}");
            if gradnas::progress::interrupted() {
                ExitCode::from(130)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let mut ui = Reporter::new(match (cli.quiet, cli.log_json) {
        (true, _) => Mode::Quiet,
        (false, true) => Mode::Json,
        (false, false) => Mode::Bars,
    });
    match cli.cmd {
        Cmd::Search {
            stage,
            preset,
            config,
            resume,
            width,
            depth,
            batch,
            epochs,
            steps_per_epoch,
            op_set,
            second_order,
            partial_channels,
            top_k,
            gate,
            max_rounds,
            paths,
            from,
            prune,
            predictor_epochs,
            explore,
            data,
            seed,
            out,
        } => {
            if let Some(run) = resume {
                let given = [
                    width.is_some(),
                    depth.is_some(),
                    batch.is_some(),
                    epochs.is_some(),
                    steps_per_epoch.is_some(),
                    op_set.is_some(),
                    second_order,
                    partial_channels.is_some(),
                    top_k.is_some(),
                    gate.is_some(),
                    max_rounds.is_some(),
                    paths.is_some(),
                    predictor_epochs.is_some(),
                    explore.is_some(),
                    prune.is_some(),
                    seed.is_some(),
                    data.given(),
                ];
                anyhow::ensure!(
                    !given.contains(&true),
                    "--resume continues {} with its own config.json; settings cannot be changed (start a new run with --config)",
                    run.display()
                );
                let cfg = SearchConfig::load(&run)?;
                cfg.validate().map_err(anyhow::Error::msg)?;
                let splits = cfg.data.load(cfg.s1.seed)?;
                return search_s1_s3(&splits, &cfg, true, &run, &mut ui);
            }
            // The preset, the file over it, the flags over both.
            let mut cfg = gradnas::config::preset(&preset)?;
            if let Some(file) = &config {
                cfg = gradnas::config::apply_file(&cfg, file)?;
            }
            let net = &mut cfg.s1.supernet;
            net.width = width.unwrap_or(net.width);
            net.depth = depth.unwrap_or(net.depth);
            net.batch = batch.unwrap_or(net.batch);
            net.partial_channels = partial_channels.unwrap_or(net.partial_channels);
            if let Some(name) = &op_set {
                net.op_set = OpSet::by_name(name).map_err(anyhow::Error::msg)?;
            }
            cfg.s1.hyper.second_order |= second_order;
            cfg.s1.epochs = epochs.unwrap_or(cfg.s1.epochs);
            if steps_per_epoch.is_some() {
                cfg.s1.steps_per_epoch = steps_per_epoch;
            }
            cfg.s1.seed = seed.unwrap_or(cfg.s1.seed);
            let p = &mut cfg.progressive;
            p.top_k = top_k.unwrap_or(p.top_k);
            p.explore = explore.unwrap_or(p.explore);
            cfg.gate.threshold = gate.unwrap_or(cfg.gate.threshold);
            cfg.gate.max_rounds = max_rounds.unwrap_or(cfg.gate.max_rounds);
            cfg.paths.paths = paths.unwrap_or(cfg.paths.paths);
            cfg.predictor.epochs = predictor_epochs.unwrap_or(cfg.predictor.epochs);
            cfg.s4.prune.ratio = prune.unwrap_or(cfg.s4.prune.ratio);
            data.apply(&mut cfg.data);

            // None: the whole method, S1 → S4.
            let (through_s3, through_s4) = match stage.as_deref() {
                Some("s1") => (false, false),
                Some("s1-s3") => (true, false),
                None => (true, true),
                Some("s4") => {
                    let from = from.context("--stage s4 needs --from RUN_DIR (an S1–S3 run)")?;
                    return search_s4(&data, &from, &cfg.s4, &out, &mut ui);
                }
                Some(other) => anyhow::bail!("--stage {other:?}: expected s1, s1-s3 or s4"),
            };
            anyhow::ensure!(from.is_none(), "--from is for --stage s4");
            anyhow::ensure!(
                through_s4 || prune.is_none(),
                "--prune is for S4 (--stage s4, or no --stage)"
            );
            let splits = cfg.data.load(cfg.s1.seed)?;
            cfg.s1.supernet.dims = splits.train.dims;
            cfg.s1.supernet.classes = splits.train.classes;
            if !through_s3 {
                return search_s1(&splits, &cfg.s1, &out, &mut ui);
            }
            cfg.validate().map_err(anyhow::Error::msg)?;
            search_s1_s3(&splits, &cfg, through_s4, &out, &mut ui)
        }
        Cmd::Train {
            net,
            data,
            epochs,
            batch,
            lr,
            seed,
            no_augment,
            out,
        } => {
            let cfg = TrainConfig {
                epochs,
                batch,
                lr,
                seed,
                augment: !no_augment,
                ..TrainConfig::default()
            };
            let model = net.spec()?;
            let out = out.unwrap_or_else(|| match model {
                ModelSpec::Builtin(_) => PathBuf::from("runs/cnn"),
                ModelSpec::Genotype(_) => PathBuf::from("runs/genotype"),
            });
            train_cmd(&model, &data, &cfg, &out, &mut ui)
        }
        Cmd::Eval { model, data, batch } => eval_cmd(&model, &data, batch),
        Cmd::Export { model, onnx } => export_cmd(&model, &onnx),
        Cmd::Report { run } => {
            let path = gradnas::report::write(&run)?;
            println!("report: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Info { json } => info(json),
        Cmd::Verify { json, full, seed } => verify_cmd(json, full, seed),
        Cmd::Bench {
            json,
            filter,
            repeats,
            search,
            profile,
            net,
            batch,
            serve,
        } => {
            if serve {
                let [variant] = &search[..] else {
                    anyhow::bail!(
                        "--serve steps one search variant; --search gave {}: {}",
                        search.len(),
                        search.join(",")
                    );
                };
                let (cfg, second_order, _) = search_variant(variant)?;
                let h = gradnas::search::bilevel::SearchHyper {
                    second_order,
                    ..Default::default()
                };
                let stdin = std::io::stdin().lock();
                bench::serve_steps(gpu()?, &cfg, &h, stdin, std::io::stdout().lock())?;
                return Ok(ExitCode::SUCCESS);
            }
            let model = net.spec()?;
            anyhow::ensure!(batch >= 1, "--batch 0: must be at least 1");
            bench_cmd(json, filter, repeats, &search, profile, (&model, batch))
        }
    }
}

/// Where `gradnas search` writes by default.
const DEFAULT_OUT: &str = "runs/search";

fn search_s1(
    splits: &data::Splits,
    cfg: &S1Config,
    out: &std::path::Path,
    ui: &mut Reporter,
) -> Result<ExitCode> {
    let gpu = gpu()?;
    ui.line(format!(
        "S1 on {} ({} train / {} val) on {}: width {}, depth {}, batch {}, {} ops, {} epochs",
        splits.dir.display(),
        splits.train.len(),
        splits.val.len(),
        gpu.describe(),
        cfg.supernet.width,
        cfg.supernet.depth,
        cfg.supernet.batch,
        cfg.supernet.op_set.name(),
        cfg.epochs
    ));
    let report = s1::run(gpu, splits, cfg, out, |e| ui.event(e))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("genotype: {}", out.join("genotype.json").display());
    Ok(ExitCode::SUCCESS)
}

fn search_s4(
    data: &DataArgs,
    from: &std::path::Path,
    cfg: &S4Config,
    out: &std::path::Path,
    ui: &mut Reporter,
) -> Result<ExitCode> {
    // The same split as the search: its seed is in the run's config.
    let search = SearchConfig::load(from)?;
    let mut dcfg = search.data.clone();
    data.apply(&mut dcfg);
    let splits = dcfg.load(search.s1.seed)?;
    let gpu = gpu()?;
    ui.line(format!(
        "S4 of {} on {} ({} train / {} val / {} test) on {}",
        from.display(),
        splits.dir.display(),
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        gpu.describe()
    ));
    let out = if out == std::path::Path::new(DEFAULT_OUT) {
        from.join("s4")
    } else {
        out.to_path_buf()
    };
    let report = pipeline::s4(gpu, &splits, from, cfg, &out, &mut |e| ui.event(e))?;
    print_s4(&report, &out, ui)?;
    println!("report: {}", gradnas::report::write(from)?.display());
    Ok(ExitCode::SUCCESS)
}

fn search_s1_s3(
    splits: &data::Splits,
    cfg: &SearchConfig,
    through_s4: bool,
    out: &std::path::Path,
    ui: &mut Reporter,
) -> Result<ExitCode> {
    let gpu = gpu()?;
    ui.line(format!(
        "S1–S3 on {} ({} train / {} val) on {}: width {}, depth {}, top-K {}, gate {:.0}% over ≤ {} rounds",
        splits.dir.display(),
        splits.train.len(),
        splits.val.len(),
        gpu.describe(),
        cfg.s1.supernet.width,
        cfg.s1.supernet.depth,
        cfg.progressive.top_k,
        100.0 * cfg.gate.threshold,
        cfg.gate.max_rounds
    ));
    let report = pipeline::s1_s3(gpu, splits, cfg, out, &mut |e| ui.event(e))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("candidate: {}", out.join("candidate.json").display());
    if through_s4 {
        let dir = out.join("s4");
        let report = pipeline::s4(gpu, splits, out, &cfg.s4, &dir, &mut |e| ui.event(e))?;
        print_s4(&report, &dir, ui)?;
        // The final network at the top of the run directory.
        for (from, to) in [
            ("final/model.safetensors", "model.safetensors"),
            ("final/model.json", "architecture.json"),
            ("final.onnx", "model.onnx"),
        ] {
            let (from, to) = (dir.join(from), out.join(to));
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    println!("report: {}", gradnas::report::write(out)?.display());
    Ok(ExitCode::SUCCESS)
}

/// S4's report as JSON on stdout, its stage table on stderr.
fn print_s4(report: &pipeline::S4Report, out: &std::path::Path, ui: &mut Reporter) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(report)?);
    for st in &report.stages {
        ui.line(format!(
            "{:<12} test accuracy {:6.2}%  {:>8} parameters  {:>11} multiply-adds  {:.3} ms/image",
            st.stage,
            100.0 * st.test_accuracy,
            st.params,
            st.flops,
            st.latency_ms_per_image
        ));
    }
    println!(
        "final model: {} (ONNX: {})",
        out.join("final").display(),
        report.onnx.display()
    );
    Ok(())
}

fn train_cmd(
    model: &ModelSpec,
    data: &DataArgs,
    cfg: &TrainConfig,
    out: &std::path::Path,
    ui: &mut Reporter,
) -> Result<ExitCode> {
    let splits = data.load(cfg.seed)?;
    let gpu = gpu()?;
    let params = match model {
        ModelSpec::Genotype(m) => format!(
            ", {} parameters",
            m.count_params(splits.train.dims, splits.train.classes)
        ),
        ModelSpec::Builtin(_) => String::new(),
    };
    ui.line(format!(
        "training {}{params} on {} ({} train / {} val / {} test, {}, {} classes) on {}",
        model.name(),
        splits.dir.display(),
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        splits.train.dims,
        splits.train.classes,
        gpu.describe()
    ));
    let report = train::train(gpu, model.clone(), &splits, cfg, out, |m| {
        ui.event(&m.event("train"))
    })?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("test accuracy: {:.2}%", 100.0 * report.test_accuracy);
    Ok(ExitCode::SUCCESS)
}

fn eval_cmd(model: &std::path::Path, data: &DataArgs, batch: usize) -> Result<ExitCode> {
    let gpu = gpu()?;
    let (eval, card) = train::load(gpu, model, batch)?;
    let splits = data.load(card.seed)?;
    splits.test.check_dims(card.dims)?;
    let (loss, acc) = eval.evaluate(gpu, &splits.test, &card.norm)?;
    println!(
        "{}: test loss {loss:.4}, test accuracy {:.2}% on {} images ({})",
        model.display(),
        100.0 * acc,
        splits.test.len(),
        gpu.describe()
    );
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(model: &std::path::Path, onnx: &std::path::Path) -> Result<ExitCode> {
    let summary = gradnas::export::onnx::write(model, onnx)?;
    println!("{}: wrote {}: {summary}", model.display(), onnx.display());
    Ok(ExitCode::SUCCESS)
}

/// ", LP_NUM_THREADS=4" after llvmpipe's name (the workers its dispatches
/// run on), nothing after another adapter's; and ", 64-bit words" where
/// the shaders move their float views so (`engine::words64`).
fn cpu_driver_note(gpu: &Gpu) -> String {
    let threads = gpu
        .llvmpipe_threads()
        .map(|n| format!(", {n}"))
        .unwrap_or_default();
    let words = if gpu.words64 { ", 64-bit words" } else { "" };
    format!("{threads}{words}")
}

fn info(json: bool) -> Result<ExitCode> {
    let adapters = engine::list_adapters();
    let chosen = Gpu::shared();
    if json {
        let v = serde_json::json!({
            "adapters": adapters,
            "chosen": chosen.as_ref().ok().map(|g| g.adapter_row()),
            "words64": chosen.as_ref().ok().map(|g| g.words64),
            "limits": chosen.as_ref().ok().map(|g| g.used_limits()),
            "error": chosen.as_ref().err().map(|e| e.to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("adapters seen ({}):", adapters.len());
        for a in &adapters {
            println!(
                "  {} | {} | {} {} | {}",
                a.name, a.backend, a.driver, a.driver_info, a.device_type
            );
        }
        match chosen {
            Ok(g) => {
                println!("chosen: {}{}", g.describe(), cpu_driver_note(g));
                println!("limits gradnas uses:");
                let l = serde_json::to_value(g.used_limits())?;
                for (k, v) in l.as_object().context("limits")? {
                    println!("  {k:<40} {v}");
                }
            }
            Err(e) => println!("chosen: none ({e})"),
        }
    }
    Ok(if chosen.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify_cmd(json: bool, full: bool, seed: u64) -> Result<ExitCode> {
    let gpu = gpu()?;
    let level = if full {
        verify::Level::Full
    } else {
        verify::Level::Quick
    };
    let checks = verify::run_all(gpu, level, seed)?;
    let missing: Vec<String> = verify::missing_required(&checks)
        .iter()
        .map(|(op, dir)| format!("{op} {dir}"))
        .collect();
    let failed = checks.iter().filter(|c| !c.pass).count() + missing.len();
    let adapter = gpu.describe();
    if json {
        let v = serde_json::json!({
            "adapter": gpu.adapter_row(),
            "passed": checks.len() + missing.len() - failed,
            "failed": failed,
            "missing": missing,
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<18} {:<20} {:<24} {:>10} {:>10}  result  adapter",
            "op", "direction", "shape", "max abs", "max rel"
        );
        for c in &checks {
            println!(
                "{:<18} {:<20} {:<24} {:>10.2e} {:>10.2e}  {:<6}  {}",
                c.op,
                c.direction,
                c.shape,
                c.max_abs_err,
                c.max_rel_err,
                if c.pass { "pass" } else { "FAIL" },
                adapter
            );
        }
        for m in &missing {
            println!(
                "{m:<39} {:<24} {:>10} {:>10}  FAIL    not covered by the suite",
                "-", "-", "-"
            );
        }
        println!(
            "verify: {} passed, {} failed",
            checks.len() + missing.len() - failed,
            failed
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--profile`'s table: per entry point, its dispatches, their mean
/// workgroups (how much of a GPU each can fill) and its time.
fn print_profile(profile: Option<&[gradnas::graph::plan::ProfileRow]>) {
    let Some(p) = profile else { return };
    let total: f64 = p.iter().map(|r| r.seconds).sum();
    println!(
        "  profile (each dispatch timed alone, {:.0} ms in all; wg: mean workgroups per dispatch):",
        total * 1e3
    );
    for r in p {
        println!(
            "  {:<36} {:>6} dispatches {:>7.0} wg {:>9.1} ms {:>5.1}%",
            r.entry,
            r.dispatches,
            r.workgroups as f64 / r.dispatches as f64,
            r.seconds * 1e3,
            100.0 * r.seconds / total
        );
    }
}

/// A `--search` variant: bench-small as specified, its partial-channel
/// (k = 4) and second-order variants, bench-medium; whether second order;
/// and whether costly (one repeat on a software adapter).
fn search_variant(v: &str) -> Result<(SupernetConfig, bool, bool)> {
    let small = bench::bench_small();
    Ok(match v {
        "small" => (small, false, false),
        "small-pc4" => (
            SupernetConfig {
                partial_channels: 4,
                ..small
            },
            false,
            false,
        ),
        "small-2nd" => (small, true, true),
        "medium" => (bench::bench_medium(), false, true),
        other => anyhow::bail!("--search {other}: expected small, small-pc4, small-2nd or medium"),
    })
}

fn bench_cmd(
    json: bool,
    filter: Option<String>,
    repeats: usize,
    search_variants: &[String],
    profile: bool,
    (model, batch): (&ModelSpec, usize),
) -> Result<ExitCode> {
    let gpu = gpu()?;
    let cases: Vec<_> = bench::cases()
        .into_iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.op.contains(f)))
        .collect();
    let step = filter.as_deref().is_none_or(|f| "train_step".contains(f));
    let search = filter.as_deref().is_none_or(|f| "search_step".contains(f));
    let s2 = filter.as_deref().is_none_or(|f| "s2".contains(f));
    anyhow::ensure!(
        !cases.is_empty() || step || search || s2,
        "no benchmark matches --filter {}",
        filter.as_deref().unwrap_or("")
    );
    if !json {
        eprintln!("adapter: {}{}", gpu.describe(), cpu_driver_note(gpu));
        println!(
            "{:<28} {:<28} {:>10} {:>9} {:>8} {:>4}",
            "op", "shape", "median ms", "GFLOP/s", "GB/s", "disp"
        );
    }
    let mut rows = Vec::new();
    for c in &cases {
        let r = bench::run_case(gpu, c, repeats)?;
        if !json {
            println!(
                "{:<28} {:<28} {:>10.3} {:>9.2} {:>8.2} {:>4}",
                r.op, r.shape, r.median_ms, r.gflops, r.gbps, r.dispatches
            );
        }
        rows.push(r);
    }
    let step = if step {
        let s = bench::train_step(gpu, model, batch, repeats, profile)?;
        if !json {
            println!(
                "train_step {} batch {}: {} nodes, {} dispatches; recorded {:.1} ms, one submit per node {:.1} ms ({:.2}x); {:.0} images/s; planned intermediates {:.1} MB vs {:.1} MB unshared ({:.2}); persistent {:.1} MB; kernels' own {:.1} MB",
                s.model,
                s.batch,
                s.nodes,
                s.dispatches,
                s.recorded_ms,
                s.per_node_ms,
                s.per_node_over_recorded,
                s.images_per_s,
                s.planned_bytes as f64 / 1e6,
                s.unshared_bytes as f64 / 1e6,
                s.planned_over_unshared,
                s.persistent_bytes as f64 / 1e6,
                s.kernel_bytes as f64 / 1e6
            );
            print_profile(s.profile.as_deref());
        }
        Some(s)
    } else {
        None
    };
    let search = if search {
        // bench-small as specified, its partial-channel (k = 4) and
        // second-order variants, bench-medium. Seconds per step on software
        // adapters: a few repeats suffice (one for the costlier ones); a
        // hardware GPU takes milliseconds and gets all of them.
        let software = gpu.info.device_type == wgpu::DeviceType::Cpu;
        let few = |n: usize| if software { repeats.min(n) } else { repeats };
        let mut variants = Vec::new();
        for v in search_variants {
            let (cfg, second_order, costly) = search_variant(v)?;
            variants.push((cfg, second_order, few(if costly { 1 } else { 3 })));
        }
        let mut out = Vec::new();
        for (cfg, second_order, reps) in variants {
            let s = bench::search_step(gpu, &cfg, second_order, reps, profile)?;
            if !json {
                println!(
                    "search_step ({}): bilevel step {:.0} ms, forward {:.0} ms, {} dispatches, encoded by the host in {:.1} ms ({:.2}% of the step); planned {:.1} MB vs {:.1} MB unshared, persistent {:.1} MB, kernels' own {:.1} MB",
                    s.config,
                    s.bilevel_ms,
                    s.forward_ms,
                    s.dispatches,
                    s.encode_ms,
                    100.0 * s.encode_ms / s.bilevel_ms,
                    s.planned_bytes as f64 / 1e6,
                    s.unshared_bytes as f64 / 1e6,
                    s.persistent_bytes as f64 / 1e6,
                    s.kernel_bytes as f64 / 1e6
                );
                if let (Some(b), Some(f)) = (s.bilevel_gpu_ms, s.forward_gpu_ms) {
                    println!(
                        "  GPU time (timestamps): bilevel step {b:.2} ms, forward {f:.2} ms; host encoding {:.1}% of it on one thread, {:.1} ms = {:.1}% on {} threads as a step encodes",
                        100.0 * s.encode_ms / b,
                        s.encode_wall_ms,
                        100.0 * s.encode_wall_ms / b,
                        s.encode_threads
                    );
                }
                print_profile(s.profile.as_deref());
            }
            out.push(s);
        }
        Some(out)
    } else {
        None
    };
    let s2 = if s2 {
        let splits = DataConfig::default().load(1)?;
        let s = bench::s2(gpu, &splits, repeats.clamp(3, 20), profile)?;
        if !json {
            println!(
                "s2 predictor (ensemble of 5, hidden 100): training step {:.0} ms ({} dispatches), scoring {:.0} five-block cells/s ({:.0}/s as expansions of 8 parents)",
                s.predictor_train_ms_per_step,
                s.predictor_train_dispatches,
                s.predictor_scored_cells_per_s,
                s.predictor_scored_expansions_per_s
            );
            println!(
                "s2 one-shot measurement ({}): {:.2} cells/s (1 block), {:.2} cells/s (5 blocks, {:.0}% building) on one device; {:.2} and {:.2} on S2's {} side by side; path training {:.2} s/path ({} steps of {})",
                s.measure_config,
                s.measured_cells_per_s_1_block,
                s.measured_cells_per_s_5_blocks,
                100.0 * s.measure_build_share,
                s.measured_cells_per_s_1_block_lanes,
                s.measured_cells_per_s_5_blocks_lanes,
                s.measure_lanes,
                s.path_seconds,
                s.path_steps,
                s.path_batch
            );
            print_profile(s.measure_profile.as_deref());
            println!(
                "s2 few-shot measurement ({} steps of {} images first): {:.2} cells/s (5 blocks)",
                s.few_shot_steps, s.few_shot_batch, s.few_shot_cells_per_s_5_blocks
            );
            println!(
                "s2 probe reading (the quick preset's: a classifier fitted per cell on {} training images): {:.2} cells/s (5 blocks)",
                s.probe_images, s.probe_cells_per_s_5_blocks
            );
        }
        Some(s)
    } else {
        None
    };
    if json {
        let v = serde_json::json!({
            "adapter": gpu.adapter_row(),
            "cpu_driver_threads": gpu.llvmpipe_threads(),
            "words64": gpu.words64,
            "results": rows,
            "train_step": step,
            "search_step": search,
            "s2": s2,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::SUCCESS)
}
