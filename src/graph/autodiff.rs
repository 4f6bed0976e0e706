//! Reverse-mode autodiff: walk the forward nodes backwards and append each
//! op's gradient nodes, summing the gradients of tensors used more than once.

use std::collections::HashMap;

use super::ir::{Graph, Kind, Node, Op, T};
use crate::ops::batchnorm;
use crate::ops::matmul::LinearShape;
use crate::ops::mix::MixShape;
use crate::ops::mix_bn;

/// The gradient tensor of each tensor that received one.
pub type Grads = HashMap<T, T>;

/// Append the backward of every node so far to `g`, seeded with dL/dloss = 1,
/// and return the gradients. Gradients stop at inputs, states and labels.
pub fn backward(g: &mut Graph, loss: T) -> Grads {
    backward_since(g, loss, 0)
}

/// `backward` through the nodes from index `since` on only: a second pass
/// in the same graph (the supernet's weight step after its architecture
/// step) must not walk back into the first pass or its update nodes.
pub fn backward_since(g: &mut Graph, loss: T, since: usize) -> Grads {
    assert_eq!(g.len(loss), 1, "backward needs a scalar loss");
    let seed = g.state("dloss", &[1], Some(vec![1.0]));
    // Each tensor's gradient contributions, in arrival order, summed once
    // all have arrived (when the walk reaches the tensor's producer): one
    // Add node for up to MAX_ADDENDS of them, where adding each as it came
    // took one node (a dispatch, a pass over memory) per contribution. The
    // same left-to-right order, so the same sums.
    let mut parts: HashMap<T, Vec<T>> = HashMap::from([(loss, vec![seed])]);
    let settle = |g: &mut Graph, parts: &mut HashMap<T, Vec<T>>, t: T| -> Option<T> {
        let v = parts.get_mut(&t)?;
        if v.len() > 1 {
            *v = vec![g.sum(v)];
        }
        Some(v[0])
    };
    let forward = g.nodes.len();
    fuse_mix_bn(g, since..forward);
    for i in (since..forward).rev() {
        let node = g.nodes[i].clone();
        let douts: Vec<Option<T>> = node
            .outputs
            .iter()
            .map(|&o| settle(g, &mut parts, o))
            .collect();
        if douts.iter().all(Option::is_none) {
            continue;
        }
        let dins = rule(g, &node.op, &node.inputs, &node.outputs, &douts);
        debug_assert_eq!(dins.len(), node.inputs.len());
        let pairs = node.inputs.iter().zip(dins);
        for (x, dx) in pairs.filter_map(|(&x, dx)| dx.map(|d| (x, d))) {
            if matches!(g.def(x).kind, Kind::Input | Kind::State) {
                continue;
            }
            parts.entry(x).or_default().push(dx);
        }
    }
    // The rest (parameters, inputs of the first node) in tensor order, so
    // the graph is the same every time.
    let mut rest: Vec<T> = parts.keys().copied().collect();
    rest.sort_unstable();
    rest.into_iter()
        .filter_map(|t| settle(g, &mut parts, t).map(|d| (t, d)))
        .collect()
}

