//! The CPU reference executor: runs a graph node by node with the ops' CPU
//! twins, so a whole step (loss, every gradient, every update) can be
//! compared with the GPU plan. u32 tensors (labels, argmax) are held as
//! their bit patterns in f32 storage, as they are 32-bit words on the GPU.

use super::ir::{Graph, Kind, Op, T};
use crate::ops::{
    affine_scaling, batchnorm, elementwise, layout, loss, matmul, mix, mix_bn, optim, pool,
    pool_rows, softmax_xent,
};

pub struct CpuExec {
    pub vals: Vec<Vec<f32>>,
}

fn words(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}
fn from_words(v: &[u32]) -> Vec<f32> {
    v.iter().map(|&u| f32::from_bits(u)).collect()
}

impl CpuExec {
    pub fn new(g: &Graph) -> CpuExec {
        let vals = g
            .tensors
            .iter()
            .map(|d| match (&d.init, d.kind) {
                (Some(v), _) => v.clone(),
                (None, Kind::Temp) => Vec::new(),
                (None, _) => vec![0.0; d.len()],
            })
            .collect();
        CpuExec { vals }
    }

    pub fn write(&mut self, t: T, data: &[f32]) {
        assert_eq!(self.vals[t.0].len(), data.len(), "write size");
        self.vals[t.0].copy_from_slice(data);
    }
    pub fn write_u32(&mut self, t: T, data: &[u32]) {
        self.write(t, &from_words(data));
    }
    pub fn read(&self, t: T) -> &[f32] {
        &self.vals[t.0]
    }

    /// Run every node in order.
    pub fn step(&mut self, g: &Graph) {
        let live = g.live_nodes();
        for (node, _) in g.nodes.iter().zip(live).filter(|(_, l)| *l) {
            // Outputs are taken out (in-place ones keep their values), so
            // inputs can be borrowed while they are written.
            let mut outs: Vec<Vec<f32>> = node
                .outputs
                .iter()
                .map(|t| std::mem::take(&mut self.vals[t.0]))
                .collect();
            let ins: Vec<&[f32]> = node
                .inputs
                .iter()
                .map(|t| self.vals[t.0].as_slice())
                .collect();
            run(&node.op, &ins, &mut outs);
            for (t, v) in node.outputs.iter().zip(outs) {
                debug_assert_eq!(v.len(), g.len(*t), "{:?} wrote {}", node.op, g.def(*t).name);
                self.vals[t.0] = v;
            }
        }
    }
}

fn opt<'a>(ins: &[&'a [f32]], i: usize, present: bool) -> Option<&'a [f32]> {
    present.then(|| ins[i])
}

