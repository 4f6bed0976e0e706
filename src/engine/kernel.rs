//! `Kernel`: one dispatch built once (pipeline, bind group, uniform, grid)
//! and re-encoded into a compute pass as often as a plan runs.

use std::sync::Arc;

use super::buffer::Buf;
use super::device::{Gpu, GpuError};

/// Workgroup size of the 1-D element-wise kernels (shaders use the same).
pub const WG: u32 = 256;

/// A grid for `n` invocations in workgroups of `wg`, folded into y when x
/// would pass the 65,535-workgroup limit (shaders rebuild the linear index
/// from `num_workgroups`).
pub fn grid_1d(n: usize, wg: u32) -> [u32; 3] {
    let groups = (n as u64).div_ceil(wg as u64).max(1);
    if groups <= 65_535 {
        [groups as u32, 1, 1]
    } else {
        let y = groups.div_ceil(65_535);
        [groups.div_ceil(y) as u32, y as u32, 1]
    }
}

/// The host's cores (1 where unknown).
pub fn host_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The workgroup size for a dispatch of `invocations` whose kernel's
/// default is `ws`: on a CPU adapter (`Gpu::wide` false) the one that
/// splits them most evenly over the host's cores
/// ([`balanced_workgroup`]), elsewhere `ws`.
pub fn workgroup_for(gpu: &Gpu, invocations: usize, ws: u32) -> u32 {
    if gpu.wide {
        ws
    } else {
        balanced_workgroup(invocations, ws, host_cores())
    }
}

/// SIMD lanes of a CPU adapter's invocation groups: llvmpipe runs a
/// workgroup 8 invocations at a time (256-bit vectors of f32).
pub const CPU_LANES: u32 = 8;

/// The workgroup size, at most `ws`, that splits `invocations` most evenly
/// over `cores` on a CPU adapter, where each workgroup runs on one core and
/// a dispatch lasts until its last workgroup ends: among the multiples of
/// [`CPU_LANES`] from `ws` / 2 to `ws`, the one whose longest core (the
/// workgroups dealt in turn, the short last one to the least loaded) runs
/// the fewest lane groups, if that is at most 0.95 of `ws`'s; else `ws`.
/// 224 invocations in groups of 64 leave one core 16 lane groups and the
/// other 12; in groups of 56, 14 each (measured: BENCHMARKS.md,
/// "Twenty-eighth pass"). Only the grid changes: each invocation computes
/// what it did, bit for bit.
pub fn balanced_workgroup(invocations: usize, ws: u32, cores: usize) -> u32 {
    let longest = |ws: u32| {
        let ws = ws as usize;
        let lanes = CPU_LANES as usize;
        let cores = cores.max(1);
        let (full, rest) = (invocations / ws, invocations % ws);
        let (per, last) = (ws.div_ceil(lanes), rest.div_ceil(lanes));
        let (base, extra) = (full / cores, full % cores);
        let most = (base + usize::from(extra > 0)) * per;
        if last > 0 {
            most.max(base * per + last)
        } else {
            most
        }
    };
    let floor = (ws / 2).max(CPU_LANES);
    let best = (floor..=ws)
        .rev()
        .filter(|w| w.is_multiple_of(CPU_LANES))
        .min_by_key(|&w| longest(w))
        .unwrap_or(ws);
    if 20 * longest(best) <= 19 * longest(ws) {
        best
    } else {
        ws
    }
}

/// Appends to `table` the rows of a dispatch that takes one workgroup per
/// row: `len` elements cut into spans of `span`, each row `row(first,
/// count)` as u32s (the batched weight-gradient sums and weight copies).
pub fn span_rows<const W: usize>(
    table: &mut Vec<u32>,
    len: usize,
    span: usize,
    row: impl Fn(usize, usize) -> [usize; W],
) {
    for at in (0..len).step_by(span) {
        let words = row(at, span.min(len - at));
        table.extend(words.map(|v| u32::try_from(v).expect("a table word fits u32")));
    }
}

