//! The graph IR: tensors (with a kind that decides where they live) and
//! nodes (an op, its inputs, its outputs), in execution order. A network is
//! built once as a graph; `autodiff` appends its backward, `optim` nodes
//! append the updates, and one graph is one training step.

use crate::ops::{
    affine_scaling::AffineHyper,
    batchnorm,
    conv2d::Conv2dShape,
    elementwise::MAX_ADDENDS,
    layout::{ConcatShape, SliceShape},
    matmul::LinearShape,
    mix::MixShape,
    mix_bn,
    optim::AdamHyper,
    optim::SgdHyper,
    pool,
    softmax_xent::SoftmaxShape,
};

/// A tensor of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct T(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written by the host before a step (a batch): owns its buffer.
    Input,
    /// A trained weight: owns its buffer, has initial values.
    Param,
    /// Persistent state (running statistics, optimizer moments, constants,
    /// metric accumulators): owns its buffer, starts at its init or zeros.
    State,
    /// An intermediate value: shares memory with others by lifetime.
    Temp,
}

#[derive(Debug, Clone)]
pub struct TensorDef {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: Kind,
    /// Initial contents (Param and State); zeros when None.
    pub init: Option<Vec<f32>>,
    /// A temp kept in its own buffer so it can be read after a step
    /// (tests, debugging); never shares memory.
    pub pinned: bool,
}

