//! The bilevel step of S1, recorded as one plan: the architecture step on
//! a validation batch (α by Adam, β by the affine-scaling interior-point
//! step), then the weight step on a training batch (SGD with momentum,
//! weight decay and clipping) with the updated architecture.
//!
//! First order (default): the architecture gradient is ∇_a L_val(w, a).
//! Second order (DARTS's eq. 7–8): the gradient of L_val(w′, a) with the
//! virtual weights w′ = w − ξ∇_w L_train(w, a), i.e.
//!   ∇_a L_val(w′, a) − ξ ∇²_{a,w} L_train(w, a) · ∇_{w′} L_val(w′, a),
//! the Hessian-vector product by a central difference:
//!   [∇_a L_train(w⁺, a) − ∇_a L_train(w⁻, a)] / 2ε,  w± = w ± ε v,
//!   v = ∇_{w′} L_val(w′, a),  ε = 0.01 / ‖v‖,  ξ = the weights' current lr.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::supernet::{self, Arch, SupernetConfig};
use crate::graph::{self, Graph, Optimizer, Updates, T};
use crate::nn::ParamStore;
use crate::ops::affine_scaling::AffineHyper;
use crate::ops::optim::{AdamHyper, SgdHyper};

/// METHOD.md / DARTS defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchHyper {
    /// Weights: SGD lr, cosine-annealed to `w_lr_min`.
    pub w_lr: f32,
    pub w_lr_min: f32,
    pub w_momentum: f32,
    pub w_weight_decay: f32,
    pub w_clip: f32,
    /// α: Adam.
    pub a_lr: f32,
    pub a_beta1: f32,
    pub a_beta2: f32,
    pub a_weight_decay: f32,
    /// β: affine scaling.
    pub beta_lr: f32,
    pub beta_theta: f32,
    /// The unrolled (second-order) architecture gradient.
    #[serde(default)]
    pub second_order: bool,
}

impl Default for SearchHyper {
    fn default() -> Self {
        SearchHyper {
            w_lr: 0.025,
            w_lr_min: 0.001,
            w_momentum: 0.9,
            w_weight_decay: 3e-4,
            w_clip: 5.0,
            a_lr: 3e-4,
            a_beta1: 0.5,
            a_beta2: 0.999,
            a_weight_decay: 1e-3,
            beta_lr: 1.0,
            beta_theta: 0.9,
            second_order: false,
        }
    }
}

/// The step graph and the tensors a driver feeds and reads.
pub struct SearchStep {
    pub g: Graph,
    pub arch: Arch,
    /// The supernet's weights (not α, β).
    pub weights: Vec<T>,
    pub val_images: T,
    pub val_labels: T,
    pub train_images: T,
    pub train_labels: T,
    pub val_loss: T,
    pub train_loss: T,
    /// The gradient each α and β is updated with (pinned, for tests).
    pub arch_grads: Vec<(T, T)>,
    /// Second order: ξ, the virtual step's learning rate, a one-element
    /// state the driver writes with the weights' current lr each step.
    pub xi: Option<T>,
    pub alpha_updates: Updates,
    pub beta_updates: Updates,
    pub weight_updates: Updates,
    /// Nodes of the architecture half (the weight half follows).
    pub arch_nodes: usize,
}

/// A bilevel problem as the step builders see it: a loss on a batch that
/// can be rebuilt with other weights standing in, its architecture tensors
/// and its weights. The supernet is one; tests use small smooth ones.
pub trait Bilevel {
    /// The loss on (images, labels) with the weights of `subs` standing in
    /// for the originals, appended to `g`, and the node index where this
    /// pass starts (a backward from there reaches the architecture).
    fn loss(&mut self, g: &mut Graph, batch: (T, T), subs: &HashMap<T, T>) -> (T, usize);
    fn arch(&self) -> Vec<T>;
    /// The weights (known once a first pass is built).
    fn weights(&self) -> Vec<T>;
}

/// The supernet as a bilevel problem.
struct Passes<'a> {
    cfg: &'a SupernetConfig,
    arch: &'a Arch,
    st: ParamStore,
}

impl Bilevel for Passes<'_> {
    /// Fresh mixing weights each pass, so a backward from `mark` reaches α
    /// and β.
    fn loss(
        &mut self,
        g: &mut Graph,
        (images, labels): (T, T),
        subs: &HashMap<T, T>,
    ) -> (T, usize) {
        let mark = g.nodes.len();
        let wn = supernet::mixing_weights(g, &self.arch.normal);
        let wr = supernet::mixing_weights(g, &self.arch.reduce);
        let cfg = self.cfg;
        let logits = self
            .st
            .substituted(subs, |st| supernet::forward(g, st, cfg, images, &wn, &wr));
        (g.log_softmax_xent(logits, labels), mark)
    }
    fn arch(&self) -> Vec<T> {
        self.arch
            .alphas()
            .into_iter()
            .chain(self.arch.betas())
            .collect()
    }
    fn weights(&self) -> Vec<T> {
        self.st.params.clone()
    }
}

