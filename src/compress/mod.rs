//! S4, compression (METHOD.md): from the mixed supernet to the discrete
//! network (`discretize`), and channel pruning by network slimming with
//! the parameter and multiply-add counts compared before and after
//! (`prune`).

pub mod discretize;
pub mod prune;

pub use prune::{flops, params, Tensors};
