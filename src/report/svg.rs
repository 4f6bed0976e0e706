//! The report's plotting layer: inline SVG strings for a line/scatter chart,
//! a heat map and a cell graph. Hand-written rather than a plotting crate:
//! three plot kinds need a few hundred lines, the text stays plain SVG
//! `<text>` (the browser's fonts, no font files or rasterizing), and no
//! dependency enters the engine for a report.
//!
//! Text widths are estimated (0.6 em per character) since nothing here can
//! measure a font; every label has room for that estimate.

use std::fmt::Write;

/// Categorical colors (Tableau 10): series, rounds, op kinds.
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Estimated width in pixels of `s` at font size `px`.
fn text_w(s: &str, px: f64) -> f64 {
    s.chars().count() as f64 * px * 0.6
}

/// One series of a chart: points joined by a line, marked, or both.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Per-point labels written beside the markers (empty: none).
    pub labels: Vec<String>,
    pub color: usize,
    pub line: bool,
    pub dashed: bool,
    pub markers: bool,
}

impl Series {
    /// A solid line with markers.
    pub fn line(name: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            labels: Vec::new(),
            color,
            line: true,
            dashed: false,
            markers: true,
        }
    }

    /// Markers only (a scatter).
    pub fn scatter(name: impl Into<String>, color: usize, points: Vec<(f64, f64)>) -> Series {
        Series {
            line: false,
            ..Series::line(name, color, points)
        }
    }

    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }

    pub fn no_markers(mut self) -> Series {
        self.markers = false;
        self
    }

    pub fn labeled(mut self, labels: Vec<String>) -> Series {
        self.labels = labels;
        self
    }
}

/// A 2-D chart: every curve of the report and its scatter plots.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range (e.g. accuracies in [0, 1]); None fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Integer x ticks only (epochs, levels).
    pub x_integer: bool,
    /// Equal x and y ranges with the y = x line (predicted vs measured).
    pub diagonal: bool,
    /// Horizontal reference lines: (y, label).
    pub hlines: Vec<(f64, String)>,
    pub width: f64,
    pub height: f64,
}

impl Chart {
    pub fn new(title: impl Into<String>, x_label: &str, y_label: &str) -> Chart {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            y_range: None,
            x_integer: false,
            diagonal: false,
            hlines: Vec::new(),
            width: 560.0,
            height: 300.0,
        }
    }
}

/// "Nice" axis ticks (steps of 1, 2 or 5 × 10^k) covering [lo, hi].
fn ticks(lo: f64, hi: f64, target: usize, integer: bool) -> (f64, f64, f64) {
    let raw = (hi - lo) / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mut step = mag
        * if norm <= 1.0 {
            1.0
        } else if norm <= 2.0 {
            2.0
        } else if norm <= 5.0 {
            5.0
        } else {
            10.0
        };
    if integer {
        step = step.max(1.0).round();
    }
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    (lo, hi, step)
}

/// A tick label: thousands as k/M, otherwise as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    if step >= 1e6 {
        format!("{}M", trim(v / 1e6, step / 1e6))
    } else if step >= 1e3 {
        format!("{}k", trim(v / 1e3, step / 1e3))
    } else {
        trim(v, step)
    }
}

fn trim(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// Fits [lo, hi] around the values, padding a degenerate range.
fn extent(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return None;
    }
    if hi - lo < 1e-12 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some((lo - pad, hi + pad));
    }
    Some((lo, hi))
}

