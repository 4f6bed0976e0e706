//! Optimizer updates as nodes of the step: optional clipping by the global
//! gradient norm, then one SGD or Adam node for all parameters.

use super::autodiff::Grads;
use super::ir::{Graph, Op, T};
use crate::ops::optim::{AdamHyper, SgdHyper};

#[derive(Debug, Clone, Copy)]
pub enum Optimizer {
    Sgd(SgdHyper),
    Adam(AdamHyper),
}

/// The update nodes of a step, so a schedule can change their
/// hyperparameters between steps without rebuilding anything.
#[derive(Debug, Clone, Default)]
pub struct Updates {
    pub nodes: Vec<usize>,
    /// Each parameter's optimizer states (SGD: its momentum; Adam: m, v),
    /// in the order the parameters were given.
    pub states: Vec<Vec<T>>,
}

/// Append the updates of `params` from `grads`: one node for all of them
/// (see `Op::Sgd`). With `clip`, gradients are scaled by
/// min(1, clip / global norm) inside the update kernel.
pub fn append_updates(
    g: &mut Graph,
    params: &[T],
    grads: &Grads,
    opt: Optimizer,
    clip: Option<f32>,
) -> Updates {
    let gs: Vec<T> = params
        .iter()
        .map(|p| {
            *grads
                .get(p)
                .unwrap_or_else(|| panic!("parameter {} gets no gradient", g.def(*p).name))
        })
        .collect();
    if params.is_empty() {
        return Updates::default();
    }
    let coef = match clip {
        Some(max_norm) => {
            let c = g.temp("clip.coef", &[1]);
            g.push(Op::ClipCoef { max_norm }, gs.clone(), vec![c]);
            c
        }
        None => g.state("clip.one", &[1], Some(vec![1.0])),
    };
    let suffixes: &[&str] = match opt {
        Optimizer::Sgd(_) => &["momentum"],
        Optimizer::Adam(_) => &["adam_m", "adam_v"],
    };
    let states: Vec<Vec<T>> = params
        .iter()
        .map(|&p| {
            let shape = g.def(p).shape.clone();
            let name = g.def(p).name.clone();
            suffixes
                .iter()
                .map(|s| g.state(&format!("{name}.{s}"), &shape, None))
                .collect()
        })
        .collect();
    let mut outputs = params.to_vec();
    for k in 0..suffixes.len() {
        outputs.extend(states.iter().map(|s| s[k]));
    }
    let mut inputs = gs;
    inputs.push(coef);
    let op = match opt {
        Optimizer::Sgd(h) => Op::Sgd(h),
        Optimizer::Adam(h) => Op::Adam(h),
    };
    let node = g.push(op, inputs, outputs);
    Updates {
        nodes: vec![node],
        states,
    }
}

/// Append one affine-scaling step per β tensor (each one simplex), from
/// `grads`; returns the nodes so a schedule can change their lr.
pub fn append_affine_scaling(
    g: &mut Graph,
    betas: &[T],
    grads: &Grads,
    h: crate::ops::affine_scaling::AffineHyper,
) -> Updates {
    let nodes = betas
        .iter()
        .map(|&b| {
            let gr = *grads
                .get(&b)
                .unwrap_or_else(|| panic!("{} gets no gradient", g.def(b).name));
            let segments = vec![g.len(b)];
            g.push(Op::AffineScaling { h, segments }, vec![gr], vec![b])
        })
        .collect();
    Updates {
        nodes,
        states: Vec::new(),
    }
}
