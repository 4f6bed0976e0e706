//! S1 — the gradient architecture search: the supernet over the PNAS cell
//! space, the bilevel step (α by Adam, β by affine scaling, weights by SGD)
//! and the derived genotype.

pub mod bilevel;
pub mod gate;
pub mod s1;
pub mod supernet;
