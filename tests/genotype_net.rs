//! The discrete network of a genotype: a forward on the GPU plan against the
//! CPU reference (every pnas op, a reduction cell, a block whose two slots
//! share input and op), parameter names that match the supernet's,
//! parameter counts against a count by hand, seeded random genotypes, a
//! short training run that reloads to the same accuracy (library and
//! `gradnas train`/`gradnas eval`), and clear errors for bad genotype
//! files and model cards.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use gradnas::data::{Dims, Splits, IDX_FILES};
use gradnas::graph::{CpuExec, Graph, Plan, T};
use gradnas::models::{GenotypeModel, ModelSpec, DEFAULT_DEPTH, DEFAULT_WIDTH};
use gradnas::nn::cellnet::Skeleton;
use gradnas::nn::{genotype_net, ParamStore};
use gradnas::search::supernet::{self, Arch, SupernetConfig};
use gradnas::space::genotype::random_genotype;
use gradnas::space::{canonical, num_inputs, Block, Cell, Genotype, OpKind, OpSet, BLOCKS};
use gradnas::train::{self, TrainConfig};
use gradnas::verify::{self, compare};

use OpKind::*;

fn b(i1: usize, o1: OpKind, i2: usize, o2: OpKind) -> Block {
    Block::new(i1, o1, i2, o2)
}

/// Every pnas op in both cells; block 4 of the normal cell and block 2 of
/// the reduction cell take the same input through the same op twice (the
/// latter at stride 2); identity at stride 2 (a FactorizedReduce) in the
/// reduction cell.
fn hand_genotype() -> Genotype {
    Genotype {
        op_set: "pnas".into(),
        normal: Cell {
            blocks: vec![
                b(0, SepConv3x3, 1, SepConv5x5),
                b(1, SepConv7x7, 2, Conv7x1_1x7),
                b(0, Identity, 3, AvgPool3x3),
                b(2, MaxPool3x3, 4, DilConv3x3),
                b(1, SepConv3x3, 1, SepConv3x3),
            ],
        },
        reduce: Cell {
            blocks: vec![
                b(0, Identity, 1, MaxPool3x3),
                b(0, AvgPool3x3, 2, SepConv3x3),
                b(1, DilConv3x3, 1, DilConv3x3),
                b(1, Conv7x1_1x7, 3, SepConv5x5),
                b(0, SepConv7x7, 4, Identity),
            ],
        },
        alpha: None,
        beta: None,
    }
}

fn skeleton(width: usize, depth: usize, classes: usize) -> Skeleton {
    Skeleton {
        width,
        depth,
        stem_multiplier: 3,
        classes,
        affine: true,
    }
}

/// A fresh directory for one test, removed when dropped.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gradnas-genotype-{name}-"))
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------- (a) GPU vs CPU

