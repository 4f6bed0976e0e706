//! One module per op family, named like its shader in `shaders/`: the shape
//! rule, the plain-Rust CPU reference of forward and backward (the twin the
//! GPU is checked against), and the GPU dispatch builders that return
//! `Kernel`s for a plan to record.

pub mod affine_scaling;
pub mod batchnorm;
pub mod conv2d;
pub mod conv2d_rows;
pub mod elementwise;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod mix;
pub mod mix_bn;
pub mod optim;
pub mod pool;
pub mod pool_rows;
pub mod reduce;
pub mod softmax_xent;