impl TensorDef {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The engine's ops as graph nodes. Inputs and outputs are listed in the
/// order given in each comment; `*` marks a persistent tensor updated in
/// place (it is an output, and its old value is read).
#[derive(Debug, Clone)]
pub enum Op {
    /// [x, w, (b)] → [y]; with `relu`, y = conv(max(x, 0)): a ReLU fused
    /// into the reads (`graph::fuse_relu_reads`, after any autodiff).
    Conv2d {
        s: Conv2dShape,
        bias: bool,
        relu: bool,
    },
    /// [w, dy] → [dx]
    Conv2dBackwardInput(Conv2dShape),
    /// [x, dy] → [dw]
    Conv2dBackwardWeight(Conv2dShape),
    /// [dy] → [db]
    Conv2dBackwardBias(Conv2dShape),
    /// [x] → [y]
    Relu,
    /// [x, dy] → [dx]
    ReluBackward,
    /// [a, b, ...] → [y]: the sum of 2 to `MAX_ADDENDS` equal-length
    /// tensors, left to right (gradient accumulation sums many at once).
    Add,
    /// [x] → [y]: the same elements under another shape (a copy, so
    /// every tensor keeps one buffer of its own).
    Reshape,
    /// [x] → [y]
    Sigmoid,
    /// [y, dy] → [dx] (from the forward output)
    SigmoidBackward,
    /// [x] → [y]
    Tanh,
    /// [y, dy] → [dx] (from the forward output)
    TanhBackward,
    /// [a, b] → [y]
    Mul,
    /// [x, s] → [y]: y[r, j] = x[r, j]·s[r]
    RowScale,
    /// [x, dy] → [ds] over `rows` rows
    RowScaleBackwardScale { rows: usize },
    /// [a, b, dy] → [da, db]
    MulBackward,
    /// [x_0, …, x_k] → [y]: channel concatenation.
    Concat(ConcatShape),
    /// [x_0, …] → [y]: the concatenation of parts that are each the sum of
    /// `addends[k]` (1 or 2) of the inputs, in order (adds fused into the
    /// concatenation that alone reads them: `fuse::fuse_add_concats`).
    ConcatSums { s: ConcatShape, addends: Vec<usize> },
    /// [x] → [y_0, …, y_k]: the inverse of Concat.
    Split(ConcatShape),
    /// [x] → [y]: spatial crop/pad at an offset; with `relu` of max(x, 0)
    /// (a ReLU fused into its reads: `fuse::fuse_relu_reads`).
    Slice { s: SliceShape, relu: bool },
    /// [dy] → [dx]
    SliceBackward(SliceShape),
    /// [x_0, …, x_{K−1}, w] → [y] = Σ_k w[k]·x_k
    WeightedSum(MixShape),
    /// [w, dy] → [dx_0, …, dx_{K−1}]
    WeightedSumBackwardInputs(MixShape),
    /// [x_0, …, x_{K−1}, dy] → [dw]
    WeightedSumBackwardWeights(MixShape),
    /// [w, dy] → [dx] = w[k]·dy: one candidate's input gradient, where the
    /// others' come through `MixBnBackward`.
    WeightedSumBackwardInput { s: MixShape, k: usize },
    /// [x_0, …, x_{K−1}, w, pack] → [y] = Σ_k w[k]·y_k (`ops::mix_bn`),
    /// y_k = x_k·a + b from the pack where `norm[k]` (x_k is then a batch
    /// norm's input z_k: `BatchNormStats`), y_k = x_k otherwise. The
    /// kernels read w from the pack; it is an input for its gradient.
    MixBnForward { s: mix_bn::Shape, norm: Vec<bool> },
    /// [x_0, …, x_{K−1}, pack, dy] → [sums, dw]: per channel (and chunk of
    /// the batch) Σ dy·y_k and Σ dy (`ops::mix_bn`); dw[k] = Σ dy·y_k.
    MixChannelDot { s: mix_bn::Shape, norm: Vec<bool> },
    /// [z_k…, pack, sums, dy] → [dz_k…]: the gradient at the input of
    /// candidate k's batch norm (y_k = BN(z_k), training, no affine) from
    /// the mixed op's dy and the sums, in one element-wise pass, for one or
    /// two candidates `ks` (a pair reads dy once).
    MixBnBackward { s: mix_bn::Shape, ks: Vec<usize> },
    /// [x] → [y]: softmax over rows
    Softmax(SoftmaxShape),
    /// [y, dy] → [dx]
    SoftmaxBackward(SoftmaxShape),
    /// [p, t] → [loss]: mean |p − t|
    L1Loss,
    /// [p, t, dl] → [dp]
    L1LossBackward,
    /// [x, (γ, β)] → [y, mean, invstd, running_mean*, running_var*]
    BatchNormTrain(batchnorm::Shape),
    /// [x, mean, invstd, (γ), dy] → [dx, (dγ, dβ)]
    BatchNormTrainBackward(batchnorm::Shape),
    /// [x, prev] → [pack, running_mean*, running_var*]: a training batch
    /// norm's statistics alone, into a mixed op's pack (`MixBnForward`;
    /// `batchnorm::train_stats`); prev is the previous one's pack or w.
    BatchNormStats {
        s: batchnorm::Shape,
        st: batchnorm::Stats,
    },
    /// [x, running_mean, running_var, (γ, β)] → [y]
    BatchNormEval(batchnorm::Shape),
    /// [w, (b), running_mean, running_var, (γ, β)] → [w', b']: an
    /// evaluation batch norm folded into the convolution before it
    /// (`graph::fold`), `per` weights per output channel.
    FoldBatchNorm {
        s: batchnorm::Shape,
        per: usize,
        /// The batch norm's channel of the convolution's first output
        /// channel (a part of a concatenation the batch norm reads).
        c_off: usize,
        bias: bool,
    },
    /// [x] → [y, argmax]
    MaxPool(pool::Shape),
    /// [argmax, dy] → [dx]
    MaxPoolBackward(pool::Shape),
    /// [x] → [y]
    AvgPool(pool::Shape),
    /// [dy] → [dx]
    AvgPoolBackward(pool::Shape),
    /// [x, running_mean, running_var, (γ, β)] → [y]: an evaluation batch
    /// norm applied as a max or average pooling writes
    /// (`graph::fuse_pool_batchnorms`; no argmax).
    PoolBatchNorm {
        pool: pool::Shape,
        kind: crate::ops::pool_rows::Kind,
        bn: batchnorm::Shape,
    },
    /// [x] → [y] over `hw` cells per (n, c)
    GlobalAvgPool { hw: usize },
    /// [dy] → [dx]
    GlobalAvgPoolBackward { hw: usize },
    /// [x, w, (b)] → [y]
    Linear { s: LinearShape, bias: bool },
    /// [w, dy] → [dx]
    LinearBackwardInput(LinearShape),
    /// [x, dy] → [dw]
    LinearBackwardWeight(LinearShape),
    /// [dy] → [db]
    LinearBackwardBias(LinearShape),
    /// [logits, labels] → [loss, probs]
    LogSoftmaxXent(SoftmaxShape),
    /// [probs, labels, dl] → [dlogits]
    LogSoftmaxXentBackward(SoftmaxShape),
    /// [logits, labels] → [count]
    CorrectCount(SoftmaxShape),
    /// [x] → [acc*]: acc += x (metric accumulators).
    Accumulate,
    /// [grads...] → [coef]: min(1, max_norm / global norm).
    ClipCoef { max_norm: f32 },
    /// [x, d, s] → [y] = x + alpha·s[0]·d: x moved along d by a step held
    /// in a buffer (the virtual weights of the second-order search step).
    /// Autodiff passes dy to x only: d and s are held constant, as the
    /// finite-difference second-order term accounts for d's dependence.
    Axpy { alpha: f32 },
    /// [tensors...] → [s]: scale·‖tensors‖, or scale/‖tensors‖ with
    /// `inverse` (no gradient; a finite difference's step).
    ScaledNorm { scale: f32, inverse: bool },
    /// [grad_0, …, grad_{n−1}, coef] → [param_0*, …, param_{n−1}*,
    /// momentum_0*, …, momentum_{n−1}*]: every parameter of a step in one
    /// node, so a plan that lays them out side by side updates them in one
    /// dispatch.
    Sgd(SgdHyper),
    /// [grad_0, …, grad_{n−1}, coef] → [param_0*, …, m_0*, …, v_0*, …]
    Adam(AdamHyper),
    /// [grad] → [beta*]: the affine-scaling interior-point step on the
    /// simplex of each segment (METHOD.md S14).
    AffineScaling {
        h: AffineHyper,
        segments: Vec<usize>,
    },
}

impl Op {
    /// Updates hyperparameters in place (learning-rate schedules).
    pub fn is_optimizer(&self) -> bool {
        matches!(self, Op::Sgd(_) | Op::Adam(_) | Op::AffineScaling { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<T>,
    pub outputs: Vec<T>,
}

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub tensors: Vec<TensorDef>,
    pub nodes: Vec<Node>,
    /// The ReLU node already computed of a temporary (see `relu`).
    relu_of: std::collections::HashMap<T, usize>,
}

/// A batch-norm node's inputs: `first`, then γ and β when affine.
fn bn_inputs(mut first: Vec<T>, affine: Option<(T, T)>, s: &batchnorm::Shape) -> Vec<T> {
    assert_eq!(
        s.affine,
        affine.is_some(),
        "batchnorm: affine flag and γ/β disagree"
    );
    if let Some((g, b)) = affine {
        first.extend([g, b]);
    }
    first
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn def(&self, t: T) -> &TensorDef {
        &self.tensors[t.0]
    }
    pub fn len(&self, t: T) -> usize {
        self.tensors[t.0].len()
    }

    pub fn tensor(&mut self, name: &str, shape: &[usize], kind: Kind, init: Option<Vec<f32>>) -> T {
        if let Some(v) = &init {
            let n: usize = shape.iter().product();
            assert_eq!(
                v.len(),
                n,
                "init of {name} has {} values for shape {shape:?}",
                v.len()
            );
        }
        self.tensors.push(TensorDef {
            name: name.to_string(),
            shape: shape.to_vec(),
            kind,
            init,
            pinned: false,
        });
        T(self.tensors.len() - 1)
    }
    pub fn input(&mut self, name: &str, shape: &[usize]) -> T {
        self.tensor(name, shape, Kind::Input, None)
    }
    pub fn param(&mut self, name: &str, shape: &[usize], init: Vec<f32>) -> T {
        self.tensor(name, shape, Kind::Param, Some(init))
    }
    pub fn state(&mut self, name: &str, shape: &[usize], init: Option<Vec<f32>>) -> T {
        self.tensor(name, shape, Kind::State, init)
    }
    pub fn temp(&mut self, name: &str, shape: &[usize]) -> T {
        self.tensor(name, shape, Kind::Temp, None)
    }
    /// A temp shaped like `like`.
    pub fn temp_like(&mut self, name: &str, like: T) -> T {
        let shape = self.def(like).shape.clone();
        self.temp(name, &shape)
    }

    pub fn push(&mut self, op: Op, inputs: Vec<T>, outputs: Vec<T>) -> usize {
        self.nodes.push(Node {
            op,
            inputs,
            outputs,
        });
        self.nodes.len() - 1
    }

    // ---- forward builders: each appends one node and returns its main output.

    pub fn conv2d(&mut self, x: T, w: T, b: Option<T>, s: Conv2dShape) -> T {
        if let Err(e) = s.validate() {
            panic!("conv2d: {e}");
        }
        let y = self.temp("conv", &[s.n, s.c_out, s.oh(), s.ow()]);
        let mut ins = vec![x, w];
        ins.extend(b);
        self.push(
            Op::Conv2d {
                s,
                bias: b.is_some(),
                relu: false,
            },
            ins,
            vec![y],
        );
        y
    }
    /// ReLU of `x`. A temporary is written once, so its ReLU is one value:
    /// the ops that each start with one (the SepConvs, DilConv and
    /// conv_7x1_1x7 of a supernet edge) share a single node, forward and
    /// backward.
    pub fn relu(&mut self, x: T) -> T {
        if self.def(x).kind == Kind::Temp {
            let node = self.relu_of.get(&x).and_then(|&n| self.nodes.get(n));
            if let Some(node) = node.filter(|n| matches!(n.op, Op::Relu) && n.inputs == [x]) {
                return node.outputs[0];
            }
        }
        let y = self.unary(Op::Relu, "relu", x);
        self.relu_of.insert(x, self.nodes.len() - 1);
        y
    }
    pub fn add(&mut self, a: T, b: T) -> T {
        self.sum(&[a, b])
    }
    /// The sum of `xs` (at least one), left to right: one Add node per
    /// `MAX_ADDENDS` (the first of each next node is the previous sum).
    pub fn sum(&mut self, xs: &[T]) -> T {
        let (&first, rest) = xs.split_first().expect("a sum of no tensors");
        let mut total = first;
        for part in rest.chunks(MAX_ADDENDS - 1) {
            for &x in part {
                assert_eq!(self.len(first), self.len(x), "add of unequal sizes");
            }
            let y = self.temp_like("add", first);
            let ins: Vec<T> = std::iter::once(total).chain(part.iter().copied()).collect();
            self.push(Op::Add, ins, vec![y]);
            total = y;
        }
        total
    }
    fn unary(&mut self, op: Op, name: &str, x: T) -> T {
        let y = self.temp_like(name, x);
        self.push(op, vec![x], vec![y]);
        y
    }
    /// `x` under another shape with the same number of elements (e.g. NCHW
    /// flattened to [N, C·H·W] for a linear layer).
    pub fn reshape(&mut self, x: T, shape: &[usize]) -> T {
        let n: usize = shape.iter().product();
        assert_eq!(
            n,
            self.len(x),
            "reshape to {shape:?} changes the element count"
        );
        let y = self.temp("reshape", shape);
        self.push(Op::Reshape, vec![x], vec![y]);
        y
    }
    pub fn sigmoid(&mut self, x: T) -> T {
        self.unary(Op::Sigmoid, "sigmoid", x)
    }
    pub fn tanh(&mut self, x: T) -> T {
        self.unary(Op::Tanh, "tanh", x)
    }
    pub fn mul(&mut self, a: T, b: T) -> T {
        assert_eq!(self.len(a), self.len(b), "mul of unequal sizes");
        let y = self.temp_like("mul", a);
        self.push(Op::Mul, vec![a, b], vec![y]);
        y
    }
    /// x + alpha·s[0]·d (see `Op::Axpy`: no gradient reaches d or s).
    pub fn axpy(&mut self, x: T, d: T, s: T, alpha: f32) -> T {
        assert_eq!(self.len(x), self.len(d), "axpy of unequal sizes");
        assert_eq!(self.len(s), 1, "axpy: the step is a scalar");
        let y = self.temp_like("axpy", x);
        self.push(Op::Axpy { alpha }, vec![x, d, s], vec![y]);
        y
    }
    /// scale·‖ts‖ (or scale/‖ts‖), the norm over all of `ts` together.
    pub fn scaled_norm(&mut self, ts: &[T], scale: f32, inverse: bool) -> T {
        assert!(!ts.is_empty(), "scaled_norm of nothing");
        let y = self.temp("scaled_norm", &[1]);
        self.push(Op::ScaledNorm { scale, inverse }, ts.to_vec(), vec![y]);
        y
    }
    /// Scale each row of `x` by its entry of `s` (rows = len(s)).
    pub fn row_scale(&mut self, x: T, s: T) -> T {
        assert_eq!(
            self.len(x) % self.len(s),
            0,
            "row_scale: rows do not divide x"
        );
        let y = self.temp_like("row_scale", x);
        self.push(Op::RowScale, vec![x, s], vec![y]);
        y
    }
    /// Concatenate NCHW tensors along channels.
    pub fn concat(&mut self, xs: &[T]) -> T {
        let s = self.concat_shape(xs);
        let y = self.temp("concat", &[s.batch, s.total_channels(), s.h, s.w]);
        self.push(Op::Concat(s), xs.to_vec(), vec![y]);
        y
    }
    fn concat_shape(&self, xs: &[T]) -> ConcatShape {
        let sh: Vec<Vec<usize>> = xs.iter().map(|x| self.def(*x).shape.clone()).collect();
        assert!(
            sh.iter()
                .all(|s| s.len() == 4 && s[0] == sh[0][0] && s[2..] == sh[0][2..]),
            "concat wants NCHW tensors of one batch and spatial size, got {sh:?}"
        );
        ConcatShape {
            batch: sh[0][0],
            channels: sh.iter().map(|s| s[1]).collect(),
            h: sh[0][2],
            w: sh[0][3],
        }
    }
    /// Split `x` ([batch, Σc, h, w]) into parts of `channels` channels.
    pub fn split(&mut self, x: T, channels: &[usize]) -> Vec<T> {
        let sh = self.def(x).shape.clone();
        let (batch, h, w) = match sh.len() {
            2 => (sh[0], 1, 1),
            4 => (sh[0], sh[2], sh[3]),
            _ => panic!("split wants [N, C] or NCHW, got {sh:?}"),
        };
        let s = ConcatShape {
            batch,
            channels: channels.to_vec(),
            h,
            w,
        };
        assert_eq!(
            s.total_channels(),
            sh[1],
            "split parts must add up to the channels"
        );
        let ys: Vec<T> = channels
            .iter()
            .map(|&c| {
                let shape = if sh.len() == 2 {
                    vec![batch, c]
                } else {
                    vec![batch, c, h, w]
                };
                self.temp("split", &shape)
            })
            .collect();
        self.push(Op::Split(s), vec![x], ys.clone());
        ys
    }
    pub fn slice(&mut self, x: T, s: SliceShape) -> T {
        let y = self.temp("slice", &[s.batch, s.channels, s.out_h, s.out_w]);
        self.push(Op::Slice { s, relu: false }, vec![x], vec![y]);
        y
    }
    /// Σ_k w[k]·x_k over K candidates of one size (a mixed op), read where
    /// they are; the result has the first one's shape.
    pub fn weighted_sum(&mut self, xs: &[T], w: T) -> T {
        let s = MixShape {
            k: xs.len(),
            n: self.len(xs[0]),
        };
        assert!(
            xs.iter().all(|&x| self.len(x) == s.n),
            "weighted_sum: candidates of unequal sizes"
        );
        assert_eq!(self.len(w), s.k, "weighted_sum: one weight per candidate");
        let y = self.temp_like("mixed", xs[0]);
        let mut ins = xs.to_vec();
        ins.push(w);
        self.push(Op::WeightedSum(s), ins, vec![y]);
        y
    }
    /// Softmax over the last dimension of [rows, cols].
    pub fn softmax(&mut self, x: T) -> T {
        let sh = self.def(x).shape.clone();
        let cols = *sh.last().expect("softmax of a scalar");
        let s = SoftmaxShape {
            rows: self.len(x) / cols,
            cols,
        };
        self.unary(Op::Softmax(s), "softmax", x)
    }
    /// Mean absolute error of prediction `p` against target `t`.
    pub fn l1_loss(&mut self, p: T, t: T) -> T {
        assert_eq!(self.len(p), self.len(t), "l1_loss of unequal sizes");
        let loss = self.temp("l1", &[1]);
        self.push(Op::L1Loss, vec![p, t], vec![loss]);
        loss
    }

    /// Training-mode batch norm; `affine` = Some((γ, β)).
    pub fn batchnorm_train(
        &mut self,
        x: T,
        affine: Option<(T, T)>,
        running: (T, T),
        s: batchnorm::Shape,
    ) -> T {
        let ins = bn_inputs(vec![x], affine, &s);
        let y = self.temp_like("bn", x);
        let mean = self.temp("bn.mean", &[s.c]);
        let invstd = self.temp("bn.invstd", &[s.c]);
        let outs = vec![y, mean, invstd, running.0, running.1];
        self.push(Op::BatchNormTrain(s), ins, outs);
        y
    }
    /// Evaluation-mode batch norm with the running statistics.
    pub fn batchnorm_eval(
        &mut self,
        x: T,
        affine: Option<(T, T)>,
        running: (T, T),
        s: batchnorm::Shape,
    ) -> T {
        let ins = bn_inputs(vec![x, running.0, running.1], affine, &s);
        let y = self.temp_like("bn", x);
        self.push(Op::BatchNormEval(s), ins, vec![y]);
        y
    }
    pub fn max_pool(&mut self, x: T, s: pool::Shape) -> T {
        let y = self.temp("maxpool", &[s.n, s.c, s.out_h(), s.out_w()]);
        let arg = self.temp("maxpool.argmax", &[s.n, s.c, s.out_h(), s.out_w()]);
        self.push(Op::MaxPool(s), vec![x], vec![y, arg]);
        y
    }
    pub fn avg_pool(&mut self, x: T, s: pool::Shape) -> T {
        let y = self.temp("avgpool", &[s.n, s.c, s.out_h(), s.out_w()]);
        self.push(Op::AvgPool(s), vec![x], vec![y]);
        y
    }
    /// [N, C, H, W] → [N, C].
    pub fn global_avg_pool(&mut self, x: T) -> T {
        let sh = self.def(x).shape.clone();
        assert_eq!(sh.len(), 4, "global_avg_pool wants NCHW");
        let y = self.temp("gap", &[sh[0], sh[1]]);
        self.push(Op::GlobalAvgPool { hw: sh[2] * sh[3] }, vec![x], vec![y]);
        y
    }
    pub fn linear(&mut self, x: T, w: T, b: Option<T>, s: LinearShape) -> T {
        let y = self.temp("linear", &[s.batch, s.out_features]);
        let mut ins = vec![x, w];
        ins.extend(b);
        self.push(
            Op::Linear {
                s,
                bias: b.is_some(),
            },
            ins,
            vec![y],
        );
        y
    }
    /// Mean cross-entropy of `logits` [rows, cols] against u32 `labels`.
    pub fn log_softmax_xent(&mut self, logits: T, labels: T) -> T {
        let sh = self.def(logits).shape.clone();
        let s = SoftmaxShape {
            rows: sh[0],
            cols: sh[1],
        };
        let loss = self.temp("loss", &[1]);
        let probs = self.temp_like("probs", logits);
        self.push(
            Op::LogSoftmaxXent(s),
            vec![logits, labels],
            vec![loss, probs],
        );
        loss
    }
    /// acc += (number of rows whose argmax is the label).
    pub fn count_correct_into(&mut self, logits: T, labels: T, acc: T) {
        let sh = self.def(logits).shape.clone();
        let s = SoftmaxShape {
            rows: sh[0],
            cols: sh[1],
        };
        let count = self.temp("correct", &[1]);
        self.push(Op::CorrectCount(s), vec![logits, labels], vec![count]);
        self.push(Op::Accumulate, vec![count], vec![acc]);
    }
    /// acc += x (e.g. the loss summed over steps).
    pub fn accumulate_into(&mut self, x: T, acc: T) {
        self.push(Op::Accumulate, vec![x], vec![acc]);
    }

    /// Keep `t` readable after a step (its own buffer).
    pub fn pin(&mut self, t: T) {
        self.tensors[t.0].pinned = true;
    }

    /// True for the graph's inputs (written from outside, never by a node).
    pub fn is_input(&self, t: T) -> bool {
        self.tensors[t.0].kind == Kind::Input
    }

    /// True for tensors that share memory by lifetime.
    pub fn is_planned(&self, t: T) -> bool {
        let d = &self.tensors[t.0];
        d.kind == Kind::Temp && !d.pinned
    }

    /// Where each planned tensor is first written and last read (node
    /// indices); None for the others, which own their buffers.
    pub fn temp_lifetimes(&self) -> Vec<Option<(usize, usize)>> {
        let mut life: Vec<Option<(usize, usize)>> = vec![None; self.tensors.len()];
        let live = self.live_nodes();
        for (i, node) in self.nodes.iter().enumerate() {
            if !live[i] {
                continue;
            }
            for t in node.inputs.iter().chain(&node.outputs) {
                if !self.is_planned(*t) {
                    continue;
                }
                let e = life[t.0].get_or_insert((i, i));
                e.1 = i;
            }
        }
        life
    }

    /// Which nodes matter: those writing a persistent or pinned tensor, or
    /// a tensor a live node reads. The rest (e.g. weight gradients of the
    /// supernet's architecture pass) are skipped by the executors; node
    /// indices stay as they are.
    pub fn live_nodes(&self) -> Vec<bool> {
        let mut needed = vec![false; self.tensors.len()];
        let mut live = vec![false; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().rev() {
            live[i] = node.outputs.iter().any(|t| {
                let d = &self.tensors[t.0];
                needed[t.0] || d.pinned || d.kind != Kind::Temp
            });
            if live[i] {
                for t in &node.inputs {
                    needed[t.0] = true;
                }
            }
        }
        live
    }

    /// Check that every temp is written before it is read.
    pub fn validate(&self) -> Result<(), String> {
        let mut written = vec![false; self.tensors.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for t in &node.inputs {
                let d = &self.tensors[t.0];
                if d.kind == Kind::Temp && !written[t.0] {
                    return Err(format!(
                        "node {i} ({:?}) reads {} before anything writes it",
                        node.op, d.name
                    ));
                }
            }
            for t in &node.outputs {
                written[t.0] = true;
            }
        }
        Ok(())
    }
}
