//! S2's progressive search with a stand-in measurer (a known function of
//! the cell) and an oracle predictor (the same function), so the expected
//! outcome is known: the counts per level, τ = ρ = 1 wherever the
//! predictor is exact, and the candidate at least as good as the S1 cell.

use anyhow::Result;
use gradnas::predict::progressive::{self, Measure, Predict, ProgressiveConfig};
use gradnas::space::{enumerate_one_block_cells, Block, Cell, OpKind, OpSet};

/// A known accuracy: ops scored by their index in the op set, inputs by
/// their index, squashed into (0, 1).
fn truth(op_set: &OpSet, c: &Cell) -> f32 {
    let s: f32 = c
        .blocks
        .iter()
        .flat_map(|b| b.inputs.iter().zip(&b.ops))
        .map(|(&i, &o)| op_set.index_of(o).unwrap() as f32 * 0.3 + i as f32 * 0.11)
        .sum();
    1.0 / (1.0 + (-(s / c.blocks.len() as f32 - 1.5)).exp())
}

struct Known {
    op_set: OpSet,
    calls: usize,
}
impl Measure for Known {
    fn measure(&mut self, c: &Cell) -> Result<f32> {
        self.calls += 1;
        Ok(truth(&self.op_set, c))
    }
}

struct Oracle {
    op_set: OpSet,
    fits: Vec<usize>,
}
impl Predict for Oracle {
    fn fit(&mut self, cells: &[Cell], acc: &[f32]) -> Result<Option<f64>> {
        assert_eq!(cells.len(), acc.len());
        self.fits.push(cells.len());
        Ok(None)
    }
    fn predict(&mut self, cells: &[Cell]) -> Result<Vec<(f32, f32)>> {
        Ok(cells
            .iter()
            .map(|c| (truth(&self.op_set, c), 0.01))
            .collect())
    }
}

