//! The bench-small search step on devices whose llvmpipe has different
//! worker counts, stepped in turn in one process: on a shared 2-core host
//! whose speed drifts by ±20% from minute to minute, only rounds that
//! alternate within one process compare worker counts fairly (separate
//! runs a minute apart do not). Each device is created from its own
//! instance after `LP_NUM_THREADS` is set for it (llvmpipe reads the
//! variable per instance); the variable is changed only here, before the
//! rounds, on the main thread.
//!
//! `cargo run --release --example llvmpipe_threads -- 2 4` (worker counts;
//! `ROUNDS=n`, default 5). Prints one line per device and round.

use gradnas::engine::{Gpu, LLVMPIPE_THREADS_VAR};

fn main() -> anyhow::Result<()> {
    let counts: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        !counts.is_empty(),
        "usage: llvmpipe_threads COUNT [COUNT...]"
    );
    let rounds: usize = match std::env::var("ROUNDS") {
        Ok(v) => v.parse()?,
        Err(_) => 5,
    };
    let mut gpus: Vec<Gpu> = Vec::new();
    for c in &counts {
        std::env::set_var(LLVMPIPE_THREADS_VAR, c);
        let g = match gpus.first() {
            None => Gpu::new()?,
            Some(first) => first.another()?,
        };
        anyhow::ensure!(g.is_cpu(), "{} is not a CPU adapter", g.describe());
        gpus.push(g);
    }
    let cfg = gradnas::bench::bench_small();
    for round in 0..rounds {
        for (c, g) in counts.iter().zip(&gpus) {
            let r = gradnas::bench::search_step(g, &cfg, false, 1, false)?;
            println!(
                "round {round} {LLVMPIPE_THREADS_VAR}={c}: step {:.0} ms, GPU time {:.0} ms, forward {:.0} ms",
                r.bilevel_ms,
                r.bilevel_gpu_ms.unwrap_or(f64::NAN),
                r.forward_ms
            );
        }
    }
    Ok(())
}
