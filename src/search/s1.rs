//! Running S1: epochs of bilevel steps (weights on the training split, α and
//! β on the validation split), the α/β history per epoch, and the derived
//! genotype (METHOD.md "Derivation").

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::bilevel::{build_step, SearchHyper, SearchStep};
use super::supernet::{KindArch, SupernetConfig};
use crate::data::{Order, Splits};
use crate::engine::Gpu;
use crate::graph::{Op, Plan};
use crate::progress::Event;
use crate::space::{derive, softmax_entropy, CellWeights, Genotype};
use crate::train::{cosine, load_state, save_state, save_tensors, state_meta, write_atomic};
use crate::verify;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S1Config {
    pub supernet: SupernetConfig,
    pub hyper: SearchHyper,
    pub epochs: usize,
    /// Bilevel steps per epoch (None: one pass over the training split).
    pub steps_per_epoch: Option<usize>,
    pub seed: u64,
    pub log_every: usize,
}

impl Default for S1Config {
    /// bench-small's supernet on Fashion-MNIST-shaped data, DARTS's
    /// hyperparameters, 20 epochs.
    fn default() -> Self {
        S1Config {
            supernet: crate::bench::bench_small(),
            hyper: SearchHyper::default(),
            epochs: 20,
            steps_per_epoch: None,
            seed: 1,
            log_every: 5,
        }
    }
}

/// One line of `history.jsonl`: α and β per cell kind after an epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryLine {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f32,
    pub val_loss: f32,
    pub entropy_normal: f32,
    pub entropy_reduce: f32,
    pub alpha: CellWeights,
    pub beta: CellWeights,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct S1Report {
    pub genotype: Genotype,
    pub steps: usize,
    pub seconds: f64,
    pub ms_per_step: f64,
    pub entropy_first: f32,
    pub entropy_last: f32,
    pub planned_bytes: u64,
    pub unshared_bytes: u64,
    pub persistent_bytes: u64,
    pub dispatches_per_step: usize,
}

/// Per-edge or per-block rows of weights.
type Rows = Vec<Vec<f32>>;

/// Read the rows of each block's α (edges in `space::edges()` order) and
/// each block's β.
fn read_kind(gpu: &Gpu, plan: &Plan, k: &KindArch, k_ops: usize) -> Result<(Rows, Rows)> {
    let mut alpha = Vec::new();
    for &a in &k.alpha {
        alpha.extend(plan.read(gpu, a)?.chunks(k_ops).map(<[f32]>::to_vec));
    }
    let beta = k
        .beta
        .iter()
        .map(|&b| plan.read(gpu, b))
        .collect::<Result<_, _>>()?;
    Ok((alpha, beta))
}

/// S1's state after its last finished epoch or at Ctrl-C (removed when S1
/// ends).
pub const CHECKPOINT: &str = "s1_checkpoint.safetensors";

fn checkpoint_meta(config: &str, step: usize, val_pos: usize) -> HashMap<String, String> {
    HashMap::from([
        ("config".to_string(), config.to_string()),
        ("step".to_string(), step.to_string()),
        ("val_pos".to_string(), val_pos.to_string()),
    ])
}

