//! Evaluation batch norms folded into the convolutions before them: in an
//! evaluation graph, y = BN(conv(x, w) + b) with running statistics is
//! conv(x, w') + b' with w' = w·γ·invstd per output channel and
//! b' = β + (b − mean)·γ·invstd, so the batch norm's pass over y (a read and
//! a write of the whole tensor, and a dispatch) becomes one small pass over
//! the weights, computed once for every pass of the graph that shares them.

use std::collections::HashMap;

use super::ir::{Graph, Node, Op, T};

/// A fold's weights, bias and running mean.
type FoldKey = (T, Option<T>, T);
/// Its w', b' and every input.
type Folded = (T, T, Vec<T>);

/// Folds every `BatchNormEval` without a fused ReLU whose input is a
/// convolution's output that nothing else reads (and that is not pinned):
/// the convolution writes the batch norm's output with the folded weights
/// and bias, which a `FoldBatchNorm` node computes before the first
/// convolution that needs them. Returns how many batch norms went.
pub fn fold_eval_batchnorms(g: &mut Graph) -> usize {
    let readers = super::fuse::readers(g);
    // The batch norm each foldable convolution feeds.
    let mut into: HashMap<usize, usize> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let Op::Conv2d { s, .. } = n.op else {
            continue;
        };
        let y = n.outputs[0];
        let Some(j) = super::fuse::sole_reader(g, &readers, y) else {
            continue;
        };
        if let Op::BatchNormEval(bn) = g.nodes[j].op {
            let fits = !bn.relu && bn.c == s.c_out && g.nodes[j].inputs[0] == y;
            if fits {
                into.insert(i, j);
            }
        }
    }
    // One fold per weights and statistics, until a node writes one of them.
    let mut folded: HashMap<FoldKey, Folded> = HashMap::new();
    let gone: std::collections::HashSet<usize> = into.values().copied().collect();
    let mut nodes = Vec::with_capacity(g.nodes.len() + into.len());
    let old = std::mem::take(&mut g.nodes);
    for (i, n) in old.iter().enumerate() {
        if gone.contains(&i) {
            continue;
        }
        let (Some(&j), Op::Conv2d { s, bias, relu }) = (into.get(&i), &n.op) else {
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
        let key = (w, b, stats[0]);
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
            outputs: bn_node.outputs.clone(),
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
}
