//! A module's float4 and float2 storage views moved as 64-bit words.
//!
//! Why: llvmpipe (Mesa 22.3) runs every storage access as a loop over the
//! SIMD lanes with a bounds check and a branch per lane and per component,
//! so a `vec4<f32>` costs four component steps per lane, a `vec2<u64>`
//! holding the same 16 bytes two, and the kernels are bound by these loops
//! (BENCHMARKS.md, "Fourteenth pass"). Measured with a throwaway probe
//! (64 workgroups, 16 float4 loads an invocation): 1.4× the bytes a second
//! for loads, 1.3–1.6× for a load and a store ("Twenty-first pass").
//!
//! The rewrite is textual and total: each `var<storage, …> V:
//! array<vec4<f32>>` (or `vec2<f32>`) becomes `w64_V: array<vec2<u64>>`
//! (or `array<u64>`), the same bytes and the same element stride, so
//! indices, bindings and buffer sizes do not change; `V[i]` becomes
//! `w64_ld_V(i)`, `V[i] = v;` becomes `w64_st_V(i, v);`, and
//! `arrayLength(&V)` reads `w64_V`. The words are the floats' bits, so
//! every result is bit for bit the same. Any other use of a view is
//! refused, naming it, rather than guessed at. Shaders that use it need
//! the SHADER_INT64 feature (`Gpu::words64`).

/// One float-vector storage view of the module.
struct View {
    name: String,
    lanes: usize,
    writable: bool,
}

/// The module `src` with its float4/float2 storage views as 64-bit words.
pub fn rewrite(src: &str) -> Result<String, String> {
    let src = strip_comments(src);
    let (src, views) = declarations(&src)?;
    if views.is_empty() {
        return Ok(src);
    }
    let mut out = accesses(&src, &views, &mut Scopes::default())?;
    out.push_str(HELPERS);
    for v in &views {
        out.push_str(&helpers_for(v));
    }
    Ok(out)
}

const HELPERS: &str = "
fn w64_lo(w: u64) -> f32 { return bitcast<f32>(u32(w & 0xfffffffflu)); }
fn w64_hi(w: u64) -> f32 { return bitcast<f32>(u32(w >> 32u)); }
fn w64_pack(a: f32, b: f32) -> u64 { return u64(bitcast<u32>(a)) | (u64(bitcast<u32>(b)) << 32u); }
";

fn helpers_for(v: &View) -> String {
    let n = &v.name;
    let mut s = if v.lanes == 4 {
        format!(
            "fn w64_ld_{n}(i: u32) -> vec4<f32> {{ let w = w64_{n}[i]; \
             return vec4(w64_lo(w.x), w64_hi(w.x), w64_lo(w.y), w64_hi(w.y)); }}\n"
        )
    } else {
        format!(
            "fn w64_ld_{n}(i: u32) -> vec2<f32> {{ let w = w64_{n}[i]; \
             return vec2(w64_lo(w), w64_hi(w)); }}\n"
        )
    };
    if v.writable {
        s.push_str(&if v.lanes == 4 {
            format!(
                "fn w64_st_{n}(i: u32, v: vec4<f32>) {{ \
                 w64_{n}[i] = vec2(w64_pack(v.x, v.y), w64_pack(v.z, v.w)); }}\n"
            )
        } else {
            format!("fn w64_st_{n}(i: u32, v: vec2<f32>) {{ w64_{n}[i] = w64_pack(v.x, v.y); }}\n")
        });
    }
    s
}

/// Comments blanked (they may name a view): `//` to the line's end,
/// `/* … */` (nested, as WGSL's) to their end, their line breaks kept so
/// that naga's messages point at the right line.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let (mut depth, mut line) = (0usize, false);
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        match (c, next) {
            ('\n', _) => {
                line = false;
                out.push('\n');
            }
            _ if line => {}
            ('/', Some('*')) => {
                chars.next();
                depth += 1;
            }
            ('*', Some('/')) if depth > 0 => {
                chars.next();
                depth -= 1;
            }
            _ if depth > 0 => {}
            ('/', Some('/')) => line = true,
            _ => out.push(c),
        }
    }
    out
}

/// The views' declarations renamed and retyped, and the views.
fn declarations(src: &str) -> Result<(String, Vec<View>), String> {
    let mut out = String::with_capacity(src.len());
    let mut views = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("var<storage") {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find(';')
            .map(|e| at + e)
            .ok_or("a storage declaration without ';'")?;
        let decl = &rest[at..end];
        out.push_str(&match view_of(decl)? {
            Some(v) => {
                let (head, _) = decl.split_once('>').expect("var<storage…> has a '>'");
                let ty = if v.lanes == 4 {
                    "array<vec2<u64>>"
                } else {
                    "array<u64>"
                };
                let text = format!("{head}> w64_{}: {ty}", v.name);
                views.push(v);
                text
            }
            None => decl.to_string(),
        });
        rest = &rest[end..];
    }
    out.push_str(rest);
    Ok((out, views))
}

