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
        ..MeasureConfig::default()
    }
}

/// The names of the tensors that differ between `start` and `now`; the
/// stem's always do (every path trains it).
fn moved<'a>(start: &SupernetWeights, now: &'a SupernetWeights) -> Vec<&'a String> {
    let moved: Vec<&String> = now
        .tensors
        .iter()
        .filter(|(n, (_, v))| *v != start.tensors[*n].1)
        .map(|(n, _)| n)
        .collect();
    assert!(moved.iter().any(|n| n.starts_with("stem.")), "{moved:?}");
    moved
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

/// The few-shot measurement (`MeasureConfig::fine_tune_steps`): the
/// fine-tune moves the cell's tensors and no others, a cell measures the
/// same whatever was measured before it (each starts from the shared
/// weights, on the same batches), and it learns: from a random supernet a
/// cell goes from chance to well above it, where the one-shot reading of
/// the same weights stays at chance.
#[test]
fn few_shot_measurement_repeats_and_learns() {
    let gpu = common::gpu();
    let splits = common::bundled_subset(1024, 200, 1);
    let cfg = config(4, 2);
    let start = SupernetWeights::random(cfg.clone(), 2).unwrap();
    let op_set = measure_op_set(&cfg.op_set);
    let mut rng = verify::rng(5);
    let (a, b) = (
        random_cell(&op_set, 3, &mut rng),
        random_cell(&op_set, 2, &mut rng),
    );
    let few = MeasureConfig {
        fine_tune_steps: 32,
        fine_tune_batch: 16,
        fine_tune_lr: 0.1,
        ..measure()
    };
    let tuned = paths::fine_tune(gpu, &start, &splits, &a, &few).unwrap();
    let moved = moved(&start, &tuned);
    for n in &moved {
        // An op tensor that moved belongs to one of the cell's slots.
        if let Some(edge) = n
            .split('.')
            .find(|p| p.starts_with('b') && p.contains("_in"))
        {
            let (j, i) = edge[1..].split_once("_in").unwrap();
            let (j, i): (usize, usize) = (j.parse().unwrap(), i.parse().unwrap());
            let block = &a.blocks[j];
            assert!(block.inputs.contains(&i), "{n} moved, not in {a:?}");
        }
    }
    let mut m = OneShotDiscrete::new(start.clone(), &splits, &few).unwrap();
    let a1 = m.measure_cell(gpu, &splits, &a).unwrap();
    let b1 = m.measure_cell(gpu, &splits, &b).unwrap();
    let a2 = m.measure_cell(gpu, &splits, &a).unwrap();
    assert_eq!(
        a1, a2,
        "measuring {b:?} in between changed {a:?}'s measurement"
    );
    let plain = OneShotDiscrete::new(start.clone(), &splits, &measure())
        .unwrap()
        .measure_cell(gpu, &splits, &a)
        .unwrap();
    eprintln!("one-shot {plain}, few-shot {a1} (and {b1} for the other cell)");
    assert!(plain < 0.25, "untrained: {plain}");
    assert!(a1 > plain + 0.15 && b1 > 0.25, "{plain} → {a1}, {b1}");
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
    let moved = moved(&start, &a);
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

    let tmp = tempfile::Builder::new()
        .prefix("gradnas-paths-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
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
    let back = SupernetWeights::load_file(dir, WEIGHTS_FILE).unwrap();
    assert_eq!(back.tensors, a.tensors);
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
