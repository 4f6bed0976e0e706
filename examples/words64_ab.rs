//! The bench-small search step on two devices of one adapter, one moving
//! its shaders' float views as 64-bit words (`engine::words64`) and one as
//! floats, stepped in turn in one process: on this project's shared 2-core
//! hosts only steps that alternate within one process compare two settings
//! fairly. Each device's step is built once; every round times one step on
//! each, in turn, and prints both and their ratio; the end, the medians.
//!
//! `cargo run --release --example words64_ab` (`ROUNDS=n`, default 8).

use std::time::Instant;

use gradnas::engine::Gpu;
use gradnas::search::bilevel::SearchHyper;

fn main() -> anyhow::Result<()> {
    let rounds: usize = match std::env::var("ROUNDS") {
        Ok(v) => v.parse()?,
        Err(_) => 8,
    };
    let first = Gpu::new()?;
    let gpus = [
        first.another_with_words64(true)?,
        first.another_with_words64(false)?,
    ];
    drop(first);
    let cfg = gradnas::bench::bench_small();
    let labels = gradnas::bench::cycling_labels(&cfg);
    let mut plans = Vec::new();
    for g in &gpus {
        let (_, plan) =
            gradnas::bench::fed_search_step(g, &cfg, &SearchHyper::default(), 1, 2, &labels)?;
        // A first step compiles nothing more but warms the buffers.
        plan.step(g)?;
        g.sync()?;
        plans.push(plan);
    }
    let mut ratios = Vec::new();
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let mut ms = [0.0; 2];
        for (k, (g, plan)) in gpus.iter().zip(&plans).enumerate() {
            let t = Instant::now();
            plan.step(g)?;
            g.sync()?;
            ms[k] = t.elapsed().as_secs_f64() * 1e3;
            times[k].push(ms[k]);
        }
        ratios.push(ms[0] / ms[1]);
        println!(
            "round {round}: words64 {:.0} ms, floats {:.0} ms, ratio {:.3}",
            ms[0],
            ms[1],
            ms[0] / ms[1]
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median: words64 {:.0} ms, floats {:.0} ms, ratio of each round's pair {:.3}",
        median(&mut times[0]),
        median(&mut times[1]),
        median(&mut ratios)
    );
    Ok(())
}