/// Renders a chart; non-finite points are left out, and a chart with no
/// finite point says so inside its frame.
pub fn chart(c: &Chart) -> String {
    let series: Vec<Series> = c
        .series
        .iter()
        .map(|s| {
            let keep: Vec<usize> = (0..s.points.len())
                .filter(|&i| s.points[i].0.is_finite() && s.points[i].1.is_finite())
                .collect();
            Series {
                points: keep.iter().map(|&i| s.points[i]).collect(),
                labels: keep
                    .iter()
                    .map(|&i| s.labels.get(i).cloned().unwrap_or_default())
                    .collect(),
                ..s.clone()
            }
        })
        .collect();
    let all = || series.iter().flat_map(|s| s.points.iter().copied());

    // The legend flows under the x label; its height is known before drawing.
    let (w, font) = (c.width, 11.0);
    let (ml, mr, mt) = (58.0, 16.0, 30.0);
    let mut legend = Vec::new();
    let (mut lx, mut ly) = (ml, 0.0);
    for (i, s) in series.iter().enumerate() {
        let item_w = 26.0 + text_w(&s.name, font) + 14.0;
        if lx + item_w > w - mr && lx > ml {
            lx = ml;
            ly += 16.0;
        }
        legend.push((i, lx, ly));
        lx += item_w;
    }
    let legend_h = if series.is_empty() { 0.0 } else { ly + 18.0 };
    let mb = 42.0 + legend_h;
    let h = c.height + legend_h;
    let (pw, ph) = (w - ml - mr, h - mt - mb);

    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"><title>{t}</title><text class="title" x="{tx}" y="18" text-anchor="middle">{t}</text>"#,
        t = esc(&c.title),
        tx = w / 2.0,
    );
    let _ = write!(
        o,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>"##
    );

    let xs = extent(all().map(|p| p.0));
    let ys = extent(all().map(|p| p.1).chain(c.hlines.iter().map(|h| h.0)));
    let (Some(xe), Some(ye)) = (xs, ys) else {
        let _ = write!(
            o,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">no data</text></svg>"##,
            ml + pw / 2.0,
            mt + ph / 2.0
        );
        return o;
    };
    let (mut xe, mut ye) = (xe, c.y_range.unwrap_or(ye));
    if c.diagonal {
        let lo = xe.0.min(ye.0);
        let hi = xe.1.max(ye.1);
        xe = (lo, hi);
        ye = (lo, hi);
    }
    let (x0, x1, xstep) = ticks(xe.0, xe.1, 6, c.x_integer);
    let (y0, y1, ystep) = if c.y_range.is_some() && !c.diagonal {
        let (_, _, s) = ticks(ye.0, ye.1, 5, false);
        (ye.0, ye.1, s)
    } else {
        ticks(ye.0, ye.1, 5, false)
    };
    let (x0, x1) = if c.x_integer && x0 == x1 {
        (x0 - 1.0, x1 + 1.0)
    } else {
        (x0, x1)
    };
    let sx = |x: f64| ml + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| mt + ph - (y - y0) / (y1 - y0) * ph;

    // Grid and ticks.
    let mut t = x0;
    while t <= x1 + xstep * 1e-6 {
        let x = sx(t);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{b}" stroke="#eee"/><text x="{x:.1}" y="{ty}" text-anchor="middle" class="tick">{l}</text>"##,
            b = mt + ph,
            ty = mt + ph + 14.0,
            l = tick_label(t, xstep)
        );
        t += xstep;
    }
    let mut t = (y0 / ystep - 1e-9).ceil() * ystep;
    while t <= y1 + ystep * 1e-6 {
        let y = sy(t);
        let _ = write!(
            o,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#eee"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="tick">{l}</text>"##,
            r = ml + pw,
            tx = ml - 5.0,
            ty = y + 4.0,
            l = tick_label(t, ystep)
        );
        t += ystep;
    }
    let _ = write!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis">{}</text><text transform="translate(14 {}) rotate(-90)" text-anchor="middle" class="axis">{}</text>"#,
        ml + pw / 2.0,
        mt + ph + 32.0,
        esc(&c.x_label),
        mt + ph / 2.0,
        esc(&c.y_label)
    );
    if c.diagonal {
        let _ = write!(
            o,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="3 3"/>"##,
            sx(x0.max(y0)),
            sy(x0.max(y0)),
            sx(x1.min(y1)),
            sy(x1.min(y1))
        );
    }
    for (y, label) in &c.hlines {
        let _ = write!(
            o,
            r##"<line x1="{ml}" y1="{yy:.1}" x2="{r}" y2="{yy:.1}" stroke="#888" stroke-dasharray="6 3"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="tick">{l}</text>"##,
            yy = sy(*y),
            r = ml + pw,
            tx = ml + pw - 4.0,
            ty = sy(*y) - 4.0,
            l = esc(label)
        );
    }

    // Series, then their point labels, each moved down until its box
    // overlaps no earlier label's.
    let mut placed: Vec<(f64, f64, f64)> = Vec::new();
    for s in &series {
        let color = PALETTE[s.color % PALETTE.len()];
        let _ = write!(o, r#"<g class="series" data-name="{}">"#, esc(&s.name));
        if s.line && s.points.len() > 1 {
            let d: Vec<String> = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                o,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.8"{}/>"#,
                d.join(" "),
                if s.dashed {
                    r#" stroke-dasharray="5 3""#
                } else {
                    ""
                }
            );
        }
        if s.markers || s.points.len() == 1 {
            for &(x, y) in &s.points {
                let _ = write!(
                    o,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}" stroke="#fff" stroke-width="0.5"/>"##,
                    sx(x),
                    sy(y)
                );
            }
        }
        o.push_str("</g>");
    }
    for s in &series {
        for (&(x, y), label) in s.points.iter().zip(&s.labels) {
            if label.is_empty() {
                continue;
            }
            let lw = text_w(label, 10.0);
            // Right-edge labels go left of their point.
            let (x0, anchor) = if sx(x) + 6.0 + lw > ml + pw {
                (sx(x) - 6.0 - lw, "end")
            } else {
                (sx(x) + 6.0, "start")
            };
            let mut py = sy(y) - 6.0;
            while placed.iter().any(|&(qx, qy, qw)| {
                x0 < qx + qw + 3.0 && qx < x0 + lw + 3.0 && (qy - py).abs() < 11.0
            }) {
                py += 11.0;
            }
            placed.push((x0, py, lw));
            let px = if anchor == "end" { x0 + lw } else { x0 };
            let _ = write!(
                o,
                r#"<text x="{px:.1}" y="{py:.1}" text-anchor="{anchor}" class="plabel">{}</text>"#,
                esc(label)
            );
        }
    }
    for &(i, lx, ly) in &legend {
        let s = &series[i];
        let color = PALETTE[s.color % PALETTE.len()];
        let y = h - legend_h + ly + 6.0;
        let dash = if s.dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        if s.line {
            let _ = write!(
                o,
                r#"<line x1="{lx}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/>"#,
                lx + 20.0
            );
        } else {
            let _ = write!(
                o,
                r#"<circle cx="{}" cy="{y}" r="3.5" fill="{color}"/>"#,
                lx + 10.0
            );
        }
        let _ = write!(
            o,
            r#"<text x="{}" y="{}" class="legend">{}</text>"#,
            lx + 26.0,
            y + 4.0,
            esc(&s.name)
        );
    }
    o.push_str("</svg>");
    o
}