/// The mixed ops of the forward nodes `range` through their candidates'
/// batch norms (`ops::mix_bn`): where a candidate y_k = BN(z_k) is a
/// training batch norm without affine or ReLU whose outputs only the mixed
/// op reads, the batch norm becomes `BatchNormStats` (its statistics alone,
/// into a pack that the mixed op's batch norms fill in turn, starting from
/// the mixing weights) and the mixed op `MixBnForward` over z_k, which
/// applies the batch norm where it reads z_k. y_k is never written, and
/// the backward (`MixBnForward`'s rule) reads z_k. Not where the mixing
/// weights come after the first such batch norm (the chain starts from
/// them).
fn fuse_mix_bn(g: &mut Graph, range: std::ops::Range<usize>) {
    let mut producer = HashMap::new();
    for i in range.clone() {
        for &o in &g.nodes[i].outputs {
            producer.insert(o, i);
        }
    }
    // Reads over the whole graph: a tensor an earlier pass's backward reads
    // keeps its producer.
    let mut uses: HashMap<T, usize> = HashMap::new();
    for n in &g.nodes {
        for &x in &n.inputs {
            *uses.entry(x).or_insert(0) += 1;
        }
    }
    for i in range {
        let Op::WeightedSum(s) = g.nodes[i].op else {
            continue;
        };
        let ins = g.nodes[i].inputs.clone();
        let (xs, w) = (&ins[..s.k], ins[s.k]);
        let bns: Vec<Option<usize>> = xs
            .iter()
            .map(|&y| fusable_bn(g, y, &producer, &uses))
            .collect();
        let Some(&first) = bns.iter().flatten().min() else {
            continue;
        };
        if producer.get(&w).is_some_and(|&at| at > first) {
            continue;
        }
        let Op::BatchNormTrain(b) = g.nodes[first].op else {
            unreachable!("fusable_bn returns batch norms");
        };
        let ms = mix_bn::Shape {
            k: s.k,
            n: b.n,
            c: b.c,
            hw: b.hw,
        };
        let same = |&n: &usize| matches!(g.nodes[n].op, Op::BatchNormTrain(o) if (o.n, o.c, o.hw) == (b.n, b.c, b.hw));
        if ms.len() != s.n || ms.validate().is_err() || !bns.iter().flatten().all(same) {
            continue;
        }
        // The chain in node order, each batch norm's pack the next's prev.
        let mut chain: Vec<(usize, usize)> = bns
            .iter()
            .enumerate()
            .filter_map(|(k, n)| n.map(|n| (n, k)))
            .collect();
        chain.sort_unstable();
        let (mut prev, mut zs) = (w, xs.to_vec());
        for (n, k) in chain {
            let node = &g.nodes[n];
            let Op::BatchNormTrain(bs) = node.op else {
                unreachable!("fusable_bn returns batch norms");
            };
            let (z, rm, rv) = (node.inputs[0], node.outputs[3], node.outputs[4]);
            let pack = g.temp("mix.pack", &[ms.pack_len()]);
            let st = batchnorm::Stats {
                row: k,
                kk: s.k,
                first: prev == w,
            };
            g.nodes[n] = Node {
                op: Op::BatchNormStats { s: bs, st },
                inputs: vec![z, prev],
                outputs: vec![pack, rm, rv],
            };
            (prev, zs[k]) = (pack, z);
        }
        let norm = bns.iter().map(Option::is_some).collect();
        zs.extend([w, prev]);
        g.nodes[i].op = Op::MixBnForward { s: ms, norm };
        g.nodes[i].inputs = zs;
    }
}

/// The node of a mixed op's candidate y = BN(z) that `fuse_mix_bn` can
/// fold into it: a training batch norm without affine or fused ReLU (so y
/// is x̂), none of its outputs but y read, y read once (by the mixed op),
/// none pinned.
fn fusable_bn(
    g: &Graph,
    y: T,
    producer: &HashMap<T, usize>,
    uses: &HashMap<T, usize>,
) -> Option<usize> {
    let n = *producer.get(&y)?;
    let node = &g.nodes[n];
    let Op::BatchNormTrain(s) = node.op else {
        return None;
    };
    let (mean, invstd) = (node.outputs[1], node.outputs[2]);
    let read = |t: &T| uses.get(t).copied().unwrap_or(0);
    let ok = !s.affine
        && !s.relu
        && node.outputs[0] == y
        && read(&y) == 1
        && read(&mean) == 0
        && read(&invstd) == 0
        && [y, mean, invstd].iter().all(|&t| !g.def(t).pinned);
    ok.then_some(n)
}

