//! S2's one-shot measurement with its validation images cut into passes of
//! different sizes, timed in alternating rounds in one process: on a
//! shared 2-core host whose speed drifts by ±20% from minute to minute,
//! only rounds that alternate within one process compare fairly. The cells
//! are the S2 bench's covering cells, measured as S2 measures them (on
//! `measure_lanes` devices at once, at least 4 cells a device); the
//! accuracies at every pass size are checked to be the same bits.
//!
//! `cargo run --release --example measure_passes -- 64 256` (pass sizes;
//! `ROUNDS=n`, default 5). Prints one line per cell length, round and size.

use gradnas::bench::{covering_cells, quick_measure, quick_supernet};
use gradnas::data::DataConfig;
use gradnas::engine::Gpu;
use gradnas::predict::measure::{
    extra_lanes, measure_cells, measure_lanes, measure_op_set, MeasureConfig, OneShotDiscrete,
    SupernetWeights,
};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    gradnas::engine::default_llvmpipe_threads();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!sizes.is_empty(), "usage: measure_passes SIZE [SIZE...]");
    let rounds: usize = match std::env::var("ROUNDS") {
        Ok(v) => v.parse()?,
        Err(_) => 5,
    };
    let gpu = Gpu::new()?;
    let splits = DataConfig::default().load(1)?;
    let cfg = quick_supernet();
    let op_set = measure_op_set(&cfg.op_set);
    let weights = SupernetWeights::random(cfg, 1)?;
    let extra = extra_lanes(&gpu, measure_lanes(&gpu)?)?;
    let gpus: Vec<&Gpu> = std::iter::once(&gpu).chain(&extra).collect();
    println!("{}, {} devices", gpu.describe(), gpus.len());
    for blocks in [1, 5] {
        let once = covering_cells(&op_set, blocks);
        let reps = (4 * gpus.len()).div_ceil(once.len());
        let cs: Vec<_> = (0..reps).flat_map(|_| once.iter().cloned()).collect();
        let mut ms = Vec::new();
        let mut first: Option<Vec<u32>> = None;
        for &eval_batch in &sizes {
            let mc = MeasureConfig {
                eval_batch,
                ..quick_measure()
            };
            let mut m = OneShotDiscrete::new(weights.clone(), &splits, &mc)?;
            // Each device compiles every cell's kernels first.
            for g in &gpus {
                measure_cells(&[g], &mut m, &splits, &once, |_, _| Ok(()))?;
            }
            let bits: Vec<u32> = measure_cells(&gpus, &mut m, &splits, &cs, |_, _| Ok(()))?
                .iter()
                .map(|a| a.to_bits())
                .collect();
            match &first {
                None => first = Some(bits),
                Some(f) => anyhow::ensure!(
                    *f == bits,
                    "{blocks}-block cells: passes of {eval_batch} measured other accuracies"
                ),
            }
            ms.push(m);
        }
        for round in 0..rounds {
            for (size, m) in sizes.iter().zip(&mut ms) {
                let t = Instant::now();
                measure_cells(&gpus, m, &splits, &cs, |_, _| Ok(()))?;
                println!(
                    "{blocks}-block cells, round {round}, passes of {size}: {:.1} ms a cell",
                    t.elapsed().as_secs_f64() * 1e3 / cs.len() as f64
                );
            }
        }
    }
    Ok(())
}