/// `var<storage, MODE> NAME: array<vec4<f32>>` → a view; other storage
/// declarations → None.
fn view_of(decl: &str) -> Result<Option<View>, String> {
    let compact: String = decl.chars().filter(|c| !c.is_whitespace()).collect();
    let Some((head, ty)) = compact.split_once(':') else {
        return Err(format!("cannot read the declaration {decl:?}"));
    };
    let lanes = match ty {
        "array<vec4<f32>>" => 4,
        "array<vec2<f32>>" => 2,
        _ => return Ok(None),
    };
    let (mode, name) = head
        .strip_prefix("var<storage")
        .and_then(|h| h.split_once('>'))
        .ok_or_else(|| format!("cannot read the declaration {decl:?}"))?;
    let writable = match mode {
        ",read_write" => true,
        ",read" | "" => false,
        _ => return Err(format!("unknown access mode in {decl:?}")),
    };
    Ok(Some(View {
        name: name.to_string(),
        lanes,
        writable,
    }))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The index of the bracket closing the one at `open`.
fn closing(s: &str, open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    for (i, c) in s[open..].char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(open + i);
                }
            }
            _ => {}
        }
    }
    Err(format!("unbalanced brackets after {:?}", snippet(s, open)))
}

/// The end of the statement from `from`: its ';' outside brackets.
fn statement_end(s: &str, from: usize) -> Result<usize, String> {
    let mut depth = 0i32;
    for (i, c) in s[from..].char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ';' if depth == 0 => return Ok(from + i),
            _ => {}
        }
    }
    Err(format!("a store without ';' at {:?}", snippet(s, from)))
}

fn snippet(s: &str, at: usize) -> &str {
    let end = (at + 60).min(s.len());
    let end = (end..=s.len())
        .find(|&e| s.is_char_boundary(e))
        .unwrap_or(s.len());
    &s[at..end]
}

/// Locals that shadow a view (generated kernels name registers `x2`, `x4`
/// …), each with the brace depth of the block that declares it.
#[derive(Default)]
struct Scopes {
    depth: usize,
    locals: Vec<(String, usize)>,
    /// The last word, while only blanks followed it.
    last_word: String,
}

