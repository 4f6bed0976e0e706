//! Adapter choice (honouring WGPU_BACKEND, WGPU_ADAPTER_NAME, WGPU_POWER_PREF),
//! device limits inside the portability budget, and the per-process
//! pipeline cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::buffer::BufferPool;
use super::shaders;

/// The portability budget every shader is written for (see the README): what
/// Metal, DX12, Vulkan and lavapipe all give.
pub const MAX_STORAGE_BUFFERS: u32 = 8;
pub const MAX_INVOCATIONS: u32 = 256;
pub const MAX_WORKGROUP_BYTES: u32 = 16 * 1024;
/// The uniform binding a convolution's weights are read through
/// (`Gpu::uniform_weights`): WebGPU's default `max_uniform_buffer_binding_size`,
/// which every adapter offers.
pub const UNIFORM_WEIGHT_BYTES: u64 = 64 * 1024;
/// Largest single buffer we ask for even when the adapter offers more.
const BUFFER_CAP: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found (backends {backends:?}); on Linux install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers` for lavapipe")]
    NoAdapter { backends: wgpu::Backends },
    #[error("WGPU_ADAPTER_NAME={wanted:?} matches none of the adapters seen: {seen}")]
    NoNamedAdapter { wanted: String, seen: String },
    #[error("GRADNAS_WIDE={0:?}: expected 1 (split reductions finely, as for a GPU) or 0 (coarsely, as for a CPU adapter)")]
    BadWide(String),
    #[error("GRADNAS_WORDS64={0:?}: expected 1 (storage views as 64-bit words) or 0 (as floats)")]
    BadWords64(String),
    #[error(
        "GRADNAS_WORDS64=1: adapter {0:?} does not offer 64-bit integers in shaders (SHADER_INT64)"
    )]
    NoInt64(String),
    #[error("GRADNAS_UNIFORM_WEIGHTS={0:?}: expected 1 (convolution weights read through uniform bindings) or 0 (through storage)")]
    BadUniformWeights(String),
    #[error("GRADNAS_HELD_PASSES={0:?}: expected 1 (batch norm's training passes hold their values between passes) or 0 (load them again)")]
    BadHeldPasses(String),
    #[error(
        "adapter {adapter:?} offers {field} = {offered}, below the portability budget of {needed}"
    )]
    BelowBudget {
        adapter: String,
        field: &'static str,
        offered: u64,
        needed: u64,
    },
    #[error("could not open a device on {adapter:?}")]
    Device {
        adapter: String,
        source: wgpu::RequestDeviceError,
    },
    #[error("buffer {name:?} needs {bytes} bytes but the adapter allows at most {limit} bytes per {what}")]
    TooLarge {
        name: String,
        bytes: u64,
        limit: u64,
        what: &'static str,
    },
    #[error("GPU validation error in {context}: {message}")]
    Validation { context: String, message: String },
    #[error("GPU device lost or wait failed: {0}")]
    Lost(String),
    #[error(transparent)]
    DispatchLog(#[from] super::dispatch_log::DispatchLogError),
}

/// The variable llvmpipe (lavapipe's compute path) reads for the number of
/// worker threads that run a dispatch's workgroups.
pub const LLVMPIPE_THREADS_VAR: &str = "LP_NUM_THREADS";

/// The llvmpipe worker count gradnas asks for on a machine with `cores`
/// cores when the variable is `set` as given: none when the user chose
/// (any non-empty value, theirs to keep), else two per core.
///
/// Why two: llvmpipe (Mesa 22.3) cuts a dispatch's workgroups into one
/// equal share per worker, each share taken whole by the first idle
/// worker, and wakes the workers for every dispatch. With one worker per
/// core, a worker that wakes late (~30 µs per dispatch) or a share that
/// runs long leaves the other core idle until it ends; with two per core
/// the shares are half as large and the first worker awake takes a second
/// one. Measured on the 2-core CI host, devices with different worker
/// counts stepping bench-small in turn in one process
/// (`examples/llvmpipe_threads.rs`): with 4 workers the step took a median
/// 11% less time than with 2, less in each of 9 rounds; 4, 6 and 8 alike;
/// 3 (uneven shares) slower than 4 (BENCHMARKS.md, "Seventeenth pass").
pub fn llvmpipe_threads_for(set: Option<&str>, cores: usize) -> Option<usize> {
    match set {
        Some(v) if !v.trim().is_empty() => None,
        _ => Some(2 * cores.max(1)),
    }
}

/// Set [`LLVMPIPE_THREADS_VAR`] as [`llvmpipe_threads_for`] chooses and
/// return the count set (none: the user's value stands). Other drivers
/// ignore the variable.
///
/// Call it first thing in `main`: the environment is process-global and
/// changing it while another thread reads it is undefined behaviour in C
/// libraries, and llvmpipe reads the variable when an instance is created
/// (each [`Gpu`] has its own), so it must be set before the first.
pub fn default_llvmpipe_threads() -> Option<usize> {
    let set = std::env::var(LLVMPIPE_THREADS_VAR).ok();
    let cores = super::kernel::host_cores();
    let n = llvmpipe_threads_for(set.as_deref(), cores)?;
    std::env::set_var(LLVMPIPE_THREADS_VAR, n.to_string());
    Some(n)
}

/// One adapter as `gradnas info` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterRow {
    pub name: String,
    pub backend: String,
    pub driver: String,
    pub driver_info: String,
    pub device_type: String,
    pub vendor: u32,
    pub device: u32,
}

impl AdapterRow {
    pub fn from_info(i: &wgpu::AdapterInfo) -> Self {
        AdapterRow {
            name: i.name.clone(),
            backend: format!("{:?}", i.backend),
            driver: i.driver.clone(),
            driver_info: i.driver_info.clone(),
            device_type: format!("{:?}", i.device_type),
            vendor: i.vendor,
            device: i.device,
        }
    }
}

/// The limits gradnas requests (and therefore may use).
#[derive(Debug, Clone, Serialize)]
pub struct UsedLimits {
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub min_storage_buffer_offset_alignment: u32,
}

/// (module name, entry): a shader file's stem, or a generated module's name.
type PipelineKey = (String, &'static str);

pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Split reductions finely (thousands of short invocations) rather than
    /// coarsely (a few long ones): true on GPUs, which need many
    /// invocations in flight to fill their cores, false on CPU adapters,
    /// where each workgroup runs on one core and every extra pass over
    /// partial sums costs. Sums are then added in another order, so results
    /// differ in the last bits between the two (each is deterministic).
    /// `GRADNAS_WIDE=0|1` overrides the adapter's default.
    pub wide: bool,
    /// Storage views of float4s and float2s moved as 64-bit words
    /// (`engine::words64`): true on llvmpipe, whose storage accesses cost
    /// per component, false elsewhere. Bit for bit the same results.
    /// `GRADNAS_WORDS64=0|1` overrides the default.
    pub words64: bool,
    /// The generated convolutions read their weights (the dense ones their
    /// tap-major copies) through a uniform binding of
    /// [`UNIFORM_WEIGHT_BYTES`] where they fit one (`ops::conv2d_rows`,
    /// `Spec::uniform`): true on llvmpipe, where a uniform read at a
    /// varying offset is one gather and a storage read a loop over the
    /// lanes, false elsewhere. Bit for bit the same results.
    /// `GRADNAS_UNIFORM_WEIGHTS=0|1` overrides the default.
    pub uniform_weights: bool,
    /// A training batch norm on a CPU adapter keeps each invocation's
    /// values between its two passes (statistics then output, sums then
    /// input gradient) instead of loading them again
    /// (`ops::batchnorm::Held`): true where the narrow training entries
    /// run (not `wide`), where every storage load is a loop over the
    /// lanes and a value kept is a stack slot. Bit for bit the same
    /// results. `GRADNAS_HELD_PASSES=0|1` overrides the default.
    pub held_passes: bool,
    modules: Mutex<HashMap<String, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    pub(crate) pool: BufferPool,
    /// Unique to this device in the process. wgpu's own handles do not tell
    /// devices of different instances apart ([`Gpu::another`]'s share ids),
    /// and a buffer of one cannot be bound on the other.
    pub id: u64,
}

fn is_llvmpipe(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu && info.name.contains("llvmpipe")
}

fn env_backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: env_backends(),
        flags: wgpu::InstanceFlags::empty().with_env(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    })
}

/// Every adapter the instance sees, for `gradnas info`.
pub fn list_adapters() -> Vec<AdapterRow> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(env_backends()))
        .iter()
        .map(|a| AdapterRow::from_info(&a.get_info()))
        .collect()
}

impl Gpu {
    /// The process-wide device: pipelines are compiled once per process.
    pub fn shared() -> Result<&'static Gpu, &'static GpuError> {
        static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();
        GPU.get_or_init(Gpu::new).as_ref()
    }

    pub fn new() -> Result<Gpu, GpuError> {
        let inst = instance();
        let backends = env_backends();
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(wanted) if !wanted.is_empty() => {
                let all = pollster::block_on(inst.enumerate_adapters(backends));
                let low = wanted.to_lowercase();
                let seen: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
                all.into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&low))
                    .ok_or_else(|| GpuError::NoNamedAdapter {
                        wanted,
                        seen: seen.join(", "),
                    })?
            }
            _ => pollster::block_on(
                inst.request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    force_fallback_adapter: false,
                    compatible_surface: None,
                    ..Default::default()
                }),
            )
            .map_err(|_| GpuError::NoAdapter { backends })?,
        };
        Gpu::on(adapter)
    }

    /// A second device on this one's adapter, from an instance of its own:
    /// on a CPU adapter such as lavapipe each instance brings its own
    /// worker threads, so two devices run two independent jobs (S2's cell
    /// measurements) side by side where one device leaves the cores idle
    /// between its dispatches (BENCHMARKS.md, "Sixteenth pass").
    pub fn another(&self) -> Result<Gpu, GpuError> {
        let same = |i: &wgpu::AdapterInfo| {
            i.name == self.info.name
                && i.backend == self.info.backend
                && i.device == self.info.device
                && i.vendor == self.info.vendor
                && i.driver_info == self.info.driver_info
        };
        let all = pollster::block_on(instance().enumerate_adapters(env_backends()));
        let seen: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
        let adapter = all
            .into_iter()
            .find(|a| same(&a.get_info()))
            .ok_or_else(|| GpuError::NoNamedAdapter {
                wanted: self.info.name.clone(),
                seen: seen.join(", "),
            })?;
        // The same reductions' split as this device, so both give the
        // same bits (`wide` may have been set after `new`).
        let mut g = Gpu::on(adapter)?;
        g.wide = self.wide;
        g.words64 = self.words64;
        g.uniform_weights = self.uniform_weights;
        g.held_passes = self.held_passes;
        Ok(g)
    }

    /// A second device on this one's adapter ([`Gpu::another`]) whose
    /// training batch norms hold their values between passes or not, to
    /// compare the two ways in one process.
    pub fn another_with_held_passes(&self, on: bool) -> Result<Gpu, GpuError> {
        let mut g = self.another()?;
        g.held_passes = on;
        Ok(g)
    }

    /// A second device on this one's adapter ([`Gpu::another`]) whose
    /// convolutions read their weights through uniform bindings or not, to
    /// compare the two ways in one process.
    pub fn another_with_uniform_weights(&self, on: bool) -> Result<Gpu, GpuError> {
        let mut g = self.another()?;
        g.uniform_weights = on;
        Ok(g)
    }

    /// A second device on this one's adapter ([`Gpu::another`]) whose
    /// shaders move their float views as 64-bit words or not, to compare
    /// the two ways in one process.
    pub fn another_with_words64(&self, on: bool) -> Result<Gpu, GpuError> {
        let mut g = self.another()?;
        if on && !g.device.features().contains(wgpu::Features::SHADER_INT64) {
            return Err(GpuError::NoInt64(g.info.name.clone()));
        }
        g.words64 = on;
        Ok(g)
    }

    /// This adapter's device, with the limits and settings gradnas asks of
    /// every adapter.
    fn on(adapter: wgpu::Adapter) -> Result<Gpu, GpuError> {
        let info = adapter.get_info();
        let al = adapter.limits();
        for (field, offered, needed) in [
            (
                "max_storage_buffers_per_shader_stage",
                al.max_storage_buffers_per_shader_stage as u64,
                MAX_STORAGE_BUFFERS as u64,
            ),
            (
                "max_compute_invocations_per_workgroup",
                al.max_compute_invocations_per_workgroup as u64,
                MAX_INVOCATIONS as u64,
            ),
            (
                "max_compute_workgroup_storage_size",
                al.max_compute_workgroup_storage_size as u64,
                MAX_WORKGROUP_BYTES as u64,
            ),
        ] {
            if offered < needed {
                return Err(GpuError::BelowBudget {
                    adapter: info.name.clone(),
                    field,
                    offered,
                    needed,
                });
            }
        }
        // Ask for the portable defaults, raised only where size matters: the
        // largest buffers the adapter allows (capped), never more bindings,
        // invocations or workgroup memory than the budget.
        let max_buffer = al.max_buffer_size.min(BUFFER_CAP);
        let limits = wgpu::Limits {
            max_storage_buffers_per_shader_stage: MAX_STORAGE_BUFFERS,
            max_compute_invocations_per_workgroup: MAX_INVOCATIONS,
            max_compute_workgroup_storage_size: MAX_WORKGROUP_BYTES,
            max_buffer_size: max_buffer,
            max_storage_buffer_binding_size: al.max_storage_buffer_binding_size.min(max_buffer),
            ..wgpu::Limits::defaults()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gradnas"),
            // Timestamps only where offered: benchmarks read a step's GPU
            // time with them, nothing else depends on them.
            // 64-bit integers where offered, for `words64`.
            required_features: adapter.features()
                & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_INT64),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|source| GpuError::Device {
            adapter: info.name.clone(),
            source,
        })?;
        device.set_device_lost_callback(|reason, msg| {
            eprintln!("gradnas: GPU device lost ({reason:?}): {msg}");
        });
        let wide = match std::env::var("GRADNAS_WIDE").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            Ok(v) if !v.is_empty() => return Err(GpuError::BadWide(v.to_string())),
            _ => info.device_type != wgpu::DeviceType::Cpu,
        };
        let int64 = device.features().contains(wgpu::Features::SHADER_INT64);
        let words64 = match std::env::var("GRADNAS_WORDS64").as_deref() {
            Ok("1") if int64 => true,
            Ok("1") => return Err(GpuError::NoInt64(info.name.clone())),
            Ok("0") => false,
            Ok(v) if !v.is_empty() => return Err(GpuError::BadWords64(v.to_string())),
            _ => int64 && is_llvmpipe(&info),
        };
        let uniform_weights = match std::env::var("GRADNAS_UNIFORM_WEIGHTS").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            Ok(v) if !v.is_empty() => return Err(GpuError::BadUniformWeights(v.to_string())),
            _ => is_llvmpipe(&info),
        };
        let held_passes = match std::env::var("GRADNAS_HELD_PASSES").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            Ok(v) if !v.is_empty() => return Err(GpuError::BadHeldPasses(v.to_string())),
            _ => !wide,
        };
        Ok(Gpu {
            adapter,
            device,
            queue,
            info,
            limits,
            wide,
            words64,
            uniform_weights,
            held_passes,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            pool: BufferPool::default(),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        })
    }

    pub fn adapter_row(&self) -> AdapterRow {
        AdapterRow::from_info(&self.info)
    }

    /// True on a CPU adapter (lavapipe's llvmpipe, WARP, SwiftShader).
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// True on llvmpipe (lavapipe), the CPU adapter whose worker threads
    /// `LP_NUM_THREADS` sets ([`default_llvmpipe_threads`]).
    pub fn is_llvmpipe(&self) -> bool {
        is_llvmpipe(&self.info)
    }

    /// The worker threads llvmpipe runs this device's dispatches on, for
    /// reports: "LP_NUM_THREADS=4" as the process's environment holds it,
    /// or "LP_NUM_THREADS unset" (llvmpipe then uses one worker per core);
    /// none on any other adapter (the variable means nothing to it).
    pub fn llvmpipe_threads(&self) -> Option<String> {
        self.is_llvmpipe()
            .then(|| match std::env::var(LLVMPIPE_THREADS_VAR) {
                Ok(v) if !v.trim().is_empty() => format!("{LLVMPIPE_THREADS_VAR}={v}"),
                _ => format!("{LLVMPIPE_THREADS_VAR} unset"),
            })
    }

    pub fn used_limits(&self) -> UsedLimits {
        let l = &self.limits;
        UsedLimits {
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
        }
    }

    /// A short human name: "llvmpipe (LLVM 15.0.6, 256 bits) / Vulkan".
    pub fn describe(&self) -> String {
        format!("{} / {:?}", self.info.name, self.info.backend)
    }

    /// The compiled pipeline for `entry` of shader file `shader` (cached).
    pub fn pipeline(
        &self,
        shader: &'static str,
        entry: &'static str,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        self.pipeline_from(shader, entry, &|| {
            shaders::source(shader).ok_or_else(|| {
                format!("no shader file {shader} is registered in src/engine/shaders.rs")
            })
        })
    }

    /// The compiled pipeline for `entry` of the module called `module`,
    /// whose WGSL `source` gives on first use (modules and pipelines are
    /// cached by name: generated kernels name their specialisation).
    pub fn pipeline_from(
        &self,
        module: &str,
        entry: &'static str,
        source: &dyn Fn() -> Result<String, String>,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let key = (module.to_string(), entry);
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let m = self.module(module, source)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let p = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &m,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation {
                context: format!("pipeline {module}::{entry}"),
                message: e.to_string(),
            });
        }
        let p = Arc::new(p);
        self.pipelines.lock().unwrap().insert(key, p.clone());
        Ok(p)
    }

    fn module(
        &self,
        name: &str,
        source: &dyn Fn() -> Result<String, String>,
    ) -> Result<Arc<wgpu::ShaderModule>, GpuError> {
        if let Some(m) = self.modules.lock().unwrap().get(name) {
            return Ok(m.clone());
        }
        let src = source()
            .and_then(|s| match self.words64 {
                true => super::words64::rewrite(&s),
                false => Ok(s),
            })
            .map_err(|message| GpuError::Validation {
                context: format!("shader {name}"),
                message,
            })?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let m = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation {
                context: format!("shader {name}"),
                message: e.to_string(),
            });
        }
        let m = Arc::new(m);
        self.modules
            .lock()
            .unwrap()
            .insert(name.to_string(), m.clone());
        Ok(m)
    }

    /// Block until all submitted work has finished.
    pub fn sync(&self) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::Lost(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::llvmpipe_threads_for;

    #[test]
    fn llvmpipe_gets_two_workers_per_core_unless_the_user_chose() {
        assert_eq!(llvmpipe_threads_for(None, 2), Some(4));
        assert_eq!(llvmpipe_threads_for(None, 16), Some(32));
        // An empty value is no choice; a machine that reports no cores
        // still gets workers.
        assert_eq!(llvmpipe_threads_for(Some(" "), 3), Some(6));
        assert_eq!(llvmpipe_threads_for(None, 0), Some(2));
        // The user's value stands, whatever it is (0: llvmpipe runs inline).
        assert_eq!(llvmpipe_threads_for(Some("0"), 2), None);
        assert_eq!(llvmpipe_threads_for(Some("2"), 2), None);
    }
}
