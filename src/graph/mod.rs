//! Graphs of the engine's ops: the IR, reverse-mode autodiff, optimizer
//! updates as nodes, the memory planner, the CPU reference executor, and the
//! recorded GPU step that replays one command encoder per step.

pub mod autodiff;
pub mod cpu;
pub mod fold;
pub mod fuse;
pub mod ir;
pub mod optim;
pub mod plan;
pub mod planner;

pub use autodiff::{backward, backward_since, Grads};
pub use cpu::CpuExec;
pub use fold::fold_eval_batchnorms;
pub use fuse::{fuse_add_concats, fuse_pool_batchnorms, fuse_relu_reads};
pub use ir::{Graph, Kind, Node, Op, T};
pub use optim::{append_affine_scaling, append_updates, Optimizer, Updates};
pub use plan::{arenas, memory_plan, Plan, PlanOptions};