/// Every use of a view in `s` rewritten (recursively inside indices and
/// stored values).
fn accesses(s: &str, views: &[View], sc: &mut Scopes) -> Result<String, String> {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    let mut i = 0;
    let mut prev = ' ';
    while i < s.len() {
        let c = s[i..].chars().next().expect("in bounds");
        if !is_ident(c) || is_ident(prev) || prev == '.' {
            match c {
                '{' => sc.depth += 1,
                '}' => {
                    let d = sc.depth;
                    sc.locals.retain(|(_, at)| *at < d);
                    sc.depth = d.saturating_sub(1);
                }
                _ => {}
            }
            if !c.is_whitespace() {
                sc.last_word.clear();
            }
            out.push(c);
            prev = c;
            i += c.len_utf8();
            continue;
        }
        let len = s[i..].find(|c: char| !is_ident(c)).unwrap_or(s.len() - i);
        let word = &s[i..i + len];
        let declares = matches!(sc.last_word.as_str(), "let" | "var");
        let shadowed = sc.locals.iter().any(|(n, _)| n == word);
        let view = views.iter().find(|v| v.name == word);
        if declares && view.is_some() {
            sc.locals.push((word.to_string(), sc.depth));
        }
        sc.last_word = word.to_string();
        let Some(v) = view.filter(|_| !declares && !shadowed) else {
            out.push_str(word);
            prev = word.chars().last().expect("non-empty");
            i += len;
            continue;
        };
        let after = i + len;
        let open = after + (s[after..].len() - s[after..].trim_start().len());
        if s[open..].starts_with('[') {
            let close = closing(s, open)?;
            let index = accesses(&s[open + 1..close], views, sc)?;
            let tail = &s[close + 1..];
            let op_at = close + 1 + (tail.len() - tail.trim_start().len());
            let op = ["+=", "-=", "*=", "/=", "="]
                .into_iter()
                .find(|op| s[op_at..].starts_with(op) && !s[op_at..].starts_with("=="));
            if let Some(op) = op {
                if !v.writable {
                    return Err(format!("{} is read-only but stored to", v.name));
                }
                let end = statement_end(s, op_at + op.len())?;
                let value = accesses(s[op_at + op.len()..end].trim(), views, sc)?;
                let n = &v.name;
                out.push_str(&match op {
                    "=" => format!("w64_st_{n}({index}, {value})"),
                    _ => format!(
                        "w64_st_{n}({index}, w64_ld_{n}({index}) {} ({value}))",
                        &op[..1]
                    ),
                });
                i = end;
            } else {
                if s[close + 1..].trim_start().starts_with('.') {
                    let member = s[close + 1..].trim_start()[1..].trim_start();
                    let rest = member.trim_start_matches(is_ident).trim_start();
                    if rest.starts_with('=') && !rest.starts_with("==") {
                        return Err(format!("a store to a lane of {}[…]", v.name));
                    }
                }
                out.push_str(&format!("w64_ld_{}({index})", v.name));
                i = close + 1;
            }
            prev = ')';
            sc.last_word.clear();
        } else if out.trim_end().ends_with('&') {
            // arrayLength(&V): the words have the floats' stride.
            out.push_str(&format!("w64_{}", v.name));
            prev = 'x';
            i = after;
        } else {
            return Err(format!(
                "{} used other than indexed or in arrayLength: {:?}",
                v.name,
                snippet(s, i)
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out2: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> out4 : array< vec4<f32> >;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    // x4[9] in a comment is not a use
    /* out4[7] = v; nor in a block */
    let n = arrayLength(&x4);
    let v = x4[x4[id.x].x4 + u32(x[id.x])] + x4[(id.x)];
    out4[id.x + min(n, 3u)] = v * x4[id.x].x;
    out4[0] += v;
    out2[id.x] = out2[id.x + 1u] + v.xy;
    if v.x == out4[1].x { out4[2] = vec4(0.0); }
    {
        let x4 = v.x;
        out2[0] = vec2(x4);
    }
    var out2: vec2<f32>;
    out2[1] = x4[3].y;
}
";

    #[test]
    fn rewrites_declarations_loads_stores_and_lengths() {
        let r = rewrite(SRC).unwrap();
        for (want, why) in [
            (
                "var<storage, read> w64_x4: array<vec2<u64>>;",
                "a read view",
            ),
            (
                "var<storage, read_write> w64_out2: array<u64>;",
                "a float2 view",
            ),
            (
                "var<storage, read_write> w64_out4: array<vec2<u64>>;",
                "spaced type",
            ),
            ("var<storage, read> x: array<f32>;", "scalars kept"),
            ("arrayLength(&w64_x4)", "the length"),
            (
                "w64_ld_x4(w64_ld_x4(id.x).x4 + u32(x[id.x]))",
                "nested index, member kept",
            ),
            ("+ w64_ld_x4((id.x));", "parenthesised index"),
            (
                "w64_st_out4(id.x + min(n, 3u), v * w64_ld_x4(id.x).x);",
                "store",
            ),
            ("w64_st_out4(0, w64_ld_out4(0) + (v));", "compound store"),
            (
                "w64_st_out2(id.x, w64_ld_out2(id.x + 1u) + v.xy);",
                "float2 store",
            ),
            (
                "if v.x == w64_ld_out4(1).x { w64_st_out4(2, vec4(0.0)); }",
                "== is a read",
            ),
            ("fn w64_st_out2(i: u32, v: vec2<f32>)", "float2 helper"),
            (
                "let x4 = v.x;\n        w64_st_out2(0, vec2(x4));",
                "a local x4 in a block",
            ),
            (
                "var out2: vec2<f32>;\n    out2[1] = w64_ld_x4(3).y;",
                "x4 again after the block, out2 local",
            ),
        ] {
            assert!(r.contains(want), "{why}: {want:?} not in\n{r}");
        }
        assert!(
            !r.contains("x4[9]") && !r.contains("out4[7]"),
            "the comments"
        );
        assert!(
            !r.contains("fn w64_st_x4"),
            "no store helper for a read view"
        );
        assert!(!r.contains("vec4<f32>>"), "no float4 view left:\n{r}");
    }

    #[test]
    fn refuses_what_it_cannot_rewrite() {
        let decl = "@group(0) @binding(1) var<storage, read_write> y4: array<vec4<f32>>;\n\
                    @group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;\n";
        for (body, want) in [
            (
                "fn f() { a4[0] = vec4(1.0); }",
                "a4 is read-only but stored to",
            ),
            ("fn f() { y4[0].x = 1.0; }", "a store to a lane of y4"),
            ("fn f() { let p = y4; }", "y4 used other than indexed"),
            ("fn f() { y4[0] = 1.0 }", "a store without ';'"),
            ("fn f() { let v = y4[0; }", "unbalanced brackets"),
        ] {
            let e = rewrite(&format!("{decl}{body}")).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn leaves_a_module_without_views_as_it_was_less_comments() {
        let src = "@group(0) @binding(0) var<storage, read> x: array<f32>; // x4[0]\n\
                   /* y4[1] /* nested */\n x4 */fn f() {}";
        assert_eq!(
            rewrite(src).unwrap(),
            "@group(0) @binding(0) var<storage, read> x: array<f32>; \n\nfn f() {}"
        );
    }
}