#[test]
fn discrete_network_forward_matches_cpu_reference() {
    let t0 = Instant::now();
    let genotype = hand_genotype();
    genotype.validate().expect("the hand genotype is valid");
    let for_every_op: HashSet<OpKind> = [&genotype.normal, &genotype.reduce]
        .iter()
        .flat_map(|c| c.blocks.iter().flat_map(|b| b.ops))
        .collect();
    for op in OpSet::pnas().ops() {
        assert!(for_every_op.contains(op), "{op} not covered");
    }

    let (batch, classes) = (2, 10);
    let sk = skeleton(4, 3, classes);
    assert!(sk.is_reduction(1) && sk.is_reduction(2) && !sk.is_reduction(0));
    let mut g = Graph::new();
    let mut st = ParamStore::new(5);
    let images = g.input("images", &[batch, 1, 12, 12]);
    let logits = genotype_net::forward(&mut g, &mut st, &sk, &genotype, images);
    assert_eq!(g.def(logits).shape, [batch, classes]);
    g.pin(logits);

    // The two copies of a repeated (input, op) are separate weights: the
    // second under `{op}_2`, in a normal and in a reduction cell.
    let names: HashSet<String> = st.params.iter().map(|t| g.def(*t).name.clone()).collect();
    for n in [
        "cell0.b4_in1.sep_conv_3x3.pw2.weight",
        "cell0.b4_in1.sep_conv_3x3_2.pw2.weight",
        "cell1.b2_in1.dil_conv_3x3.dw.weight",
        "cell1.b2_in1.dil_conv_3x3_2.dw.weight",
        "cell2.b0_in0.identity.conv1.weight",
        "cell0.b1_in2.conv_7x1_1x7.conv7x1.weight",
    ] {
        assert!(names.contains(n), "no parameter {n}");
    }

    let mut rng = verify::rng(9);
    let x = verify::randn(&mut rng, batch * 144);
    let mut cpu = CpuExec::new(&g);
    cpu.write(images, &x);
    cpu.step(&g);

    let gpu = common::gpu();
    let plan = Plan::new(gpu, &g).expect("plan");
    plan.write(gpu, images, &x);
    plan.step(gpu).expect("gpu step");

    let tol = verify::FORWARD;
    let mut bad = Vec::new();
    let watched: Vec<T> = std::iter::once(logits)
        .chain(st.states.iter().copied())
        .collect();
    assert!(watched.len() > 50, "only {} tensors watched", watched.len());
    for &t in &watched {
        let got = plan.read(gpu, t).unwrap();
        let c = compare(&g.def(t).name, "forward", "", cpu.read(t), &got, tol);
        if !c.pass {
            bad.push(format!("{}: {:?}", c.op, c.detail));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} tensors disagree on {}:\n{}",
        bad.len(),
        watched.len(),
        gpu.describe(),
        bad.join("\n")
    );
    // The logits are not all equal (a network that ignores its input
    // would pass the comparison trivially).
    let l = cpu.read(logits);
    assert!(l.iter().any(|v| (v - l[0]).abs() > 1e-6), "{l:?}");
    eprintln!("forward check: {:.1}s", t0.elapsed().as_secs_f64());
}

/// Every weight of the discrete network that the supernet also has sits
/// under the same name with the same shape there (the `_2` copy maps to
/// its op's supernet candidate): what S4 needs to inherit by name. The
/// affine BN γ/β are the only ones without a counterpart.
#[test]
fn parameter_names_match_the_supernet() {
    let genotype = hand_genotype();
    let cfg = SupernetConfig {
        width: 4,
        depth: 3,
        batch: 2,
        op_set: OpSet::pnas(),
        dims: Dims::new(1, 12, 12),
        classes: 10,
        stem_multiplier: 3,
        partial_channels: 1,
    };
    let mut sg = Graph::new();
    let mut sst = ParamStore::new(1);
    let arch = Arch::new(&mut sg, &mut sst, &cfg.op_set);
    let normal = supernet::mixing_weights(&mut sg, &arch.normal);
    let reduce = supernet::mixing_weights(&mut sg, &arch.reduce);
    let x = sg.input("images", &[2, 1, 12, 12]);
    supernet::forward(&mut sg, &mut sst, &cfg, x, &normal, &reduce);
    let sup: HashMap<String, Vec<usize>> = sst
        .params
        .iter()
        .chain(&sst.states)
        .map(|t| (sg.def(*t).name.clone(), sg.def(*t).shape.clone()))
        .collect();

    let mut g = Graph::new();
    let mut st = ParamStore::new(1);
    let x = g.input("images", &[2, 1, 12, 12]);
    genotype_net::forward(&mut g, &mut st, &skeleton(4, 3, 10), &genotype, x);
    let (mut matched, mut affine) = (0, 0);
    let mut missing = Vec::new();
    for t in st.params.iter().chain(&st.states) {
        let d = g.def(*t);
        let parts: Vec<&str> = d.name.split('.').collect();
        let parent = parts[parts.len() - 2];
        let leaf = parts[parts.len() - 1];
        if parent.starts_with("bn") && (leaf == "weight" || leaf == "bias") {
            affine += 1;
            continue;
        }
        let name: Vec<String> = parts
            .iter()
            .map(|p| p.strip_suffix("_2").unwrap_or(p).to_string())
            .collect();
        let name = name.join(".");
        match sup.get(&name) {
            Some(shape) if *shape == d.shape => matched += 1,
            other => missing.push(format!("{} {:?}: supernet has {other:?}", d.name, d.shape)),
        }
    }
    assert!(
        missing.is_empty(),
        "without a supernet counterpart:\n{}",
        missing.join("\n")
    );
    assert!(
        matched > 100 && affine > 20,
        "{matched} matched, {affine} γ/β"
    );
}