/// A sequential color for `t` in [0, 1] (viridis, 5 stops).
pub fn viridis(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let f = t * (STOPS.len() - 1) as f64;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let u = f - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * u).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// A heat map: rows (edges) × column groups (ops) × columns within a group
/// (epochs), so that each row shows every op's weight evolving.
#[derive(Debug, Clone)]
pub struct HeatMap {
    pub title: String,
    pub rows: Vec<String>,
    /// Rows drawn with a bold label and a marker (the edges a genotype kept).
    pub marked: Vec<bool>,
    pub groups: Vec<String>,
    /// What the columns inside a group are, shown under the grid.
    pub caption: String,
    /// values[row][group][column].
    pub values: Vec<Vec<Vec<f64>>>,
    /// Legend label (what the colors mean).
    pub value_label: String,
}

/// Renders a heat map with its color legend; the color range is the data's
/// own [min, max], written on the legend, so a near-uniform α still shows
/// which ops pull ahead.
pub fn heat_map(m: &HeatMap) -> String {
    let cols = m
        .values
        .iter()
        .flat_map(|r| r.iter().map(Vec::len))
        .max()
        .unwrap_or(0)
        .max(1);
    let (lo, hi) = extent(
        m.values
            .iter()
            .flatten()
            .flatten()
            .copied()
            .filter(|v| v.is_finite()),
    )
    .unwrap_or((0.0, 1.0));
    let font = 11.0;
    let label_w = m.rows.iter().map(|r| text_w(r, font)).fold(0.0, f64::max) + 22.0;
    let header_w = m.groups.iter().map(|g| text_w(g, 10.0)).fold(0.0, f64::max) + 6.0;
    let header_w = header_w.max(40.0);
    let cell_w = (720.0 / (m.groups.len().max(1) * cols) as f64).clamp(2.0, 14.0);
    let group_w = (cell_w * cols as f64).max(header_w);
    let cell_w = group_w / cols as f64;
    let (row_h, gap, top) = (15.0, 6.0, 40.0);
    let grid_w = m.groups.len() as f64 * (group_w + gap) - gap;
    let grid_h = m.rows.len() as f64 * row_h;
    let bar_w = grid_w.clamp(120.0, 240.0);
    let legend_w = bar_w + 8.0 + text_w(&m.value_label, 10.0) + 10.0;
    let w = label_w + (grid_w + 10.0).max(legend_w);
    let h = top + grid_h + 70.0;

    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="heatmap" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img"><title>{t}</title><text class="title" x="4" y="16">{t}</text>"#,
        t = esc(&m.title)
    );
    for (g, name) in m.groups.iter().enumerate() {
        let x = label_w + g as f64 * (group_w + gap) + group_w / 2.0;
        let _ = write!(
            o,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
            top - 6.0,
            esc(name)
        );
    }
    for (r, label) in m.rows.iter().enumerate() {
        let y = top + r as f64 * row_h;
        let marked = m.marked.get(r).copied().unwrap_or(false);
        let _ = write!(
            o,
            r#"<g class="hm-row"><text x="{}" y="{:.1}" text-anchor="end" class="{}">{}{}</text>"#,
            label_w - 6.0,
            y + row_h - 4.0,
            if marked {
                "rowlabel marked"
            } else {
                "rowlabel"
            },
            if marked { "● " } else { "" },
            esc(label)
        );
        for (g, vals) in m.values[r].iter().enumerate() {
            let gx = label_w + g as f64 * (group_w + gap);
            for (c, &v) in vals.iter().enumerate() {
                let fill = if v.is_finite() {
                    viridis((v - lo) / (hi - lo))
                } else {
                    "#ccc".into()
                };
                let _ = write!(
                    o,
                    r#"<rect x="{:.2}" y="{y:.1}" width="{:.2}" height="{}" fill="{fill}"/>"#,
                    gx + c as f64 * cell_w,
                    cell_w + 0.05,
                    row_h - 1.0
                );
            }
        }
        o.push_str("</g>");
    }
    let cy = top + grid_h + 16.0;
    let _ = write!(
        o,
        r#"<text x="{label_w:.1}" y="{cy:.1}" class="tick">{}</text>"#,
        esc(&m.caption)
    );
    // Legend: a stepped bar from min to max.
    let (bx, by, bw, steps) = (label_w, cy + 12.0, bar_w, 24);
    for i in 0..steps {
        let _ = write!(
            o,
            r#"<rect x="{:.1}" y="{by:.1}" width="{:.1}" height="10" fill="{}"/>"#,
            bx + i as f64 * bw / steps as f64,
            bw / steps as f64 + 0.3,
            viridis((i as f64 + 0.5) / steps as f64)
        );
    }
    let decimals = if hi - lo < 0.01 { 4 } else { 3 };
    let _ = write!(
        o,
        r#"<text x="{bx:.1}" y="{:.1}" class="tick">{lo:.decimals$}</text><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{hi:.decimals$}</text><text x="{:.1}" y="{:.1}" class="tick">{}</text>"#,
        by + 22.0,
        bx + bw,
        by + 22.0,
        bx + bw + 8.0,
        by + 9.0,
        esc(&m.value_label)
    );
    o.push_str("</svg>");
    o
}