fn rule(g: &mut Graph, op: &Op, ins: &[T], outs: &[T], douts: &[Option<T>]) -> Vec<Option<T>> {
    if let Op::Split(s) = op {
        // Parts without a gradient contribute zeros to the concatenation.
        let parts: Vec<T> = douts
            .iter()
            .zip(outs)
            .map(|(d, o)| {
                d.unwrap_or_else(|| {
                    let shape = g.def(*o).shape.clone();
                    g.state("zeros", &shape, None)
                })
            })
            .collect();
        let dx = g.temp_like("d.split", ins[0]);
        g.push(Op::Concat(s.clone()), parts, vec![dx]);
        return vec![Some(dx)];
    }
    let dy = douts[0];
    let mut none = vec![None; ins.len()];
    let Some(dy) = dy else { return none };
    match op {
        Op::Conv2d { s, bias, relu } => {
            assert!(
                !relu,
                "autodiff: a fused ReLU's gradient is not built (fuse after autodiff)"
            );
            let dx = g.temp_like("d.conv.x", ins[0]);
            g.push(Op::Conv2dBackwardInput(*s), vec![ins[1], dy], vec![dx]);
            let dw = g.temp_like("d.conv.w", ins[1]);
            g.push(Op::Conv2dBackwardWeight(*s), vec![ins[0], dy], vec![dw]);
            let mut v = vec![Some(dx), Some(dw)];
            if *bias {
                let db = g.temp_like("d.conv.b", ins[2]);
                g.push(Op::Conv2dBackwardBias(*s), vec![dy], vec![db]);
                v.push(Some(db));
            }
            v
        }
        Op::Relu => {
            let dx = g.temp_like("d.relu", ins[0]);
            g.push(Op::ReluBackward, vec![ins[0], dy], vec![dx]);
            vec![Some(dx)]
        }
        // Every addend gets dy itself: no copy.
        Op::Add => vec![Some(dy); ins.len()],
        Op::Axpy { .. } => vec![Some(dy), None, None],
        Op::Reshape => {
            let dx = g.temp_like("d.reshape", ins[0]);
            g.push(Op::Reshape, vec![dy], vec![dx]);
            vec![Some(dx)]
        }
        Op::Sigmoid | Op::Tanh | Op::Softmax(_) => {
            let back = match op {
                Op::Sigmoid => Op::SigmoidBackward,
                Op::Tanh => Op::TanhBackward,
                Op::Softmax(s) => Op::SoftmaxBackward(*s),
                _ => unreachable!(),
            };
            let dx = g.temp_like("d.act", ins[0]);
            g.push(back, vec![outs[0], dy], vec![dx]);
            vec![Some(dx)]
        }
        Op::Mul => {
            let (da, db) = (
                g.temp_like("d.mul.a", ins[0]),
                g.temp_like("d.mul.b", ins[1]),
            );
            g.push(Op::MulBackward, vec![ins[0], ins[1], dy], vec![da, db]);
            vec![Some(da), Some(db)]
        }
        Op::RowScale => {
            let dx = g.temp_like("d.row_scale.x", ins[0]);
            g.push(Op::RowScale, vec![dy, ins[1]], vec![dx]);
            let ds = g.temp_like("d.row_scale.s", ins[1]);
            let rows = g.len(ins[1]);
            g.push(
                Op::RowScaleBackwardScale { rows },
                vec![ins[0], dy],
                vec![ds],
            );
            vec![Some(dx), Some(ds)]
        }
        Op::Concat(s) => {
            let parts: Vec<T> = ins.iter().map(|x| g.temp_like("d.concat", *x)).collect();
            g.push(Op::Split(s.clone()), vec![dy], parts.clone());
            parts.into_iter().map(Some).collect()
        }
        Op::Slice { s, relu } => {
            assert!(
                !relu,
                "autodiff: a fused ReLU's gradient is not built (fuse after autodiff)"
            );
            let dx = g.temp_like("d.slice", ins[0]);
            g.push(Op::SliceBackward(*s), vec![dy], vec![dx]);
            vec![Some(dx)]
        }
        Op::MixBnForward { s, norm } => {
            let (xs, w, pack) = (&ins[..s.k], ins[s.k], ins[s.k + 1]);
            let sums = g.temp("d.mix.sums", &[s.sums_len()]);
            let dw = g.temp_like("d.mix.w", w);
            let mut dot_ins = xs.to_vec();
            dot_ins.extend([pack, dy]);
            let dot = Op::MixChannelDot {
                s: *s,
                norm: norm.clone(),
            };
            g.push(dot, dot_ins, vec![sums, dw]);
            let mix = MixShape { k: s.k, n: s.len() };
            let mut out = Vec::with_capacity(s.k + 2);
            // The batch norms' inputs' gradients two per node.
            let fused: Vec<usize> = (0..s.k).filter(|&k| norm[k]).collect();
            let mut dzs = vec![None; s.k];
            for ks in fused.chunks(2) {
                let mut ins: Vec<T> = ks.iter().map(|&k| xs[k]).collect();
                ins.extend([pack, sums, dy]);
                let outs: Vec<T> = ks.iter().map(|&k| g.temp_like("d.bn.x", xs[k])).collect();
                for (&k, &dz) in ks.iter().zip(&outs) {
                    dzs[k] = Some(dz);
                }
                let op = Op::MixBnBackward {
                    s: *s,
                    ks: ks.to_vec(),
                };
                g.push(op, ins, outs);
            }
            for (k, &x) in xs.iter().enumerate() {
                let dx = if let Some(dz) = dzs[k] {
                    dz
                } else {
                    let dx = g.temp_like("d.mix.x", x);
                    g.push(
                        Op::WeightedSumBackwardInput { s: mix, k },
                        vec![w, dy],
                        vec![dx],
                    );
                    dx
                };
                out.push(Some(dx));
            }
            out.extend([Some(dw), None]);
            out
        }
        // Its gradient comes through MixBnForward's rule; no gradient
        // reaches the pack.
        Op::BatchNormStats { .. } => vec![None, None],
        Op::WeightedSum(s) => {
            let (xs, w) = ins.split_at(s.k);
            let dxs: Vec<T> = xs.iter().map(|&x| g.temp_like("d.mix.x", x)).collect();
            g.push(
                Op::WeightedSumBackwardInputs(*s),
                vec![w[0], dy],
                dxs.clone(),
            );
            let dw = g.temp_like("d.mix.w", w[0]);
            let mut wins = xs.to_vec();
            wins.push(dy);
            g.push(Op::WeightedSumBackwardWeights(*s), wins, vec![dw]);
            dxs.into_iter().map(Some).chain([Some(dw)]).collect()
        }
        Op::L1Loss => {
            let dp = g.temp_like("d.l1", ins[0]);
            g.push(Op::L1LossBackward, vec![ins[0], ins[1], dy], vec![dp]);
            vec![Some(dp), None]
        }
        Op::BatchNormTrain(s) => {
            let dx = g.temp_like("d.bn.x", ins[0]);
            let (mean, invstd) = (outs[1], outs[2]);
            let mut bins = vec![ins[0], mean, invstd];
            let mut bouts = vec![dx];
            if s.affine {
                bins.push(ins[1]);
                let dgamma = g.temp_like("d.bn.gamma", ins[1]);
                let dbeta = g.temp_like("d.bn.beta", ins[2]);
                bouts.extend([dgamma, dbeta]);
            }
            bins.push(dy);
            g.push(Op::BatchNormTrainBackward(*s), bins, bouts.clone());
            bouts.into_iter().map(Some).collect()
        }
        Op::BatchNormEval(_) => {
            panic!("autodiff through evaluation-mode batch norm is not supported")
        }
        Op::MaxPool(s) => {
            let dx = g.temp_like("d.maxpool", ins[0]);
            g.push(Op::MaxPoolBackward(*s), vec![outs[1], dy], vec![dx]);
            vec![Some(dx)]
        }
        Op::AvgPool(s) => {
            let dx = g.temp_like("d.avgpool", ins[0]);
            g.push(Op::AvgPoolBackward(*s), vec![dy], vec![dx]);
            vec![Some(dx)]
        }
        Op::GlobalAvgPool { hw } => {
            let dx = g.temp_like("d.gap", ins[0]);
            g.push(Op::GlobalAvgPoolBackward { hw: *hw }, vec![dy], vec![dx]);
            vec![Some(dx)]
        }
        Op::Linear { s, bias } => linear_rule(g, *s, *bias, ins, dy),
        Op::LogSoftmaxXent(s) => {
            let dlogits = g.temp_like("d.logits", ins[0]);
            g.push(
                Op::LogSoftmaxXentBackward(*s),
                vec![outs[1], ins[1], dy],
                vec![dlogits],
            );
            none[0] = Some(dlogits);
            none
        }
        Op::PoolBatchNorm { .. } => {
            panic!("autodiff: a fused pool + batch norm has no gradient rule (fuse after autodiff)")
        }
        Op::ConcatSums { .. } => {
            panic!("autodiff: fused adds into a concatenation have no gradient rule (fuse after autodiff)")
        }
        other => panic!("{other:?} is not differentiable (a backward or update op)"),
    }
}

fn linear_rule(g: &mut Graph, s: LinearShape, bias: bool, ins: &[T], dy: T) -> Vec<Option<T>> {
    let dx = g.temp_like("d.linear.x", ins[0]);
    g.push(Op::LinearBackwardInput(s), vec![ins[1], dy], vec![dx]);
    let dw = g.temp_like("d.linear.w", ins[1]);
    g.push(Op::LinearBackwardWeight(s), vec![ins[0], dy], vec![dw]);
    let mut v = vec![Some(dx), Some(dw)];
    if bias {
        let db = g.temp_like("d.linear.b", ins[2]);
        g.push(Op::LinearBackwardBias(s), vec![dy], vec![db]);
        v.push(Some(db));
    }
    v
}