/// Dispatches per encoding thread of [`Gpu::run`]: one chunk up to twice
/// [`MIN_CHUNK`], else as many chunks as the host has cores, none smaller
/// than `MIN_CHUNK` (a thread and a submit cost tens of µs; a dispatch ~3).
pub fn encode_chunk(dispatches: usize) -> usize {
    if dispatches <= 2 * MIN_CHUNK {
        return dispatches.max(1);
    }
    dispatches.div_ceil(host_cores()).max(MIN_CHUNK)
}

/// The smallest chunk [`encode_chunk`] makes.
pub const MIN_CHUNK: usize = 1024;

pub struct Kernel {
    /// "shader::entry", or a generated module's name.
    pub name: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    uniform: wgpu::Buffer,
    pub groups: [u32; 3],
    /// The bound buffers, held so the pool cannot hand them out while this
    /// dispatch may still run.
    _bound: Vec<Buf>,
}

impl Kernel {
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.groups;
        pass.dispatch_workgroups(x, y, z);
    }

    /// The bytes of the buffers this dispatch binds that are not among
    /// `known` (pooled buffers by address), adding each to `known`: a
    /// plan's kernel-private memory (weight-gradient partials, weight
    /// copies), counted once each, plus this dispatch's uniform.
    pub fn private_bytes(&self, known: &mut std::collections::HashSet<usize>) -> u64 {
        let bound: u64 = self
            ._bound
            .iter()
            .filter(|b| known.insert(Arc::as_ptr(&b.mem) as usize))
            .map(|b| b.raw().size())
            .sum();
        bound + self.uniform.size()
    }

    /// Rewrite the uniform parameters (for values that change per step,
    /// such as a learning rate or Adam's step count).
    pub fn set_params(&self, gpu: &Gpu, params: &[u32]) {
        gpu.queue
            .write_buffer(&self.uniform, 0, &pad16(bytemuck::cast_slice(params)));
    }
}

fn pad16(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(bytes.len().max(16).next_multiple_of(16), 0);
    v
}

impl Gpu {
    /// Build a dispatch of `entry` in `shaders/<shader>.wgsl`. Binding 0 is
    /// the uniform `params` (u32 words; f32 as bits); `slots` binds buffers
    /// to the binding numbers each shader file declares once for all its entry points.
    pub fn kernel(
        &self,
        shader: &'static str,
        entry: &'static str,
        params: &[u32],
        slots: &[(u32, &Buf)],
        groups: [u32; 3],
    ) -> Result<Kernel, GpuError> {
        let pipeline = self.pipeline(shader, entry)?;
        self.kernel_on(
            pipeline,
            format!("{shader}::{entry}"),
            params,
            slots,
            groups,
        )
    }

    /// `kernel` for a generated module: `module` names the specialisation
    /// (its cache key), `source` writes its WGSL on first use.
    pub fn kernel_generated(
        &self,
        module: &str,
        source: &dyn Fn() -> Result<String, String>,
        entry: &'static str,
        params: &[u32],
        slots: &[(u32, &Buf)],
        groups: [u32; 3],
    ) -> Result<Kernel, GpuError> {
        let pipeline = self.pipeline_from(module, entry, source)?;
        self.kernel_on(pipeline, module.to_string(), params, slots, groups)
    }

    /// `kernel` for a shader file whose `const CONSTANT: u32` sets a
    /// workgroup width: the file as written on GPUs (`wide`), on CPU
    /// adapters its variant with `narrow` instead (`shaders::specialized`),
    /// a module of its own named "shader.CONSTANTnarrow".
    #[allow(clippy::too_many_arguments)]
    pub fn kernel_narrow(
        &self,
        shader: &'static str,
        constant: &str,
        narrow: u32,
        entry: &'static str,
        params: &[u32],
        slots: &[(u32, &Buf)],
        groups: [u32; 3],
    ) -> Result<Kernel, GpuError> {
        if self.wide {
            return self.kernel(shader, entry, params, slots, groups);
        }
        let module = format!("{shader}.{constant}{narrow}");
        let source = || super::shaders::specialized(shader, constant, narrow);
        let pipeline = self.pipeline_from(&module, entry, &source)?;
        let label = format!("{module}::{entry}");
        self.kernel_on(pipeline, label, params, slots, groups)
    }

