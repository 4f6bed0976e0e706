//! Every WGSL file under `shaders/`, embedded at build time. The engine
//! prepends `common.wgsl` to each; tests validate and translate them all.

pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// (file stem, source) of every op shader. One file per op family, named like
/// its module under `src/ops/`.
pub const FILES: &[(&str, &str)] = &[
    (
        "elementwise",
        include_str!("../../shaders/elementwise.wgsl"),
    ),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("conv2d", include_str!("../../shaders/conv2d.wgsl")),
    ("pool", include_str!("../../shaders/pool.wgsl")),
    ("batchnorm", include_str!("../../shaders/batchnorm.wgsl")),
    ("layout", include_str!("../../shaders/layout.wgsl")),
    ("mix", include_str!("../../shaders/mix.wgsl")),
    ("mix_bn", include_str!("../../shaders/mix_bn.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    (
        "softmax_xent",
        include_str!("../../shaders/softmax_xent.wgsl"),
    ),
    ("loss", include_str!("../../shaders/loss.wgsl")),
    ("optim", include_str!("../../shaders/optim.wgsl")),
    (
        "affine_scaling",
        include_str!("../../shaders/affine_scaling.wgsl"),
    ),
];

/// `src` with each index `name[e]` of the array `name` (a whole
/// identifier, not the end of a longer one) written as the call `func(e)`:
/// a generated module's reads of one binding routed through a function
/// (e.g. weights read from a uniform binding instead, `conv2d_rows`).
pub fn index_as_call(src: &str, name: &str, func: &str) -> String {
    let open = format!("{name}[");
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(at) = rest.find(&open) {
        let (before, after) = (&rest[..at], &rest[at + open.len()..]);
        let longer = before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(before);
        if longer {
            out.push_str(&open);
            rest = after;
            continue;
        }
        let mut depth = 1;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '[' => 1,
                    ']' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("index_as_call: unclosed {open}"));
        out.push_str(func);
        out.push('(');
        out.push_str(&index_as_call(&after[..end], name, func));
        out.push(')');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The head of a generated entry point `name` (one per module) in
/// workgroups of `wg` invocations: its signature and its linear index
/// `idx` (common.wgsl's `linear_index` for that size; launch it with
/// `grid_1d(n, wg)`).
pub fn open_entry(w: &mut String, name: &str, wg: u32) {
    w.push_str(&format!("@compute @workgroup_size({wg})\n"));
    w.push_str(&format!(
        "fn {name}(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {{\n"
    ));
    w.push_str(&format!("    let idx = gid.x + gid.y * nwg.x * {wg}u;\n"));
}

/// Templates that code generators complete (not compiled on their own): the
/// generated kernels are validated one specialisation at a time.
pub const TEMPLATES: &[&str] = &["conv2d_rows", "pool_rows"];

/// The full source the device compiles for shader `name`.
pub fn source(name: &str) -> Option<String> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| format!("{COMMON}\n{src}"))
}

/// `source(name)` with its `const CONSTANT: u32 = …;` set to `value`: a
/// file's variant for one kind of adapter (batch norm's training
/// workgroups, 32 wide on CPU adapters), compiled as a module of its own.
pub fn specialized(name: &str, constant: &str, value: u32) -> Result<String, String> {
    let src = source(name).ok_or_else(|| format!("no shader file {name} is registered"))?;
    let head = format!("const {constant}: u32 = ");
    let at = src
        .find(&head)
        .ok_or_else(|| format!("shader {name} declares no const {constant}: u32"))?;
    let end = at + src[at..].find(';').ok_or("unterminated const")?;
    Ok(format!("{}{head}{value}u{}", &src[..at], &src[end..]))
}

#[cfg(test)]
mod tests {
    use super::index_as_call;

    #[test]
    fn index_as_call_rewrites_whole_names_with_nested_indices() {
        let src = "let a = wt[i + b[j]] * dwt[k] + wt[wt[0u]];";
        assert_eq!(
            index_as_call(src, "wt", "f"),
            "let a = f(i + b[j]) * dwt[k] + f(f(0u));"
        );
        assert_eq!(index_as_call("x4[i]", "x", "f"), "x4[i]");
    }

    #[test]
    #[should_panic(expected = "unclosed wt[")]
    fn index_as_call_refuses_an_unclosed_index() {
        index_as_call("wt[i", "wt", "f");
    }
}
