//! gradnas: gradient neural-architecture search and compression on any GPU
//! through wgpu. Every tensor op and gradient is a WGSL compute shader
//! (`shaders/`) with a plain-Rust CPU twin (`ops::*::cpu`) it is tested
//! against.

pub mod bench;
pub mod compress;
pub mod config;
pub mod data;
pub mod engine;
pub mod export;
pub mod graph;
pub mod models;
pub mod nn;
pub mod ops;
pub mod pipeline;
pub mod predict;
pub mod progress;
pub mod report;
pub mod search;
pub mod space;
pub mod train;
pub mod verify;
