//! Evaluation batch norms folded into the convolutions before them: in an
//! evaluation graph, y = BN(conv(x, w) + b) with running statistics is
//! conv(x, w') + b' with w' = w·γ·invstd per output channel and
//! b' = β + (b − mean)·γ·invstd, so the batch norm's pass over y (a read and
//! a write of the whole tensor, and a dispatch) becomes one small pass over
//! the weights, computed once for every pass of the graph that shares them.
//! A batch norm over a concatenation of convolutions' outputs (DARTS's
//! FactorizedReduce) folds into each of them, its channel range each. One
//! with a fused ReLU folds too and leaves the ReLU, which the next
//! convolution usually reads as it loads (`fuse::fuse_relu_reads`).

use std::collections::HashMap;

use super::ir::{Graph, Node, Op, T};
use crate::ops::batchnorm;

/// A fold's weights, bias, statistics (γ, β where affine, running mean and
/// variance) and first channel.
type FoldKey = (T, Option<T>, Vec<T>, usize);
/// Its w', b' and every input.
type Folded = (T, T, Vec<T>);

/// Folds every `BatchNormEval` whose input is a
/// convolution's output that nothing else reads (and that is not pinned):
/// the convolution writes the batch norm's output with the folded weights
/// and bias, which a `FoldBatchNorm` node computes before the first
/// convolution that needs them. Likewise where the input is a
/// concatenation that only the batch norm reads of convolutions' outputs
/// that only it reads: each convolution folds its channels' part, and the
/// concatenation writes the batch norm's output. A batch norm with a fused
/// ReLU (a SepConv's first) leaves a `Relu` node of the folded output in
/// its place, for `fuse_relu_reads` to fuse into the convolution reading
/// it. Returns how many batch norms went.
pub fn fold_eval_batchnorms(g: &mut Graph) -> usize {
    let readers = super::fuse::readers(g);
    let sole = |t: T| super::fuse::sole_reader(g, &readers, t);
    let writer = super::fuse::writers(g);
    // The batch norm each foldable convolution feeds, and its channel
    // offset there; the concatenations between.
    let mut into: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut concats: HashMap<usize, usize> = HashMap::new();
    for (j, n) in g.nodes.iter().enumerate() {
        let Op::BatchNormEval(bn) = n.op else {
            continue;
        };
        let y = n.inputs[0];
        if sole(y) != Some(j) {
            continue;
        }
        let Some(&k) = writer.get(&y) else { continue };
        match &g.nodes[k].op {
            Op::Conv2d { s, .. } if s.c_out == bn.c => {
                into.insert(k, (j, 0));
            }
            Op::Concat(cs) if cs.total_channels() == bn.c => {
                let parts: Option<Vec<usize>> = g.nodes[k]
                    .inputs
                    .iter()
                    .zip(&cs.channels)
                    .map(|(&t, &c)| {
                        let &i = writer.get(&t)?;
                        let fits = matches!(g.nodes[i].op, Op::Conv2d { s, .. } if s.c_out == c)
                            && sole(t) == Some(k);
                        fits.then_some(i)
                    })
                    .collect();
                if let Some(parts) = parts {
                    for (p, i) in parts.into_iter().enumerate() {
                        into.insert(i, (j, cs.channel_offset(p)));
                    }
                    concats.insert(k, j);
                }
            }
            _ => {}
        }
    }
    // One fold per weights and statistics, until a node writes one of them.
    let mut folded: HashMap<FoldKey, Folded> = HashMap::new();
    let gone: std::collections::HashSet<usize> = into.values().map(|&(j, _)| j).collect();
    let mut nodes = Vec::with_capacity(g.nodes.len() + into.len());
    let old = std::mem::take(&mut g.nodes);
    for (i, n) in old.iter().enumerate() {
        if gone.contains(&i) {
            // A fused ReLU stays behind as a ReLU of what the batch norm
            // read (now the folded output), which `fuse::fuse_relu_reads`
            // may then fuse into the convolutions reading it.
            if relu_of(n) {
                nodes.push(Node {
                    op: Op::Relu,
                    inputs: vec![n.inputs[0]],
                    outputs: n.outputs.clone(),
                });
            }
            continue;
        }
        if let Some(&j) = concats.get(&i) {
            // The parts are folded: the concatenation is the batch norm's
            // (or its ReLU's input).
            let outputs = if relu_of(&old[j]) {
                n.outputs.clone()
            } else {
                old[j].outputs.clone()
            };
            nodes.push(Node {
                outputs,
                ..n.clone()
            });
            continue;
        }
        let (Some(&(j, c_off)), Op::Conv2d { s, bias, relu }) = (into.get(&i), &n.op) else {
            folded.retain(|_, (_, _, ins)| !n.outputs.iter().any(|o| ins.contains(o)));
            nodes.push(n.clone());
            continue;
        };
        let bn_node = &old[j];
        let Op::BatchNormEval(bn) = bn_node.op else {
            unreachable!("folded into a batch norm");
        };
        let (w, b) = (n.inputs[1], bias.then(|| n.inputs[2]));
        let stats = &bn_node.inputs[1..];
        let key = (w, b, stats.to_vec(), c_off);
        let &mut (wf, bf, _) = folded.entry(key).or_insert_with(|| {
            let wf = g.temp_like("fold.w", w);
            let bf = g.temp("fold.b", &[s.c_out]);
            let mut ins = vec![w];
            ins.extend(b);
            ins.extend(stats);
            let per = g.len(w) / s.c_out;
            // The ReLU, if any, is not the fold's: it stays as a node.
            let op = Op::FoldBatchNorm {
                s: batchnorm::Shape { relu: false, ..bn },
                per,
                c_off,
                bias: *bias,
            };
            nodes.push(Node {
                op,
                inputs: ins.clone(),
                outputs: vec![wf, bf],
            });
            (wf, bf, ins)
        });
        nodes.push(Node {
            op: Op::Conv2d {
                s: *s,
                bias: true,
                relu: *relu,
            },
            inputs: vec![n.inputs[0], wf, bf],
            // Its own output where a concatenation or a ReLU stands between.
            outputs: if bn_node.inputs[0] == n.outputs[0] && !relu_of(bn_node) {
                bn_node.outputs.clone()
            } else {
                n.outputs.clone()
            },
        });
    }
    g.nodes = nodes;
    gone.len()
}

