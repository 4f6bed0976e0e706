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
    let mut uses: HashMap<T, usize> = HashMap::new();
    let mut reader: HashMap<T, usize> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for &x in &n.inputs {
            *uses.entry(x).or_insert(0) += 1;
            reader.insert(x, i);
        }
    }
    // The batch norm each foldable convolution feeds.
    let mut into: HashMap<usize, usize> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let Op::Conv2d { s, .. } = n.op else {
            continue;
        };
        let y = n.outputs[0];
        if uses.get(&y) != Some(&1) || g.def(y).pinned {
            continue;
        }
        let j = reader[&y];
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
        let (Some(&j), Op::Conv2d { s, bias }) = (into.get(&i), &n.op) else {
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
            op: Op::Conv2d { s: *s, bias: true },
            inputs: vec![n.inputs[0], wf, bf],
            outputs: bn_node.outputs.clone(),
        });
    }
    g.nodes = nodes;
    gone.len()
}
