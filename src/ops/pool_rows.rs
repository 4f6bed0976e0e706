//! Max and average pooling as generated straight-line kernels (why: see
//! `shaders/pool_rows.wgsl`), forward and backward, for the windows the op
//! sets use (k ≤ 5, stride 1 or 2). `pool` routes the shapes that fit here
//! and keeps its general kernels for the rest; the CPU twin is `pool::cpu`.

use std::fmt::Write;

use super::pool::Shape;
use crate::engine::{grid_1d, shaders, workgroup_for, Buf, Gpu, GpuError, Kernel, WG};

const TEMPLATE: &str = include_str!("../../shaders/pool_rows.wgsl");

/// Outputs (forward) or input cells (backward) of one row per invocation;
/// a multiple of every stride taken, so a block's first input column maps
/// to a whole output column.
const COLS: usize = 8;

/// Max or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Max,
    Avg,
}

/// One generated kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    pub backward: bool,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    /// Output rows per invocation of the forward, which share the input
    /// rows their windows span, or input rows per invocation of the
    /// backward, which share the output rows covering them: `FORWARD_ROWS`
    /// and `BACKWARD_ROWS` on CPU adapters; 1 on GPUs (many short
    /// invocations). Max forwards in blocks on lavapipe:
    /// with the argmax [32,16,28,28] 1.44–1.52 → 1.48–1.80 GFLOP/s; fused
    /// with a batch norm (no argmax), a one-shot cell's max pools 26–29 →
    /// 18–24 ms.
    pub rows: usize,
    /// The input rows are whole vectors of `vec` floats (width divisible by
    /// 4 or 2) and a blocked forward reads them so; 1 elsewhere.
    pub vec: usize,
    /// A forward followed by an evaluation batch norm it applies (no
    /// argmax written).
    pub bn: Bn,
    /// Invocations per workgroup where a CPU adapter's dispatch splits
    /// more evenly over its cores in smaller ones
    /// (`engine::balanced_workgroup`, chosen at launch); 0: `WG`.
    pub wg: u32,
}

/// The batch norm a forward applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bn {
    None,
    /// Without γ, β.
    Plain,
    Affine,
}

/// Output rows per average-forward invocation on a CPU adapter
/// (`Spec::rows`): measured on lavapipe, avg 3×3 over [32,16,28,28]
/// 1.09–1.12 ms at 1 row (scalar loads), 0.82 at 2, 0.65–0.66 at 4.
const FORWARD_ROWS: usize = 4;

/// Input rows per backward invocation on a CPU adapter (`Spec::rows`; a
/// multiple of both strides): an output row's dy and argmax, loaded once,
/// feed every input row of the block it covers, so a 3×3 stride-1 window
/// loads 6 output rows for 4 input rows where one row at a time loads 3
/// for each. On lavapipe, as shares of the step's profile: max 3×3 stride
/// 1 0.65–0.83 of its share at one row, stride 2 0.62–0.77, average
/// stride 1 little changed (BENCHMARKS.md, "Twenty-second pass").
const BACKWARD_ROWS: usize = 4;

/// Whether the generated kernels take this pooling.
pub fn fits(s: &Shape) -> bool {
    s.k <= 5 && (s.stride == 1 || s.stride == 2) && s.pad <= s.k / 2
}

impl Spec {
    /// Invocations per workgroup (see `Spec::wg`).
    fn workgroup(&self) -> u32 {
        if self.wg > 0 {
            self.wg
        } else {
            WG
        }
    }

    /// The module's name, which is also its cache key.
    pub fn name(&self) -> String {
        let blocks = if self.rows > 1 || self.vec > 1 {
            format!(".h{}v{}", self.rows, self.vec)
        } else {
            String::new()
        };
        let bn = match self.bn {
            Bn::None => "",
            Bn::Plain => ".bn",
            Bn::Affine => ".bna",
        };
        let wg = if self.wg > 0 {
            format!(".g{}", self.wg)
        } else {
            String::new()
        };
        format!(
            "pool_rows.{}.{}.k{}s{}p{}{blocks}{bn}{wg}",
            match self.kind {
                Kind::Max => "max",
                Kind::Avg => "avg",
            },
            if self.backward { "dx" } else { "y" },
            self.k,
            self.stride,
            self.pad
        )
    }