/// Run S1 on `splits`, writing `history.jsonl`, `genotype.json` and
/// `supernet.safetensors` into `out`; `progress` gets a tick per log.
pub fn run(
    gpu: &Gpu,
    splits: &Splits,
    cfg: &S1Config,
    out: &Path,
    mut progress: impl FnMut(&Event),
) -> Result<S1Report> {
    cfg.supernet.validate().map_err(anyhow::Error::msg)?;
    if cfg.epochs == 0 || cfg.log_every == 0 {
        bail!("epochs and log_every must be at least 1");
    }
    splits.train.check_dims(cfg.supernet.dims)?;
    std::fs::create_dir_all(out)?;
    // `s1_config.json` marks a finished S1: a run that starts over must not
    // leave an old one beside files it is rewriting.
    let done = out.join("s1_config.json");
    if done.exists() {
        std::fs::remove_file(&done).with_context(|| format!("removing {}", done.display()))?;
    }
    let SearchStep {
        mut g,
        arch,
        weights,
        val_images,
        val_labels,
        train_images,
        train_labels,
        val_loss,
        train_loss,
        alpha_updates,
        weight_updates,
        xi,
        ..
    } = build_step(&cfg.supernet, &cfg.hyper, cfg.seed);
    let plan = Plan::new(gpu, &g)?;
    let b = cfg.supernet.batch;
    let k_ops = cfg.supernet.op_set.len();
    let (train, val) = (&splits.train, &splits.val);
    let steps_per_epoch = cfg.steps_per_epoch.unwrap_or(train.len() / b).max(1);
    let total = steps_per_epoch * cfg.epochs;
    let mut rng = verify::rng(cfg.seed ^ 0x51);
    let mut pixels = vec![0f32; b * train.dims.len()];
    let mut labels = vec![0u32; b];
    let (mut entropy_first, mut entropy_last) = (f32::NAN, f32::NAN);
    let start = Instant::now();
    let mut step = 0;
    let val_order = val.order(Order::Shuffled {
        seed: cfg.seed,
        epoch: 0,
    });
    let mut val_pos = 0;
    // A checkpoint of this configuration's finished epochs: continue after
    // them (everything else a step needs follows from the step count).
    let ckpt = out.join(CHECKPOINT);
    let cfg_json = serde_json::to_string(cfg)?;
    let mut first_epoch = 0;
    let mut kept = String::new();
    // Another configuration's checkpoint is ignored (and replaced).
    let meta = state_meta(&ckpt).ok();
    if let Some(meta) = meta.filter(|m| m.get("config") == Some(&cfg_json)) {
        load_state(gpu, &plan, &g, &ckpt)?;
        let num = |k: &str| -> Result<usize> {
            meta.get(k)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{}: no {k} in the checkpoint", ckpt.display()))
        };
        (step, val_pos) = (num("step")?, num("val_pos")?);
        first_epoch = step / steps_per_epoch;
        let text = std::fs::read_to_string(out.join("history.jsonl")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().take(first_epoch).collect();
        if lines.len() < first_epoch {
            bail!(
                "{}: fewer epochs than the checkpoint's",
                out.join("history.jsonl").display()
            );
        }
        for l in &lines {
            kept.push_str(l);
            kept.push('\n');
        }
        if let Some(l) = lines.first() {
            entropy_first = serde_json::from_str::<HistoryLine>(l)?.entropy_normal;
        }
        progress(&Event::log(format!(
            "s1: resuming at step {step} of {total} from {}",
            ckpt.display()
        )));
    }
    let mut history = std::fs::File::create(out.join("history.jsonl"))?;
    history.write_all(kept.as_bytes())?;
    progress(&Event::begin("s1", total as u64, "steps"));
    for epoch in first_epoch..cfg.epochs {
        let order = train.order(Order::Shuffled {
            seed: cfg.seed,
            epoch: epoch as u64,
        });
        // A checkpoint inside an epoch resumes at its next step.
        let first_k = if epoch == first_epoch {
            step % steps_per_epoch
        } else {
            0
        };
        for k in first_k..steps_per_epoch {
            // Checked before a step: the previous epoch's end is written.
            if crate::progress::interrupted() {
                let meta = checkpoint_meta(&cfg_json, step, val_pos);
                save_state(gpu, &plan, &g, meta, &ckpt)?;
                return Err(crate::progress::stopped(&format!(
                    "S1 (checkpoint at step {step})"
                )));
            }
            let idx: Vec<usize> = (0..b).map(|i| order[(k * b + i) % order.len()]).collect();
            train.fill_batch(&idx, &splits.norm, None, &mut rng, &mut pixels, &mut labels);
            plan.write(gpu, train_images, &pixels);
            plan.write_u32(gpu, train_labels, &labels);
            let vidx: Vec<usize> = (0..b)
                .map(|i| val_order[(val_pos + i) % val_order.len()])
                .collect();
            val_pos += b;
            val.fill_batch(
                &vidx,
                &splits.norm,
                None,
                &mut rng,
                &mut pixels,
                &mut labels,
            );
            plan.write(gpu, val_images, &pixels);
            plan.write_u32(gpu, val_labels, &labels);
            let lr = cosine(cfg.hyper.w_lr, cfg.hyper.w_lr_min, step, total);
            for &n in &weight_updates.nodes {
                if let Op::Sgd(h) = &mut g.nodes[n].op {
                    h.lr = lr;
                }
            }
            for &n in &alpha_updates.nodes {
                if let Op::Adam(h) = &mut g.nodes[n].op {
                    h.step = step as u32 + 1;
                }
            }
            if let Some(xi) = xi {
                plan.write(gpu, xi, &[lr]); // the virtual step uses the current lr
            }
            plan.sync_hyperparameters(gpu, &g);
            plan.step(gpu)?;
            step += 1;
            if step.is_multiple_of(cfg.log_every) {
                let (tl, vl) = (plan.read(gpu, train_loss)?[0], plan.read(gpu, val_loss)?[0]);
                if !(tl.is_finite() && vl.is_finite()) {
                    bail!("search loss became non-finite at step {step} (train {tl}, val {vl})");
                }
                progress(&Event::tick(
                    "s1",
                    step as u64,
                    total as u64,
                    &[
                        ("epoch", epoch as f64),
                        ("train_loss", tl as f64),
                        ("val_loss", vl as f64),
                        ("lr", lr as f64),
                    ],
                ));
            }
        }
        let (an, bn) = read_kind(gpu, &plan, &arch.normal, k_ops)?;
        let (ar, br) = read_kind(gpu, &plan, &arch.reduce, k_ops)?;
        let line = HistoryLine {
            epoch,
            step,
            train_loss: plan.read(gpu, train_loss)?[0],
            val_loss: plan.read(gpu, val_loss)?[0],
            entropy_normal: softmax_entropy(&an),
            entropy_reduce: softmax_entropy(&ar),
            alpha: CellWeights {
                normal: an,
                reduce: ar,
            },
            beta: CellWeights {
                normal: bn,
                reduce: br,
            },
            seconds: start.elapsed().as_secs_f64(),
        };
        if epoch == 0 {
            entropy_first = line.entropy_normal;
        }
        entropy_last = line.entropy_normal;
        writeln!(history, "{}", serde_json::to_string(&line)?)?;
        history.flush()?;
        save_state(
            gpu,
            &plan,
            &g,
            checkpoint_meta(&cfg_json, step, val_pos),
            &ckpt,
        )?;
        progress(&Event::log(format!(
            "s1 epoch {epoch} done: softmax(α) entropy normal {:.4} reduce {:.4}",
            line.entropy_normal, line.entropy_reduce
        )));
    }
    progress(&Event::end("s1"));
    let (an, bn) = read_kind(gpu, &plan, &arch.normal, k_ops)?;
    let (ar, br) = read_kind(gpu, &plan, &arch.reduce, k_ops)?;
    let op_set = &cfg.supernet.op_set;
    let genotype = Genotype {
        op_set: op_set.name().to_string(),
        normal: derive(op_set, &an, &bn),
        reduce: derive(op_set, &ar, &br),
        alpha: Some(CellWeights {
            normal: an,
            reduce: ar,
        }),
        beta: Some(CellWeights {
            normal: bn,
            reduce: br,
        }),
    };
    genotype
        .save(&out.join("genotype.json"))
        .map_err(anyhow::Error::msg)?;
    let mut saved = weights.clone();
    saved.extend(arch.alphas());
    saved.extend(arch.betas());
    let meta = HashMap::from([("stage".to_string(), "s1".to_string())]);
    save_tensors(
        gpu,
        &plan,
        &g,
        &saved,
        meta,
        &out.join("supernet.safetensors"),
    )?;
    write_atomic(
        &out.join("s1_config.json"),
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )?;
    // S1 is done (s1_config.json says so): its checkpoint is not needed.
    std::fs::remove_file(&ckpt).with_context(|| format!("removing {}", ckpt.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(S1Report {
        genotype,
        steps: step,
        seconds,
        ms_per_step: seconds * 1e3 / step as f64,
        entropy_first,
        entropy_last,
        planned_bytes: plan.memory.planned_bytes,
        unshared_bytes: plan.memory.unshared_bytes,
        persistent_bytes: plan.persistent_bytes,
        dispatches_per_step: plan.dispatches(),
    })
}