fn run(op: &Op, ins: &[&[f32]], outs: &mut [Vec<f32>]) {
    use crate::ops::conv2d::cpu as conv;
    match op {
        Op::Conv2d { s, bias, relu } => {
            let x = if *relu {
                std::borrow::Cow::Owned(elementwise::cpu::relu_forward(ins[0]))
            } else {
                std::borrow::Cow::Borrowed(ins[0])
            };
            outs[0] = conv::forward(s, &x, ins[1], opt(ins, 2, *bias))
        }
        Op::Conv2dBackwardInput(s) => outs[0] = conv::backward_input(s, ins[0], ins[1]),
        Op::Conv2dBackwardWeight(s) => outs[0] = conv::backward_weight(s, ins[0], ins[1]),
        Op::Conv2dBackwardBias(s) => outs[0] = conv::backward_bias(s, ins[0]),
        Op::Relu => outs[0] = elementwise::cpu::relu_forward(ins[0]),
        Op::ReluBackward => outs[0] = elementwise::cpu::relu_backward(ins[0], ins[1]),
        Op::Add => outs[0] = elementwise::cpu::sum_forward(ins),
        Op::Reshape => outs[0] = ins[0].to_vec(),
        Op::Sigmoid => outs[0] = elementwise::cpu::sigmoid_forward(ins[0]),
        Op::SigmoidBackward => outs[0] = elementwise::cpu::sigmoid_backward(ins[0], ins[1]),
        Op::Tanh => outs[0] = elementwise::cpu::tanh_forward(ins[0]),
        Op::TanhBackward => outs[0] = elementwise::cpu::tanh_backward(ins[0], ins[1]),
        Op::Mul => outs[0] = elementwise::cpu::mul_forward(ins[0], ins[1]),
        Op::MulBackward => {
            (outs[0], outs[1]) = elementwise::cpu::mul_backward(ins[0], ins[1], ins[2]);
        }
        Op::RowScale => outs[0] = elementwise::cpu::row_scale_forward(ins[0], ins[1]),
        Op::RowScaleBackwardScale { rows } => {
            outs[0] = elementwise::cpu::row_scale_backward_scale(ins[0], ins[1], *rows)
        }
        Op::Concat(s) => outs[0] = layout::cpu::concat_forward(s, ins),
        Op::ConcatSums { s, addends } => {
            outs[0] = layout::cpu::concat_sums_forward(s, addends, ins)
        }
        Op::Split(s) => {
            for (o, part) in outs.iter_mut().zip(layout::cpu::split_forward(s, ins[0])) {
                *o = part;
            }
        }
        Op::Slice { s, relu } => {
            let y = layout::cpu::slice_forward(s, ins[0]);
            // ReLU after the slice: the same, as relu(0) = 0 fills the padding.
            outs[0] = if *relu {
                elementwise::cpu::relu_forward(&y)
            } else {
                y
            }
        }
        Op::SliceBackward(s) => outs[0] = layout::cpu::slice_backward(s, ins[0]),
        Op::WeightedSum(s) => outs[0] = mix::cpu::forward(&ins[..s.k], ins[s.k]),
        Op::WeightedSumBackwardInputs(_) => {
            for (o, d) in outs
                .iter_mut()
                .zip(mix::cpu::backward_inputs(ins[0], ins[1]))
            {
                *o = d;
            }
        }
        Op::WeightedSumBackwardWeights(s) => {
            outs[0] = mix::cpu::backward_weights(&ins[..s.k], ins[s.k])
        }
        Op::Softmax(s) => outs[0] = softmax_xent::cpu::softmax_forward(ins[0], s.cols),
        Op::SoftmaxBackward(s) => {
            outs[0] = softmax_xent::cpu::softmax_backward(ins[0], ins[1], s.cols)
        }
        Op::L1Loss => outs[0] = vec![loss::cpu::l1_forward(ins[0], ins[1])],
        Op::L1LossBackward => outs[0] = loss::cpu::l1_backward(ins[0], ins[1], ins[2][0]),
        Op::WeightedSumBackwardInput { k, .. } => {
            outs[0] = ins[1].iter().map(|&g| ins[0][*k] * g).collect()
        }
        Op::MixBnForward { s, norm } => {
            outs[0] = mix_bn::cpu::forward(s, norm, &ins[..s.k], ins[s.k + 1])
        }
        Op::MixChannelDot { s, norm } => {
            let (xs, rest) = ins.split_at(s.k);
            (outs[0], outs[1]) = mix_bn::cpu::channel_dot(s, norm, xs, rest[0], rest[1]);
        }
        Op::MixBnBackward { s, ks } => {
            let (zs, rest) = ins.split_at(ks.len());
            for (j, &k) in ks.iter().enumerate() {
                outs[j] = mix_bn::cpu::bn_backward(s, k, zs[j], rest[0], rest[1], rest[2]);
            }
        }
        Op::FoldBatchNorm {
            s,
            per,
            c_off,
            bias,
        } => {
            let at = usize::from(*bias);
            let (w, b) = batchnorm::cpu::fold(
                s,
                *per,
                *c_off,
                ins[0],
                opt(ins, 1, *bias),
                ins[1 + at],
                ins[2 + at],
                opt(ins, 3 + at, s.affine),
                opt(ins, 4 + at, s.affine),
            );
            (outs[0], outs[1]) = (w, b);
        }
        Op::BatchNormStats { s, st } => {
            let (pack, running) = outs.split_at_mut(1);
            let (rm, rv) = running.split_at_mut(1);
            pack[0] = batchnorm::cpu::train_stats(s, *st, ins[0], ins[1], &mut rm[0], &mut rv[0]);
        }
        Op::BatchNormTrain(s) => {
            let (rm, rv) = outs.split_at_mut(4);
            let (y, mean, invstd) = batchnorm::cpu::train_forward(
                s,
                ins[0],
                opt(ins, 1, s.affine),
                opt(ins, 2, s.affine),
                &mut rm[3],
                &mut rv[0],
            );
            (outs[0], outs[1], outs[2]) = (y, mean, invstd);
        }
        Op::BatchNormTrainBackward(s) => {
            let gamma = opt(ins, 3, s.affine);
            let dy = ins[ins.len() - 1];
            let (dx, dgamma, dbeta) =
                batchnorm::cpu::train_backward(s, ins[0], ins[1], ins[2], gamma, dy);
            outs[0] = dx;
            if s.affine {
                (outs[1], outs[2]) = (dgamma, dbeta);
            }
        }
        Op::BatchNormEval(s) => {
            outs[0] = batchnorm::cpu::eval_forward(
                s,
                ins[0],
                ins[1],
                ins[2],
                opt(ins, 3, s.affine),
                opt(ins, 4, s.affine),
            )
        }
        Op::MaxPool(s) => {
            let (y, arg) = pool::cpu::max_pool_forward(s, ins[0]);
            (outs[0], outs[1]) = (y, from_words(&arg));
        }
        Op::PoolBatchNorm { pool: s, kind, bn } => {
            let y = match kind {
                pool_rows::Kind::Max => pool::cpu::max_pool_forward(s, ins[0]).0,
                pool_rows::Kind::Avg => pool::cpu::avg_pool_forward(s, ins[0]),
            };
            let (g, b) = (opt(ins, 3, bn.affine), opt(ins, 4, bn.affine));
            outs[0] = batchnorm::cpu::eval_forward(bn, &y, ins[1], ins[2], g, b);
        }
        Op::MaxPoolBackward(s) => outs[0] = pool::cpu::max_pool_backward(s, &words(ins[0]), ins[1]),
        Op::AvgPool(s) => outs[0] = pool::cpu::avg_pool_forward(s, ins[0]),
        Op::AvgPoolBackward(s) => outs[0] = pool::cpu::avg_pool_backward(s, ins[0]),
        Op::GlobalAvgPool { hw } => outs[0] = pool::cpu::global_avg_pool_forward(ins[0], *hw),
        Op::GlobalAvgPoolBackward { hw } => {
            outs[0] = pool::cpu::global_avg_pool_backward(ins[0], *hw)
        }
        Op::Linear { s, bias } => {
            outs[0] = matmul::cpu::linear_forward(s, ins[0], ins[1], opt(ins, 2, *bias))
        }
        Op::LinearBackwardInput(s) => {
            outs[0] = matmul::cpu::linear_backward_input(s, ins[0], ins[1])
        }
        Op::LinearBackwardWeight(s) => {
            outs[0] = matmul::cpu::linear_backward_weight(s, ins[0], ins[1])
        }
        Op::LinearBackwardBias(s) => outs[0] = matmul::cpu::linear_backward_bias(s, ins[0]),
        Op::LogSoftmaxXent(s) => {
            let (loss, probs) =
                softmax_xent::cpu::log_softmax_xent_forward(ins[0], &words(ins[1]), s.cols);
            (outs[0], outs[1]) = (vec![loss], probs);
        }
        Op::LogSoftmaxXentBackward(s) => {
            outs[0] = softmax_xent::cpu::log_softmax_xent_backward(
                ins[0],
                &words(ins[1]),
                s.cols,
                ins[2][0],
            )
        }
        Op::CorrectCount(s) => {
            outs[0] = vec![softmax_xent::cpu::correct_count(
                ins[0],
                &words(ins[1]),
                s.cols,
            )]
        }
        Op::Accumulate => {
            for (a, x) in outs[0].iter_mut().zip(ins[0]) {
                *a += x;
            }
        }
        Op::ClipCoef { max_norm } => outs[0] = vec![optim::cpu::clip_coef(ins, *max_norm)],
        Op::Axpy { alpha } => outs[0] = elementwise::cpu::axpy(ins[0], ins[1], ins[2][0], *alpha),
        Op::ScaledNorm { scale, inverse } => {
            outs[0] = vec![optim::cpu::scaled_norm(ins, *scale, *inverse)]
        }
        Op::Sgd(h) => {
            let n = ins.len() - 1;
            let (param, mom) = outs.split_at_mut(n);
            for k in 0..n {
                let mut buf = Some(std::mem::take(&mut mom[k]));
                optim::cpu::sgd(h, ins[n][0], &mut param[k], ins[k], &mut buf);
                mom[k] = buf.expect("momentum buffer");
            }
        }
        Op::AffineScaling { h, segments } => {
            affine_scaling::cpu::step(h, &mut outs[0], ins[0], segments)
        }
        Op::Adam(h) => {
            let n = ins.len() - 1;
            let (param, mv) = outs.split_at_mut(n);
            let (m, v) = mv.split_at_mut(n);
            for k in 0..n {
                optim::cpu::adam(h, ins[n][0], &mut param[k], ins[k], &mut m[k], &mut v[k]);
            }
        }
    }
}