    /// The full WGSL: common header, template, the generated entry.
    pub fn source(&self) -> String {
        let body = if self.backward {
            self.backward_entry()
        } else {
            self.forward_entry()
        };
        format!("{}\n{TEMPLATE}\n{body}", shaders::COMMON)
    }

    /// COLS outputs of `rows` output rows: the input rows their windows
    /// span, each loaded once over the block's (COLS − 1)·s + k columns
    /// (by `vec` columns a load where rows are whole vectors) for every
    /// output row it feeds.
    fn forward_entry(&self) -> String {
        let (k, s, rows, v) = (self.k, self.stride, self.rows, self.vec);
        let win = (COLS - 1) * s + k;
        let mut out = String::new();
        let w = &mut out;
        open_entry(w, self.workgroup());
        let _ = writeln!(w, "    let xblocks = (p.ow + {}u) / {COLS}u;", COLS - 1);
        let _ = writeln!(w, "    let yblocks = (p.oh + {}u) / {rows}u;", rows - 1);
        let _ = writeln!(w, "    let ox0 = (idx % xblocks) * {COLS}u;");
        let _ = writeln!(w, "    let t = idx / xblocks;");
        let _ = writeln!(w, "    let oy0 = (t % yblocks) * {rows}u;");
        let _ = writeln!(w, "    let plane = t / yblocks;");
        let _ = writeln!(w, "    let x0 = i32(ox0 * {s}u) - {}i;", self.pad);
        let _ = writeln!(w, "    let base = plane * p.h * p.w;");
        for c in 0..win {
            let _ = writeln!(w, "    let ix{c} = x0 + {c}i;");
            let _ = writeln!(w, "    let cin{c} = ix{c} >= 0 && ix{c} < i32(p.w);");
            let _ = writeln!(w, "    let cx{c} = u32(clamp(ix{c}, 0, i32(p.w) - 1));");
        }
        for m in 0..rows {
            for j in 0..COLS {
                match self.kind {
                    Kind::Max => {
                        let _ = writeln!(w, "    var best{m}_{j} = 0.0;");
                        let _ = writeln!(w, "    var arg{m}_{j} = 0u;");
                        let _ = writeln!(w, "    var found{m}_{j} = false;");
                    }
                    Kind::Avg => {
                        let _ = writeln!(w, "    var acc{m}_{j} = 0.0;");
                    }
                }
            }
        }
        // Input row u feeds output row m through window row ky = u − m·s.
        // Per output, rows in window order and columns within each row in
        // order: the first maximum in row-major order wins ties, as in
        // pool.wgsl.
        for u in 0..(rows - 1) * s + k {
            let _ = writeln!(w, "    {{");
            let _ = writeln!(
                w,
                "        let iy = i32(oy0 * {s}u) - {}i + {u}i;",
                self.pad
            );
            let _ = writeln!(w, "        let rin = iy >= 0 && iy < i32(p.h);");
            let _ = writeln!(
                w,
                "        let row = u32(clamp(iy, 0, i32(p.h) - 1)) * p.w;"
            );
            if v == 1 {
                for c in 0..win {
                    let _ = writeln!(w, "        let v{c} = src[base + row + cx{c}];");
                }
            } else {
                // Column ox0·s − pad + c lies in the vector from ox0·s +
                // v·a (ox0·s a multiple of 8): a = (c − pad) div v. A
                // vector past either end of the row is clamped into it; the
                // columns read from it are then outside and not taken.
                let pad = self.pad as i64;
                let quad = |c: usize| (c as i64 - pad).div_euclid(v as i64);
                let mut quads: Vec<i64> = (0..win).map(quad).collect();
                quads.dedup();
                for &a in &quads {
                    let name = if a < 0 {
                        format!("m{}", -a)
                    } else {
                        a.to_string()
                    };
                    let _ = writeln!(
                        w,
                        "        let q{name} = src{v}[(base + row + u32(clamp(i32(ox0 * {s}u) + {}i, 0, i32(p.w) - {v}i))) / {v}u];",
                        v as i64 * a
                    );
                }
                for c in 0..win {
                    let a = quad(c);
                    let name = if a < 0 {
                        format!("m{}", -a)
                    } else {
                        a.to_string()
                    };
                    let comp = ["x", "y", "z", "w"][(c as i64 - pad).rem_euclid(v as i64) as usize];
                    let _ = writeln!(w, "        let v{c} = q{name}.{comp};");
                }
            }
            for c in 0..win {
                let _ = writeln!(w, "        let in{c} = rin && cin{c};");
            }
            for m in 0..rows {
                if u < m * s || u - m * s >= k {
                    continue;
                }
                for j in 0..COLS {
                    for kx in 0..k {
                        let c = j * s + kx;
                        match self.kind {
                            Kind::Max => {
                                let _ = writeln!(
                                    w,
                                    "        {{ let take = in{c} && (!found{m}_{j} || v{c} > best{m}_{j}); best{m}_{j} = select(best{m}_{j}, v{c}, take); arg{m}_{j} = select(arg{m}_{j}, row + cx{c}, take); found{m}_{j} = found{m}_{j} || in{c}; }}"
                                );
                            }
                            Kind::Avg => {
                                let _ = writeln!(
                                    w,
                                    "        acc{m}_{j} = acc{m}_{j} + select(0.0, v{c}, in{c});"
                                );
                            }
                        }
                    }
                }
            }
            let _ = writeln!(w, "    }}");
        }
        // The plane's batch-norm coefficients, once per invocation.
        let bn = |v: &str| match self.bn {
            Bn::None => v.to_string(),
            Bn::Plain => format!("({v} - bn_m) * bn_inv"),
            Bn::Affine => format!("({v} - bn_m) * bn_inv * bn_gamma[ch] + bn_beta[ch]"),
        };
        if self.bn != Bn::None {
            let _ = writeln!(w, "    let ch = plane % p.c;");
            let _ = writeln!(w, "    let bn_m = bn_mean[ch];");
            let _ = writeln!(w, "    let bn_inv = 1.0 / sqrt(bn_var[ch] + p.eps);");
        }
        for m in 0..rows {
            let _ = writeln!(w, "    if oy0 + {m}u < p.oh {{");
            let _ = writeln!(
                w,
                "        let rows = f32(span(i32((oy0 + {m}u) * {s}u) - {}i, {k}i, p.h));",
                self.pad
            );
            let _ = writeln!(
                w,
                "        let obase = (plane * p.oh + oy0 + {m}u) * p.ow + ox0;"
            );
            for j in 0..COLS {
                let _ = writeln!(w, "        if ox0 + {j}u < p.ow {{");
                match self.kind {
                    Kind::Max => {
                        let y = bn(&format!("best{m}_{j}"));
                        let _ = writeln!(w, "            dst[obase + {j}u] = {y};");
                        if self.bn == Bn::None {
                            let _ = writeln!(w, "            arg_out[obase + {j}u] = arg{m}_{j};");
                        }
                    }
                    Kind::Avg => {
                        let _ = writeln!(
                            w,
                            "            let v = acc{m}_{j} / (rows * f32(span(x0 + {}i, {k}i, p.w)));",
                            j * s
                        );
                        let _ = writeln!(w, "            dst[obase + {j}u] = {};", bn("v"));
                    }
                }
                let _ = writeln!(w, "        }}");
            }
            let _ = writeln!(w, "    }}");
        }
        let _ = writeln!(w, "}}");
        out
    }

