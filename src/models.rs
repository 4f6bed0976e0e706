//! Built-in networks, built on the graph IR. The same builder makes the
//! training graph (batch-statistics BN) and the evaluation graph (running
//! statistics), with the same tensor names, so trained weights move from
//! one plan to the other by name.

use serde::{Deserialize, Serialize};

use crate::graph::{Graph, T};
use crate::ops::{batchnorm, conv2d::Conv2dShape, matmul::LinearShape, pool};
use crate::verify;

/// What `--model` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Builtin {
    /// conv3×3(16)-BN-ReLU-maxpool, conv3×3(32)-BN-ReLU-maxpool,
    /// conv3×3(64)-BN-ReLU, flatten, linear.
    Cnn,
}

impl Builtin {
    pub fn parse(s: &str) -> Result<Builtin, String> {
        match s {
            "builtin:cnn" => Ok(Builtin::Cnn),
            other => Err(format!("--model {other:?}: expected builtin:cnn")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Cnn => "builtin:cnn",
        }
    }
}

/// A network in a graph: its logits, its weights and its BN running
/// statistics (both saved with the model, by tensor name).
pub struct Net {
    pub logits: T,
    pub params: Vec<T>,
    pub running: Vec<T>,
}

/// Appends `model` for input `x` ([batch, C, H, W]) with `classes` outputs;
/// weights are drawn from `seed`.
pub fn build(model: Builtin, g: &mut Graph, x: T, classes: usize, train: bool, seed: u64) -> Net {
    match model {
        Builtin::Cnn => cnn(g, x, classes, train, seed),
    }
}

struct Builder<'a> {
    g: &'a mut Graph,
    rng: verify::Rng,
    train: bool,
    params: Vec<T>,
    running: Vec<T>,
}

impl Builder<'_> {
    fn kaiming(&mut self, name: &str, shape: &[usize], fan_in: usize) -> T {
        let n = shape.iter().product();
        let s = (2.0 / fan_in as f32).sqrt();
        let v = verify::randn(&mut self.rng, n)
            .iter()
            .map(|x| x * s)
            .collect();
        let t = self.g.param(name, shape, v);
        self.params.push(t);
        t
    }
    fn constant(&mut self, name: &str, n: usize, v: f32) -> T {
        let t = self.g.param(name, &[n], vec![v; n]);
        self.params.push(t);
        t
    }

    /// conv k×k "same" (stride 1) → BN (affine) → ReLU.
    fn conv_bn_relu(&mut self, name: &str, x: T, c_out: usize) -> T {
        let sh = self.g.def(x).shape.clone();
        let (n, c_in, h, w) = (sh[0], sh[1], sh[2], sh[3]);
        let s = Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out,
            kh: 3,
            kw: 3,
            stride: 1,
            pad_h: 1,
            pad_w: 1,
            dilation: 1,
            groups: 1,
        };
        let wt = self.kaiming(&format!("{name}.weight"), &[c_out, c_in, 3, 3], c_in * 9);
        let y = self.g.conv2d(x, wt, None, s);
        let bs = batchnorm::Shape::new(n, c_out, h * w, true);
        let gamma = self.constant(&format!("{name}.bn.weight"), c_out, 1.0);
        let beta = self.constant(&format!("{name}.bn.bias"), c_out, 0.0);
        let rm = self
            .g
            .state(&format!("{name}.bn.running_mean"), &[c_out], None);
        let rv = self.g.state(
            &format!("{name}.bn.running_var"),
            &[c_out],
            Some(vec![1.0; c_out]),
        );
        self.running.extend([rm, rv]);
        let y = if self.train {
            self.g.batchnorm_train(y, Some((gamma, beta)), (rm, rv), bs)
        } else {
            let out = self.g.temp_like("bn", y);
            self.g.push(
                crate::graph::Op::BatchNormEval(bs),
                vec![y, rm, rv, gamma, beta],
                vec![out],
            );
            out
        };
        self.g.relu(y)
    }

    fn max_pool(&mut self, x: T) -> T {
        let sh = self.g.def(x).shape.clone();
        let s = pool::Shape {
            n: sh[0],
            c: sh[1],
            h: sh[2],
            w: sh[3],
            k: 3,
            stride: 2,
            pad: 1,
        };
        self.g.max_pool(x, s)
    }
}

fn cnn(g: &mut Graph, x: T, classes: usize, train: bool, seed: u64) -> Net {
    let batch = g.def(x).shape[0];
    let mut b = Builder {
        g,
        rng: verify::rng(seed),
        train,
        params: Vec::new(),
        running: Vec::new(),
    };
    let y = b.conv_bn_relu("conv1", x, 16);
    let y = b.max_pool(y);
    let y = b.conv_bn_relu("conv2", y, 32);
    let y = b.max_pool(y);
    let y = b.conv_bn_relu("conv3", y, 64);
    let sh = b.g.def(y).shape.clone();
    let features = sh[1] * sh[2] * sh[3];
    let flat = b.g.reshape(y, &[batch, features]);
    let wl = b.kaiming("fc.weight", &[classes, features], features);
    let bl = b.constant("fc.bias", classes, 0.0);
    let ls = LinearShape {
        batch,
        in_features: features,
        out_features: classes,
    };
    let logits = b.g.linear(flat, wl, Some(bl), ls);
    Net {
        logits,
        params: b.params,
        running: b.running,
    }
}