#[test]
fn levels_measure_all_then_top_k_and_the_candidate_is_the_best() {
    let op_set = OpSet::pnas();
    let k = 5;
    // Each level from b = 2 measures the top K and 3 drawn at random.
    let x = 3;
    let cfg = ProgressiveConfig {
        top_k: k,
        explore: x,
        ..ProgressiveConfig::default()
    };
    let mut m = Known {
        op_set: op_set.clone(),
        calls: 0,
    };
    let mut p = Oracle {
        op_set: op_set.clone(),
        fits: Vec::new(),
    };
    // A weak S1 cell: the lowest-scoring op on the lowest input.
    let s1 = Cell {
        blocks: (0..5)
            .map(|_| Block::new(0, OpKind::SepConv3x3, 0, OpKind::SepConv3x3))
            .collect(),
    };
    let mut logged = 0;
    let r = progressive::run(&cfg, &op_set, &mut m, &mut p, Some(&s1), |_| logged += 1).unwrap();
    let ones = enumerate_one_block_cells(&op_set).len();
    assert_eq!(logged, 5);
    let counts: Vec<usize> = r.levels.iter().map(|l| l.measured).collect();
    assert_eq!(counts, vec![ones, k + x, k + x, k + x, k + x]);
    assert_eq!(
        m.calls,
        ones + 4 * (k + x) + 1,
        "every level's cells plus the S1 cell"
    );
    // Retrained on everything measured so far after each level but the last.
    let n = k + x;
    assert_eq!(p.fits, vec![ones, ones + n, ones + 2 * n, ones + 3 * n]);
    for l in &r.levels[1..] {
        assert!(
            l.predicted > k,
            "level {} predicted {}",
            l.blocks,
            l.predicted
        );
        assert_eq!(l.kendall_tau, Some(1.0));
        assert_eq!(l.kendall_tau_top, Some(1.0));
        assert_eq!(l.explored, x);
        assert!((l.spearman_rho.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(l.best_cell.blocks.len(), l.blocks);
    }
    // The candidate is the best measured 5-block cell and beats the S1 cell.
    let best5 = r
        .measured
        .iter()
        .filter(|(c, _)| c.blocks.len() == 5)
        .map(|(_, a)| *a)
        .fold(0.0f32, f32::max);
    assert_eq!(r.candidate_accuracy, best5);
    assert!(r.candidate_accuracy >= r.s1_accuracy.unwrap());
    assert!(!r.candidate_is_s1);
}

/// The oracle, wrong by an amount that depends on a cell's first block:
/// what a child shares with its parent it misjudges the same way in both.
struct Inherited(Oracle);
impl Inherited {
    fn error(&self, c: &Cell) -> f32 {
        let b = &c.blocks[0];
        let o = |k: usize| self.0.op_set.index_of(b.ops[k]).unwrap();
        ((o(0) * 7 + o(1) * 3 + b.inputs[0] + b.inputs[1]) % 5) as f32 * 0.1
    }
}
impl Predict for Inherited {
    fn fit(&mut self, cells: &[Cell], acc: &[f32]) -> Result<Option<f64>> {
        self.0.fit(cells, acc)
    }
    fn predict(&mut self, cells: &[Cell]) -> Result<Vec<(f32, f32)>> {
        let p = self.0.predict(cells)?;
        Ok(cells
            .iter()
            .zip(p)
            .map(|(c, (t, s))| (t + self.error(c), s))
            .collect())
    }
}

/// Anchoring on the parent's measurement cancels what the predictor gets
/// wrong about the blocks a child inherits: τ is 1 anchored, not plain.
#[test]
fn anchoring_on_the_measured_parent_corrects_an_inherited_error() {
    let op_set = OpSet::pnas();
    let mut taus = Vec::new();
    for anchor in [true, false] {
        let cfg = ProgressiveConfig {
            top_k: 6,
            blocks: 3,
            explore: 10,
            seed: 1,
            anchor,
            anchor_weight: 1.0,
        };
        let mut m = Known {
            op_set: op_set.clone(),
            calls: 0,
        };
        let mut p = Inherited(Oracle {
            op_set: op_set.clone(),
            fits: Vec::new(),
        });
        let r = progressive::run(&cfg, &op_set, &mut m, &mut p, None, |_| {}).unwrap();
        let level = |l: &progressive::LevelReport| (l.kendall_tau.unwrap(), l.kendall_tau_raw);
        taus.push(r.levels[1..].iter().map(level).collect::<Vec<_>>());
    }
    // Same cells: the anchored scores against the predictor's own.
    // (Ties in the measured truth that f32 rounding splits keep τ just
    // under 1.)
    for &(tau, raw) in &taus[0] {
        assert!(tau > 0.95, "anchored τ {tau}");
        assert!(
            raw.unwrap() < tau - 0.1,
            "the raw predictor τ {raw:?} vs {tau}"
        );
    }
    assert!(taus[1].iter().all(|l| l.1.is_none()), "no raw τ unanchored");
}

#[test]
fn a_better_s1_cell_becomes_the_candidate() {
    let op_set = OpSet::pnas();
    let cfg = ProgressiveConfig {
        top_k: 2,
        blocks: 2,
        explore: 0,
        seed: 0,
        anchor: true,
        anchor_weight: 1.0,
    };
    let mut m = Known {
        op_set: op_set.clone(),
        calls: 0,
    };
    let mut p = Oracle {
        op_set: op_set.clone(),
        fits: Vec::new(),
    };
    // The highest-scoring op on the highest inputs, five times.
    let top = *op_set.ops().last().unwrap();
    let s1 = Cell {
        blocks: (0..5).map(|b| Block::new(b + 1, top, b + 1, top)).collect(),
    };
    let r = progressive::run(&cfg, &op_set, &mut m, &mut p, Some(&s1), |_| {}).unwrap();
    assert!(
        r.candidate_is_s1,
        "{:?} vs {:?}",
        r.candidate_accuracy, r.s1_accuracy
    );
    assert_eq!(r.candidate, s1);
}

#[test]
fn bad_configs_and_bad_measurements_are_refused() {
    let op_set = OpSet::pnas();
    let mut p = Oracle {
        op_set: op_set.clone(),
        fits: Vec::new(),
    };
    let cfg = ProgressiveConfig {
        top_k: 0,
        ..ProgressiveConfig::default()
    };
    let mut m = Known {
        op_set: op_set.clone(),
        calls: 0,
    };
    let e = progressive::run(&cfg, &op_set, &mut m, &mut p, None, |_| {}).unwrap_err();
    assert!(e.to_string().contains("top_k"));
    for w in [0.0, -1.0, f32::NAN] {
        let cfg = ProgressiveConfig {
            anchor_weight: w,
            ..ProgressiveConfig::default()
        };
        let e = progressive::run(&cfg, &op_set, &mut m, &mut p, None, |_| {}).unwrap_err();
        assert!(e.to_string().contains("anchor_weight"), "{w}: {e}");
    }
    struct Broken;
    impl Measure for Broken {
        fn measure(&mut self, _: &Cell) -> Result<f32> {
            Ok(f32::NAN)
        }
    }
    let e = progressive::run(
        &ProgressiveConfig::default(),
        &op_set,
        &mut Broken,
        &mut p,
        None,
        |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("not in [0, 1]"), "{e}");
}
