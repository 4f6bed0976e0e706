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

    /// Encode `kernels` in order into one compute pass, one submit.
    pub fn run(&self, kernels: &[Kernel]) -> Result<(), GpuError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue.submit([self.encode(kernels)]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            let names: Vec<&str> = kernels.iter().map(|k| k.name.as_str()).collect();
            return Err(GpuError::Validation {
                context: format!("dispatch of [{}]", names.join(", ")),
                message: e.to_string(),
            });
        }
        Ok(())
    }
}
