//! Shaders whose float views move as 64-bit words (`engine::words64`, the
//! default on llvmpipe) give the same bits as the shaders as written: a
//! bilevel step on planes of every row kind (whole float4s, float2s,
//! neither) and S2's one-shot measurement of cells, each on two devices of
//! one adapter, one each way.

mod common;

use gradnas::engine::Gpu;
use gradnas::predict::measure::{MeasureConfig, OneShotDiscrete, SupernetWeights};
use gradnas::search::supernet::SupernetConfig;
use gradnas::space::{Block, Cell, OpKind::*, OpSet};

/// (words as 64-bit, as floats) devices, or None where the adapter has no
/// 64-bit integers, after checking that asking for them is refused clearly.
fn both_ways() -> Option<(Gpu, Gpu)> {
    let gpu = common::gpu();
    let int64 = gpu.device.features().contains(wgpu::Features::SHADER_INT64);
    if gpu.is_llvmpipe() {
        assert!(int64 && gpu.words64, "llvmpipe moves words by default");
    }
    match gpu.another_with_words64(true) {
        Ok(on) => {
            let off = gpu.another_with_words64(false).unwrap();
            assert!(on.words64 && !off.words64);
            assert!(on.another().unwrap().words64, "passed on to another");
            Some((on, off))
        }
        Err(e) => {
            assert!(!int64, "{e}");
            assert!(e.to_string().contains("SHADER_INT64"), "{e}");
            None
        }
    }
}

#[test]
fn a_bilevel_step_gives_the_same_bits() {
    let Some((on, off)) = both_ways() else { return };
    common::same_step_bits(&on, &off);
}

#[test]
fn a_one_shot_measurement_gives_the_same_bits() {
    let Some((on, off)) = both_ways() else { return };
    let splits = common::bundled_subset(32, 16, 1);
    let cfg = SupernetConfig {
        width: 2,
        depth: 2,
        batch: 4,
        op_set: OpSet::pnas(),
        dims: splits.train.dims,
        classes: 10,
        stem_multiplier: 2,
        partial_channels: 1,
    };
    let w = SupernetWeights::random(cfg, 4).unwrap();
    let mc = MeasureConfig {
        bn_batches: 2,
        bn_batch: 4,
        n_val: 16,
        eval_batch: 8,
        seed: 2,
        ..MeasureConfig::default()
    };
    let mut m = OneShotDiscrete::new(w, &splits, &mc).unwrap();
    let cell = |b: &[Block]| Cell { blocks: b.to_vec() };
    for (normal, reduce) in [
        (
            cell(&[Block::new(0, SepConv3x3, 1, MaxPool3x3)]),
            cell(&[Block::new(1, AvgPool3x3, 0, Conv7x1_1x7)]),
        ),
        (
            cell(&[
                Block::new(0, DilConv3x3, 1, SepConv7x7),
                Block::new(2, SepConv5x5, 0, Identity),
            ]),
            cell(&[Block::new(0, Identity, 1, SepConv5x5)]),
        ),
    ] {
        let (acc_on, logits_on) = m.measure_logits(&on, &normal, &reduce).unwrap();
        let (acc_off, logits_off) = m.measure_logits(&off, &normal, &reduce).unwrap();
        assert_eq!(acc_on.to_bits(), acc_off.to_bits());
        assert_eq!(common::bits(&logits_on), common::bits(&logits_off));
        assert!(logits_on.iter().any(|&x| x != 0.0));
    }
}
