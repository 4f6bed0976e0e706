//! A one-layer LSTM unrolled over a sequence into graph nodes (backward
//! through time is `graph::backward` on the unrolled graph), and token
//! embeddings as a linear map of host-built one-hot vectors.

use super::{Init, ParamStore};
use crate::graph::{Graph, T};
use crate::ops::matmul::LinearShape;

/// PyTorch's `nn.LSTM(input, hidden)` (one layer, batch-major steps): per
/// step, gates = x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh split into i, f, g, o (that
/// order); c' = σ(f)·c + σ(i)·tanh(g); h' = σ(o)·tanh(c'). Both biases are
/// kept, as in PyTorch, so weights load and save under its names
/// (`weight_ih_l0` [4·hidden, input], `weight_hh_l0` [4·hidden, hidden],
/// `bias_ih_l0`, `bias_hh_l0` [4·hidden]), all drawn from PyTorch's
/// U(−1/√hidden, 1/√hidden).
#[derive(Debug, Clone, Copy)]
pub struct Lstm {
    pub input: usize,
    pub hidden: usize,
    pub w_ih: T,
    pub w_hh: T,
    pub b_ih: T,
    pub b_hh: T,
}

impl Lstm {
    /// Create the weights in the store's current scope. Every `unroll`
    /// shares them.
    pub fn new(g: &mut Graph, store: &mut ParamStore, input: usize, hidden: usize) -> Lstm {
        let bound = 1.0 / (hidden as f32).sqrt();
        let mut p =
            |name: &str, shape: &[usize]| store.param(g, name, shape, Init::Uniform { bound });
        Lstm {
            input,
            hidden,
            w_ih: p("weight_ih_l0", &[4 * hidden, input]),
            w_hh: p("weight_hh_l0", &[4 * hidden, hidden]),
            b_ih: p("bias_ih_l0", &[4 * hidden]),
            b_hh: p("bias_hh_l0", &[4 * hidden]),
        }
    }

    /// Run the recurrence over `xs` (each [batch, input]) from `h0`, `c0`
    /// (each [batch, hidden]; states of zeros for PyTorch's default).
    /// Returns every step's hidden state, the last hidden and the last cell
    /// state.
    pub fn unroll(&self, g: &mut Graph, xs: &[T], h0: T, c0: T) -> (Vec<T>, T, T) {
        assert!(!xs.is_empty(), "an LSTM needs at least one step");
        let batch = g.def(h0).shape[0];
        let hid = self.hidden;
        for (t, want) in [(h0, hid), (c0, hid)]
            .into_iter()
            .chain(xs.iter().map(|&x| (x, self.input)))
        {
            assert_eq!(
                g.def(t).shape,
                [batch, want],
                "LSTM tensor {} has the wrong shape",
                g.def(t).name
            );
        }
        let shape = |in_features| LinearShape {
            batch,
            in_features,
            out_features: 4 * hid,
        };
        let (mut h, mut c) = (h0, c0);
        let mut hs = Vec::with_capacity(xs.len());
        for &x in xs {
            let gx = g.linear(x, self.w_ih, Some(self.b_ih), shape(self.input));
            let gh = g.linear(h, self.w_hh, Some(self.b_hh), shape(hid));
            let gates = g.add(gx, gh);
            let p = g.split(gates, &[hid; 4]);
            let (i, f, gg, o) = (
                g.sigmoid(p[0]),
                g.sigmoid(p[1]),
                g.tanh(p[2]),
                g.sigmoid(p[3]),
            );
            let fc = g.mul(f, c);
            let ig = g.mul(i, gg);
            c = g.add(fc, ig);
            let tc = g.tanh(c);
            h = g.mul(o, tc);
            hs.push(h);
        }
        (hs, h, c)
    }
}

/// Token embeddings as a bias-free linear map of one-hot rows: `weight`
/// [dim, vocab] (the transpose of PyTorch's `nn.Embedding.weight`), drawn
/// from N(0, 1) like PyTorch's. The graph has no gather op; a one-hot
/// matmul gives the same rows and the same gradients.
#[derive(Debug, Clone, Copy)]
pub struct Embedding {
    pub vocab: usize,
    pub dim: usize,
    pub weight: T,
}

impl Embedding {
    /// Create `weight` in the store's current scope.
    pub fn new(g: &mut Graph, store: &mut ParamStore, vocab: usize, dim: usize) -> Embedding {
        let weight = store.param(g, "weight", &[dim, vocab], Init::Normal { std: 1.0 });
        Embedding { vocab, dim, weight }
    }

    /// The embeddings [batch, dim] of one-hot rows [batch, vocab].
    pub fn embed(&self, g: &mut Graph, one_hot: T) -> T {
        let sh = g.def(one_hot).shape.clone();
        assert_eq!(
            sh.get(1),
            Some(&self.vocab),
            "embed wants [batch, {}] one-hot rows, got {sh:?}",
            self.vocab
        );
        let s = LinearShape {
            batch: sh[0],
            in_features: self.vocab,
            out_features: self.dim,
        };
        g.linear(one_hot, self.weight, None, s)
    }

    /// One input tensor [batch, vocab] per step of a token sequence
    /// (`{name}.{t}`), embedded: the inputs to write with `one_hot` and the
    /// embeddings to feed an LSTM.
    pub fn sequence(
        &self,
        g: &mut Graph,
        name: &str,
        batch: usize,
        len: usize,
    ) -> (Vec<T>, Vec<T>) {
        (0..len)
            .map(|t| {
                let x = g.input(&format!("{name}.{t}"), &[batch, self.vocab]);
                (x, self.embed(g, x))
            })
            .unzip()
    }
}

/// Host-side one-hot rows [tokens.len(), vocab] for an embedding input.
pub fn one_hot(tokens: &[usize], vocab: usize) -> Vec<f32> {
    let mut v = vec![0.0; tokens.len() * vocab];
    for (row, &tok) in tokens.iter().enumerate() {
        assert!(tok < vocab, "token {tok} outside a vocabulary of {vocab}");
        v[row * vocab + tok] = 1.0;
    }
    v
}
