//! S2's one-shot measurement rates alone, as `gradnas bench --filter s2`
//! times them (the quick preset's supernet, `bench::covering_cells`, a first
//! round compiling every kernel): per cell on one device and on S2's
//! `measure_lanes` devices at once, the two taking turns in each round.
//! One JSON object on stdout. `benches/peers/oneshot_ab.sh` alternates it
//! with the PyTorch peer's `--measure-only`: on a host whose speed drifts
//! by tens of percent from minute to minute, only runs that alternate
//! compare fairly, and the whole S2 bench takes minutes.
//!
//! `cargo run --release --example oneshot_rates` (`ROUNDS=n`, default 3).

use gradnas::bench::{covering_cells, quick_measure, quick_supernet};
use gradnas::data::DataConfig;
use gradnas::engine::Gpu;
use gradnas::predict::measure::{
    extra_lanes, measure_cells, measure_lanes, measure_op_set, OneShotDiscrete, SupernetWeights,
};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    gradnas::engine::default_llvmpipe_threads();
    let rounds: usize = match std::env::var("ROUNDS") {
        Ok(v) => v.parse()?,
        Err(_) => 3,
    };
    anyhow::ensure!(rounds > 0, "ROUNDS=0: nothing to time");
    let gpu = Gpu::new()?;
    let splits = DataConfig::default().load(1)?;
    let cfg = quick_supernet();
    let op_set = measure_op_set(&cfg.op_set);
    let weights = SupernetWeights::random(cfg, 1)?;
    let mc = quick_measure();
    let extra = extra_lanes(&gpu, measure_lanes(&gpu)?)?;
    let gpus: Vec<&Gpu> = std::iter::once(&gpu).chain(&extra).collect();
    let mut out = serde_json::Map::new();
    out.insert("adapter".into(), gpu.describe().into());
    out.insert("lanes".into(), gpus.len().into());
    for blocks in [1, 5] {
        let cells = covering_cells(&op_set, blocks);
        // Rounds of at least 4 cells a device, as bench::s2.
        let reps = (4 * gpus.len()).div_ceil(cells.len());
        let many: Vec<_> = (0..reps).flat_map(|_| cells.iter().cloned()).collect();
        let mut m = OneShotDiscrete::new(weights.clone(), &splits, &mc)?;
        for g in &gpus {
            measure_cells(&[g], &mut m, &splits, &cells, |_, _| Ok(()))?;
        }
        let (mut one, mut lanes) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            measure_cells(&[&gpu], &mut m, &splits, &cells, |_, _| Ok(()))?;
            one.push(t.elapsed().as_secs_f64() / cells.len() as f64);
            let t = Instant::now();
            measure_cells(&gpus, &mut m, &splits, &many, |_, _| Ok(()))?;
            lanes.push(t.elapsed().as_secs_f64() / many.len() as f64);
        }
        let key = if blocks == 1 { "1_block" } else { "5_blocks" };
        out.insert(format!("s_per_cell_{key}"), median(one).into());
        out.insert(format!("s_per_cell_{key}_lanes"), median(lanes).into());
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
