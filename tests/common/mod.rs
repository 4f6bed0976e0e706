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