/// One block of a cell for drawing: two (input, op) pairs. Inputs are
/// numbered as genotypes number them: 0 and 1 the previous cells, 2 + i
/// block i.
#[derive(Debug, Clone)]
pub struct GraphBlock {
    pub inputs: [usize; 2],
    pub ops: [String; 2],
}

/// The name of cell input `i` (0, 1: the cells k−2, k−1; then blocks).
pub fn input_name(i: usize) -> String {
    match i {
        0 => "c[k-2]".into(),
        1 => "c[k-1]".into(),
        b => format!("b{}", b - 2),
    }
}

/// `color` (#rrggbb) at 60% brightness: legible as text on white.
fn darken(color: &str) -> String {
    let c = |i: usize| u8::from_str_radix(&color[i..i + 2], 16).unwrap_or(0) as f64 * 0.6;
    format!("#{:02x}{:02x}{:02x}", c(1) as u8, c(3) as u8, c(5) as u8)
}

/// A cubic Bézier from `p0` to `p3` through control points `p1`, `p2`.
#[derive(Clone, Copy)]
struct Cubic([(f64, f64); 4]);

impl Cubic {
    fn at(&self, t: f64) -> (f64, f64) {
        let [p0, p1, p2, p3] = self.0;
        let u = 1.0 - t;
        let (a, b, c, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
        (
            a * p0.0 + b * p1.0 + c * p2.0 + d * p3.0,
            a * p0.1 + b * p1.1 + c * p2.1 + d * p3.1,
        )
    }

    /// The point where the curve reaches `x` (x grows along it).
    fn at_x(&self, x: f64) -> (f64, f64) {
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            if self.at(mid).0 < x {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.at(lo)
    }
}

/// Draws a cell left to right: the two input cells, a node per block at
/// its depth, the concatenated output. A block's two edges end at two
/// ports (upper: its first input, lower: its second), each labeled with
/// its op beside the arrowhead (above the upper, below the lower) and
/// colored by `op_color`. Edges that skip a column bow away from the
/// middle so they pass beside the nodes in between. Inputs must point at
/// earlier nodes.
pub fn cell_graph(title: &str, blocks: &[GraphBlock], op_color: impl Fn(&str) -> usize) -> String {
    let n = blocks.len();
    // Depth: inputs at 0, a block one past its deepest input, output last.
    let mut level = vec![0usize; n + 2];
    for (j, b) in blocks.iter().enumerate() {
        level[j + 2] = 1 + b.inputs.iter().map(|&i| level[i]).max().unwrap_or(0);
    }
    let out_level = level.iter().copied().max().unwrap_or(0) + 1;
    let mut per_level: Vec<Vec<usize>> = vec![Vec::new(); out_level + 1];
    for (node, &l) in level.iter().enumerate() {
        per_level[l].push(node);
    }
    let out_node = n + 2;
    level.push(out_level);
    per_level[out_level].push(out_node);
    let tallest = per_level.iter().map(Vec::len).max().unwrap_or(1);
    let (col_w, row_h, node_w, node_h) = (190.0, 96.0, 58.0, 30.0);
    let (left, top) = (14.0, 60.0);
    let height = top + tallest as f64 * row_h + 34.0;
    let width = left * 2.0 + out_level as f64 * col_w + node_w;
    let mid_y = top + tallest as f64 * row_h / 2.0;
    // Level by level, nodes ordered by their inputs' mean height (the
    // barycenter heuristic) so that edges cross less.
    let mut pos = vec![(0.0, 0.0); n + 3];
    for (l, nodes) in per_level.iter_mut().enumerate() {
        if l > 0 {
            let key = |node: usize| -> f64 {
                if node == out_node {
                    return 0.0;
                }
                let b = &blocks[node - 2];
                (pos[b.inputs[0]].1 + pos[b.inputs[1]].1) / 2.0
            };
            nodes.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
        }
        let offset = (tallest - nodes.len()) as f64 * row_h / 2.0;
        for (k, &node) in nodes.iter().enumerate() {
            pos[node] = (
                left + l as f64 * col_w,
                top + offset + k as f64 * row_h + (row_h - node_h) / 2.0,
            );
        }
    }

    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="cellgraph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" role="img"><title>{t}</title><text class="title" x="4" y="16">{t}</text>"#,
        t = esc(title)
    );
    // Edges first so that nodes cover their ends; labels last.
    let curve = |from: usize, to: usize, port: f64, spread: f64| -> Cubic {
        let (fx, fy) = pos[from];
        let (tx, ty) = pos[to];
        let (x1, y1) = (fx + node_w, fy + node_h / 2.0 + spread);
        let (x2, y2) = (tx - 7.0, ty + node_h / 2.0 + port);
        let dx = (x2 - x1) / 2.0;
        let span = level[to] - level[from];
        let bend = if span > 1 {
            let away = if (y1 + y2) / 2.0 <= mid_y { -1.0 } else { 1.0 };
            away * row_h * if to == out_node { 0.3 } else { 0.55 } * ((span - 1) as f64).min(2.0)
        } else {
            0.0
        };
        Cubic([
            (x1, y1),
            (x1 + dx, y1 + bend),
            (x2 - dx, y2 + bend),
            (x2, y2),
        ])
    };
    let draw = |o: &mut String, c: &Cubic, color: &str, width: f64| {
        let [p0, p1, p2, p3] = c.0;
        let _ = write!(
            o,
            r#"<path d="M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="none" stroke="{color}" stroke-width="{width}"/>"#,
            p0.0, p0.1, p1.0, p1.1, p2.0, p2.1, p3.0, p3.1
        );
        // Arrowhead along the end tangent.
        let (ux, uy) = (p3.0 - p2.0, p3.1 - p2.1);
        let len = (ux * ux + uy * uy).sqrt().max(1e-9);
        let (ux, uy) = (ux / len, uy / len);
        let (bx, by) = (p3.0 - 6.0 * ux, p3.1 - 6.0 * uy);
        let _ = write!(
            o,
            r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{color}"/>"#,
            p3.0 + 6.0 * ux,
            p3.1 + 6.0 * uy,
            bx - 4.0 * uy,
            by + 4.0 * ux,
            bx + 4.0 * uy,
            by - 4.0 * ux
        );
    };
    for j in 0..n {
        draw(&mut o, &curve(j + 2, out_node, 0.0, 0.0), "#c4c4c4", 1.0);
    }
    let mut labels = String::new();
    let mut placed: Vec<(f64, f64, f64)> = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let same = b.inputs[0] == b.inputs[1];
        for k in 0..2 {
            let port = if k == 0 { -7.0 } else { 7.0 };
            // Two edges from one node leave it apart too.
            let spread = if same { port * 0.6 } else { 0.0 };
            let c = curve(b.inputs[k], j + 2, port, spread);
            let color = PALETTE[op_color(&b.ops[k]) % PALETTE.len()];
            draw(&mut o, &c, color, 1.6);
            let text_color = darken(color);
            let lw = text_w(&b.ops[k], 10.0);
            let end = c.0[3].0 - 12.0;
            let (_, y) = c.at_x(end - lw / 2.0);
            let step = if k == 0 { -11.0 } else { 11.0 };
            let mut ly = if k == 0 { y - 5.0 } else { y + 13.0 };
            while placed.iter().any(|&(px, py, pw)| {
                (px - end).abs() < (lw + pw) / 2.0 + 4.0 && (py - ly).abs() < 11.0
            }) {
                ly += step;
            }
            placed.push((end, ly, lw));
            let _ = write!(
                labels,
                r#"<text x="{end:.1}" y="{ly:.1}" text-anchor="end" class="elabel" style="fill:{text_color}">{}</text>"#,
                esc(&b.ops[k])
            );
        }
    }
    for (node, &(x, y)) in pos.iter().enumerate() {
        let (class, fill, name) = if node < 2 {
            ("node input", "#dde8f3", input_name(node))
        } else if node == out_node {
            ("node output", "#f3e3cf", "concat".to_string())
        } else {
            ("node block", "#e6f0dc", input_name(node))
        };
        let _ = write!(
            o,
            r##"<g class="{class}"><rect x="{x:.1}" y="{y:.1}" width="{node_w}" height="{node_h}" rx="6" fill="{fill}" stroke="#777"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></g>"##,
            x + node_w / 2.0,
            y + node_h / 2.0 + 4.0,
            esc(&name)
        );
    }
    o.push_str(&labels);
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        let (lo, hi, step) = ticks(0.13, 0.87, 5, false);
        assert_eq!(step, 0.2);
        assert!(lo <= 0.13 && hi >= 0.87);
        let (_, _, step) = ticks(0.0, 3.0, 6, true);
        assert_eq!(step, 1.0);
        assert_eq!(tick_label(26000.0, 5000.0), "26k");
        assert_eq!(tick_label(0.25, 0.05), "0.25");
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), "#440154");
        assert_eq!(viridis(1.0), "#fde725");
        assert_eq!(viridis(f64::NAN), "#440154");
    }

    #[test]
    fn empty_chart_says_no_data() {
        let mut c = Chart::new("t", "x", "y");
        c.series.push(Series::line("s", 0, vec![(0.0, f64::NAN)]));
        assert!(chart(&c).contains("no data"));
    }
}
