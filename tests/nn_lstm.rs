//! The unrolled LSTM: its final states against a plain-loop LSTM written
//! here, its backward through time against finite differences of the CPU
//! graph's loss, and the GPU plan against the CPU executor; and a
//! PNAS-style predictor (one-hot embedding, LSTM, linear, sigmoid, L1) end
//! to end.

mod common;

use gradnas::graph::{self, CpuExec, Graph, Plan, T};
use gradnas::nn::lstm::{one_hot, Embedding, Lstm};
use gradnas::nn::{layers, ParamStore};
use gradnas::verify::{self, compare, FORWARD, GRADIENT};

const B: usize = 3;
const IN: usize = 6;
const HID: usize = 7;

/// A graph with its loss, the trained tensors and their gradients, and
/// what to write into its inputs.
struct Built {
    g: Graph,
    loss: T,
    params: Vec<T>,
    grads: Vec<T>,
    inputs: Vec<(T, Vec<f32>)>,
}

impl Built {
    fn finish(mut g: Graph, loss: T, params: Vec<T>, inputs: Vec<(T, Vec<f32>)>) -> Built {
        g.pin(loss);
        let gm = graph::backward(&mut g, loss);
        let grads: Vec<T> = params.iter().map(|p| gm[p]).collect();
        for &gr in &grads {
            g.pin(gr);
        }
        Built {
            g,
            loss,
            params,
            grads,
            inputs,
        }
    }

    /// A CPU step, with `p` replaced by `v` when given.
    fn cpu(&self, replace: Option<(T, &[f32])>) -> CpuExec {
        let mut c = CpuExec::new(&self.g);
        for (t, v) in &self.inputs {
            c.write(*t, v);
        }
        if let Some((p, v)) = replace {
            c.vals[p.0] = v.to_vec();
        }
        c.step(&self.g);
        c
    }

    /// GPU against CPU for the loss, `extra` and every gradient; the CPU
    /// gradients against central differences at a few coordinates each.
    fn check(&self, what: &str, extra: &[T]) {
        let cpu = self.cpu(None);
        let gpu = common::gpu();
        let plan = Plan::new(gpu, &self.g).expect("plan");
        for (t, v) in &self.inputs {
            plan.write(gpu, *t, v);
        }
        plan.step(gpu).expect("gpu step");
        let mut bad = Vec::new();
        let forward = std::iter::once(&self.loss)
            .chain(extra)
            .map(|t| (t, FORWARD));
        for (&t, tol) in forward.chain(self.grads.iter().map(|t| (t, GRADIENT))) {
            let got = plan.read(gpu, t).expect("read");
            let c = compare(
                &self.g.def(t).name,
                "gpu vs cpu",
                what,
                cpu.read(t),
                &got,
                tol,
            );
            if !c.pass {
                bad.push(format!("{}: {:?}", c.op, c.detail));
            }
        }
        assert!(
            bad.is_empty(),
            "{what}: GPU and CPU disagree:\n{}",
            bad.join("\n")
        );

        let mut rng = verify::rng(17);
        for (p, gr) in self.params.iter().zip(&self.grads) {
            let init = self.g.def(*p).init.clone().expect("params have values");
            let f = |v: &[f32]| self.cpu(Some((*p, v))).read(self.loss).to_vec();
            let name = format!("{what} {}", self.g.def(*p).name);
            verify::gradcheck::check(&name, &f, &init, &[1.0], cpu.read(*gr), &mut rng, 8, 1e-3)
                .unwrap();
        }
    }
}

