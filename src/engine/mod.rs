//! The GPU engine: adapter choice and limits, the shader/pipeline cache,
//! pooled buffers, and `Kernel` — one pre-built dispatch that a recorded
//! plan re-encodes every step.

mod buffer;
mod device;
pub mod dispatch_log;
mod kernel;
pub mod portability;
pub mod shaders;
pub mod words64;

pub use buffer::{place, Buf};
pub use device::{
    default_llvmpipe_threads, list_adapters, llvmpipe_threads_for, AdapterRow, Gpu, GpuError,
    UsedLimits, LLVMPIPE_THREADS_VAR, UNIFORM_WEIGHT_BYTES,
};
pub use kernel::{
    balanced_workgroup, encode_chunk, grid_1d, host_cores, span_rows, workgroup_for, Kernel,
    CPU_LANES, MIN_CHUNK, WG,
};
