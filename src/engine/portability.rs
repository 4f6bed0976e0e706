//! Every shader is held to the portability budget and translated for the
//! other backends with naga: this is how Metal (MSL) and DX12 (HLSL) are
//! covered on machines that have neither.

use naga::valid::{Capabilities, ValidationFlags, Validator};

use super::device::{MAX_INVOCATIONS, MAX_STORAGE_BUFFERS, MAX_WORKGROUP_BYTES};
use super::shaders;

/// What one shader file turned into.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShaderReport {
    pub file: String,
    pub entry_points: Vec<EntryReport>,
    pub spirv_words: usize,
    pub msl_bytes: usize,
    pub hlsl_bytes: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EntryReport {
    pub name: String,
    pub invocations: u32,
    pub storage_buffers: u32,
    pub workgroup_bytes: u32,
}

/// Parse, validate (no optional capabilities), check the budget per entry
/// point, and translate to SPIR-V, MSL and HLSL.
pub fn check(name: &str) -> Result<ShaderReport, String> {
    let src = shaders::source(name).ok_or_else(|| format!("{name}: not registered"))?;
    check_source(name, &src)
}

/// `check` for any WGSL source (`name` is for messages).
pub fn check_source(name: &str, src: &str) -> Result<ShaderReport, String> {
    check_source_with(name, src, Capabilities::empty())
}

/// `check_source` for a module that needs 64-bit integers: the
/// `engine::words64` rewrite, for adapters that offer SHADER_INT64. It is
/// translated for MSL 2.3 and HLSL shader model 6.0, the first with 64-bit
/// integers.
pub fn check_source_int64(name: &str, src: &str) -> Result<ShaderReport, String> {
    check_source_with(name, src, Capabilities::SHADER_INT64)
}

fn check_source_with(name: &str, src: &str, caps: Capabilities) -> Result<ShaderReport, String> {
    let int64 = caps.contains(Capabilities::SHADER_INT64);
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| format!("{name}.wgsl: {}", e.emit_to_string(src)))?;
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| format!("{name}.wgsl: {}", e.emit_to_string(src)))?;

    for (_, ty) in module.types.iter() {
        if let naga::TypeInner::Atomic(s) = ty.inner {
            if s.kind == naga::ScalarKind::Float {
                return Err(format!("{name}.wgsl: float atomics are not portable"));
            }
        }
    }

    let mut entry_points = Vec::new();
    for (i, ep) in module.entry_points.iter().enumerate() {
        let fi = info.get_entry_point(i);
        let invocations = ep.workgroup_size.iter().product::<u32>();
        let (mut storage, mut wg_bytes) = (0u32, 0u32);
        for (h, var) in module.global_variables.iter() {
            if fi[h].is_empty() {
                continue;
            }
            match var.space {
                naga::AddressSpace::Storage { .. } => storage += 1,
                naga::AddressSpace::WorkGroup => {
                    wg_bytes += module.types[var.ty].inner.size(module.to_ctx());
                }
                _ => {}
            }
        }
        let at = format!("{name}.wgsl::{}", ep.name);
        if invocations > MAX_INVOCATIONS {
            return Err(format!(
                "{at}: {invocations} invocations > {MAX_INVOCATIONS}"
            ));
        }
        if storage > MAX_STORAGE_BUFFERS {
            return Err(format!(
                "{at}: {storage} storage buffers > {MAX_STORAGE_BUFFERS}"
            ));
        }
        if wg_bytes > MAX_WORKGROUP_BYTES {
            return Err(format!(
                "{at}: {wg_bytes} B workgroup memory > {MAX_WORKGROUP_BYTES}"
            ));
        }
        entry_points.push(EntryReport {
            name: ep.name.clone(),
            invocations,
            storage_buffers: storage,
            workgroup_bytes: wg_bytes,
        });
    }
    if entry_points.is_empty() {
        return Err(format!("{name}.wgsl: no entry points"));
    }

    let spv = naga::back::spv::write_vec(&module, &info, &Default::default(), None)
        .map_err(|e| format!("{name}.wgsl → SPIR-V: {e}"))?;
    let msl_opts = naga::back::msl::Options {
        fake_missing_bindings: true,
        lang_version: if int64 { (2, 3) } else { (1, 0) },
        ..Default::default()
    };
    let (msl, _) = naga::back::msl::write_string(&module, &info, &msl_opts, &Default::default())
        .map_err(|e| format!("{name}.wgsl → MSL: {e}"))?;
    let hlsl_opts = naga::back::hlsl::Options {
        fake_missing_bindings: true,
        shader_model: if int64 {
            naga::back::hlsl::ShaderModel::V6_0
        } else {
            naga::back::hlsl::Options::default().shader_model
        },
        ..Default::default()
    };
    let mut hlsl = String::new();
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_opts, &Default::default())
        .write(&module, &info, None)
        .map_err(|e| format!("{name}.wgsl → HLSL: {e}"))?;

    Ok(ShaderReport {
        file: format!("shaders/{name}.wgsl"),
        entry_points,
        spirv_words: spv.len(),
        msl_bytes: msl.len(),
        hlsl_bytes: hlsl.len(),
    })
}