    /// COLS input cells of each of `rows` input rows: the outputs whose
    /// windows cover them (at most ⌈k/s⌉ output rows per input row, and a
    /// fixed run of output columns relative to the block), each output's
    /// dy (and argmax) loaded once for all the input rows it covers. With
    /// one row the covering rows are found at run time; in blocks (rows a
    /// multiple of the stride) they lie at fixed offsets from the block's
    /// first. Per input cell the terms come in the same order either way:
    /// output row, then output column.
    fn backward_entry(&self) -> String {
        let (k, s, pad) = (self.k as i64, self.stride as i64, self.pad as i64);
        let rows = self.rows as i64;
        debug_assert!(rows == 1 || rows % s == 0);
        // Output column m0 + q covers input column ix0 + j when
        // q·s ≤ j + pad ≤ q·s + k − 1 (ix0 = m0·s); output row oyb + u
        // covers input row iy0 + r alike, with oyb = iy0 / s + c0 in blocks.
        let covering = |j: i64| {
            ((j + pad - k + 1).div_euclid(s) + i64::from((j + pad - k + 1).rem_euclid(s) != 0))
                ..=(j + pad).div_euclid(s)
        };
        let (q_lo, q_hi) = (*covering(0).start(), *covering(COLS as i64 - 1).end());
        let c0 = *covering(0).start();
        let name = |q: i64| {
            if q < 0 {
                format!("m{}", -q)
            } else {
                format!("{q}")
            }
        };
        let mut out = String::new();
        let w = &mut out;
        open_entry(w, self.workgroup());
        let _ = writeln!(w, "    let xblocks = (p.w + {}u) / {COLS}u;", COLS - 1);
        let _ = writeln!(w, "    let ix0 = (idx % xblocks) * {COLS}u;");
        let _ = writeln!(w, "    let t = idx / xblocks;");
        if rows == 1 {
            let _ = writeln!(w, "    let iy = t % p.h;");
            let _ = writeln!(w, "    let plane = t / p.h;");
            // Covering output rows: ⌈(iy + pad − k + 1)/s⌉ ..= ⌊(iy + pad)/s⌋.
            let _ = writeln!(w, "    let top = i32(iy) + {pad}i;");
            let _ = writeln!(
                w,
                "    let oy_lo = (max(top - {}i, 0) + {}i) / {s}i;",
                k - 1,
                s - 1
            );
            let _ = writeln!(w, "    let oy_hi = min(top / {s}i, i32(p.oh) - 1);");
            let _ = writeln!(w, "    let me = iy * p.w + ix0;");
        } else {
            let _ = writeln!(w, "    let yblocks = (p.h + {}u) / {rows}u;", rows - 1);
            let _ = writeln!(w, "    let iy0 = (t % yblocks) * {rows}u;");
            let _ = writeln!(w, "    let plane = t / yblocks;");
            let _ = writeln!(w, "    let oyb = i32(iy0 / {s}u) + {c0}i;");
            let _ = writeln!(w, "    let me = iy0 * p.w + ix0;");
        }
        let _ = writeln!(w, "    let m0 = i32(ix0 / {s}u);");
        let _ = writeln!(w, "    let obase = plane * p.oh * p.ow;");
        for q in q_lo..=q_hi {
            let n = name(q);
            let _ = writeln!(w, "    let ox{n} = m0 + {q}i;");
            let _ = writeln!(w, "    let cin{n} = ox{n} >= 0 && ox{n} < i32(p.ow);");
            let _ = writeln!(w, "    let cx{n} = u32(clamp(ox{n}, 0, i32(p.ow) - 1));");
            if self.kind == Kind::Avg {
                let _ = writeln!(
                    w,
                    "    let cols{n} = f32(span(ox{n} * {s}i - {pad}i, {k}i, p.w));"
                );
            }
        }
        for r in 0..rows {
            for j in 0..COLS {
                let _ = writeln!(w, "    var acc{r}_{j} = 0.0;");
            }
        }
        // Output rows u and, for each, the input rows r of the block it
        // covers: with one row the ⌈k/s⌉ from oy_lo (those past oy_hi read
        // as zero), in blocks those with c0 + u in covering(r).
        let out_rows: Vec<(i64, Vec<i64>)> = if rows == 1 {
            (0..(k + s - 1) / s).map(|u| (u, vec![0])).collect()
        } else {
            (0..=(rows - 1 + pad).div_euclid(s) - c0)
                .map(|u| {
                    (
                        u,
                        (0..rows)
                            .filter(|&r| covering(r).contains(&(c0 + u)))
                            .collect(),
                    )
                })
                .collect()
        };
        for (u, covered) in out_rows {
            let _ = writeln!(w, "    {{");
            if rows == 1 {
                let _ = writeln!(w, "        let oy = oy_lo + {u}i;");
                let _ = writeln!(w, "        let rin = oy <= oy_hi;");
            } else {
                let _ = writeln!(w, "        let oy = oyb + {u}i;");
                let _ = writeln!(w, "        let rin = oy >= 0 && oy < i32(p.oh);");
            }
            let _ = writeln!(
                w,
                "        let row = obase + u32(clamp(oy, 0, i32(p.oh) - 1)) * p.ow;"
            );
            if self.kind == Kind::Avg {
                let _ = writeln!(
                    w,
                    "        let rows = f32(span(oy * {s}i - {pad}i, {k}i, p.h));"
                );
            }
            for q in q_lo..=q_hi {
                let n = name(q);
                let _ = writeln!(w, "        let in{n} = rin && cin{n};");
                match self.kind {
                    Kind::Max => {
                        let _ = writeln!(
                            w,
                            "        let g{n} = select(0.0, src[row + cx{n}], in{n});"
                        );
                        let _ = writeln!(
                            w,
                            "        let a{n} = select(0xffffffffu, arg_in[row + cx{n}], in{n});"
                        );
                    }
                    Kind::Avg => {
                        let _ = writeln!(
                            w,
                            "        let g{n} = select(0.0, src[row + cx{n}] / (rows * cols{n}), in{n});"
                        );
                    }
                }
            }
            for r in covered {
                for j in 0..COLS as i64 {
                    for q in covering(j) {
                        let n = name(q);
                        match self.kind {
                            Kind::Max => {
                                let _ = writeln!(
                                    w,
                                    "        acc{r}_{j} = acc{r}_{j} + select(0.0, g{n}, a{n} == me + {r}u * p.w + {j}u);"
                                );
                            }
                            Kind::Avg => {
                                let _ = writeln!(w, "        acc{r}_{j} = acc{r}_{j} + g{n};");
                            }
                        }
                    }
                }
            }
            let _ = writeln!(w, "    }}");
        }
        for r in 0..rows {
            if rows == 1 {
                let _ = writeln!(w, "    {{");
            } else {
                let _ = writeln!(w, "    if iy0 + {r}u < p.h {{");
            }
            let _ = writeln!(w, "        let d = plane * p.h * p.w + me + {r}u * p.w;");
            for j in 0..COLS {
                let _ = writeln!(
                    w,
                    "        if ix0 + {j}u < p.w {{ dst[d + {j}u] = acc{r}_{j}; }}"
                );
            }
            let _ = writeln!(w, "    }}");
        }
        let _ = writeln!(w, "}}");
        out
    }
}

