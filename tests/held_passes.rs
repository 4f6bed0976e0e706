//! Training batch norms that keep their values between their two passes
//! (`Gpu::held_passes`, the default on CPU adapters: `batchnorm::Held`)
//! give the same bits as the entries that load them again: the forward
//! (output, saved and running statistics) and the backward (input, γ and β
//! gradients) op by op, on planes of float4s and of scalars, with a
//! guarded last step and without, affine, with a fused ReLU; and a bilevel
//! step, on two devices of one adapter, one each way. (`tests/ops_gpu.rs`
//! checks the entries against the CPU reference the default way.)

mod common;

use gradnas::engine::{Buf, Gpu};
use gradnas::ops::batchnorm::{self as bn, Held, Shape, MAX_HELD};

fn randn(n: usize, seed: u64) -> Vec<f32> {
    gradnas::verify::randn(&mut gradnas::verify::rng(seed), n)
}

/// Every output of one training forward and backward of `s` on `gpu`.
fn forward_backward(gpu: &Gpu, s: &Shape, x: &[f32], dy: &[f32]) -> Vec<Vec<f32>> {
    let up = |name: &str, v: &[f32]| gpu.upload(name, v).unwrap();
    let (xb, dyb) = (up("x", x), up("dy", dy));
    let ones = vec![1.0f32; s.c];
    let (rm, rv) = (up("rm", &vec![0.1; s.c]), up("rv", &ones));
    let gamma: Vec<f32> = (0..s.c).map(|i| 0.75 + 0.1 * i as f32).collect();
    let beta: Vec<f32> = (0..s.c).map(|i| 0.2 - 0.05 * i as f32).collect();
    let (gb, bb) = (up("gamma", &gamma), up("beta", &beta));
    let (g, b) = match s.affine {
        true => (Some(&gb), Some(&bb)),
        false => (None, None),
    };
    let alloc = |name: &str, n: usize| gpu.alloc(name, n).unwrap();
    let (y, dx) = (alloc("y", s.len()), alloc("dx", s.len()));
    let (mean, invstd) = (alloc("mean", s.c), alloc("invstd", s.c));
    let (dg, db) = (alloc("dgamma", s.c), alloc("dbeta", s.c));
    let kernels = [
        bn::train_forward(gpu, s, &xb, g, b, &y, &mean, &invstd, &rm, &rv).unwrap(),
        bn::train_backward(
            gpu,
            s,
            &xb,
            &mean,
            &invstd,
            g,
            &dyb,
            &dx,
            Some(&dg),
            Some(&db),
        )
        .unwrap(),
    ];
    gpu.run(&kernels).unwrap();
    let outs: [&Buf; 8] = [&y, &mean, &invstd, &rm, &rv, &dx, &dg, &db];
    gpu.read_many(&outs).unwrap()
}

/// (held, loops) devices of the shared adapter's kind.
fn both_ways() -> (Gpu, Gpu) {
    let gpu = common::gpu();
    if gpu.is_llvmpipe() {
        assert!(gpu.held_passes, "llvmpipe holds batch norm's values");
    }
    let on = gpu.another_with_held_passes(true).unwrap();
    let off = gpu.another_with_held_passes(false).unwrap();
    assert!(on.held_passes && !off.held_passes);
    assert!(on.another().unwrap().held_passes, "passed on to another");
    (on, off)
}

#[test]
fn each_entry_gives_the_same_bits() {
    let (on, off) = both_ways();
    let shapes = [
        // bench-small's planes: 49 scalars and 49 float4s an invocation,
        // no guard; bench-medium's, 98 float4s.
        Shape::new(32, 32, 49, false),
        Shape::new(32, 16, 196, false).with_relu(),
        Shape::new(64, 2, 196, true),
        // The last step partly filled: odd counts, fewer values than
        // invocations, one value a channel per batch item.
        Shape::new(3, 5, 49, true),
        Shape::new(5, 3, 36, false).with_relu(),
        Shape::new(5, 3, 49, false).with_relu(),
        Shape::new(2, 4, 9, true),
        Shape::new(7, 2, 1, false),
        // MAX_HELD's steps exactly, with none guarded.
        Shape::new(3200, 2, 1, false),
        // Beyond MAX_HELD: the loops on both devices (one step more;
        // bench-small's 28×28 planes, 196 float4s an invocation).
        Shape::new(3201, 2, 1, false),
        Shape::new(32, 8, 784, false),
        Shape::new(66, 2, 512, false),
    ];
    let mut held = 0;
    for (i, s) in shapes.iter().enumerate() {
        held += Held::of(&on, s, false).is_some() as usize;
        let x: Vec<f32> = randn(s.len(), 10 + i as u64)
            .into_iter()
            .map(|v| 1.5 * v + 2.0)
            .collect();
        let dy = randn(s.len(), 20 + i as u64);
        let (a, b) = (
            forward_backward(&on, s, &x, &dy),
            forward_backward(&off, s, &x, &dy),
        );
        for (what, (u, v)) in [
            "y",
            "mean",
            "invstd",
            "running_mean",
            "running_var",
            "dx",
            "dgamma",
            "dbeta",
        ]
        .iter()
        .zip(a.iter().zip(&b))
        {
            let differ = u
                .iter()
                .zip(v)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(
                differ,
                0,
                "{s}: {what} differs in {differ} of {} values",
                u.len()
            );
        }
        assert!(a[5].iter().any(|&v| v != 0.0), "{s}: a gradient");
    }
    assert_eq!(
        Held::for_shape(&shapes[8], true).map(|h| h.steps),
        Some(MAX_HELD)
    );
    for s in &shapes[9..] {
        assert!(Held::for_shape(s, false).is_none(), "{s}");
    }
    if on.is_llvmpipe() {
        assert_eq!(held, 9, "every shape but the last three held");
    }
}

#[test]
fn a_bilevel_step_gives_the_same_bits() {
    let (on, off) = both_ways();
    common::same_step_bits(&on, &off);
}
