//! Forward-only fusions, for graphs without gradients through the ops
//! fused (run them after any autodiff), each saving an op's pass over a
//! tensor (a read, a write and a dispatch):
//!
//! - ReLUs fused into the convolutions that read them: conv(relu(x)) reads
//!   x and applies max(·, 0) as it loads (`Spec::relu` of the generated
//!   kernels). Every op of the PNAS space but the pools starts with a
//!   ReLU, so a measured cell's passes hold one per cell input and block
//!   output each op reads.
//! - Adds fused into the concatenation that alone reads them: a cell's
//!   output is the concatenation of its block outputs, each the sum of two
//!   ops; a part that nothing else reads is added as it is inserted
//!   (`Op::ConcatSums`), never written whole and read back.
//! - Evaluation batch norms fused into the pooling before them: the
//!   DARTS supernet's pools are followed by a batch norm, which the
//!   generated pooling kernels apply as they write (`pool_rows::Bn`).

use std::collections::HashMap;

use super::ir::{Graph, Node, Op, T};
use crate::ops::{conv2d_rows, pool_rows};

/// Readers of each tensor, by node index (a node once per input it reads
/// the tensor as).
pub(crate) fn readers(g: &Graph) -> HashMap<T, Vec<usize>> {
    let mut readers: HashMap<T, Vec<usize>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for &x in &n.inputs {
            readers.entry(x).or_default().push(i);
        }
    }
    readers
}

/// The node writing each tensor (the last, where several do).
pub(crate) fn writers(g: &Graph) -> HashMap<T, usize> {
    g.nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |&t| (t, i)))
        .collect()
}

/// The node that alone reads `t` (once), unless `t` is pinned: where an
/// op writing `t` may hand its work to that reader.
pub(crate) fn sole_reader(g: &Graph, readers: &HashMap<T, Vec<usize>>, t: T) -> Option<usize> {
    match readers.get(&t).map(Vec::as_slice) {
        Some(&[j]) if !g.def(t).pinned => Some(j),
        _ => None,
    }
}

/// Fuses every `BatchNormEval` without a ReLU whose input is a max or
/// average pooling's output that nothing else reads (nor, for max, its
/// argmax), not pinned, of a shape the generated kernels take, and whose
/// statistics no node between them writes: one `PoolBatchNorm` node, where
/// the pool was, writes the batch norm's output. Returns how many batch
/// norms went.
pub fn fuse_pool_batchnorms(g: &mut Graph) -> usize {
    let readers = readers(g);
    // Pool node → its batch norm's node.
    let mut into: HashMap<usize, usize> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        let s = match &n.op {
            Op::MaxPool(s)
                if !readers.contains_key(&n.outputs[1]) && !g.def(n.outputs[1]).pinned =>
            {
                s
            }
            Op::AvgPool(s) => s,
            _ => continue,
        };
        let Some(j) = sole_reader(g, &readers, n.outputs[0]) else {
            continue;
        };
        if let Op::BatchNormEval(bn) = &g.nodes[j].op {
            let fits = !bn.relu && bn.c == s.c && pool_rows::fits(s);
            // The fused node reads the statistics where the pool ran: no
            // node may write them in between.
            let stats = &g.nodes[j].inputs[1..];
            let written = (i + 1..j).any(|k| g.nodes[k].outputs.iter().any(|o| stats.contains(o)));
            if fits && !written && g.nodes[j].inputs[0] == n.outputs[0] {
                into.insert(i, j);
            }
        }
    }
    let gone: std::collections::HashSet<usize> = into.values().copied().collect();
    let old = std::mem::take(&mut g.nodes);
    for (i, n) in old.iter().enumerate() {
        if gone.contains(&i) {
            continue;
        }
        let Some(&j) = into.get(&i) else {
            g.nodes.push(n.clone());
            continue;
        };
        let bn_node = &old[j];
        let Op::BatchNormEval(bn) = bn_node.op else {
            unreachable!("fused into a batch norm");
        };
        let (pool, kind) = match n.op {
            Op::MaxPool(s) => (s, pool_rows::Kind::Max),
            Op::AvgPool(s) => (s, pool_rows::Kind::Avg),
            _ => unreachable!("only pools fuse a batch norm"),
        };
        let mut inputs = vec![n.inputs[0]];
        inputs.extend(&bn_node.inputs[1..]);
        g.nodes.push(Node {
            op: Op::PoolBatchNorm { pool, kind, bn },
            inputs,
            outputs: bn_node.outputs.clone(),
        });
    }
    gone.len()
}

