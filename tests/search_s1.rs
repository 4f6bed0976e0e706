//! S1 end to end on a slice of the bundled data with a tiny supernet: the
//! run directory holds a valid genotype (never `none`), one history line
//! per epoch with α and β on their simplexes, and the supernet weights.

mod common;

use gradnas::data::{self, DataSource, SplitConfig};
use gradnas::search::bilevel::SearchHyper;
use gradnas::search::s1::{self, S1Config};
use gradnas::search::supernet::SupernetConfig;
use gradnas::space::{Genotype, OpSet};

#[test]
fn s1_writes_a_valid_genotype_and_history() {
    s1_run(false, 1);
}

/// The options end to end: the second-order step (ξ written each step)
/// with partial channels (width 2, k = 2: one-channel slices).
#[test]
fn s1_second_order_with_partial_channels() {
    s1_run(true, 2);
}

fn s1_run(second_order: bool, partial_channels: usize) {
    let gpu = common::gpu();
    let mut splits = data::load(
        &DataSource::Bundled,
        &SplitConfig {
            val_fraction: 0.1,
            seed: 1,
        },
    )
    .unwrap();
    splits.train = splits.train.subset(&(0..64).collect::<Vec<_>>());
    splits.val = splits.val.subset(&(0..32).collect::<Vec<_>>());
    let cfg = S1Config {
        supernet: SupernetConfig {
            width: 2,
            depth: 2,
            batch: 4,
            op_set: OpSet::darts(),
            dims: splits.train.dims,
            classes: splits.train.classes,
            stem_multiplier: 1,
            partial_channels,
        },
        hyper: SearchHyper {
            a_lr: 0.1,
            second_order,
            ..SearchHyper::default()
        },
        epochs: 2,
        steps_per_epoch: Some(2),
        seed: 3,
        log_every: 1,
    };
    let dir = tempfile::Builder::new()
        .prefix("gradnas-s1-")
        .tempdir()
        .unwrap();
    let out = dir.path();
    let mut lines = 0;
    let report = s1::run(gpu, &splits, &cfg, out, |_| lines += 1).expect("s1");
    assert_eq!(report.steps, 4);
    assert!(lines >= 4, "progress lines: {lines}");
    let g = Genotype::load(&out.join("genotype.json")).expect("genotype.json");
    g.validate().expect("valid genotype");
    assert_eq!(g.normal.blocks.len(), 5);
    assert!(g
        .normal
        .blocks
        .iter()
        .chain(&g.reduce.blocks)
        .all(|b| b.ops.iter().all(|o| !o.is_none())));
    let hist = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = hist
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "one history line per epoch");
    for row in &rows {
        for kind in ["normal", "reduce"] {
            for beta in row["beta"][kind].as_array().unwrap() {
                let v: Vec<f64> = beta
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                assert!((v.iter().sum::<f64>() - 1.0).abs() < 1e-5 && v.iter().all(|&x| x > 0.0));
            }
        }
    }
    // α moved with a large lr: the entropy of softmax(α) fell below
    // uniform after the first epoch and fell again during the second.
    let entropy = |row: &serde_json::Value| {
        row["entropy_normal"].as_f64().unwrap() + row["entropy_reduce"].as_f64().unwrap()
    };
    let (e0, e1) = (entropy(&rows[0]), entropy(&rows[1]));
    assert!(
        e1 < e0 && e0 < 2.0 * (8f64).ln() - 1e-4,
        "entropy (normal + reduce) per epoch: {e0}, {e1}"
    );
    let last = rows[1]["entropy_normal"].as_f64().unwrap();
    assert!((report.entropy_last as f64 - last).abs() < 1e-6);
    assert!(out.join("supernet.safetensors").is_file());
    assert!(report.planned_bytes < report.unshared_bytes);
}
