//! The first-order bilevel step of S1, recorded as one plan: the
//! architecture step on a validation batch (α by Adam, β by the
//! affine-scaling interior-point step), then the weight step on a training
//! batch (SGD with momentum, weight decay and clipping) with the updated
//! architecture.

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
    pub alpha_updates: Updates,
    pub beta_updates: Updates,
    pub weight_updates: Updates,
    /// Nodes of the architecture half (the weight half follows).
    pub arch_nodes: usize,
}

pub fn build_step(cfg: &SupernetConfig, h: &SearchHyper, seed: u64) -> SearchStep {
    if let Err(e) = cfg.validate() {
        panic!("supernet config: {e}");
    }
    let mut g = Graph::new();
    let arch = Arch::new(&mut g, &mut ParamStore::new(seed ^ 0xa7c4), &cfg.op_set);
    let mut st = ParamStore::new(seed);
    st.reuse = true; // both passes use one set of weights
    let d = cfg.dims;
    let shape = [cfg.batch, d.channels, d.height, d.width];

    // Architecture step on a validation batch.
    let val_images = g.input("val.images", &shape);
    let val_labels = g.input("val.labels", &[cfg.batch]);
    let wn = supernet::mixing_weights(&mut g, &arch.normal);
    let wr = supernet::mixing_weights(&mut g, &arch.reduce);
    let logits = supernet::forward(&mut g, &mut st, cfg, val_images, &wn, &wr);
    let val_loss = g.log_softmax_xent(logits, val_labels);
    let grads = graph::backward(&mut g, val_loss);
    let adam = AdamHyper {
        lr: h.a_lr,
        beta1: h.a_beta1,
        beta2: h.a_beta2,
        eps: 1e-8,
        weight_decay: h.a_weight_decay,
        decoupled: false,
        step: 1,
    };
    // A cell kind the supernet does not use (depth 1 has no reduction
    // cell) gets no gradient: its α and β stay as initialised.
    let alphas: Vec<T> = arch
        .alphas()
        .into_iter()
        .filter(|a| grads.contains_key(a))
        .collect();
    let betas: Vec<T> = arch
        .betas()
        .into_iter()
        .filter(|b| grads.contains_key(b))
        .collect();
    let alpha_updates = graph::append_updates(&mut g, &alphas, &grads, Optimizer::Adam(adam), None);
    let affine = AffineHyper {
        lr: h.beta_lr,
        theta: h.beta_theta,
    };
    let beta_updates = graph::append_affine_scaling(&mut g, &betas, &grads, affine);
    let arch_nodes = g.nodes.len();

    // Weight step on a training batch, with the architecture just updated.
    let train_images = g.input("train.images", &shape);
    let train_labels = g.input("train.labels", &[cfg.batch]);
    let wn = supernet::mixing_weights(&mut g, &arch.normal);
    let wr = supernet::mixing_weights(&mut g, &arch.reduce);
    let logits = supernet::forward(&mut g, &mut st, cfg, train_images, &wn, &wr);
    let train_loss = g.log_softmax_xent(logits, train_labels);
    let grads = graph::backward_since(&mut g, train_loss, arch_nodes);
    let sgd = SgdHyper {
        lr: h.w_lr,
        momentum: h.w_momentum,
        weight_decay: h.w_weight_decay,
    };
    let weights = st.params.clone();
    let weight_updates = graph::append_updates(
        &mut g,
        &weights,
        &grads,
        Optimizer::Sgd(sgd),
        Some(h.w_clip),
    );
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
        alpha_updates,
        beta_updates,
        weight_updates,
        arch_nodes,
    }
}
