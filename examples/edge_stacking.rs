//! What batching a node's edges into one dispatch would buy on this
//! adapter, measured before building it (BENCHMARKS.md, "Twenty-fourth
//! pass"). E edges' per-channel ops — ReLU, depthwise 3×3 and 5×5 with
//! their batch norms, max and average pools with theirs, as the supernet's
//! candidates run them — as one set of dispatches per edge, against one
//! set over the E edges' inputs stacked along channels (E·C channels: the
//! same function per channel, one dispatch per op). Both are trained steps
//! (forward, backward, SGD) planned and recorded as the search step is;
//! each round times 5 steps of each, in turn, in one process.
//!
//! `cargo run --release --example edge_stacking -- C HW E` (bench-small's
//! planes: `16 14 4`, `32 7 4`, `8 28 4`; `ROUNDS=n`, default 10).

use std::time::Instant;

use anyhow::{bail, Context};
use gradnas::engine::Gpu;
use gradnas::graph::{self, Graph, Optimizer, Plan, T};
use gradnas::ops::conv2d::Conv2dShape;
use gradnas::ops::optim::SgdHyper;
use gradnas::ops::{batchnorm, pool};

const BATCH: usize = 32;

/// The per-channel candidates of one edge (or of E stacked edges) on
/// `x` [BATCH, c, hw, hw], summed.
fn candidates(g: &mut Graph, x: T, c: usize, hw: usize, params: &mut Vec<T>, tag: &str) -> T {
    let bn = |g: &mut Graph, y: T, name: &str| {
        let mean = g.state(&format!("{name}.mean"), &[c], Some(vec![0.0; c]));
        let var = g.state(&format!("{name}.var"), &[c], Some(vec![1.0; c]));
        let s = batchnorm::Shape::new(BATCH, c, hw * hw, false);
        g.batchnorm_train(y, None, (mean, var), s)
    };
    let mut sep = x;
    for k in [3, 5] {
        let r = g.relu(sep);
        let w = g.param(&format!("{tag}.dw{k}"), &[c, 1, k, k], vec![0.1; c * k * k]);
        params.push(w);
        let s = Conv2dShape {
            n: BATCH,
            c_in: c,
            h: hw,
            w: hw,
            c_out: c,
            kh: k,
            kw: k,
            stride: 1,
            pad_h: k / 2,
            pad_w: k / 2,
            dilation: 1,
            groups: c,
        };
        let z = g.conv2d(r, w, None, s);
        sep = bn(g, z, &format!("{tag}.bn{k}"));
    }
    let ps = pool::Shape {
        n: BATCH,
        c,
        h: hw,
        w: hw,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let max = g.max_pool(x, ps);
    let max = bn(g, max, &format!("{tag}.bn_max"));
    let avg = g.avg_pool(x, ps);
    let avg = bn(g, avg, &format!("{tag}.bn_avg"));
    g.sum(&[sep, max, avg])
}

fn step(stacked: bool, c: usize, hw: usize, e: usize) -> Graph {
    let mut g = Graph::new();
    let mut params = Vec::new();
    let plane = BATCH * c * hw * hw;
    let outs: Vec<T> = if stacked {
        let x = g.param("x", &[BATCH, e * c, hw, hw], vec![0.5; e * plane]);
        params.push(x);
        let y = candidates(&mut g, x, e * c, hw, &mut params, "stacked");
        g.split(y, &vec![c; e])
    } else {
        (0..e)
            .map(|i| {
                let x = g.param(&format!("x{i}"), &[BATCH, c, hw, hw], vec![0.5; plane]);
                params.push(x);
                candidates(&mut g, x, c, hw, &mut params, &format!("edge{i}"))
            })
            .collect()
    };
    let node = g.sum(&outs);
    let target = g.input("target", &[BATCH, c, hw, hw]);
    let loss = g.l1_loss(node, target);
    let grads = graph::backward(&mut g, loss);
    let sgd = Optimizer::Sgd(SgdHyper {
        lr: 0.01,
        momentum: 0.9,
        weight_decay: 0.0,
    });
    graph::append_updates(&mut g, &params, &grads, sgd, None);
    g
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().with_context(|| format!("{a:?} is not a count")))
        .collect::<Result<_, _>>()?;
    let [c, hw, e] = args[..] else {
        bail!("usage: edge_stacking C HW E (e.g. 16 14 4)");
    };
    let rounds: usize = std::env::var("ROUNDS").map_or(Ok(10), |v| v.parse())?;
    let gpu = Gpu::new()?;
    let plans = [
        Plan::new(&gpu, &step(false, c, hw, e))?,
        Plan::new(&gpu, &step(true, c, hw, e))?,
    ];
    for (p, what) in plans.iter().zip(["one edge a dispatch", "stacked"]) {
        p.step(&gpu)?;
        gpu.sync()?;
        println!("{what}: {} dispatches a step", p.dispatches());
    }
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let mut ms = [0.0; 2];
        for (k, p) in plans.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..5 {
                p.step(&gpu)?;
            }
            gpu.sync()?;
            ms[k] = t.elapsed().as_secs_f64() * 1e3 / 5.0;
        }
        ratios.push(ms[1] / ms[0]);
        println!(
            "round {round}: one edge a dispatch {:.2} ms, stacked {:.2} ms, ratio {:.3}",
            ms[0],
            ms[1],
            ms[1] / ms[0]
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "[{BATCH}, {c}, {hw}, {hw}] × {e} edges: median ratio stacked / one edge a dispatch {:.3}",
        ratios[ratios.len() / 2]
    );
    Ok(())
}