/// The start of a generated entry: its signature, linear index and bound.
fn open_entry(w: &mut String, wg: u32) {
    shaders::open_entry(w, "pool_rows", wg);
    let _ = writeln!(w, "    if idx >= p.total {{ return; }}");
}

/// The kernel of `s` (which must `fit`): forward (slots 1 x, 3 y, and for
/// max 4 argmax) or backward (1 dy, 3 dx, and for max 2 argmax).
pub fn kernel(
    gpu: &Gpu,
    s: &Shape,
    kind: Kind,
    backward: bool,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    kernel_bn(gpu, s, kind, backward, None, slots)
}

/// [`kernel`], a forward applying the evaluation batch norm `bn` (`Some((eps,
/// affine))`; slots 2 mean, 4 var, and with affine 5 γ, 6 β) instead of
/// writing the argmax.
pub fn kernel_bn(
    gpu: &Gpu,
    s: &Shape,
    kind: Kind,
    backward: bool,
    bn: Option<(f32, bool)>,
    slots: &[(u32, &Buf)],
) -> Result<Kernel, GpuError> {
    debug_assert!(fits(s));
    debug_assert!(bn.is_none() || !backward);
    let blocked = !backward && !gpu.wide;
    let spec = Spec {
        kind,
        backward,
        k: s.k,
        stride: s.stride,
        pad: s.pad,
        rows: match (backward, gpu.wide) {
            (_, true) => 1,
            (false, false) => FORWARD_ROWS,
            (true, false) => BACKWARD_ROWS,
        },
        vec: match blocked {
            true if s.w.is_multiple_of(4) => 4,
            true if s.w.is_multiple_of(2) => 2,
            _ => 1,
        },
        bn: match bn {
            None => Bn::None,
            Some((_, false)) => Bn::Plain,
            Some((_, true)) => Bn::Affine,
        },
        wg: 0,
    };
    let total = if backward {
        s.planes() * s.h.div_ceil(spec.rows) * s.w.div_ceil(COLS)
    } else {
        s.planes() * s.out_h().div_ceil(spec.rows) * s.out_w().div_ceil(COLS)
    };
    let spec = match workgroup_for(gpu, total, WG) {
        WG => spec,
        wg => Spec { wg, ..spec },
    };
    let eps = bn.map_or(0.0, |(e, _)| e).to_bits();
    let mut params = [
        total,
        s.h,
        s.w,
        s.out_h(),
        s.out_w(),
        s.k,
        s.stride,
        s.pad,
        s.c,
    ]
    .map(|v| v as u32)
    .to_vec();
    params.push(eps);
    gpu.kernel_generated(
        &spec.name(),
        &|| Ok(spec.source()),
        "pool_rows",
        &params,
        slots,
        grid_1d(total, spec.workgroup()),
    )
}