/// ∇_a L_val(w, a) for every architecture tensor that gets one.
pub fn first_order(g: &mut Graph, p: &mut impl Bilevel, val: (T, T)) -> (T, HashMap<T, T>) {
    let (loss, mark) = p.loss(g, val, &HashMap::new());
    let grads = graph::backward_since(g, loss, mark);
    (loss, arch_only(&p.arch(), &grads))
}

fn arch_only(arch: &[T], grads: &graph::Grads) -> HashMap<T, T> {
    arch.iter()
        .filter_map(|a| grads.get(a).map(|&d| (*a, d)))
        .collect()
}

/// w′ = w − ξ ∇_w L_train(w, a) per weight, with ξ a new one-element state
/// starting at `xi0`; returns (w → w′, ξ).
fn virtual_step(
    g: &mut Graph,
    p: &mut impl Bilevel,
    train: (T, T),
    xi0: f32,
) -> (HashMap<T, T>, T) {
    let (lt, mark) = p.loss(g, train, &HashMap::new());
    let gt = graph::backward_since(g, lt, mark);
    let xi = g.state("search.xi", &[1], Some(vec![xi0]));
    let unrolled = p
        .weights()
        .into_iter()
        .filter_map(|w| gt.get(&w).map(|&d| (w, g.axpy(w, d, xi, -1.0))))
        .collect();
    (unrolled, xi)
}

/// The unrolled architecture gradient (see the module comment); returns
/// (L_val(w′, a), gradients, ξ).
pub fn second_order(
    g: &mut Graph,
    p: &mut impl Bilevel,
    val: (T, T),
    train: (T, T),
    xi0: f32,
) -> (T, HashMap<T, T>, T) {
    let (unrolled, xi) = virtual_step(g, p, train, xi0);
    // ∇_a L_val(w′, a) and v = ∇_{w′} L_val(w′, a).
    let (lv, mark) = p.loss(g, val, &unrolled);
    let gv = graph::backward_since(g, lv, mark);
    let dir: Vec<(T, T)> = p
        .weights()
        .iter()
        .filter_map(|w| {
            let wv = unrolled.get(w)?;
            gv.get(wv).map(|&v| (*w, v))
        })
        .collect();
    let vs: Vec<T> = dir.iter().map(|&(_, v)| v).collect();
    let eps = g.scaled_norm(&vs, 0.01, true);
    // ∇_a L_train(w ± ε v, a).
    let arch = p.arch();
    let mut hv = Vec::new();
    for sign in [1.0, -1.0] {
        let shifted: HashMap<T, T> = dir
            .iter()
            .map(|&(w, v)| (w, g.axpy(w, v, eps, sign)))
            .collect();
        let (l, mark) = p.loss(g, train, &shifted);
        hv.push(arch_only(&arch, &graph::backward_since(g, l, mark)));
    }
    // total = ∇_a L_val(w′) − (ξ / 2ε) (∇_a⁺ − ∇_a⁻).
    let inv_eps = g.scaled_norm(&vs, 100.0, false);
    let xi_over_eps = g.mul(xi, inv_eps);
    let one = g.state("search.one", &[1], Some(vec![1.0]));
    let mut total = HashMap::new();
    for (a, d) in arch_only(&arch, &gv) {
        let t = match (hv[0].get(&a), hv[1].get(&a)) {
            (Some(&plus), Some(&minus)) => {
                let diff = g.axpy(plus, minus, one, -1.0);
                g.axpy(d, diff, xi_over_eps, -0.5)
            }
            _ => d,
        };
        total.insert(a, t);
    }
    (lv, total, xi)
}

/// The objective the second-order gradient approximates, on its own:
/// L_val(w′(a), a) with w′(a) = w − ξ ∇_w L_train(w, a). Tests take its
/// gradient in a by finite differences as the exact reference.
pub fn unrolled_objective(
    g: &mut Graph,
    p: &mut impl Bilevel,
    val: (T, T),
    train: (T, T),
    xi: f32,
) -> T {
    let (unrolled, _) = virtual_step(g, p, train, xi);
    let (lv, _) = p.loss(g, val, &unrolled);
    g.pin(lv);
    lv
}

/// A graph with the supernet's architecture tensors and its four inputs
/// (validation and training batches); the weights come with the first pass.
struct Setup {
    g: Graph,
    arch: Arch,
    st: ParamStore,
    val: (T, T),
    train: (T, T),
}