/// Whether a batch norm applies a ReLU after it.
fn relu_of(n: &Node) -> bool {
    matches!(n.op, Op::BatchNormEval(bn) if bn.relu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::CpuExec;
    use crate::ops::conv2d::Conv2dShape;
    use crate::verify;

    /// Two passes through conv (with and without bias) → evaluation BN
    /// sharing weights and statistics, a pinned conv output that must stay,
    /// and a ReLU-fused BN that folds and leaves its ReLU: the same outputs
    /// after folding.
    #[test]
    fn folding_keeps_the_outputs() {
        let mut rng = verify::rng(3);
        let (n, c, hw) = (2, 3, 5);
        let cs = Conv2dShape {
            n,
            c_in: 2,
            h: hw,
            w: hw,
            c_out: c,
            kh: 3,
            kw: 3,
            stride: 1,
            pad_h: 1,
            pad_w: 1,
            dilation: 1,
            groups: 1,
        };
        let mut g = Graph::new();
        let w = g.param("w", &[c, 2, 3, 3], verify::randn(&mut rng, c * 18));
        let b = g.param("b", &[c], verify::randn(&mut rng, c));
        let gamma = g.param("gamma", &[c], verify::uniform(&mut rng, c, 0.5, 1.5));
        let beta = g.param("beta", &[c], verify::randn(&mut rng, c));
        let rm = g.state("rm", &[c], Some(verify::randn(&mut rng, c)));
        let rv = g.state("rv", &[c], Some(verify::uniform(&mut rng, c, 0.5, 2.0)));
        let bs = batchnorm::Shape::new(n, c, hw * hw, true);
        let mut outs = Vec::new();
        let mut xs = Vec::new();
        for (pass, bias) in [(0, Some(b)), (1, Some(b)), (2, None)] {
            let x = g.input(&format!("x{pass}"), &[n, 2, hw, hw]);
            let y = g.conv2d(x, w, bias, cs);
            let z = g.batchnorm_eval(y, Some((gamma, beta)), (rm, rv), bs);
            g.pin(z);
            outs.push(z);
            xs.push(x);
        }
        // Not foldable: a pinned convolution output. Foldable, leaving a
        // ReLU: a fused ReLU (and other statistics: a fold of its own).
        let x = g.input("x3", &[n, 2, hw, hw]);
        let kept = g.conv2d(x, w, None, cs);
        g.pin(kept);
        let z = g.batchnorm_eval(kept, Some((gamma, beta)), (rm, rv), bs);
        g.pin(z);
        let y = g.conv2d(x, w, None, cs);
        let plain = batchnorm::Shape::new(n, c, hw * hw, false).with_relu();
        let r = g.batchnorm_eval(y, None, (rm, rv), plain);
        g.pin(r);
        outs.extend([kept, z, r]);
        xs.push(x);
        let run = |g: &Graph| -> Vec<Vec<f32>> {
            let mut exec = CpuExec::new(g);
            let mut rng = verify::rng(4);
            for &x in &xs {
                exec.write(x, &verify::randn(&mut rng, n * 2 * hw * hw));
            }
            exec.step(g);
            outs.iter().map(|&t| exec.read(t).to_vec()).collect()
        };
        let before = run(&g);
        let bns = |g: &Graph| {
            let n = g
                .nodes
                .iter()
                .filter(|n| matches!(n.op, Op::BatchNormEval(_)));
            n.count()
        };
        assert_eq!(bns(&g), 5);
        assert_eq!(fold_eval_batchnorms(&mut g), 4);
        assert_eq!(bns(&g), 1);
        let count = |g: &Graph, f: fn(&Op) -> bool| g.nodes.iter().filter(|n| f(&n.op)).count();
        assert_eq!(
            count(&g, |op| matches!(op, Op::FoldBatchNorm { .. })),
            3,
            "one fold per (weights, bias, statistics)"
        );
        assert_eq!(count(&g, |op| matches!(op, Op::Relu)), 1);
        for (a, b) in before.iter().zip(run(&g)) {
            let c = verify::compare("fold", "cpu", "", a, &b, verify::FORWARD);
            assert!(c.pass, "{:?}", c.detail);
        }
    }

    /// A batch norm over a concatenation of two convolutions' outputs
    /// (FactorizedReduce) folds into both, each its channel range, with or
    /// without a fused ReLU; one over a concatenation with a part no
    /// convolution writes stays. The same outputs after folding.
    #[test]
    fn folding_through_a_concatenation() {
        use crate::ops::layout::SliceShape;
        let mut rng = verify::rng(9);
        let (n, c_in, hw) = (2, 3, 6);
        let (c1, c2) = (2, 3);
        let cs = |c_out| Conv2dShape {
            n,
            c_in,
            h: hw,
            w: hw,
            c_out,
            kh: 1,
            kw: 1,
            stride: 2,
            pad_h: 0,
            pad_w: 0,
            dilation: 1,
            groups: 1,
        };
        let c = c1 + c2;
        let mut g = Graph::new();
        let x = g.input("x", &[n, c_in, hw, hw]);
        let w1 = g.param("w1", &[c1, c_in, 1, 1], verify::randn(&mut rng, c1 * c_in));
        let w2 = g.param("w2", &[c2, c_in, 1, 1], verify::randn(&mut rng, c2 * c_in));
        let gamma = g.param("gamma", &[c], verify::uniform(&mut rng, c, 0.5, 1.5));
        let beta = g.param("beta", &[c], verify::randn(&mut rng, c));
        let rm = g.state("rm", &[c], Some(verify::randn(&mut rng, c)));
        let rv = g.state("rv", &[c], Some(verify::uniform(&mut rng, c, 0.5, 2.0)));
        let a = g.conv2d(x, w1, None, cs(c1));
        let shifted = g.slice(x, SliceShape::factorized_reduce(n, c_in, hw, hw));
        let b = g.conv2d(shifted, w2, None, cs(c2));
        let y = g.concat(&[a, b]);
        let bs = batchnorm::Shape::new(n, c, 9, true);
        let z = g.batchnorm_eval(y, Some((gamma, beta)), (rm, rv), bs);
        g.pin(z);
        // A part that is an input: stays.
        let other = g.input("other", &[n, c2, 3, 3]);
        let a2 = g.conv2d(x, w1, None, cs(c1));
        let y2 = g.concat(&[a2, other]);
        let z2 = g.batchnorm_eval(y2, Some((gamma, beta)), (rm, rv), bs);
        g.pin(z2);
        // With a fused ReLU (no affine): folds, the ReLU after the
        // concatenation.
        let a3 = g.conv2d(x, w1, None, cs(c1));
        let b3 = g.conv2d(shifted, w2, None, cs(c2));
        let y3 = g.concat(&[a3, b3]);
        let relu = batchnorm::Shape::new(n, c, 9, false).with_relu();
        let z3 = g.batchnorm_eval(y3, None, (rm, rv), relu);
        g.pin(z3);
        let run = |g: &Graph| -> Vec<Vec<f32>> {
            let mut exec = CpuExec::new(g);
            exec.write(x, &verify::randn(&mut verify::rng(10), n * c_in * hw * hw));
            exec.write(other, &verify::randn(&mut verify::rng(11), n * c2 * 9));
            exec.step(g);
            [z, z2, z3].iter().map(|&t| exec.read(t).to_vec()).collect()
        };
        let before = run(&g);
        assert_eq!(fold_eval_batchnorms(&mut g), 2);
        assert!(g
            .nodes
            .iter()
            .any(|n| matches!(n.op, Op::Relu) && n.outputs == [z3]));
        let offsets: Vec<usize> = g
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::FoldBatchNorm { c_off, .. } => Some(c_off),
                _ => None,
            })
            .collect();
        assert_eq!(offsets, [0, c1, 0, c1]);
        for (a, b) in before.iter().zip(run(&g)) {
            let c = verify::compare("fold", "cpu", "", a, &b, verify::FORWARD);
            assert!(c.pass, "{:?}", c.detail);
        }
    }

    /// A SepConv's middle: conv → BN with ReLU → depthwise conv. The batch
    /// norm folds into the first convolution and its ReLU into the second's
    /// reads: neither a batch norm nor a ReLU node stays, the outputs the
    /// same.
    #[test]
    fn a_folded_relu_fuses_into_the_next_convolution() {
        let mut rng = verify::rng(12);
        let (n, c, hw) = (2, 4, 7);
        let shape = |k: usize, groups: usize| Conv2dShape {
            n,
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
            groups,
        };
        let mut g = Graph::new();
        let x = g.input("x", &[n, c, hw, hw]);
        let pw = g.param("pw", &[c, c, 1, 1], verify::randn(&mut rng, c * c));
        let dw = g.param("dw", &[c, 1, 3, 3], verify::randn(&mut rng, c * 9));
        let rm = g.state("rm", &[c], Some(verify::randn(&mut rng, c)));
        let rv = g.state("rv", &[c], Some(verify::uniform(&mut rng, c, 0.5, 2.0)));
        let y = g.conv2d(x, pw, None, shape(1, 1));
        let bs = batchnorm::Shape::new(n, c, hw * hw, false).with_relu();
        let r = g.batchnorm_eval(y, None, (rm, rv), bs);
        let z = g.conv2d(r, dw, None, shape(3, c));
        g.pin(z);
        let input = verify::randn(&mut rng, n * c * hw * hw);
        let run = |g: &Graph| -> Vec<f32> {
            let mut exec = CpuExec::new(g);
            exec.write(x, &input);
            exec.step(g);
            exec.read(z).to_vec()
        };
        let before = run(&g);
        assert_eq!(fold_eval_batchnorms(&mut g), 1);
        assert_eq!(crate::graph::fuse_relu_reads(&mut g), 1);
        assert!(g
            .nodes
            .iter()
            .all(|n| !matches!(n.op, Op::BatchNormEval(_) | Op::Relu)));
        let c = verify::compare("fold relu", "cpu", "", &before, &run(&g), verify::FORWARD);
        assert!(c.pass, "{:?}", c.detail);
    }
}
