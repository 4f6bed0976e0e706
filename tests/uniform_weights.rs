//! Convolutions that read their weights through uniform bindings
//! (`Gpu::uniform_weights`, the default on llvmpipe) give the same bits as
//! those reading them through storage: a bilevel step on planes of every
//! row kind, on two devices of one adapter, one each way. (`tests/ops_gpu.rs`
//! checks the kernels against the CPU reference the default way.)

mod common;

use gradnas::engine::Gpu;

/// The convolutions of the first step `same_step_bits` takes that read
/// their weights through a uniform binding (named `….uw`).
fn uniform_readers(gpu: &Gpu) -> usize {
    let [cfg, _] = common::every_row_kind();
    let (_, plan) = common::fed_step(gpu, &cfg, 3, 8, &[2, 0]);
    plan.kernels()
        .iter()
        .filter(|k| k.name.ends_with(".uw"))
        .count()
}

#[test]
fn a_bilevel_step_gives_the_same_bits() {
    let gpu = common::gpu();
    if gpu.is_llvmpipe() {
        assert!(gpu.uniform_weights, "llvmpipe reads weights as uniforms");
    }
    let on = gpu.another_with_uniform_weights(true).unwrap();
    let off = gpu.another_with_uniform_weights(false).unwrap();
    assert!(on.uniform_weights && !off.uniform_weights);
    assert!(
        on.another().unwrap().uniform_weights,
        "passed on to another"
    );
    // Depthwise, float4 pointwise and dense kernels all read uniforms.
    let readers = uniform_readers(&on);
    assert!(readers > 100, "{readers} convolutions read uniforms");
    assert_eq!(uniform_readers(&off), 0);
    common::same_step_bits(&on, &off);
}
