//! Evaluation batch norms folded into the convolutions before them: in an
//! evaluation graph, y = BN(conv(x, w) + b) with running statistics is
//! conv(x, w') + b' with w' = w·γ·invstd per output channel and
//! b' = β + (b − mean)·γ·invstd, so the batch norm's pass over y (a read and
//! a write of the whole tensor, and a dispatch) becomes one small pass over
//! the weights, computed once for every pass of the graph that shares them.
//! A batch norm over a concatenation of convolutions' outputs (DARTS's
//! FactorizedReduce) folds into each of them, its channel range each.

use std::collections::HashMap;

use super::ir::{Graph, Node, Op, T};

/// A fold's weights, bias, running mean and first channel.
type FoldKey = (T, Option<T>, T, usize);
/// Its w', b' and every input.
type Folded = (T, T, Vec<T>);

/// Folds every `BatchNormEval` without a fused ReLU whose input is a
/// convolution's output that nothing else reads (and that is not pinned):
/// the convolution writes the batch norm's output with the folded weights
/// and bias, which a `FoldBatchNorm` node computes before the first
/// convolution that needs them. Likewise where the input is a
/// concatenation that only the batch norm reads of convolutions' outputs
/// that only it reads: each convolution folds its channels' part, and the
/// concatenation writes the batch norm's output. Returns how many batch
/// norms went.
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
        if bn.relu || sole(y) != Some(j) {
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
            continue;
        }
        if let Some(&j) = concats.get(&i) {
            // The parts are folded: the concatenation is the batch norm's.
            nodes.push(Node {
                outputs: old[j].outputs.clone(),
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
        let key = (w, b, stats[0], c_off);
        let &mut (wf, bf, _) = folded.entry(key).or_insert_with(|| {
            let wf = g.temp_like("fold.w", w);
            let bf = g.temp("fold.b", &[s.c_out]);
            let mut ins = vec![w];
            ins.extend(b);
            ins.extend(stats);
            let per = g.len(w) / s.c_out;
            let op = Op::FoldBatchNorm {
                s: bn,
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
            // Its own output where a concatenation stands between.
            outputs: if bn_node.inputs[0] == n.outputs[0] {
                bn_node.outputs.clone()
            } else {
                n.outputs.clone()
            },
        });
    }
    g.nodes = nodes;
    gone.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::CpuExec;
    use crate::ops::{batchnorm, conv2d::Conv2dShape};
    use crate::verify;

    /// Two passes through conv (with and without bias) → evaluation BN
    /// sharing weights and statistics, a pinned conv output that must stay,
    /// and a ReLU-fused BN that cannot fold: the same outputs after folding.
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
        // Not foldable: a pinned convolution output, a fused ReLU.
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
        assert_eq!(fold_eval_batchnorms(&mut g), 3);
        assert_eq!(bns(&g), 2);
        let folds = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::FoldBatchNorm { .. }));
        assert_eq!(folds.count(), 2, "one fold per (weights, bias) pair");
        for (a, b) in before.iter().zip(run(&g)) {
            let c = verify::compare("fold", "cpu", "", a, &b, verify::FORWARD);
            assert!(c.pass, "{:?}", c.detail);
        }
    }

    /// A batch norm over a concatenation of two convolutions' outputs
    /// (FactorizedReduce) folds into both, each its channel range; one over
    /// a concatenation with a part no convolution writes stays. The same
    /// outputs after folding.
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
        let run = |g: &Graph| -> Vec<Vec<f32>> {
            let mut exec = CpuExec::new(g);
            exec.write(x, &verify::randn(&mut verify::rng(10), n * c_in * hw * hw));
            exec.write(other, &verify::randn(&mut verify::rng(11), n * c2 * 9));
            exec.step(g);
            vec![exec.read(z).to_vec(), exec.read(z2).to_vec()]
        };
        let before = run(&g);
        assert_eq!(fold_eval_batchnorms(&mut g), 1);
        let offsets: Vec<usize> = g
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::FoldBatchNorm { c_off, .. } => Some(c_off),
                _ => None,
            })
            .collect();
        assert_eq!(offsets, [0, c1]);
        for (a, b) in before.iter().zip(run(&g)) {
            let c = verify::compare("fold", "cpu", "", a, &b, verify::FORWARD);
            assert!(c.pass, "{:?}", c.detail);
        }
    }
}