/// Fuses into each concatenation the two-input adds whose sums only it
/// reads (once), not pinned, and whose addends no node writes between the
/// add and the concatenation: one `ConcatSums` node where the
/// concatenation was. Returns how many adds went.
pub fn fuse_add_concats(g: &mut Graph) -> usize {
    let readers = readers(g);
    let writer = writers(g);
    // Add node → the concatenation that takes it.
    let mut gone: HashMap<usize, usize> = HashMap::new();
    for (j, n) in g.nodes.iter().enumerate() {
        if !matches!(n.op, Op::Concat(_)) {
            continue;
        }
        for &t in &n.inputs {
            let Some(&i) = writer.get(&t) else { continue };
            let add = &g.nodes[i];
            let fits = matches!(add.op, Op::Add)
                && add.inputs.len() == 2
                && sole_reader(g, &readers, t) == Some(j)
                && !(i + 1..j).any(|k| g.nodes[k].outputs.iter().any(|o| add.inputs.contains(o)));
            if fits {
                gone.insert(i, j);
            }
        }
    }
    if gone.is_empty() {
        return 0;
    }
    let sums: HashMap<T, Vec<T>> = gone
        .keys()
        .map(|&i| (g.nodes[i].outputs[0], g.nodes[i].inputs.clone()))
        .collect();
    let old = std::mem::take(&mut g.nodes);
    for (i, mut n) in old.into_iter().enumerate() {
        if gone.contains_key(&i) {
            continue;
        }
        if let Op::Concat(s) = &n.op {
            if n.inputs.iter().any(|t| sums.contains_key(t)) {
                let (mut inputs, mut addends) = (Vec::new(), Vec::new());
                for t in &n.inputs {
                    let parts = sums.get(t).cloned().unwrap_or_else(|| vec![*t]);
                    addends.push(parts.len());
                    inputs.extend(parts);
                }
                n.op = Op::ConcatSums {
                    s: s.clone(),
                    addends,
                };
                n.inputs = inputs;
            }
        }
        g.nodes.push(n);
    }
    gone.len()
}