// ---------------------------------------------------------------- (b) counts

/// Trained scalars by hand (affine BN: 2c each), written from the op
/// definitions, not from the library.
mod by_hand {
    pub fn bn(c: usize) -> usize {
        2 * c
    }
    /// ReLU, k×k depthwise, pointwise, BN, twice.
    pub fn sep(k: usize, c: usize) -> usize {
        2 * (k * k * c + c * c + bn(c))
    }
    /// ReLU, k×k depthwise dilated, pointwise, BN.
    pub fn dil(k: usize, c: usize) -> usize {
        k * k * c + c * c + bn(c)
    }
    /// ReLU, 1×7 c→c, 7×1 c→c, BN.
    pub fn conv7(c: usize) -> usize {
        7 * c * c + 7 * c * c + bn(c)
    }
    /// FactorizedReduce c_in → c: two 1×1 to c/2, BN.
    pub fn fr(c_in: usize, c: usize) -> usize {
        2 * c_in * (c / 2) + bn(c)
    }
    /// ReLU, 1×1 c_in → c, BN.
    pub fn rcb(c_in: usize, c: usize) -> usize {
        c_in * c + bn(c)
    }
}

/// normal: (0 sep3 + 1 identity), (2 dil3 + 2 dil3);
/// reduce: (0 identity + 1 conv7x1_1x7), (2 max_pool + 1 sep5).
fn tiny_genotype() -> Genotype {
    Genotype {
        op_set: "pnas".into(),
        normal: Cell {
            blocks: vec![
                b(0, SepConv3x3, 1, Identity),
                b(2, DilConv3x3, 2, DilConv3x3),
            ],
        },
        reduce: Cell {
            blocks: vec![
                b(0, Identity, 1, Conv7x1_1x7),
                b(2, MaxPool3x3, 1, SepConv5x5),
            ],
        },
        alpha: None,
        beta: None,
    }
}

#[test]
fn parameter_count_matches_a_count_by_hand() {
    use by_hand::*;
    // width 4, depth 3 (cell 0 normal, cells 1 and 2 reduce), stem 3×4 =
    // 12 channels on 1 input channel, 2 blocks per cell, 10 classes.
    let stem = 3 * 3 * 12 + bn(12);
    // cell 0, c = 4, inputs stem, stem; output 2·4.
    let cell0 = rcb(12, 4) + rcb(12, 4) + sep(3, 4) + 2 * dil(3, 4);
    // cell 1, c = 8, inputs stem (12), cell 0 (8); output 16.
    let cell1 = rcb(12, 8) + rcb(8, 8) + fr(8, 8) + conv7(8) + sep(5, 8);
    // cell 2, c = 16, inputs cell 0 (8, reduced by FactorizedReduce since
    // cell 1 reduced), cell 1 (16); output 32.
    let cell2 = fr(8, 16) + rcb(16, 16) + fr(16, 16) + conv7(16) + sep(5, 16);
    let classifier = 32 * 10 + 10;
    let hand = stem + cell0 + cell1 + cell2 + classifier;
    assert_eq!(hand, 8286, "the arithmetic in the comments above");

    let genotype = tiny_genotype();
    genotype.validate().unwrap();
    let dims = Dims::new(1, 12, 12);
    let counted = genotype_net::count_params(&skeleton(4, 3, 10), &genotype, dims);
    assert_eq!(counted, hand);
    let m = GenotypeModel {
        width: 4,
        depth: 3,
        ..GenotypeModel::new(genotype.clone())
    };
    assert_eq!(m.count_params(dims, 10), hand);
    // The training build (batch statistics) holds the same weights.
    let mut g = Graph::new();
    let x = g.input("images", &[2, 1, 12, 12]);
    let net = gradnas::models::build(&ModelSpec::Genotype(m), &mut g, x, 10, true, 3);
    let built: usize = net.params.iter().map(|p| g.len(*p)).sum();
    assert_eq!(built, hand);
    // Odd widths and shallow stacks build too (every FactorizedReduce
    // sees a doubled, even width).
    for (w, d) in [(1, 1), (3, 2), (3, 4), (5, 6)] {
        let n = genotype_net::count_params(&skeleton(w, d, 10), &hand_genotype(), dims);
        assert!(n > 0, "width {w} depth {d}");
    }
}