fn setup(cfg: &SupernetConfig, seed: u64) -> Setup {
    if let Err(e) = cfg.validate() {
        panic!("supernet config: {e}");
    }
    let mut g = Graph::new();
    let arch = Arch::new(&mut g, &mut ParamStore::new(seed ^ 0xa7c4), &cfg.op_set);
    let mut st = ParamStore::new(seed);
    st.reuse = true; // every pass uses one set of weights
    let d = cfg.dims;
    let shape = [cfg.batch, d.channels, d.height, d.width];
    let val = (
        g.input("val.images", &shape),
        g.input("val.labels", &[cfg.batch]),
    );
    let train = (
        g.input("train.images", &shape),
        g.input("train.labels", &[cfg.batch]),
    );
    Setup {
        g,
        arch,
        st,
        val,
        train,
    }
}

/// The supernet's unrolled objective (see `unrolled_objective`) with the
/// weights and architecture of `build_step(cfg, _, seed)`.
pub struct SupernetUnrolled {
    pub g: Graph,
    pub arch: Arch,
    pub val: (T, T),
    pub train: (T, T),
    pub val_loss: T,
}

pub fn supernet_unrolled(cfg: &SupernetConfig, xi: f32, seed: u64) -> SupernetUnrolled {
    let Setup {
        mut g,
        arch,
        st,
        val,
        train,
    } = setup(cfg, seed);
    let mut p = Passes {
        cfg,
        arch: &arch,
        st,
    };
    let val_loss = unrolled_objective(&mut g, &mut p, val, train, xi);
    SupernetUnrolled {
        g,
        arch,
        val,
        train,
        val_loss,
    }
}

pub fn build_step(cfg: &SupernetConfig, h: &SearchHyper, seed: u64) -> SearchStep {
    let Setup {
        mut g,
        arch,
        st,
        val,
        train,
    } = setup(cfg, seed);
    let ((val_images, val_labels), (train_images, train_labels)) = (val, train);
    let mut p = Passes {
        cfg,
        arch: &arch,
        st,
    };
    let (val_loss, arch_grads, xi) = if h.second_order {
        let (l, grads, xi) = second_order(&mut g, &mut p, val, train, h.w_lr);
        (l, grads, Some(xi))
    } else {
        let (l, grads) = first_order(&mut g, &mut p, val);
        (l, grads, None)
    };

    // Architecture step. A cell kind the supernet does not use (depth 1
    // has no reduction cell) gets no gradient: its α and β stay as
    // initialised.
    let adam = AdamHyper {
        lr: h.a_lr,
        beta1: h.a_beta1,
        beta2: h.a_beta2,
        eps: 1e-8,
        weight_decay: h.a_weight_decay,
        decoupled: false,
        step: 1,
    };
    let alphas: Vec<T> = arch
        .alphas()
        .into_iter()
        .filter(|a| arch_grads.contains_key(a))
        .collect();
    let betas: Vec<T> = arch
        .betas()
        .into_iter()
        .filter(|b| arch_grads.contains_key(b))
        .collect();
    let alpha_updates =
        graph::append_updates(&mut g, &alphas, &arch_grads, Optimizer::Adam(adam), None);
    let affine = AffineHyper {
        lr: h.beta_lr,
        theta: h.beta_theta,
    };
    let beta_updates = graph::append_affine_scaling(&mut g, &betas, &arch_grads, affine);
    let arch_nodes = g.nodes.len();

    // Weight step on a training batch, with the architecture just updated.
    let (train_loss, mark) = p.loss(&mut g, train, &HashMap::new());
    let grads = graph::backward_since(&mut g, train_loss, mark);
    let sgd = SgdHyper {
        lr: h.w_lr,
        momentum: h.w_momentum,
        weight_decay: h.w_weight_decay,
    };
    let weights = p.st.params.clone();
    let weight_updates = graph::append_updates(
        &mut g,
        &weights,
        &grads,
        Optimizer::Sgd(sgd),
        Some(h.w_clip),
    );
    let mut arch_grads: Vec<(T, T)> = alphas
        .iter()
        .chain(&betas)
        .map(|a| (*a, arch_grads[a]))
        .collect();
    arch_grads.sort();
    for &(_, d) in &arch_grads {
        g.pin(d);
    }
    g.pin(val_loss);
    g.pin(train_loss);
    SearchStep {
        g,
        arch,
        weights,
        val_images,
        val_labels,
        train_images,
        train_labels,
        val_loss,
        train_loss,
        arch_grads,
        xi,
        alpha_updates,
        beta_updates,
        weight_updates,
        arch_nodes,
    }
}