/// Fuses every ReLU whose output only convolutions (as their input, with
/// kernels that fuse: `conv2d_rows::fits_forward`) and slices read (the
/// ReLU before FactorizedReduce's two branches), that is not pinned,
/// and whose input no node writes before the last of them reads it. Run
/// it after any autodiff: a fused convolution has no gradient rule.
/// Returns how many ReLUs went.
pub fn fuse_relu_reads(g: &mut Graph) -> usize {
    let readers = readers(g);
    let fuses = |j: usize, r: T| match &g.nodes[j].op {
        Op::Conv2d { s, relu: false, .. } => {
            let ins = &g.nodes[j].inputs;
            ins[0] == r && !ins[1..].contains(&r) && conv2d_rows::fits_forward(s)
        }
        Op::Slice { relu: false, .. } => true,
        _ => false,
    };
    // ReLU node → its input, for each ReLU that goes.
    let mut gone: HashMap<usize, T> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if !matches!(n.op, Op::Relu) || g.def(n.outputs[0]).pinned {
            continue;
        }
        let (x, r) = (n.inputs[0], n.outputs[0]);
        let Some(rs) = readers.get(&r) else {
            continue;
        };
        let last = *rs.iter().max().expect("a reader");
        let kept = (i + 1..=last).any(|k| g.nodes[k].outputs.contains(&x));
        if !kept && rs.iter().all(|&j| fuses(j, r)) {
            gone.insert(i, x);
        }
    }
    let relu_in: HashMap<T, T> = gone
        .iter()
        .map(|(&i, &x)| (g.nodes[i].outputs[0], x))
        .collect();
    let old = std::mem::take(&mut g.nodes);
    for (i, mut n) in old.into_iter().enumerate() {
        if gone.contains_key(&i) {
            continue;
        }
        if let Some(&x) = n.inputs.first().and_then(|r| relu_in.get(r)) {
            match &mut n.op {
                Op::Conv2d { relu, .. } | Op::Slice { relu, .. } => *relu = true,
                _ => unreachable!("only convolutions and slices read a fused ReLU"),
            }
            n.inputs[0] = x;
        }
        g.nodes.push(n);
    }
    gone.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::CpuExec;
    use crate::ops::conv2d::Conv2dShape;
    use crate::verify;

    fn shape(c: usize, k: usize, groups: usize, stride: usize) -> Conv2dShape {
        Conv2dShape {
            n: 2,
            c_in: c,
            h: 7,
            w: 7,
            c_out: c,
            kh: k,
            kw: k,
            stride,
            pad_h: k / 2,
            pad_w: k / 2,
            dilation: 1,
            groups,
        }
    }

    /// A ReLU read by a depthwise and a dense convolution fuses into both;
    /// one also read by an add, one pinned, and one read by a convolution
    /// the generated kernels do not take (stride 3) stay; the outputs are
    /// the same.
    #[test]
    fn fusing_keeps_the_outputs() {
        let mut rng = verify::rng(5);
        let c = 3;
        let mut g = Graph::new();
        let x = g.input("x", &[2, c, 7, 7]);
        let dw_s = shape(c, 3, c, 1);
        let pw_s = shape(c, 1, 1, 1);
        let wide_s = shape(c, 3, 1, 3);
        let dw = g.param("dw", &[c, 1, 3, 3], verify::randn(&mut rng, c * 9));
        let pw = g.param("pw", &[c, c, 1, 1], verify::randn(&mut rng, c * c));
        let wide = g.param("wide", &[c, c, 3, 3], verify::randn(&mut rng, c * c * 9));
        let r = g.relu(x);
        let a = g.conv2d(r, dw, None, dw_s);
        let b = g.conv2d(r, pw, None, pw_s);
        let y = g.add(a, b); // a temp: its ReLU may fuse
        let r2 = g.relu(y);
        let c2 = g.conv2d(r2, pw, None, pw_s);
        let kept_add = g.add(r2, c2); // r2 read by an add: stays
        let r3 = g.relu(c2);
        g.pin(r3); // pinned: stays
        let r4 = g.relu(a);
        let strided = g.conv2d(r4, wide, None, wide_s); // stride 3: stays
        let outs = [kept_add, r3, strided];
        for &o in &outs {
            g.pin(o);
        }
        let run = |g: &Graph| -> Vec<Vec<f32>> {
            let mut exec = CpuExec::new(g);
            exec.write(x, &verify::randn(&mut verify::rng(6), 2 * c * 49));
            exec.step(g);
            outs.iter().map(|&t| exec.read(t).to_vec()).collect()
        };
        let before = run(&g);
        let relus = |g: &Graph| g.nodes.iter().filter(|n| matches!(n.op, Op::Relu)).count();
        assert_eq!(relus(&g), 4);
        assert_eq!(fuse_relu_reads(&mut g), 1);
        assert_eq!(relus(&g), 3);
        let fused = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Conv2d { relu: true, .. }));
        assert_eq!(fused.count(), 2);
        for (a, b) in before.iter().zip(run(&g)) {
            let c = verify::compare("fuse", "cpu", "", a, &b, verify::FORWARD);
            assert!(c.pass, "{:?}", c.detail);
        }
    }

    /// Adds only a concatenation reads fuse into it; an add another node
    /// also reads, a pinned one and a plain part stay; the outputs are the
    /// same.
    #[test]
    fn adds_fuse_into_a_concatenation() {
        let mut g = Graph::new();
        let dims = [2, 3, 4, 4];
        let xs: Vec<T> = (0..6).map(|k| g.input(&format!("x{k}"), &dims)).collect();
        let a = g.add(xs[0], xs[1]); // fuses
        let b = g.add(xs[2], xs[3]); // also read by `later`: stays
        let later = g.add(b, xs[4]);
        let c = g.add(xs[4], xs[5]);
        g.pin(c); // pinned: stays
        let y = g.concat(&[a, xs[5], b, c, later]);
        g.pin(y);
        let run = |g: &Graph| -> Vec<f32> {
            let mut exec = CpuExec::new(g);
            for (k, &x) in xs.iter().enumerate() {
                exec.write(x, &verify::randn(&mut verify::rng(20 + k as u64), 96));
            }
            exec.step(g);
            exec.read(y).to_vec()
        };
        let before = run(&g);
        // `later` is read only by the concatenation: it fuses too.
        assert_eq!(fuse_add_concats(&mut g), 2);
        let adds = g.nodes.iter().filter(|n| matches!(n.op, Op::Add)).count();
        assert_eq!(adds, 2);
        let fused: Vec<&Vec<usize>> = g
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::ConcatSums { addends, .. } => Some(addends),
                _ => None,
            })
            .collect();
        assert_eq!(fused, [&vec![2, 1, 1, 1, 2]]);
        let c = verify::compare("fuse", "cpu", "", &before, &run(&g), verify::FORWARD);
        assert!(c.pass, "{:?}", c.detail);
    }

    /// FactorizedReduce's ReLU, read by a strided convolution and a slice,
    /// fuses into both; the outputs are the same.
    #[test]
    fn a_relu_fuses_into_a_slice() {
        use crate::ops::layout::SliceShape;
        let mut rng = verify::rng(7);
        let c = 4;
        let mut g = Graph::new();
        let x = g.input("x", &[2, c, 8, 8]);
        let s = Conv2dShape {
            h: 8,
            w: 8,
            ..shape(c, 1, 1, 2)
        };
        let w1 = g.param("w1", &[c, c, 1, 1], verify::randn(&mut rng, c * c));
        let w2 = g.param("w2", &[c, c, 1, 1], verify::randn(&mut rng, c * c));
        let r = g.relu(x);
        let a = g.conv2d(r, w1, None, s);
        let shifted = g.slice(r, SliceShape::factorized_reduce(2, c, 8, 8));
        let b = g.conv2d(shifted, w2, None, s);
        let y = g.concat(&[a, b]);
        g.pin(y);
        let run = |g: &Graph| -> Vec<f32> {
            let mut exec = CpuExec::new(g);
            exec.write(x, &verify::randn(&mut verify::rng(8), 2 * c * 64));
            exec.step(g);
            exec.read(y).to_vec()
        };
        let before = run(&g);
        assert_eq!(fuse_relu_reads(&mut g), 1);
        assert!(!g.nodes.iter().any(|n| matches!(n.op, Op::Relu)));
        assert!(g
            .nodes
            .iter()
            .any(|n| matches!(n.op, Op::Slice { relu: true, .. })));
        let c = verify::compare("fuse", "cpu", "", &before, &run(&g), verify::FORWARD);
        assert!(c.pass, "{:?}", c.detail);
    }

    /// Max and average pools into evaluation batch norms (with and
    /// without γ, β) fuse; a pool whose output is pinned, a batch norm
    /// with a ReLU and a pool another node also reads stay; the outputs
    /// are the same.
    #[test]
    fn pool_fusing_keeps_the_outputs() {
        use crate::ops::{batchnorm, pool};
        let mut rng = verify::rng(7);
        let (n, c, hw) = (2, 3, 7);
        let mut g = Graph::new();
        let x = g.input("x", &[n, c, hw, hw]);
        let ps = pool::Shape {
            n,
            c,
            h: hw,
            w: hw,
            k: 3,
            stride: 2,
            pad: 1,
        };
        let ohw = ps.out_h() * ps.out_w();
        let rm = g.state("rm", &[c], Some(verify::randn(&mut rng, c)));
        let rv = g.state("rv", &[c], Some(verify::uniform(&mut rng, c, 0.5, 2.0)));
        let gamma = g.param("gamma", &[c], verify::uniform(&mut rng, c, 0.5, 1.5));
        let beta = g.param("beta", &[c], verify::randn(&mut rng, c));
        let plain = batchnorm::Shape::new(n, c, ohw, false);
        let affine = batchnorm::Shape::new(n, c, ohw, true);
        let mp = g.max_pool(x, ps);
        let a = g.batchnorm_eval(mp, None, (rm, rv), plain);
        let ap = g.avg_pool(x, ps);
        let b = g.batchnorm_eval(ap, Some((gamma, beta)), (rm, rv), affine);
        let kept = g.avg_pool(x, ps);
        g.pin(kept); // pinned: stays
        let d = g.batchnorm_eval(kept, None, (rm, rv), plain);
        let r = g.max_pool(x, ps);
        let e = g.batchnorm_eval(r, None, (rm, rv), plain.with_relu()); // ReLU: stays
        let shared = g.avg_pool(x, ps);
        let f = g.batchnorm_eval(shared, None, (rm, rv), plain);
        let f2 = g.add(shared, f); // read twice: stays
        let late = g.max_pool(x, ps);
        let whole = batchnorm::Shape::new(n, c, hw * hw, false);
        let t = g.batchnorm_train(x, None, (rm, rv), whole); // writes rm, rv
        let h = g.batchnorm_eval(late, None, (rm, rv), plain); // so this stays
        let outs = [a, b, kept, d, e, f2, t, h];
        for &o in &outs {
            g.pin(o);
        }
        let run = |g: &Graph| -> Vec<Vec<f32>> {
            let mut exec = CpuExec::new(g);
            exec.write(x, &verify::randn(&mut verify::rng(8), n * c * hw * hw));
            exec.step(g);
            outs.iter().map(|&t| exec.read(t).to_vec()).collect()
        };
        let before = run(&g);
        assert_eq!(fuse_pool_batchnorms(&mut g), 2);
        let fused = g
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::PoolBatchNorm { .. }));
        assert_eq!(fused.count(), 2);
        for (a, b) in before.iter().zip(run(&g)) {
            let c = verify::compare("fuse", "cpu", "", a, &b, verify::FORWARD);
            assert!(c.pass, "{:?}", c.detail);
        }
    }
}