// ---------------------------------------------------------------- (c) random

#[test]
fn random_genotypes_are_seeded_valid_canonical_and_varied() {
    for set in [OpSet::pnas(), OpSet::darts()] {
        let draw = |seed: u64| random_genotype(&set, &mut verify::rng(seed));
        let mut seen = HashSet::new();
        let mut pairs = HashSet::new();
        let mut ops = HashSet::new();
        for seed in 0..200u64 {
            let g = draw(seed);
            assert_eq!(g, draw(seed), "seed {seed} drew two genotypes");
            g.validate()
                .unwrap_or_else(|e| panic!("{} seed {seed}: {e}", set.name()));
            assert_eq!(g.op_set, set.name());
            for cell in [&g.normal, &g.reduce] {
                assert_eq!(cell.blocks.len(), BLOCKS);
                for (j, blk) in cell.blocks.iter().enumerate() {
                    assert_eq!(*blk, canonical(blk), "block {j} not canonical");
                    for k in 0..2 {
                        assert!(!blk.ops[k].is_none());
                        pairs.insert((j, blk.inputs[k]));
                        ops.insert(blk.ops[k]);
                    }
                }
            }
            seen.insert(serde_json::to_string(&g).unwrap());
        }
        assert_eq!(seen.len(), 200, "{}: seeds repeat genotypes", set.name());
        let all_pairs = (0..BLOCKS).map(num_inputs).sum::<usize>();
        assert_eq!(pairs.len(), all_pairs, "{}: inputs never drawn", set.name());
        assert_eq!(
            ops.len(),
            set.choosable().count(),
            "{}: ops never drawn",
            set.name()
        );
    }
    // The CLI's random:SEED is the same draw over pnas, at the default shape.
    let spec = ModelSpec::parse("random:7", None, None).unwrap();
    let want = GenotypeModel::new(random_genotype(&OpSet::pnas(), &mut verify::rng(7)));
    assert_eq!(spec, ModelSpec::Genotype(want));
    assert_ne!(spec, ModelSpec::parse("random:8", None, None).unwrap());
}

// ---------------------------------------------------------------- (d) training

fn small_splits() -> &'static Splits {
    static S: OnceLock<Splits> = OnceLock::new();
    S.get_or_init(|| common::bundled_subset(96, 40, 70))
}