/// An LSTM over `len` random steps from random h0, c0, L1 of the last
/// hidden state against a random target.
fn lstm_graph(len: usize) -> (Built, Lstm, T, T) {
    let mut rng = verify::rng(100 + len as u64);
    let mut g = Graph::new();
    let mut store = ParamStore::new(len as u64);
    let lstm = store.scoped("lstm", |s| Lstm::new(&mut g, s, IN, HID));
    let xs: Vec<T> = (0..len)
        .map(|t| g.input(&format!("x{t}"), &[B, IN]))
        .collect();
    let h0 = g.input("h0", &[B, HID]);
    let c0 = g.input("c0", &[B, HID]);
    let target = g.input("target", &[B, HID]);
    let (hs, h, c) = lstm.unroll(&mut g, &xs, h0, c0);
    assert_eq!(hs.len(), len);
    assert_eq!(hs[len - 1], h);
    let loss = g.l1_loss(h, target);
    g.pin(h);
    g.pin(c);
    let mut inputs: Vec<(T, Vec<f32>)> = xs
        .iter()
        .map(|&x| (x, verify::randn(&mut rng, B * IN)))
        .collect();
    for t in [h0, c0, target] {
        inputs.push((t, verify::randn(&mut rng, B * HID)));
    }
    let params = store.params.clone();
    (Built::finish(g, loss, params, inputs), lstm, h, c)
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// PyTorch's LSTM recurrence in plain loops: the final (h, c).
fn reference_lstm(b: &Built, lstm: &Lstm, len: usize) -> (Vec<f32>, Vec<f32>) {
    let val = |t: T| b.g.def(t).init.clone().unwrap();
    let (w_ih, w_hh, b_ih, b_hh) = (
        val(lstm.w_ih),
        val(lstm.w_hh),
        val(lstm.b_ih),
        val(lstm.b_hh),
    );
    // inputs: x0..x{len-1}, h0, c0, target.
    let mut h: Vec<f64> = b.inputs[len].1.iter().map(|&v| v as f64).collect();
    let mut c: Vec<f64> = b.inputs[len + 1].1.iter().map(|&v| v as f64).collect();
    for (_, x) in &b.inputs[..len] {
        let mut h_next = vec![0f64; B * HID];
        for n in 0..B {
            let mut gates = [[0f64; HID]; 4];
            for (k, gate) in gates.iter_mut().enumerate() {
                for (j, z) in gate.iter_mut().enumerate() {
                    let row = k * HID + j;
                    *z = b_ih[row] as f64 + b_hh[row] as f64;
                    for i in 0..IN {
                        *z += w_ih[row * IN + i] as f64 * x[n * IN + i] as f64;
                    }
                    for i in 0..HID {
                        *z += w_hh[row * HID + i] as f64 * h[n * HID + i];
                    }
                }
            }
            for j in 0..HID {
                let (i, f) = (sigmoid(gates[0][j]), sigmoid(gates[1][j]));
                let (gg, o) = (gates[2][j].tanh(), sigmoid(gates[3][j]));
                let cell = &mut c[n * HID + j];
                *cell = f * *cell + i * gg;
                h_next[n * HID + j] = o * cell.tanh();
            }
        }
        h = h_next;
    }
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f32s(h), f32s(c))
}

#[test]
fn lstm_unrolled() {
    for len in [1, 3, 5] {
        let (b, lstm, h, c) = lstm_graph(len);
        let what = format!("lstm len {len}");
        let names: Vec<&str> = b.params.iter().map(|p| b.g.def(*p).name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lstm.weight_ih_l0",
                "lstm.weight_hh_l0",
                "lstm.bias_ih_l0",
                "lstm.bias_hh_l0"
            ]
        );
        let cpu = b.cpu(None);
        let (want_h, want_c) = reference_lstm(&b, &lstm, len);
        for (t, want, name) in [(h, want_h, "h"), (c, want_c, "c")] {
            let chk = compare(name, "plain-loop LSTM", &what, &want, cpu.read(t), FORWARD);
            assert!(chk.pass, "{what} final {name}: {:?}", chk.detail);
        }
        b.check(&what, &[h, c]);
    }
}

/// PNAS's accuracy predictor in miniature: token sequences → one-hot
/// embedding → LSTM → last hidden → linear → sigmoid → L1 against targets.
#[test]
fn predictor_with_embedding() {
    let (vocab, dim, len) = (9, 5, 4);
    let mut g = Graph::new();
    let mut store = ParamStore::new(21);
    let emb = store.scoped("embedding", |s| Embedding::new(&mut g, s, vocab, dim));
    let lstm = store.scoped("lstm", |s| Lstm::new(&mut g, s, dim, HID));
    let (tokens_in, embedded) = emb.sequence(&mut g, "tokens", B, len);
    let zeros = g.state("zeros", &[B, HID], None);
    let (_, h, _) = lstm.unroll(&mut g, &embedded, zeros, zeros);
    let out = store.scoped("head", |s| layers::linear(&mut g, s, h, 1, true));
    let pred = g.sigmoid(out);
    let target = g.input("accuracy", &[B, 1]);
    let loss = g.l1_loss(pred, target);
    g.pin(embedded[1]);
    let tokens: Vec<Vec<usize>> = (0..len)
        .map(|t| (0..B).map(|n| (3 * n + 2 * t + 1) % vocab).collect())
        .collect();
    let mut inputs: Vec<(T, Vec<f32>)> = tokens_in
        .iter()
        .zip(&tokens)
        .map(|(&x, tok)| (x, one_hot(tok, vocab)))
        .collect();
    inputs.push((target, vec![0.2, 0.9, 0.55]));
    let params = store.params.clone();
    let b = Built::finish(g, loss, params, inputs);

    // The embedding of token k is column k of the weight [dim, vocab].
    let cpu = b.cpu(None);
    let w = b.g.def(emb.weight).init.clone().unwrap();
    let got = cpu.read(embedded[1]);
    for (n, &tok) in tokens[1].iter().enumerate() {
        for d in 0..dim {
            assert_eq!(got[n * dim + d], w[d * vocab + tok], "row {n} dim {d}");
        }
    }
    b.check("predictor", &[embedded[1]]);
}

#[test]
#[should_panic(expected = "outside a vocabulary")]
fn one_hot_rejects_unknown_tokens() {
    one_hot(&[1, 9], 9);
}
