//! Built-in networks, built from `nn` layers on the graph IR. The same
//! builder makes the training graph (batch-statistics BN) and the
//! evaluation graph (running statistics) with the same tensor names, so
//! trained weights move from one plan to the other by name.

use serde::{Deserialize, Serialize};

use crate::graph::{Graph, T};
use crate::nn::layers::{self, ConvSpec};
use crate::nn::ParamStore;
use crate::ops::pool;

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
    let mut store = ParamStore::new(seed);
    store.eval = !train;
    let logits = match model {
        Builtin::Cnn => cnn(g, &mut store, x, classes),
    };
    Net {
        logits,
        params: store.params,
        running: store.states,
    }
}

/// conv 3×3 "same" → BN (affine) → ReLU, under `name`.
fn conv_bn_relu(g: &mut Graph, st: &mut ParamStore, name: &str, x: T, c_out: usize) -> T {
    st.scoped(name, |st| {
        let y = layers::conv(g, st, "conv", x, ConvSpec::new(c_out, 3).pad(1, 1));
        let y = layers::batchnorm(g, st, "bn", y, true);
        g.relu(y)
    })
}

/// 3×3 max pool, stride 2, padding 1: 28 → 14 → 7.
fn downsample(g: &mut Graph, x: T) -> T {
    let sh = g.def(x).shape.clone();
    let s = pool::Shape {
        n: sh[0],
        c: sh[1],
        h: sh[2],
        w: sh[3],
        k: 3,
        stride: 2,
        pad: 1,
    };
    g.max_pool(x, s)
}

fn cnn(g: &mut Graph, st: &mut ParamStore, x: T, classes: usize) -> T {
    let batch = g.def(x).shape[0];
    let y = conv_bn_relu(g, st, "conv1", x, 16);
    let y = downsample(g, y);
    let y = conv_bn_relu(g, st, "conv2", y, 32);
    let y = downsample(g, y);
    let y = conv_bn_relu(g, st, "conv3", y, 64);
    let features = g.len(y) / batch;
    let flat = g.reshape(y, &[batch, features]);
    st.scoped("fc", |st| layers::linear(g, st, flat, classes, true))
}
