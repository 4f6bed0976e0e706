//! Shared test helpers. A missing adapter is a failure, never a skip: the
//! GPU tests are the point of this crate (CI runs them on lavapipe).

#![allow(dead_code)]

use gradnas::engine::Gpu;
use gradnas::verify::{self, Check, Level};

pub fn gpu() -> &'static Gpu {
    match Gpu::shared() {
        Ok(g) => g,
        Err(e) => panic!(
            "no usable GPU adapter: {e}. gradnas tests need one (lavapipe works: \
             apt-get install mesa-vulkan-drivers); they are never skipped"
        ),
    }
}

/// A device of its own on the same adapter, with the other way of splitting
/// reductions (`Gpu::wide`) than the adapter's default: on lavapipe, the
/// GPU's split.
pub fn other_split_gpu() -> Gpu {
    let mut g = Gpu::new().unwrap_or_else(|e| panic!("no usable GPU adapter: {e}"));
    g.wide = !g.wide;
    g
}

/// Run every case of `family` at the full level and fail with every bad row.
pub fn run_family(family: &str) {
    run_family_on(gpu(), family)
}

/// [`run_family`] on `gpu`.
pub fn run_family_on(gpu: &Gpu, family: &str) {
    let cases: Vec<_> = verify::cases(Level::Full)
        .into_iter()
        .filter(|c| c.family == family)
        .collect();
    assert!(!cases.is_empty(), "no cases for family {family}");
    let mut rows: Vec<Check> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let seed = 0x5eed ^ (i as u64 * 0x9e37_79b9);
        let checks = case
            .run(gpu, seed)
            .unwrap_or_else(|e| panic!("{} {}: {e:#}", case.op, case.shape));
        assert!(
            !checks.is_empty(),
            "{} {} checked nothing",
            case.op,
            case.shape
        );
        rows.extend(checks);
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.pass)
        .map(|r| {
            format!(
                "{} {} {}: max abs {:.3e}, max rel {:.3e}: {}",
                r.op,
                r.direction,
                r.shape,
                r.max_abs_err,
                r.max_rel_err,
                r.detail.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} checks failed on {}:\n{}",
        bad.len(),
        rows.len(),
        gpu.describe(),
        bad.join("\n")
    );
}

/// The bundled data (split with seed 3) cut to its first `train`, `val`
/// and `test` images: small enough for lavapipe.
pub fn bundled_subset(train: usize, val: usize, test: usize) -> gradnas::data::Splits {
    use gradnas::data::{self, DataSource, SplitConfig};
    let mut s = data::load(
        &DataSource::Bundled,
        &SplitConfig {
            val_fraction: 0.1,
            seed: 3,
        },
    )
    .expect("bundled data");
    let take = |d: &data::Dataset, n: usize| d.subset(&(0..n).collect::<Vec<_>>());
    s.train = take(&s.train, train);
    s.val = take(&s.val, val);
    s.test = take(&s.test, test);
    s
}

/// A bilevel step of `cfg` (weights from `seed`) planned on `gpu`, its
/// images random from `verify::rng(rng)`, both batches labelled `labels`.
pub fn fed_step(
    gpu: &Gpu,
    cfg: &gradnas::search::supernet::SupernetConfig,
    seed: u64,
    rng: u64,
    labels: &[u32],
) -> (gradnas::search::bilevel::SearchStep, gradnas::graph::Plan) {
    let h = gradnas::search::bilevel::SearchHyper::default();
    gradnas::bench::fed_search_step(gpu, cfg, &h, seed, rng, labels).expect("plan")
}

/// What a step changes: both losses, α, β and every weight.
pub fn stepped(step: &gradnas::search::bilevel::SearchStep) -> Vec<gradnas::graph::T> {
    [step.val_loss, step.train_loss]
        .into_iter()
        .chain(step.arch.alphas())
        .chain(step.arch.betas())
        .chain(step.weights.iter().copied())
        .collect()
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Losses, α, β and every weight after one step of `cfg` on `gpu`.
pub fn one_step(gpu: &Gpu, cfg: &gradnas::search::supernet::SupernetConfig) -> Vec<Vec<u32>> {
    let (step, plan) = fed_step(gpu, cfg, 3, 8, &[2, 0]);
    plan.step(gpu).expect("step");
    stepped(&step)
        .iter()
        .map(|&t| bits(&plan.read(gpu, t).unwrap()))
        .collect()
}

/// Small supernets whose planes take every row kind: 28×28 (float4 rows),
/// 14×14 (float2) and 7×7 (scalar); 8×8 and 4×4 (float4), 2×2 (float2).
pub fn every_row_kind() -> [gradnas::search::supernet::SupernetConfig; 2] {
    use gradnas::data::Dims;
    [Dims::new(1, 28, 28), Dims::new(1, 8, 8)].map(|dims| {
        gradnas::search::supernet::SupernetConfig {
            width: 2,
            depth: 3,
            batch: 2,
            op_set: gradnas::space::OpSet::pnas(),
            dims,
            classes: 3,
            stem_multiplier: 1,
            partial_channels: 1,
        }
    })
}

/// A bilevel step of each of `every_row_kind` gives the same bits on `a`
/// and `b`.
pub fn same_step_bits(a: &Gpu, b: &Gpu) {
    for cfg in every_row_kind() {
        let dims = cfg.dims;
        let (x, y) = (one_step(a, &cfg), one_step(b, &cfg));
        assert_eq!(x.len(), y.len());
        for (i, (u, v)) in x.iter().zip(&y).enumerate() {
            assert_eq!(u, v, "{dims:?}: tensor {i} differs");
        }
        assert!(x[0][0] != 0, "a loss of zero bits checks nothing");
    }
}
