//! Every `.wgsl` file under `shaders/` is registered, validates with naga
//! without optional capabilities, stays inside the portability budget, and
//! translates to SPIR-V, MSL and HLSL; and so does each module with its
//! float views as 64-bit words (`engine::words64`, with SHADER_INT64).

use gradnas::engine::{portability, shaders, words64};
use gradnas::ops::{conv2d_rows, pool_rows};

#[test]
fn every_shader_file_is_registered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|s| s != "common")
        .collect();
    on_disk.sort();
    let mut registered: Vec<String> = shaders::FILES
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(shaders::TEMPLATES.iter().map(|n| n.to_string()))
        .collect();
    registered.sort();
    assert_eq!(
        on_disk, registered,
        "shaders/ and src/engine/shaders.rs disagree"
    );
}

#[test]
fn every_shader_validates_and_translates() {
    let mut failures = Vec::new();
    for (name, _) in shaders::FILES {
        match portability::check(name) {
            Ok(r) => {
                assert!(r.spirv_words > 0 && r.msl_bytes > 0 && r.hlsl_bytes > 0);
                for ep in &r.entry_points {
                    // The MSL and HLSL carry every entry point by name.
                    assert!(ep.invocations > 0, "{name}::{}", ep.name);
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    all_translate(
        shaders::FILES
            .iter()
            .map(|(name, _)| (name.to_string(), shaders::source(name).unwrap())),
    );
}

/// The generated convolution kernels (`ops::conv2d_rows`), every kernel
/// shape the op sets use, both kinds, all three directions.
#[test]
fn every_generated_kernel_validates_and_translates() {
    let specs = conv2d_rows::representative_specs();
    assert!(specs.len() >= 72);
    all_translate(specs.iter().map(|s| (s.name(), s.source())));
    // And the modules that write the dense kernels' tap-major weights,
    // one copy per dispatch and many (`conv2d_rows::CopyBatch`).
    let copies: Vec<_> = specs.iter().filter(|s| s.weights4()).collect();
    assert!(copies.len() >= 48);
    all_translate(
        copies
            .iter()
            .map(|s| (s.weights4_name(), s.weights4_source())),
    );
    all_translate(copies.iter().map(|s| {
        (
            format!("{}.batched", s.weights4_name()),
            s.weights4_batched_source(),
        )
    }));
}

/// The generated pooling kernels (`ops::pool_rows`): max and average,
/// forward and backward, every window, stride and padding they take.
#[test]
fn every_generated_pool_kernel_validates_and_translates() {
    let specs = pool_rows::representative_specs();
    assert!(specs.len() >= 64);
    all_translate(specs.iter().map(|s| (s.name(), s.source())));
}

/// The batch norm training entries that keep their values between passes
/// (`ops::batchnorm::Held`): forward and backward, over scalars and
/// float4s, one step (all guarded) to more than the step's planes take.
#[test]
fn every_generated_batchnorm_kernel_validates_and_translates() {
    use gradnas::ops::batchnorm::{Held, MAX_HELD};
    let mut held = Vec::new();
    for steps in [1, 2, 49, MAX_HELD] {
        for four in [false, true] {
            for backward in [false, true] {
                held.push(Held {
                    steps,
                    four,
                    backward,
                });
            }
        }
    }
    all_translate(held.iter().map(|h| (h.name(), h.source().unwrap())));
}

/// The shader files' variants for CPU adapters (narrow workgroups).
#[test]
fn every_shader_variant_validates_and_translates() {
    use gradnas::engine::shaders::specialized;
    use gradnas::ops::{batchnorm, mix_bn};
    let variants = [
        ("batchnorm", "TRAIN_WG", batchnorm::NARROW_TRAIN_WG),
        ("mix_bn", "DOT_WG", mix_bn::NARROW_DOT_WG),
    ];
    all_translate(variants.into_iter().map(|(name, constant, value)| {
        let src = specialized(name, constant, value).unwrap();
        assert!(src.contains(&format!("const {constant}: u32 = {value}u;")));
        (format!("{name}.{constant}{value}"), src)
    }));
}

/// Every (name, source) validates, stays in budget and translates, as
/// written and with its float views as 64-bit words, which leaves none.
fn all_translate(sources: impl Iterator<Item = (String, String)>) {
    let failures: Vec<String> = sources
        .flat_map(|(name, src)| {
            let plain = portability::check_source(&name, &src).err();
            let words = words64::rewrite(&src).and_then(|w| {
                if w.contains("array<vec4<f32>>") || w.contains("array<vec2<f32>>") {
                    return Err(format!("{name}: a float view left in\n{w}"));
                }
                portability::check_source_int64(&format!("{name}.words64"), &w).map(|_| ())
            });
            [plain, words.err()]
        })
        .flatten()
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn budget_violations_are_caught() {
    // The checker itself must be able to fail, once per rule.
    let nine: String = (0..9)
        .map(|i| format!("@group(0) @binding({i}) var<storage, read_write> b{i}: array<f32>;\n"))
        .collect();
    let nine_use: String = (0..9).map(|i| format!("b{i}[0] = 1.0; ")).collect();
    let cases = [
        (
            "invocations",
            "@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n\
             @compute @workgroup_size(512) fn big() { a[0] = 1.0; }"
                .to_string(),
        ),
        (
            "storage buffers",
            format!("{nine}@compute @workgroup_size(64) fn many() {{ {nine_use} }}"),
        ),
        (
            "workgroup memory",
            "var<workgroup> t: array<f32, 8192>;\n\
             @group(0) @binding(0) var<storage, read_write> a: array<f32>;\n\
             @compute @workgroup_size(64) fn fat() { t[0] = 1.0; a[0] = t[1]; }"
                .to_string(),
        ),
        (
            "atomics",
            "@group(0) @binding(0) var<storage, read_write> a: atomic<f32>;\n\
             @compute @workgroup_size(64) fn fa() { atomicAdd(&a, 1.0); }"
                .to_string(),
        ),
    ];
    for (rule, src) in cases {
        let r = portability::check_source(rule, &src);
        assert!(r.is_err(), "{rule}: an over-budget shader passed the check");
    }
    let ok = "@group(0) @binding(0) var<storage, read_write> a: array<f32>;\n\
              @compute @workgroup_size(256) fn fine() { a[0] = 1.0; }";
    portability::check_source("fine", ok).expect("a shader within budget passes");
    assert!(portability::check("no_such_shader").is_err());
}
