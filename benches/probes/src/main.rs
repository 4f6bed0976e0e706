//! Times entry points of a probe shader on the first Vulkan adapter:
//! `probes SHADER.wgsl ENTRY...`. Every entry binds a 16 MiB storage buffer
//! `a` (binding 0), an output (1) and a 64 KiB uniform array (2); GROUPS
//! (default 256) workgroups of 64 invocations, each reading 4,096 floats
//! in the load probes; REPS (default 1) dispatches per pass. Prints the best
//! of 5 timed passes after a warm-up, and ns per float read per invocation.
//! UNCHECKED=1 creates the module without wgpu's bounds checks
//! (`create_shader_module_trusted`); TEX=1 binds a 1024×1024 rgba32f
//! texture at binding 3 instead of the uniform array (texture.wgsl).

use std::time::Instant;

use wgpu::util::DeviceExt;

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name).map_or(default, |v| v.parse().expect(name))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: probes SHADER.wgsl ENTRY...");
    let src = std::fs::read_to_string(&path).expect("read the shader");
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN,
        flags: wgpu::InstanceFlags::empty(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter =
        pollster::block_on(instance.request_adapter(&Default::default())).expect("adapter");
    println!("adapter: {}", adapter.get_info().name);
    let (dev, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("device");
    let desc = wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(src.into()),
    };
    let module = if env("UNCHECKED", 0) == 1 {
        unsafe { dev.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
    } else {
        dev.create_shader_module(desc)
    };
    let n = 1usize << 22;
    let data: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let init = |contents: &[f32], usage| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(contents),
            usage,
        })
    };
    let a = init(&data, wgpu::BufferUsages::STORAGE);
    let u = init(&data[..16384], wgpu::BufferUsages::UNIFORM);
    let o = init(&data, wgpu::BufferUsages::STORAGE);
    let tex = dev.create_texture_with_data(
        &queue,
        &wgpu::TextureDescriptor {
            label: None,
            size: wgpu::Extent3d {
                width: 1024,
                height: 1024,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING,
            view_formats: &[],
        },
        wgpu::util::TextureDataOrder::LayerMajor,
        bytemuck::cast_slice(&data),
    );
    let view = tex.create_view(&Default::default());
    let (groups, reps) = (env("GROUPS", 256), env("REPS", 1));
    for entry in args {
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some(&entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let mut entries: Vec<_> = [&a, &o]
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        if env("TEX", 0) == 1 {
            entries.push(wgpu::BindGroupEntry {
                binding: 3,
                resource: wgpu::BindingResource::TextureView(&view),
            });
        } else {
            entries.push(wgpu::BindGroupEntry {
                binding: 2,
                resource: u.as_entire_binding(),
            });
        }
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        let run = || {
            let mut enc = dev.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind, &[]);
                for _ in 0..reps {
                    pass.dispatch_workgroups(groups, 1, 1);
                }
            }
            queue.submit([enc.finish()]);
            dev.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
        };
        run();
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        let reads = groups as f64 * 64.0 * 4096.0 * reps as f64;
        println!(
            "{entry:<10} {:>9.2} ms  {:.3} ns per float read per invocation",
            best * 1e3,
            best * 1e9 / reads
        );
    }
}
