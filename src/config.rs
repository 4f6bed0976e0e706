//! `--config FILE`: a TOML or JSON file that overrides part of a run's
//! configuration. The file has the shape of the run's `config.json` and may
//! hold any subset of it; a key the configuration does not have is refused
//! with its full name, so a typo never silently does nothing.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::path::Path;

use crate::compress::discretize::DiscretizeConfig;
use crate::pipeline::{PruneConfig, S4Config, SearchConfig};
use crate::predict::measure::MeasureConfig;
use crate::predict::paths::PathConfig;
use crate::predict::predictor::PredictorConfig;
use crate::predict::progressive::ProgressiveConfig;
use crate::search::bilevel::SearchHyper;
use crate::search::gate::GateConfig;
use crate::search::s1::S1Config;
use crate::search::supernet::SupernetConfig;
use crate::train::TrainConfig;

/// The presets' names, in order of cost.
pub const PRESETS: [&str; 3] = ["quick", "standard", "paper"];

/// A preset's whole configuration (S1 → S4). The data's shape is filled in
/// once the data is read.
pub fn preset(name: &str) -> Result<SearchConfig> {
    let s1 = |width, depth, batch, epochs, steps_per_epoch, hyper| S1Config {
        supernet: SupernetConfig {
            width,
            depth,
            batch,
            ..crate::bench::bench_small()
        },
        hyper,
        epochs,
        steps_per_epoch,
        ..S1Config::default()
    };
    Ok(match name {
        // Minutes on 2-core lavapipe with the bundled data.
        "quick" => SearchConfig {
            // 24 steps instead of DARTS's ~20,000: α's Adam lr is raised
            // (3e-4 → 1e-2) so the op choice can move at all.
            s1: s1(
                4,
                3,
                8,
                3,
                Some(8),
                SearchHyper {
                    a_lr: 1e-2,
                    ..SearchHyper::default()
                },
            ),
            // 40 paths × 4 steps of 32 images (~0.5 min): one-shot
            // accuracies off chance (through the shared classifier, which
            // cells they favour is mostly the path seed's at this budget;
            // through the probe below it is mostly the cell's).
            paths: PathConfig {
                paths: 40,
                batch: 32,
                ..PathConfig::default()
            },
            // K = 8, cells measured on 256 validation images (BN from
            // 2 × 32 training images) by a classifier fitted per cell on
            // 256 training images (the shared one reads the path seed at
            // this budget, the probe the cell: BENCHMARKS.md), a 5-epoch
            // predictor, one round: minutes on lavapipe rather than hours.
            progressive: ProgressiveConfig {
                top_k: 8,
                explore: 8,
                ..ProgressiveConfig::default()
            },
            predictor: PredictorConfig {
                epochs: 5,
                ..PredictorConfig::default()
            },
            measure: MeasureConfig {
                bn_batches: 2,
                bn_batch: 32,
                n_val: 256,
                eval_batch: 64,
                seed: 0,
                probe_images: 256,
                ..MeasureConfig::default()
            },
            gate: GateConfig {
                max_rounds: 1,
                ..GateConfig::default()
            },
            // S4 is where the quick preset's test accuracy is made, and its
            // network (width 4, ~20k weights) underfits: no augmentation,
            // batch 128 (1.5× the images/s of batch 32 on lavapipe), and
            // most of the time in the last fine-tune, which retrains the
            // pruned network anyway (measured: its accuracy hardly depends
            // on how long the discretized network was fine-tuned, and
            // rises with its own epochs). 10 annealing steps, 1 epoch of
            // fine-tuning; 1 epoch of sparsity training at batch 64
            // (λ · lr · steps / 2 ≈ 0.08: a stronger pull at batch 128
            // collapsed every γ in 70 steps); 9 epochs after the prune at
            // lr 0.1 (0.1 beat 0.05 and 0.04; keeping more channels did not
            // help; more epochs did: 84.1% → 85.3% from 8 to 11 on one
            // candidate, 86.5% → 87.0% from 10 to 12 on another; 9 keep the
            // run under 15 minutes: BENCHMARKS.md, "The quick preset's S4").
            s4: S4Config {
                discretize: DiscretizeConfig {
                    anneal_steps: 10,
                    batch: 32,
                    fine_tune: TrainConfig {
                        epochs: 1,
                        batch: 128,
                        lr: 0.1,
                        augment: false,
                        ..TrainConfig::default()
                    },
                    ..DiscretizeConfig::default()
                },
                prune: PruneConfig {
                    ratio: 0.5,
                    min_keep: 0.5,
                    sparsity: TrainConfig {
                        epochs: 1,
                        batch: 64,
                        lr: 0.03,
                        l1_gamma: 0.04,
                        augment: false,
                        ..TrainConfig::default()
                    },
                    fine_tune: TrainConfig {
                        epochs: 9,
                        batch: 128,
                        lr: 0.1,
                        augment: false,
                        ..TrainConfig::default()
                    },
                },
            },
            ..SearchConfig::paper()
        },
        // A laptop GPU with the full data set (bench-small's supernet).
        "standard" => SearchConfig {
            s1: s1(8, 5, 32, 20, None, SearchHyper::default()),
            ..SearchConfig::paper()
        },
        // DARTS/PNAS-sized supernet.
        "paper" => SearchConfig {
            s1: s1(16, 8, 64, 50, None, SearchHyper::default()),
            ..SearchConfig::paper()
        },
        other => anyhow::bail!("--preset {other:?}: expected one of {PRESETS:?}"),
    })
}

