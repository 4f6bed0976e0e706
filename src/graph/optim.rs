//! Optimizer updates as nodes of the step: optional clipping by the global
//! gradient norm, then one SGD or Adam node per parameter.

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
}

/// Append the updates of `params` from `grads`. With `clip`, gradients are
/// scaled by min(1, clip / global norm) inside the update kernels.
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
    let coef = match clip {
        Some(max_norm) => {
            let c = g.temp("clip.coef", &[1]);
            g.push(Op::ClipCoef { max_norm }, gs.clone(), vec![c]);
            c
        }
        None => g.state("clip.one", &[1], Some(vec![1.0])),
    };
    let mut nodes = Vec::new();
    for (&p, &gr) in params.iter().zip(&gs) {
        let shape = g.def(p).shape.clone();
        let name = g.def(p).name.clone();
        let node = match opt {
            Optimizer::Sgd(h) => {
                let mom = g.state(&format!("{name}.momentum"), &shape, None);
                g.push(Op::Sgd(h), vec![gr, coef], vec![p, mom])
            }
            Optimizer::Adam(h) => {
                let m = g.state(&format!("{name}.adam_m"), &shape, None);
                let v = g.state(&format!("{name}.adam_v"), &shape, None);
                g.push(Op::Adam(h), vec![gr, coef], vec![p, m, v])
            }
        };
        nodes.push(node);
    }
    Updates { nodes }
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
    Updates { nodes }
}
