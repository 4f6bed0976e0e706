//! The bench-small search step on two devices of one adapter that differ
//! in one setting that keeps every result's bits, stepped in turn in one
//! process: on this project's shared 2-core hosts only steps that alternate
//! within one process compare two settings fairly. The settings:
//! `words64` (float views moved as 64-bit words, `engine::words64`),
//! `uniform_weights` (convolution weights read through uniform bindings,
//! `Gpu::uniform_weights`) and `held_passes` (training batch norms keep
//! their values between their passes, `Gpu::held_passes`). Each device's
//! step is built once; every round times one step on each, in turn, and
//! prints both and their ratio; the end, the medians.
//!
//! `cargo run --release --example setting_ab --
//! words64|uniform_weights|held_passes` (`ROUNDS=n`, default 8).

use std::time::Instant;

use anyhow::bail;
use gradnas::engine::Gpu;
use gradnas::search::bilevel::SearchHyper;

fn main() -> anyhow::Result<()> {
    let rounds: usize = match std::env::var("ROUNDS") {
        Ok(v) => v.parse()?,
        Err(_) => 8,
    };
    let setting = std::env::args().nth(1).unwrap_or_default();
    let first = Gpu::new()?;
    let gpus = match setting.as_str() {
        "words64" => [
            first.another_with_words64(true)?,
            first.another_with_words64(false)?,
        ],
        "uniform_weights" => [
            first.another_with_uniform_weights(true)?,
            first.another_with_uniform_weights(false)?,
        ],
        "held_passes" => [
            first.another_with_held_passes(true)?,
            first.another_with_held_passes(false)?,
        ],
        _ => bail!("usage: setting_ab words64|uniform_weights|held_passes (got {setting:?})"),
    };
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
            "round {round}: {setting} on {:.0} ms, off {:.0} ms, ratio {:.3}",
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
        "median: {setting} on {:.0} ms, off {:.0} ms, ratio of each round's pair {:.3}",
        median(&mut times[0]),
        median(&mut times[1]),
        median(&mut ratios)
    );
    Ok(())
}
