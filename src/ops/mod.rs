//! One module per op family, named like its shader in `shaders/`: the shape
//! rule, the plain-Rust CPU reference of forward and backward (the twin the
//! GPU is checked against), and the GPU dispatch builders that return
//! `Kernel`s for a plan to record.

pub mod elementwise;
pub mod reduce;