/// The specialisations the portability test translates: both kinds and
/// directions over every window, stride and padding that fits.
pub fn representative_specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for kind in [Kind::Max, Kind::Avg] {
        for backward in [false, true] {
            for k in 1..=5 {
                for stride in [1, 2] {
                    for pad in 0..=k / 2 {
                        // The forward also in row blocks over scalar,
                        // float2 and float4 rows.
                        let blocks: &[(usize, usize)] = if backward {
                            &[(1, 1), (BACKWARD_ROWS, 1)]
                        } else {
                            &[
                                (1, 1),
                                (FORWARD_ROWS, 1),
                                (FORWARD_ROWS, 2),
                                (FORWARD_ROWS, 4),
                            ]
                        };
                        // The forward also with each batch norm fused.
                        let bns: &[Bn] = if backward {
                            &[Bn::None]
                        } else {
                            &[Bn::None, Bn::Plain, Bn::Affine]
                        };
                        for &(rows, vec) in blocks {
                            for &bn in bns {
                                v.push(Spec {
                                    kind,
                                    backward,
                                    k,
                                    stride,
                                    pad,
                                    rows,
                                    vec,
                                    bn,
                                    wg: 0,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    // Workgroups of another size (`Spec::wg`): one kernel a direction.
    let sized: Vec<Spec> = [false, true]
        .iter()
        .filter_map(|&b| v.iter().find(|s| s.backward == b))
        .map(|s| Spec { wg: 136, ..*s })
        .collect();
    v.extend(sized);
    v
}
