//! One first-order bilevel step of gradnas's S1 supernet on the CPU
//! reference executor (the graph `bilevel::build_step` records; no GPU), as
//! JSON for `supernet_torch.py --compare-step`: the config, every weight,
//! α and β before and after the step by graph name, the batches, and both
//! losses.
//!
//!     gradnas_ref WIDTH DEPTH BATCH > step.json

use gradnas::graph::CpuExec;
use gradnas::search::bilevel::{build_step, SearchHyper};
use gradnas::verify;
use serde_json::{json, Map};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("arguments: WIDTH DEPTH BATCH"))
        .collect();
    let [width, depth, batch] = args[..] else {
        eprintln!("usage: gradnas_ref WIDTH DEPTH BATCH");
        std::process::exit(2);
    };
    // bench-small's supernet at another size.
    let cfg = gradnas::search::supernet::SupernetConfig {
        width,
        depth,
        batch,
        ..gradnas::bench::bench_small()
    };
    if let Err(e) = cfg.validate() {
        eprintln!("gradnas_ref: {e}");
        std::process::exit(2);
    }
    let step = build_step(&cfg, &SearchHyper::default(), 1);
    let g = &step.g;
    let mut exec = CpuExec::new(g);
    let mut rng = verify::rng(7);
    let n = batch * cfg.dims.len();
    let labels: Vec<u32> = (0..batch as u32).map(|i| (i * 7 + 3) % 10).collect();
    let (val, train) = (verify::randn(&mut rng, n), verify::randn(&mut rng, n));
    exec.write(step.val_images, &val);
    exec.write_u32(step.val_labels, &labels);
    exec.write(step.train_images, &train);
    exec.write_u32(step.train_labels, &labels);
    let tensors: Vec<_> = (step.weights.iter().copied())
        .chain(step.arch.alphas())
        .chain(step.arch.betas())
        .collect();
    let values = |exec: &CpuExec| -> Map<String, serde_json::Value> {
        (tensors.iter())
            .map(|&t| (g.def(t).name.clone(), json!(exec.read(t))))
            .collect()
    };
    let init = values(&exec);
    exec.step(g);
    let weights: usize = step.weights.iter().map(|&t| g.len(t)).sum();
    let out = json!({
        "width": width, "depth": depth, "batch": batch, "weights": weights,
        "val_images": val, "train_images": train, "labels": labels,
        "val_loss": exec.read(step.val_loss)[0],
        "train_loss": exec.read(step.train_loss)[0],
        "init": init, "final": values(&exec),
    });
    println!("{out}");
}