    fn kernel_on(
        &self,
        pipeline: Arc<wgpu::ComputePipeline>,
        name: String,
        params: &[u32],
        slots: &[(u32, &Buf)],
        groups: [u32; 3],
    ) -> Result<Kernel, GpuError> {
        let uniform = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&name),
            size: pad16(bytemuck::cast_slice(params)).len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue
            .write_buffer(&uniform, 0, &pad16(bytemuck::cast_slice(params)));
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (binding, b) in slots {
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: b.binding(),
            });
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation {
                context: format!("bind group of {name}"),
                message: e.to_string(),
            });
        }
        Ok(Kernel {
            name,
            pipeline,
            bind_group,
            uniform,
            groups,
            _bound: slots.iter().map(|(_, b)| (*b).clone()).collect(),
        })
    }

    /// Encode `kernels` in order into one compute pass (the host's whole
    /// share of a recorded step; `run` submits it).
    pub fn encode(&self, kernels: &[Kernel]) -> wgpu::CommandBuffer {
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for k in kernels {
                k.encode(&mut pass);
            }
        }
        enc.finish()
    }

    /// The GPU's own time for `kernels` recorded as one step (timestamps
    /// at the start and end of its compute pass), in seconds; `None` where
    /// the adapter has no timestamp queries. Benchmarks set it beside the
    /// host's encoding time: on a fast GPU the wall time of a step can be
    /// the host's, not the GPU's.
    pub fn gpu_seconds(&self, kernels: &[Kernel]) -> Result<Option<f64>, GpuError> {
        Ok(self.timed_passes(&[kernels])?.map(|t| t[0]))
    }

    /// Each dispatch's GPU time, in seconds, each in a compute pass of its
    /// own with timestamps around it (`--profile` on adapters with
    /// timestamp queries); `None` without them.
    pub fn dispatch_gpu_seconds(&self, kernels: &[Kernel]) -> Result<Option<Vec<f64>>, GpuError> {
        let mut out = Vec::with_capacity(kernels.len());
        // A query set holds at most 4,096 queries: two per pass.
        for ks in kernels.chunks(2048) {
            let passes: Vec<&[Kernel]> = ks.iter().map(std::slice::from_ref).collect();
            match self.timed_passes(&passes)? {
                Some(t) => out.extend(t),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// One compute pass per entry of `passes`, timestamps at the start and
    /// end of each, one submit; each pass's seconds.
    fn timed_passes(&self, passes: &[&[Kernel]]) -> Result<Option<Vec<f64>>, GpuError> {
        if !self
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return Ok(None);
        }
        let count = 2 * passes.len() as u32;
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("pass timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = 8 * count as u64;
        let buffer = |label, usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        let resolved = buffer("timestamps", U::QUERY_RESOLVE | U::COPY_SRC);
        let staging = buffer("timestamps readback", U::MAP_READ | U::COPY_DST);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        for (i, ks) in passes.iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            for k in *ks {
                k.encode(&mut pass);
            }
        }
        enc.resolve_query_set(&set, 0..count, &resolved, 0);
        enc.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        self.check_scope(scope, passes.iter().flat_map(|ks| ks.iter()))?;
        let ticks: Vec<u64> = self.read_staging(&staging)?;
        let period = self.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(Some(
            ticks
                .chunks_exact(2)
                .map(|t| t[1].saturating_sub(t[0]) as f64 * period)
                .collect(),
        ))
    }

    /// Encode `kernels` in order and submit them: one compute pass where
    /// they are few, else consecutive chunks encoded on parallel threads,
    /// each submitted as soon as it and those before it are encoded. A
    /// step of ~20,000 dispatches costs wgpu ~3 µs of host time each, on
    /// an H200 a quarter of the GPU's time: encoded in parallel and
    /// submitted in pieces, the GPU starts on the first piece while the
    /// host still encodes the rest. The queue runs the pieces in order
    /// and wgpu places the barriers between them, so the results are the
    /// same bits as one pass.
    pub fn run(&self, kernels: &[Kernel]) -> Result<(), GpuError> {
        self.run_chunked(kernels, encode_chunk(kernels.len()))
    }

    /// [`Gpu::run`] with chunks of at most `chunk` dispatches (tests set
    /// it to check that chunking does not change the results).
    pub fn run_chunked(&self, kernels: &[Kernel], chunk: usize) -> Result<(), GpuError> {
        if kernels.len() <= chunk {
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            self.queue.submit([self.encode(kernels)]);
            return self.check_scope(scope, kernels);
        }
        self.encode_chunks(kernels, chunk, |cb| {
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            self.queue.submit([cb]);
            self.check_scope(scope, kernels)
        })
    }

    /// The host's share of a step as [`Gpu::run`] pays it: the chunks
    /// encoded on parallel threads (not submitted).
    pub fn encode_parallel(
        &self,
        kernels: &[Kernel],
    ) -> Result<Vec<wgpu::CommandBuffer>, GpuError> {
        let mut out = Vec::new();
        self.encode_chunks(kernels, encode_chunk(kernels.len()), |cb| {
            out.push(cb);
            Ok(())
        })?;
        Ok(out)
    }

    /// `kernels` in chunks of `chunk`, each encoded on a thread of its
    /// own, handed to `take` in order as each (and those before it) is
    /// done.
    fn encode_chunks(
        &self,
        kernels: &[Kernel],
        chunk: usize,
        mut take: impl FnMut(wgpu::CommandBuffer) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        std::thread::scope(|s| {
            let handles: Vec<_> = kernels
                .chunks(chunk)
                .map(|ks| s.spawn(move || self.encode_checked(ks)))
                .collect();
            for h in handles {
                take(
                    h.join()
                        .map_err(|_| GpuError::Lost("encoding thread panicked".into()))??,
                )?;
            }
            Ok(())
        })
    }

    /// Encode on this thread under its own error scope (wgpu's scopes are
    /// per thread).
    fn encode_checked(&self, kernels: &[Kernel]) -> Result<wgpu::CommandBuffer, GpuError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let cb = self.encode(kernels);
        self.check_scope(scope, kernels)?;
        Ok(cb)
    }

    /// A scope's validation error, naming the dispatches it covered.
    fn check_scope<'a>(
        &self,
        scope: wgpu::ErrorScopeGuard,
        kernels: impl IntoIterator<Item = &'a Kernel>,
    ) -> Result<(), GpuError> {
        if let Some(e) = pollster::block_on(scope.pop()) {
            let names: Vec<&str> = kernels.into_iter().map(|k| k.name.as_str()).collect();
            return Err(GpuError::Validation {
                context: format!("dispatch of [{}]", names.join(", ")),
                message: e.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_workgroups_split_the_lane_groups_evenly() {
        // 3.5 workgroups of 64 on 2 cores: 16 lane groups against 12;
        // 4 of 56: 14 each.
        assert_eq!(balanced_workgroup(224, 64, 2), 56);
        // 6 workgroups and one lane group: as even as it gets.
        assert_eq!(balanced_workgroup(392, 64, 2), 64);
        // Many workgroups: the last one's share is under 5%.
        assert_eq!(balanced_workgroup(64 * 40 + 32, 64, 2), 64);
        // Whole workgroups, an even count.
        assert_eq!(balanced_workgroup(64, 16, 2), 16);
        // One core has nothing to balance.
        assert_eq!(balanced_workgroup(224, 64, 1), 64);
        // Three lane groups on two cores cannot be split evenly.
        assert_eq!(balanced_workgroup(24, 16, 2), 16);
        for n in 1..600 {
            for ws in [16, 64, 256] {
                let b = balanced_workgroup(n, ws, 2);
                assert!(
                    b <= ws && b >= ws / 2 && b.is_multiple_of(CPU_LANES),
                    "{n} {ws} {b}"
                );
            }
        }
    }
}