/// `base` with the values of the file at `path` laid over it.
pub fn apply_file<T: Serialize + DeserializeOwned>(base: &T, path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let overlay: Value = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?
        }
        Some("json") => serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?,
        _ => anyhow::bail!(
            "{}: a configuration file ends in .toml or .json",
            path.display()
        ),
    };
    apply(base, overlay).with_context(|| format!("in {}", path.display()))
}

/// `base` with `overlay` laid over it (objects merge key by key, anything
/// else replaces).
pub fn apply<T: Serialize + DeserializeOwned>(base: &T, overlay: Value) -> Result<T> {
    let mut value = serde_json::to_value(base)?;
    merge(&mut value, overlay, "")?;
    serde_json::from_value(value).map_err(|e| anyhow::anyhow!("{e}"))
}

fn merge(base: &mut Value, overlay: Value, at: &str) -> Result<()> {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (key, v) in o {
                let name = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match b.get_mut(&key) {
                    Some(slot) => merge(slot, v, &name)?,
                    None => {
                        let mut known: Vec<&str> = b.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        anyhow::bail!("unknown field {name:?} (expected one of {known:?})");
                    }
                }
            }
            Ok(())
        }
        (Value::Object(_), other) => {
            anyhow::bail!("field {at:?} is a table of settings, not {other}")
        }
        (slot, v) => {
            *slot = v;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        lr: f32,
        epochs: usize,
        name: Option<String>,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        seed: u64,
        inner: Inner,
    }

    fn base() -> Outer {
        Outer {
            seed: 1,
            inner: Inner {
                lr: 0.1,
                epochs: 3,
                name: None,
            },
        }
    }

    #[test]
    fn every_preset_is_valid() {
        for name in PRESETS {
            let cfg = preset(name).unwrap();
            cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(preset("fast").is_err());
    }

    #[test]
    fn nested_keys_override_and_the_rest_stays() {
        let out = apply(
            &base(),
            serde_json::json!({"inner": {"epochs": 7, "name": "x"}}),
        )
        .unwrap();
        assert_eq!(out.seed, 1);
        assert_eq!(out.inner.lr, 0.1);
        assert_eq!(out.inner.epochs, 7);
        assert_eq!(out.inner.name.as_deref(), Some("x"));
    }

    #[test]
    fn unknown_and_mistyped_fields_are_named() {
        let e = apply(&base(), serde_json::json!({"inner": {"epoch": 7}})).unwrap_err();
        assert!(e.to_string().contains("inner.epoch"), "{e}");
        let e = apply(&base(), serde_json::json!({"inner": 3})).unwrap_err();
        assert!(e.to_string().contains("\"inner\""), "{e}");
        let e = apply(&base(), serde_json::json!({"seed": "one"})).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }

    #[test]
    fn toml_and_json_files_read_alike() {
        let dir = std::env::temp_dir().join(format!("gradnas-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = dir.join("c.toml");
        std::fs::write(&t, "seed = 9\n[inner]\nlr = 0.5\n").unwrap();
        let j = dir.join("c.json");
        std::fs::write(&j, r#"{"seed": 9, "inner": {"lr": 0.5}}"#).unwrap();
        let a = apply_file(&base(), &t).unwrap();
        let b = apply_file(&base(), &j).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.seed, 9);
        assert_eq!(a.inner.lr, 0.5);
        let y = dir.join("c.yaml");
        std::fs::write(&y, "seed: 9").unwrap();
        assert!(apply_file(&base(), &y).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