#[test]
fn genotype_model_trains_saves_and_reloads() {
    let t0 = Instant::now();
    let gpu = common::gpu();
    let dir = tmp("run");
    let out = dir.path();
    let spec = ModelSpec::Genotype(GenotypeModel {
        width: 4,
        depth: 3,
        ..GenotypeModel::new(tiny_genotype())
    });
    let cfg = TrainConfig {
        epochs: 1,
        batch: 16,
        log_every: 2,
        ..TrainConfig::default()
    };
    let mut losses = Vec::new();
    let report = train::train(gpu, spec.clone(), small_splits(), &cfg, out, |m| {
        if m.phase == "train" {
            losses.push(m.loss);
        }
    })
    .expect("train");
    assert_eq!(losses.len(), 3, "logged {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(report.test_loss.is_finite());
    for f in ["metrics.jsonl", "model.safetensors", "model.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    let (eval, card) = train::load(gpu, out, 32).expect("load");
    assert_eq!(card.model, spec, "the card holds the genotype and shape");
    let (loss, acc) = eval
        .evaluate(gpu, &small_splits().test, &card.norm)
        .unwrap();
    assert!(
        (acc - report.test_accuracy).abs() < 1e-9,
        "{acc} vs {}",
        report.test_accuracy
    );
    assert!(
        (loss - report.test_loss).abs() < 1e-3 * report.test_loss.max(1.0),
        "{loss} vs {}",
        report.test_loss
    );
    // Trained weights, not the initial ones: a fresh evaluator from the
    // same card and seed gives another loss.
    let fresh = train::Evaluator::new(gpu, &card, 32).unwrap();
    let (fresh_loss, _) = fresh
        .evaluate(gpu, &small_splits().test, &card.norm)
        .unwrap();
    assert!(
        (fresh_loss - loss).abs() > 1e-4,
        "reloaded loss {loss} equals the untrained {fresh_loss}"
    );
    eprintln!("train + reload: {:.1}s", t0.elapsed().as_secs_f64());
}

/// A tiny IDX directory: 12×12 images of 4 classes, each a bright
/// horizontal band at a class-dependent height plus a little texture.
fn synthetic_idx(dir: &Path, train: usize, test: usize) {
    let (rows, cols) = (12u32, 12u32);
    let images = |n: usize, salt: usize| {
        let mut b: Vec<u8> = [0x0803u32, n as u32, rows, cols]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        for i in 0..n {
            let class = i % 4;
            for p in 0..(rows * cols) as usize {
                let r = p / cols as usize;
                let band = r / 3 == class;
                b.push(if band {
                    200
                } else {
                    ((p * 7 + i * 13 + salt) % 40) as u8
                });
            }
        }
        b
    };
    let labels = |n: usize| {
        let mut b: Vec<u8> = [0x0801u32, n as u32]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        b.extend((0..n).map(|i| (i % 4) as u8));
        b
    };
    let w = |f: &str, bytes: Vec<u8>| std::fs::write(dir.join(f), bytes).unwrap();
    w(IDX_FILES[0], images(train, 0));
    w(IDX_FILES[1], labels(train));
    w(IDX_FILES[2], images(test, 5));
    w(IDX_FILES[3], labels(test));
}

fn gradnas(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gradnas"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run gradnas");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The percentage after `marker` in `text`.
fn percent_after(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {text}"));
    text[at + marker.len()..]
        .split('%')
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn cli_trains_a_genotype_file_and_eval_reloads_it() {
    let t0 = Instant::now();
    let dir = tmp("cli");
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    synthetic_idx(&data_dir, 40, 12);
    let geno = dir.path().join("genotype.json");
    tiny_genotype().save(&geno).unwrap();
    let out = dir.path().join("model");
    let (ok, stdout, stderr) = gradnas(&[
        "train",
        "--model",
        geno.to_str().unwrap(),
        "--width",
        "2",
        "--depth",
        "2",
        "--epochs",
        "1",
        "--batch",
        "8",
        "--no-augment",
        "--data",
        data_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "gradnas train failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("genotype(pnas, width 2, depth 2)") && stderr.contains("parameters"),
        "{stderr}"
    );
    let trained = percent_after(&stdout, "test accuracy: ");
    let (ok, stdout, stderr) = gradnas(&[
        "eval",
        "--model",
        out.to_str().unwrap(),
        "--data",
        data_dir.to_str().unwrap(),
    ]);
    assert!(ok, "gradnas eval failed:\n{stdout}\n{stderr}");
    assert_eq!(
        percent_after(&stdout, "test accuracy "),
        trained,
        "{stdout}"
    );
    eprintln!("cli train + eval: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- (e) errors

/// `--model` on a file holding `text`: the error, which must name the file
/// and contain `expect`.
fn refused(text: &str, expect: &str) {
    let dir = tmp("bad");
    let path = dir.path().join("geno.json");
    std::fs::write(&path, text).unwrap();
    let e = ModelSpec::parse(path.to_str().unwrap(), None, None)
        .expect_err(&format!("{text} was accepted"));
    assert!(
        e.contains(path.to_str().unwrap()),
        "does not name the file: {e}"
    );
    assert!(e.contains(expect), "{e:?} does not say {expect:?}");
}

fn genotype_json_with(normal: &str) -> String {
    let good = r#"{"inputs": [0, 1], "ops": ["sep_conv_3x3", "identity"]}"#;
    format!(
        r#"{{"op_set": "pnas", "normal": {{"blocks": [{normal}]}}, "reduce": {{"blocks": [{good}]}}}}"#
    )
}

#[test]
fn bad_genotype_files_are_refused_clearly() {
    // A good one first, so the refusals below are about their one defect.
    let dir = tmp("good");
    let good = dir.path().join("genotype.json");
    let block = r#"{"inputs": [0, 1], "ops": ["sep_conv_3x3", "identity"]}"#;
    std::fs::write(&good, genotype_json_with(block)).unwrap();
    let spec = ModelSpec::parse(good.to_str().unwrap(), None, Some(4)).unwrap();
    match &spec {
        ModelSpec::Genotype(m) => {
            assert_eq!((m.width, m.depth), (DEFAULT_WIDTH, 4));
            assert_eq!(m.genotype.normal.blocks.len(), 1);
        }
        other => panic!("{other:?}"),
    }

    refused("{not json", "key must be a string");
    refused("", "EOF");
    refused(
        &genotype_json_with(r#"{"inputs": [0, 2], "ops": ["sep_conv_3x3", "identity"]}"#),
        "normal cell: block 0 input 1: index 2 out of range",
    );
    refused(
        &genotype_json_with(r#"{"inputs": [0, 1], "ops": ["none", "identity"]}"#),
        "`none` cannot be chosen",
    );
    refused(
        &genotype_json_with(r#"{"inputs": [0, 1], "ops": ["sep_conv_3x3", "skip_connect"]}"#),
        "skip_connect is not in op set pnas",
    );
    refused(
        &genotype_json_with(r#"{"inputs": [0, 1], "ops": ["sep_conv_9x9", "identity"]}"#),
        "unknown op \"sep_conv_9x9\"",
    );
    refused(
        &genotype_json_with(block).replace("\"pnas\"", "\"enas\""),
        "op_set \"enas\"",
    );
    refused(r#"{"op_set": "pnas", "normal": {"blocks": []}}"#, "reduce");

    let missing = dir.path().join("nope.json");
    let e = ModelSpec::parse(missing.to_str().unwrap(), None, None).unwrap_err();
    assert!(e.contains("nope.json") && e.contains("no such file"), "{e}");
    let e = ModelSpec::parse(dir.path().to_str().unwrap(), None, None).unwrap_err();
    assert!(
        e.contains("is a directory") && e.contains("genotype.json"),
        "{e}"
    );
    match ModelSpec::parse(good.to_str().unwrap(), None, None).unwrap() {
        ModelSpec::Genotype(m) => assert_eq!((m.width, m.depth), (DEFAULT_WIDTH, DEFAULT_DEPTH)),
        other => panic!("{other:?}"),
    }
    let e = ModelSpec::parse(good.to_str().unwrap(), Some(0), None).unwrap_err();
    assert!(e.contains("width 0"), "{e}");
    let e = ModelSpec::parse("builtin:cnn", Some(8), None).unwrap_err();
    assert!(e.contains("--width") && e.contains("fixed shape"), "{e}");
    assert_eq!(
        ModelSpec::parse("builtin:cnn", None, None).unwrap(),
        ModelSpec::Builtin(gradnas::models::Builtin::Cnn)
    );
    let e = ModelSpec::parse("builtin:resnet", None, None).unwrap_err();
    assert!(e.contains("builtin:cnn"), "{e}");
    let e = ModelSpec::parse("random:x", None, None).unwrap_err();
    assert!(e.contains("random:SEED"), "{e}");

    // The command line says the same, before touching data or the GPU.
    let (ok, _, stderr) = gradnas(&["train", "--model", missing.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("nope.json") && stderr.contains("no such file"),
        "{stderr}"
    );
    let (ok, _, stderr) = gradnas(&["train", "--model", "builtin:cnn", "--depth", "3"]);
    assert!(!ok && stderr.contains("fixed shape"), "{stderr}");
}

#[test]
fn model_cards_round_trip_and_bad_genotypes_in_them_are_refused() {
    // The built-in keeps the form cards had before genotypes.
    let cnn: ModelSpec = serde_json::from_str("\"Cnn\"").unwrap();
    assert_eq!(cnn, ModelSpec::Builtin(gradnas::models::Builtin::Cnn));
    assert_eq!(serde_json::to_string(&cnn).unwrap(), "\"Cnn\"");
    let spec = ModelSpec::Genotype(GenotypeModel::new(hand_genotype()));
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<ModelSpec>(&text).unwrap(), spec);

    let err = |v: serde_json::Value| {
        serde_json::from_value::<ModelSpec>(v)
            .unwrap_err()
            .to_string()
    };
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["genotype"]["normal"]["blocks"][0]["inputs"][1] = 7.into();
    let e = err(v.clone());
    assert!(
        e.contains("normal cell: block 0 input 1: index 7 out of range"),
        "{e}"
    );
    v["genotype"]["normal"]["blocks"][0]["inputs"][1] = 1.into();
    v["depth"] = 0.into();
    assert!(err(v.clone()).contains("depth 0"), "{}", err(v.clone()));
    v["depth"] = 3.into();
    v["widht"] = 3.into();
    assert!(
        err(v.clone()).contains("unknown field `widht`"),
        "{}",
        err(v)
    );
    assert!(err(serde_json::json!("Resnet")).contains("unknown variant"));
    assert!(err(serde_json::json!(3)).contains("expected a built-in name"));

    // A model directory whose card was edited into an invalid genotype.
    let gpu = common::gpu();
    let dir = tmp("card");
    let card = serde_json::json!({
        "model": {"genotype": {"op_set": "pnas",
                  "normal": {"blocks": [{"inputs": [0, 5], "ops": ["identity", "identity"]}]},
                  "reduce": {"blocks": [{"inputs": [0, 1], "ops": ["identity", "identity"]}]}},
                  "width": 4, "depth": 3, "stem_multiplier": 3},
        "dims": {"channels": 1, "height": 12, "width": 12},
        "classes": 4,
        "norm": {"mean": [0.5], "std": [0.25]},
        "seed": 1,
    });
    std::fs::write(dir.path().join("model.json"), card.to_string()).unwrap();
    let e = format!("{:#}", train::load(gpu, dir.path(), 8).err().unwrap());
    assert!(
        e.contains("model.json") && e.contains("index 5 out of range"),
        "{e}"
    );
}

/// A cell that never reads input 1 (the previous cell) leaves cells that
/// nobody reads: with such a cell for both kinds at depth 4, cell k is read
/// only by cell k + 2, so cells 0 and 2 are dead and not built, nothing
/// preprocesses an unread input, and the training step builds (every
/// weight gets a gradient; it used to panic on `pre1`).
#[test]
fn cells_nobody_reads_are_not_built() {
    let cell = Cell {
        blocks: vec![
            b(0, SepConv3x3, 0, MaxPool3x3),
            b(2, Identity, 0, DilConv3x3),
        ],
    };
    let genotype = Genotype {
        op_set: "pnas".into(),
        normal: cell.clone(),
        reduce: cell,
        alpha: None,
        beta: None,
    };
    let model = GenotypeModel {
        width: 2,
        depth: 4,
        stem_multiplier: 1,
        ..GenotypeModel::new(genotype)
    };
    let cfg = TrainConfig {
        batch: 2,
        ..TrainConfig::default()
    };
    let tg = train::train_graph(model, Dims::new(1, 8, 8), 10, &cfg);
    let names: Vec<&str> = tg.trained.keys().map(String::as_str).collect();
    for dead in ["cell0.", "cell2."] {
        assert!(
            !names.iter().any(|n| n.starts_with(dead)),
            "{dead} built: {names:?}"
        );
    }
    for live in ["cell1.pre0.", "cell3.pre0.", "stem.", "classifier."] {
        assert!(
            names.iter().any(|n| n.starts_with(live)),
            "{live} missing: {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.contains(".pre1.")), "{names:?}");
    let mut exec = CpuExec::new(&tg.g);
    exec.write(tg.images, &verify::randn(&mut verify::rng(1), 2 * 64));
    exec.write_u32(tg.labels, &[3, 4]);
    exec.step(&tg.g);
    assert!(exec.read(tg.loss_sum)[0].is_finite());
}
