//! ReLUs fused into the convolutions that read them: in a graph without
//! gradients through them, conv(relu(x)) reads x and applies max(·, 0) as it
//! loads (`Spec::relu` of the generated kernels), so the ReLU's pass over
//! the tensor (a read, a write and a dispatch) goes. Every op of the PNAS
//! space but the pools starts with a ReLU, so a measured cell's passes
//! hold one per cell input and block output each op reads.

use std::collections::HashMap;

use super::ir::{Graph, Op, T};
use crate::ops::conv2d_rows;

/// Fuses every ReLU whose output only convolutions read (as their input,
/// with kernels that fuse: `conv2d_rows::fits_forward`), that is not pinned,
/// and whose input no node writes before the last of them reads it. Run
/// it after any autodiff: a fused convolution has no gradient rule.
/// Returns how many ReLUs went.
pub fn fuse_relu_reads(g: &mut Graph) -> usize {
    let mut readers: HashMap<T, Vec<usize>> = HashMap::new();
    for (i, n) in g.nodes.iter().enumerate() {
        for &x in &n.inputs {
            readers.entry(x).or_default().push(i);
        }
    }
    let fuses = |j: usize, r: T| match &g.nodes[j].op {
        Op::Conv2d { s, relu: false, .. } => {
            let ins = &g.nodes[j].inputs;
            ins[0] == r && !ins[1..].contains(&r) && conv2d_rows::fits_forward(s)
        }
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
            let Op::Conv2d { relu, .. } = &mut n.op else {
                unreachable!("only convolutions read a fused ReLU");
            };
            *relu = true;
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
}
