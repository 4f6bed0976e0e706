//! Path training of the shared weights before S2 measures
//! (src/predict/paths.rs): a path trained in pieces equals the path trained
//! at once and leaves chance, only sampled tensors move, runs repeat bit
//! for bit, the saved weights load back, and bad settings are refused.

mod common;

use std::time::Instant;

use gradnas::data::Dims;
use gradnas::predict::measure::{measure_op_set, MeasureConfig, OneShotDiscrete, SupernetWeights};
use gradnas::predict::paths::{self, PathConfig, PathTrainer, WEIGHTS_FILE};
use gradnas::search::supernet::SupernetConfig;
use gradnas::space::genotype::random_cell;
use gradnas::space::OpSet;
use gradnas::verify::{self, compare, Tol};

fn config(width: usize, depth: usize) -> SupernetConfig {
    SupernetConfig {
        width,
        depth,
        batch: 8,
        op_set: OpSet::pnas(),
        dims: Dims::new(1, 28, 28),
        classes: 10,
        stem_multiplier: 2,
        partial_channels: 1,
    }
}

fn measure() -> MeasureConfig {
    MeasureConfig {
        bn_batches: 2,
        bn_batch: 32,
        n_val: 200,
        eval_batch: 100,
        seed: 0,
    }
}

/// A path trained in pieces is the path trained at once: 20 calls of 2
/// steps (weights and SGD momentum written back and inherited again each
/// time, the schedule and the batch stream carried on) end where one call
/// of 40 steps ends. And the path learns: its one-shot accuracy goes from
/// chance to far above it.
#[test]
fn a_path_trained_in_pieces_is_the_path_trained_at_once() {
    let gpu = common::gpu();
    let t0 = Instant::now();
    let splits = common::bundled_subset(2048, 200, 1);
    let cfg = config(4, 2);
    let start = SupernetWeights::random(cfg.clone(), 1).unwrap();
    let op_set = measure_op_set(&cfg.op_set);
    let cell = random_cell(&op_set, 5, &mut verify::rng(99));
    let pc = PathConfig {
        batch: 16,
        ..PathConfig::default()
    };
    let mut once = start.clone();
    let mut t = PathTrainer::new(gpu, &once, &splits, &pc, 40).unwrap();
    t.train_path(&mut once, &cell, 40).unwrap();
    let mut pieces = start.clone();
    let mut t = PathTrainer::new(gpu, &pieces, &splits, &pc, 40).unwrap();
    let mut losses = Vec::new();
    for _ in 0..20 {
        losses.push(t.train_path(&mut pieces, &cell, 2).unwrap().0);
    }
    assert_eq!(t.steps, 40);
    let tol = Tol {
        rel: 1e-3,
        abs: 1e-4,
    };
    let mut moved = 0;
    for (name, (_, v)) in &once.tensors {
        let (w, s0) = (&pieces.tensors[name].1, &start.tensors[name].1);
        let c = compare(name, "pieces vs once", "", v, w, tol);
        assert!(c.pass, "{name}: {:?}", c.detail);
        moved += usize::from(v != s0);
    }
    assert!(moved >= 10, "only {moved} tensors moved");
    let measure = |w: &SupernetWeights| {
        let mut m = OneShotDiscrete::new(w.clone(), &splits, &measure()).unwrap();
        m.measure(gpu, &cell, &cell).unwrap()
    };
    let (before, after) = (measure(&start), measure(&once));
    eprintln!(
        "losses {losses:?}; one-shot accuracy {before} → {after}; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(before < 0.25, "untrained: {before}");
    assert!(after > 0.35 && after > before + 0.2, "{before} → {after}");
}

/// Only the tensors of sampled paths move (the stem always does; most
/// (edge, op) candidates are not drawn in 3 paths), the same seed gives
/// the same weights bit for bit, another seed other weights, and the
/// saved file loads back as the same tensors.
#[test]
fn sampled_tensors_move_and_runs_repeat() {
    let gpu = common::gpu();
    let splits = common::bundled_subset(256, 16, 1);
    let cfg = config(2, 1);
    let start = SupernetWeights::random(cfg, 4).unwrap();
    let pc = PathConfig {
        paths: 3,
        steps_per_path: 1,
        batch: 8,
        ..PathConfig::default()
    };
    let run = |seed: u64| {
        let mut w = start.clone();
        paths::train(
            gpu,
            &mut w,
            &splits,
            &PathConfig { seed, ..pc.clone() },
            |_| {},
        )
        .unwrap();
        w
    };
    let (a, b, c) = (run(1), run(1), run(2));
    let moved: Vec<&String> = a
        .tensors
        .iter()
        .filter(|(n, (_, v))| *v != start.tensors[*n].1)
        .map(|(n, _)| n)
        .collect();
    assert!(moved.iter().any(|n| n.starts_with("stem.")), "{moved:?}");
    assert!(
        moved.len() < a.tensors.len() / 2,
        "{} of {} tensors moved after 3 paths",
        moved.len(),
        a.tensors.len()
    );
    for (n, (_, v)) in &a.tensors {
        assert_eq!(v, &b.tensors[n].1, "{n}: same seed, different weights");
    }
    assert!(a.tensors.iter().any(|(n, (_, v))| v != &c.tensors[n].1));

    let dir = std::env::temp_dir().join(format!("gradnas-paths-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let s1 = gradnas::search::s1::S1Config {
        supernet: a.config.clone(),
        ..Default::default()
    };
    std::fs::write(
        dir.join("s1_config.json"),
        serde_json::to_string(&s1).unwrap(),
    )
    .unwrap();
    a.save(&dir.join(WEIGHTS_FILE)).unwrap();
    let back = SupernetWeights::load_file(&dir, WEIGHTS_FILE).unwrap();
    assert_eq!(back.tensors, a.tensors);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad settings are refused with the field named; a partial-channel
/// supernet (no full-width single paths) is refused before any work.
#[test]
fn bad_settings_are_refused() {
    let gpu = common::gpu();
    let splits = common::bundled_subset(16, 8, 1);
    for (pc, what) in [
        (
            PathConfig {
                batch: 1,
                ..PathConfig::default()
            },
            "batch 1",
        ),
        (
            PathConfig {
                steps_per_path: 0,
                ..PathConfig::default()
            },
            "steps_per_path 0",
        ),
        (
            PathConfig {
                momentum: 1.0,
                ..PathConfig::default()
            },
            "momentum 1",
        ),
        (
            PathConfig {
                lr: 0.0,
                ..PathConfig::default()
            },
            "lr 0",
        ),
    ] {
        let mut w = SupernetWeights::random(config(2, 1), 1).unwrap();
        let e = paths::train(gpu, &mut w, &splits, &pc, |_| {}).unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
    let mut pc_net = SupernetWeights::random(
        SupernetConfig {
            partial_channels: 2,
            ..config(2, 1)
        },
        1,
    )
    .unwrap();
    let e = paths::train(gpu, &mut pc_net, &splits, &PathConfig::default(), |_| {}).unwrap_err();
    assert!(e.to_string().contains("partial_channels 2"), "{e}");
}
