//! `report.html`: one self-contained page (inline CSS and SVG, no script, no
//! network) about a run directory — the summary, S1's curves and α heat
//! maps, the cells as graphs, S2's predictor per level, S3's gate rounds,
//! S4's training curves, the pruning curve and the final table.
//!
//! It reads whatever the run has written so far: a section whose files are
//! missing says so in one line, so a report of a half-finished search (or
//! of an older run with fewer fields) still renders; a file that is there
//! but does not parse is an error naming it. Files are read into lenient
//! structs of their own (every field the report can do without is
//! optional) rather than the writers' types, which change with the method.

pub mod svg;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::train::write_atomic;
use svg::{esc, Chart, GraphBlock, HeatMap, Series};

/// Renders the report of `run_dir` and writes it atomically to
/// `run_dir/report.html`; returns that path.
pub fn write(run_dir: &Path) -> Result<PathBuf> {
    let html = render(run_dir)?;
    let path = run_dir.join("report.html");
    write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// The report of `run_dir` as one HTML document.
pub fn render(run_dir: &Path) -> Result<String> {
    let run = Run::load(run_dir)?;
    Ok(page(&run))
}

// ---------------------------------------------------------------- inputs

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Block {
    inputs: [usize; 2],
    ops: [String; 2],
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Cell {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone, Deserialize)]
struct Weights {
    normal: Vec<Vec<Option<f64>>>,
    reduce: Vec<Vec<Option<f64>>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Genotype {
    op_set: String,
    normal: Cell,
    reduce: Cell,
    #[serde(default)]
    alpha: Option<Weights>,
    #[serde(default)]
    beta: Option<Weights>,
}

/// One line of `round{r}/history.jsonl` (losses are null when they were NaN).
#[derive(Debug, Clone, Deserialize)]
struct HistoryLine {
    epoch: usize,
    #[serde(default)]
    train_loss: Option<f64>,
    #[serde(default)]
    val_loss: Option<f64>,
    #[serde(default)]
    entropy_normal: Option<f64>,
    #[serde(default)]
    entropy_reduce: Option<f64>,
    #[serde(default)]
    alpha: Option<Weights>,
    #[serde(default)]
    beta: Option<Weights>,
    #[serde(default)]
    seconds: Option<f64>,
}

/// One line of `predictor.jsonl`: one S2 level of one round.
#[derive(Debug, Clone, Deserialize)]
struct Level {
    #[serde(default)]
    round: usize,
    blocks: usize,
    #[serde(default)]
    predicted: Option<usize>,
    #[serde(default)]
    measured: Option<usize>,
    #[serde(default)]
    explored: Option<usize>,
    #[serde(default)]
    kendall_tau: Option<f64>,
    #[serde(default)]
    spearman_rho: Option<f64>,
    #[serde(default)]
    kendall_tau_top: Option<f64>,
    #[serde(default)]
    fit_oof_tau: Option<f64>,
    #[serde(default)]
    mean_spread: Option<f64>,
    #[serde(default)]
    best_accuracy: Option<f64>,
    #[serde(default)]
    mean_accuracy: Option<f64>,
    #[serde(default)]
    best_cell: Option<Cell>,
    #[serde(default)]
    seconds: Option<f64>,
    /// Per measured cell: (predicted, measured) accuracy.
    #[serde(default)]
    pairs: Option<Vec<(Option<f64>, Option<f64>)>>,
}

/// One line of `gate.jsonl`.
#[derive(Debug, Clone, Deserialize)]
struct GateLine {
    round: usize,
    #[serde(default)]
    width: Option<usize>,
    #[serde(default)]
    depth: Option<usize>,
    #[serde(default)]
    accuracy: Option<f64>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    passed: bool,
    #[serde(default)]
    cell: Option<Cell>,
    #[serde(default)]
    seconds: Option<f64>,
}

/// `s1_s3.json`, less its round list (gate.jsonl has it).
#[derive(Debug, Clone, Deserialize)]
struct S1S3 {
    #[serde(default)]
    candidate_accuracy: Option<f64>,
    #[serde(default)]
    s1_one_shot_accuracy: Option<f64>,
    #[serde(default)]
    candidate_is_s1: Option<bool>,
    #[serde(default)]
    accepted: Option<bool>,
    #[serde(default)]
    width: Option<usize>,
    #[serde(default)]
    depth: Option<usize>,
    #[serde(default)]
    round_dir: Option<PathBuf>,
    #[serde(default)]
    adapter: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct FineTune {
    #[serde(default)]
    test_accuracy: Option<f64>,
    #[serde(default)]
    val_accuracy: Option<f64>,
    #[serde(default)]
    seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
struct Discretize {
    #[serde(default)]
    one_shot_val_accuracy: Option<f64>,
    #[serde(default)]
    anneal_loss_first: Option<f64>,
    #[serde(default)]
    anneal_loss_last: Option<f64>,
    #[serde(default)]
    anneal_seconds: Option<f64>,
    #[serde(default)]
    fine_tune: Option<FineTune>,
}

#[derive(Debug, Clone, Deserialize)]
struct Stage {
    stage: String,
    #[serde(default)]
    test_accuracy: Option<f64>,
    #[serde(default)]
    params: Option<u64>,
    #[serde(default)]
    flops: Option<u64>,
    #[serde(default)]
    latency_ms_per_image: Option<f64>,
}

/// One point of a pruning sweep.
#[derive(Debug, Clone, Deserialize)]
struct CurvePoint {
    #[serde(default)]
    ratio: Option<f64>,
    #[serde(default)]
    params: Option<f64>,
    #[serde(default, alias = "val_accuracy")]
    accuracy: Option<f64>,
}

/// `s4/s4.json`.
#[derive(Debug, Clone, Deserialize)]
struct S4 {
    #[serde(default)]
    discretize: Option<Discretize>,
    #[serde(default)]
    prune_ratio: Option<f64>,
    #[serde(default)]
    prunable_channels: Option<u64>,
    #[serde(default)]
    removed_channels: Option<u64>,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    stages: Vec<Stage>,
    #[serde(default)]
    onnx: Option<PathBuf>,
    #[serde(default)]
    seconds: Option<f64>,
    #[serde(default)]
    adapter: Option<String>,
    #[serde(default)]
    pruning_curve: Option<Vec<CurvePoint>>,
}

/// One line of a model directory's `metrics.jsonl`.
#[derive(Debug, Clone, Deserialize)]
struct Metric {
    phase: String,
    #[serde(default)]
    step: Option<f64>,
    #[serde(default)]
    loss: Option<f64>,
    #[serde(default)]
    accuracy: Option<f64>,
}

/// A number read off one line of a log (a series of a chart).
type Field<T> = fn(&T) -> Option<f64>;

/// One `round{r}/` directory.
struct Round {
    index: usize,
    history: Option<Vec<HistoryLine>>,
    genotype: Option<Genotype>,
    paths_seconds: Option<f64>,
    /// The op names of the round's op set, in α's column order.
    ops: Vec<String>,
}

/// The S4 directory: `s4/`, or the one other subdirectory holding an
/// `s4.json` (`--out` may name it anything).
struct S4Dir {
    rel: String,
    report: Option<S4>,
    /// Per stage with a `metrics.jsonl`.
    metrics: Vec<(String, Vec<Metric>)>,
    /// Stages without one.
    untrained: Vec<String>,
}

struct Run {
    dir: PathBuf,
    config: Option<Value>,
    s1s3: Option<S1S3>,
    candidate: Option<Genotype>,
    gate: Option<Vec<GateLine>>,
    levels: Option<Vec<Level>>,
    rounds: Vec<Round>,
    s4: Option<S4Dir>,
}

/// A file's text, None when it does not exist.
fn read_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let Some(text) = read_opt(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| anyhow!("{}: malformed: {e}", path.display()))
}

fn jsonl<T: DeserializeOwned>(path: &Path) -> Result<Option<Vec<T>>> {
    let Some(mut text) = read_opt(path)? else {
        return Ok(None);
    };
    // A last line without its newline is one still being written by a
    // running search: left out, not an error.
    if !text.ends_with('\n') {
        let cut = text.rfind('\n').map_or(0, |i| i + 1);
        if serde_json::from_str::<T>(&text[cut..]).is_err() {
            text.truncate(cut);
        }
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map_err(|e| anyhow!("{} line {}: malformed: {e}", path.display(), n + 1))
        })
        .collect::<Result<Vec<T>>>()
        .map(Some)
}

impl Cell {
    /// Block j may read the two input cells and blocks before j.
    fn check(&self, file: &Path, kind: &str) -> Result<()> {
        for (j, b) in self.blocks.iter().enumerate() {
            if let Some(&i) = b.inputs.iter().find(|&&i| i >= 2 + j) {
                bail!(
                    "{}: {kind} block {j}: input {i} out of range (expected at most {})",
                    file.display(),
                    j + 1
                );
            }
        }
        Ok(())
    }
}

fn genotype(path: &Path) -> Result<Option<Genotype>> {
    let g: Option<Genotype> = json(path)?;
    if let Some(g) = &g {
        g.normal.check(path, "normal")?;
        g.reduce.check(path, "reduce")?;
    }
    Ok(g)
}

/// Op names from an S1 config's `supernet.op_set.ops`.
fn config_ops(s1: Option<&Value>) -> Option<Vec<String>> {
    s1?.pointer("/supernet/op_set/ops")?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(String::from))
        .collect()
}

impl Run {
    fn load(dir: &Path) -> Result<Run> {
        if !dir.is_dir() {
            bail!("{}: not a run directory", dir.display());
        }
        let config: Option<Value> = json(&dir.join("config.json"))?;
        let mut round_dirs: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let r = name.strip_prefix("round")?.parse().ok()?;
                e.path().is_dir().then(|| (r, e.path()))
            })
            .collect();
        round_dirs.sort();
        let mut rounds = Vec::new();
        for (index, rd) in round_dirs {
            let s1_config: Option<Value> = json(&rd.join("s1_config.json"))?;
            let genotype = genotype(&rd.join("genotype.json"))?;
            let paths: Option<Value> = json(&rd.join("paths.json"))?;
            // paths.json is {config, report} or (older) the report alone.
            let paths_seconds = paths.as_ref().and_then(|p| {
                p.pointer("/report/seconds")
                    .or_else(|| p.get("seconds"))
                    .and_then(Value::as_f64)
            });
            let ops = config_ops(s1_config.as_ref())
                .or_else(|| config_ops(config.as_ref().and_then(|c| c.get("s1"))))
                .or_else(|| {
                    let set = crate::space::OpSet::by_name(&genotype.as_ref()?.op_set).ok()?;
                    Some(set.ops().iter().map(|o| o.name().to_string()).collect())
                })
                .unwrap_or_default();
            rounds.push(Round {
                index,
                history: jsonl(&rd.join("history.jsonl"))?,
                genotype,
                paths_seconds,
                ops,
            });
        }
        // Every round's levels are in the top-level file; the per-round
        // files stand in for it while it is missing.
        let mut levels: Option<Vec<Level>> = jsonl(&dir.join("predictor.jsonl"))?;
        if levels.is_none() {
            for r in &rounds {
                let path = dir
                    .join(format!("round{}", r.index))
                    .join("predictor.jsonl");
                if let Some(ls) = jsonl::<Level>(&path)? {
                    let all = levels.get_or_insert_with(Vec::new);
                    all.extend(ls.into_iter().map(|l| Level {
                        round: r.index,
                        ..l
                    }));
                }
            }
        }
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            s1s3: json(&dir.join("s1_s3.json"))?,
            candidate: genotype(&dir.join("candidate.json"))?,
            gate: jsonl(&dir.join("gate.jsonl"))?,
            levels,
            rounds,
            s4: S4Dir::load(dir)?,
        })
    }

    fn adapter(&self) -> String {
        let a = self.s1s3.as_ref().and_then(|r| r.adapter.clone());
        let b = self
            .s4
            .as_ref()
            .and_then(|s| s.report.as_ref()?.adapter.clone());
        match (a, b) {
            (Some(a), Some(b)) if a != b => format!("S1–S3: {a}; S4: {b}"),
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => "adapter not recorded".into(),
        }
    }

    /// The round S3 chose (s1_s3.json's `round_dir`), else the last.
    fn chosen_round(&self) -> Option<&Round> {
        let name = self.s1s3.as_ref().and_then(|r| {
            r.round_dir
                .as_ref()?
                .file_name()?
                .to_str()
                .map(String::from)
        });
        name.and_then(|n| {
            self.rounds
                .iter()
                .find(|r| format!("round{}", r.index) == n)
        })
        .or_else(|| self.rounds.last())
    }

    fn op_set_name(&self) -> Option<String> {
        self.candidate
            .as_ref()
            .map(|g| g.op_set.clone())
            .or_else(|| {
                self.config
                    .as_ref()?
                    .pointer("/s1/supernet/op_set/name")?
                    .as_str()
                    .map(String::from)
            })
    }

    /// The op names of the run's op set (for edge colors).
    fn ops(&self) -> Vec<String> {
        self.chosen_round()
            .map(|r| r.ops.clone())
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| {
                config_ops(self.config.as_ref().and_then(|c| c.get("s1"))).unwrap_or_default()
            })
    }
}

/// The stage names S4 writes, in order.
const STAGES: [&str; 4] = ["discretized", "sparse", "pruned", "final"];

impl S4Dir {
    fn load(run: &Path) -> Result<Option<S4Dir>> {
        let mut dir = run.join("s4");
        if !dir.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(run)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.join("s4.json").is_file())
                .collect();
            if found.len() != 1 {
                return Ok(None);
            }
            dir = found.remove(0);
        }
        let report: Option<S4> = json(&dir.join("s4.json"))?;
        let names: Vec<String> = match &report {
            Some(r) if !r.stages.is_empty() => r.stages.iter().map(|s| s.stage.clone()).collect(),
            _ => STAGES.iter().map(|s| s.to_string()).collect(),
        };
        let (mut metrics, mut untrained) = (Vec::new(), Vec::new());
        for name in names {
            // Stage names become paths: only plain names.
            let plain = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            let m = if plain {
                jsonl::<Metric>(&dir.join(&name).join("metrics.jsonl"))?
            } else {
                None
            };
            match m {
                Some(m) if !m.is_empty() => metrics.push((name, m)),
                _ => untrained.push(name),
            }
        }
        let rel = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Some(S4Dir {
            rel,
            report,
            metrics,
            untrained,
        }))
    }
}

// ---------------------------------------------------------------- formatting

fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or("—".into(), |v| format!("{:.2}%", v * 100.0))
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or("—".into(), |v| format!("{v:.decimals$}"))
}

/// An integer with thousands separators.
fn int(v: Option<u64>) -> String {
    let Some(v) = v else { return "—".into() };
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn secs(v: Option<f64>) -> String {
    match v.filter(|v| v.is_finite()) {
        None => "—".into(),
        Some(s) if s >= 120.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{s:.1} s"),
    }
}

/// A cell as one line per block: `b2 = op(input) + op(input)`.
fn cell_text(c: &Cell) -> String {
    c.blocks
        .iter()
        .enumerate()
        .map(|(j, b)| {
            format!(
                "b{j} = {}({}) + {}({})",
                b.ops[0],
                svg::input_name(b.inputs[0]),
                b.ops[1],
                svg::input_name(b.inputs[1])
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cell for a table cell: escaped, one block per line.
fn cell_html(c: Option<&Cell>) -> String {
    let text = c.map(cell_text).unwrap_or_default();
    format!(
        r#"<span class="cell">{}</span>"#,
        esc(&text).replace('\n', "<br>")
    )
}

fn missing(o: &mut String, what: &str) {
    let _ = write!(o, r#"<p class="missing">{}</p>"#, esc(what));
}

/// A table from a header and rows of already-escaped cells; columns in
/// `left` are left-aligned text, the others numbers. Columns with nothing
/// in any row ("—" throughout: fields an older run did not write) are left
/// out.
fn table(o: &mut String, class: &str, header: &[&str], rows: &[Vec<String>], left: &[usize]) {
    let shown: Vec<usize> = (0..header.len())
        .filter(|&c| rows.is_empty() || rows.iter().any(|r| r.get(c).is_some_and(|v| v != "—")))
        .collect();
    let align = |c: &usize| {
        if left.contains(c) {
            r#" class="l""#
        } else {
            ""
        }
    };
    let _ = write!(o, r#"<table class="{class}"><tr>"#);
    for c in &shown {
        let _ = write!(o, "<th{}>{}</th>", align(c), esc(header[*c]));
    }
    o.push_str("</tr>");
    for r in rows {
        o.push_str("<tr>");
        for c in &shown {
            let cell = r.get(*c).map_or("", String::as_str);
            let _ = write!(o, "<td{}>{cell}</td>", align(c));
        }
        o.push_str("</tr>");
    }
    o.push_str("</table>");
}

/// A two-column table of (name, text) rows.
fn kv_table(o: &mut String, rows: &[(&str, String)]) {
    o.push_str(r#"<table class="kv">"#);
    for (k, v) in rows {
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    o.push_str("</table>");
}

fn softmax(row: &[Option<f64>]) -> Vec<f64> {
    let m = row
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row
        .iter()
        .map(|v| v.map_or(f64::NAN, |v| (v - m).exp()))
        .collect();
    let s: f64 = e.iter().filter(|v| v.is_finite()).sum();
    e.iter().map(|v| v / s).collect()
}

/// Row labels for `n` α rows: edges (block, input) when n is a whole
/// number of blocks' edges (`space::edges()` order), else "edge k".
fn edge_labels(n: usize) -> Vec<String> {
    let mut edges = Vec::new();
    let mut b = 0;
    while edges.len() < n {
        for i in 0..crate::space::num_inputs(b) {
            edges.push(format!("b{b} ← {}", svg::input_name(i)));
        }
        b += 1;
    }
    if edges.len() == n {
        edges
    } else {
        (0..n).map(|k| format!("edge {k}")).collect()
    }
}

/// Whether α row `k` is an edge the cell kept.
fn kept_edges(n: usize, cell: Option<&Cell>) -> Vec<bool> {
    let mut kept = vec![false; n];
    if let Some(c) = cell {
        for (j, b) in c.blocks.iter().enumerate() {
            for &i in &b.inputs {
                let k = crate::space::num_edges(j) + i;
                if k < n {
                    kept[k] = true;
                }
            }
        }
    }
    kept
}

/// Up to `max` indices spread evenly over 0..n, first and last included.
fn spread(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut v: Vec<usize> = (0..max)
        .map(|k| (k as f64 * (n - 1) as f64 / (max - 1) as f64).round() as usize)
        .collect();
    v.dedup();
    v
}

fn op_color(ops: &[String]) -> impl Fn(&str) -> usize + '_ {
    move |name| {
        ops.iter().position(|o| o == name).unwrap_or_else(|| {
            name.bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
        })
    }
}

fn graph_blocks(c: &Cell) -> Vec<GraphBlock> {
    c.blocks
        .iter()
        .map(|b| GraphBlock {
            inputs: b.inputs,
            ops: b.ops.clone(),
        })
        .collect()
}

// ---------------------------------------------------------------- the page

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1220px;padding:12px 20px 40px;color:#222;background:#fafafa}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:3px;margin:30px 0 10px}h3{font-size:15px;margin:16px 0 6px}
.sub{color:#666;margin:0 0 8px}nav{margin:8px 0 0}nav a{margin-right:14px;color:#2a5d9f;text-decoration:none}
table{border-collapse:collapse;margin:6px 0 10px;background:#fff;font-size:13px}td,th{border:1px solid #ddd;padding:3px 9px;text-align:right;vertical-align:top;white-space:nowrap}th{background:#f0f0f0}.l{text-align:left}
.cell{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:11.5px}
table.kv th{text-align:left;font-weight:600}table.kv td{text-align:left}
.missing{color:#9a5b00;font-style:italic;margin:4px 0}.note{color:#555;font-size:13px;margin:4px 0}
.grid{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
svg{background:#fff;border:1px solid #e3e3e3;max-width:100%;height:auto}
svg text{font-family:"DejaVu Sans",Verdana,sans-serif;font-size:11px;fill:#333}
svg .title{font-size:13px;font-weight:bold}svg .tick,svg .plabel{font-size:10px;fill:#555}svg .legend{font-size:11px}svg .axis{font-size:11px;fill:#444}
svg .rowlabel{font-size:10.5px}svg .marked{font-weight:bold;fill:#000}
svg .elabel{font-size:10px;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
pre{background:#fff;border:1px solid #e3e3e3;padding:8px 10px;margin:6px 0;font-size:12.5px;overflow-x:auto}
.pass{color:#1d7a1d;font-weight:bold}.fail{color:#b02a2a;font-weight:bold}
"#;

/// The sections, in page order: (anchor, navigation title).
const SECTIONS: [(&str, &str); 9] = [
    ("summary", "Summary"),
    ("s1", "S1 curves"),
    ("alpha", "α heat maps"),
    ("cells", "Cells"),
    ("s2", "S2 predictor"),
    ("s3", "S3 gate"),
    ("s4", "S4 training"),
    ("pruning", "Pruning"),
    ("final", "Final table"),
];

fn page(run: &Run) -> String {
    let mut o = String::new();
    let name = run
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.dir.display().to_string());
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>gradnas report: {}</title><style>{CSS}</style></head><body><h1>gradnas search report</h1><p class="sub">{} · gradnas {}</p><nav>"#,
        esc(&name),
        esc(&run.dir.display().to_string()),
        env!("CARGO_PKG_VERSION")
    );
    for (id, title) in SECTIONS {
        let _ = write!(o, r##"<a href="#{id}">{}</a>"##, esc(title));
    }
    o.push_str("</nav>");
    summary(&mut o, run);
    s1_curves(&mut o, run);
    alpha_maps(&mut o, run);
    cells(&mut o, run);
    s2(&mut o, run);
    s3(&mut o, run);
    s4_curves(&mut o, run);
    pruning(&mut o, run);
    final_table(&mut o, run);
    o.push_str("</body></html>\n");
    o
}

fn section(o: &mut String, id: &str, title: &str) {
    let _ = write!(o, r#"<section id="{id}"><h2>{}</h2>"#, esc(title));
}

fn summary(o: &mut String, run: &Run) {
    section(o, "summary", "Summary");
    let mut kv: Vec<(&str, String)> = Vec::new();
    let ops = run.ops();
    if let Some(set) = run.op_set_name() {
        kv.push(("op set", format!("{set} ({} ops)", ops.len())));
    }
    if let Some(r) = &run.s1s3 {
        if let (Some(w), Some(d)) = (r.width, r.depth) {
            kv.push(("chosen space", format!("width {w}, depth {d}")));
        }
        kv.push((
            "candidate, one-shot val. accuracy",
            format!(
                "{}{}",
                pct(r.candidate_accuracy),
                if r.candidate_is_s1 == Some(true) {
                    " (the S1 cell)"
                } else {
                    ""
                }
            ),
        ));
        kv.push((
            "S1 cell, one-shot val. accuracy",
            pct(r.s1_one_shot_accuracy),
        ));
        if let Some(a) = r.accepted {
            kv.push((
                "gate",
                if a {
                    "passed".into()
                } else {
                    "not passed (best round kept)".into()
                },
            ));
        }
    }
    let stages = run
        .s4
        .as_ref()
        .and_then(|s| s.report.as_ref())
        .map(|r| r.stages.as_slice())
        .unwrap_or_default();
    if let Some(f) = stages.iter().find(|s| s.stage == "final").or(stages.last()) {
        kv.push(("final test accuracy", pct(f.test_accuracy)));
        kv.push(("final parameters", int(f.params)));
        kv.push(("final multiply-adds / image", int(f.flops)));
        kv.push((
            "final latency",
            format!("{} ms / image", num(f.latency_ms_per_image, 3)),
        ));
    }
    kv.push(("adapter", run.adapter()));
    kv_table(o, &kv);

    match &run.candidate {
        Some(g) => {
            o.push_str("<h3>Candidate genotype</h3><pre>");
            if g.normal == g.reduce {
                let _ = write!(
                    o,
                    "normal and reduction cell (one structure, stride 2 in reductions):\n{}",
                    esc(&cell_text(&g.normal))
                );
            } else {
                let _ = write!(
                    o,
                    "normal cell:\n{}\n\nreduction cell:\n{}",
                    esc(&cell_text(&g.normal)),
                    esc(&cell_text(&g.reduce))
                );
            }
            o.push_str("</pre>");
        }
        None => missing(o, "No candidate.json yet (S2 has not finished)."),
    }

    // Timings per round, then S4.
    let mut rows = Vec::new();
    for r in &run.rounds {
        let s1 = r
            .history
            .as_ref()
            .and_then(|h| h.last().and_then(|l| l.seconds));
        let s2: Option<f64> = run.levels.as_ref().and_then(|ls| {
            let v: Vec<f64> = ls
                .iter()
                .filter(|l| l.round == r.index)
                .filter_map(|l| l.seconds)
                .collect();
            (!v.is_empty()).then(|| v.iter().sum())
        });
        let total = run
            .gate
            .as_ref()
            .and_then(|g| g.iter().find(|l| l.round == r.index)?.seconds);
        rows.push(vec![
            format!("round {}", r.index),
            secs(s1),
            secs(r.paths_seconds),
            secs(s2),
            secs(total),
        ]);
    }
    if !rows.is_empty() {
        o.push_str("<h3>Timings</h3>");
        table(
            o,
            "timings",
            &["", "S1", "path training", "S2", "round total"],
            &rows,
            &[0],
        );
    }
    if let Some(s) = run.s4.as_ref().and_then(|s| s.report.as_ref()) {
        let _ = write!(o, r#"<p class="note">S4: {}.</p>"#, esc(&secs(s.seconds)));
    }
    o.push_str("</section>");
}

fn s1_curves(o: &mut String, run: &Run) {
    section(
        o,
        "s1",
        "S1: supernet training, loss and α entropy per epoch",
    );
    let with: Vec<(&Round, &Vec<HistoryLine>)> = run
        .rounds
        .iter()
        .filter_map(|r| Some((r, r.history.as_ref().filter(|h| !h.is_empty())?)))
        .collect();
    for r in &run.rounds {
        match &r.history {
            None => missing(
                o,
                &format!("round {}: no history.jsonl (S1 not run).", r.index),
            ),
            Some(h) if h.is_empty() => missing(
                o,
                &format!(
                    "round {}: history.jsonl is empty (no S1 epoch recorded).",
                    r.index
                ),
            ),
            _ => {}
        }
    }
    if run.rounds.is_empty() {
        missing(o, "No round directory yet (S1 not run).");
    }
    if with.is_empty() {
        o.push_str("</section>");
        return;
    }
    let many = with.len() > 1;
    let name = |r: &Round, what: &str| {
        if many {
            format!("round {} {what}", r.index)
        } else {
            what.to_string()
        }
    };
    let mut loss = Chart::new("S1 loss per epoch", "epoch", "cross-entropy");
    let mut ent = Chart::new(
        "softmax(α) entropy per epoch",
        "epoch",
        "mean entropy (nats)",
    );
    loss.x_integer = true;
    ent.x_integer = true;
    for (k, (r, h)) in with.iter().enumerate() {
        let pts = |f: Field<HistoryLine>| -> Vec<(f64, f64)> {
            h.iter()
                .map(|l| (l.epoch as f64, f(l).unwrap_or(f64::NAN)))
                .collect()
        };
        let c = if many { k } else { 0 };
        loss.series.push(Series::line(
            name(r, "train (weights)"),
            c,
            pts(|l| l.train_loss),
        ));
        let vc = if many { k } else { 1 };
        loss.series
            .push(Series::line(name(r, "validation (α, β)"), vc, pts(|l| l.val_loss)).dashed());
        ent.series.push(Series::line(
            name(r, "normal"),
            c,
            pts(|l| l.entropy_normal),
        ));
        ent.series
            .push(Series::line(name(r, "reduce"), vc, pts(|l| l.entropy_reduce)).dashed());
        if k == 0 && !r.ops.is_empty() {
            ent.hlines
                .push(((r.ops.len() as f64).ln(), "uniform: ln K".into()));
        }
    }
    o.push_str(r#"<div class="grid">"#);
    o.push_str(&svg::chart(&loss));
    o.push_str(&svg::chart(&ent));
    o.push_str("</div></section>");
}

/// One α (and β) snapshot of both cell kinds.
type Snapshot<'a> = (&'a Weights, Option<&'a Weights>);

/// A round's α/β snapshots and their caption: up to 24 epochs of the
/// history, else the final α of genotype.json (with a note), else a note.
fn snapshots<'a>(o: &mut String, r: &'a Round) -> Option<(Vec<Snapshot<'a>>, String)> {
    let hist: Vec<(&HistoryLine, &Weights)> = r
        .history
        .iter()
        .flatten()
        .filter_map(|l| Some((l, l.alpha.as_ref()?)))
        .collect();
    if let (Some(first), Some(last)) = (hist.first(), hist.last()) {
        let keep = spread(hist.len(), 24);
        let mut caption = format!(
            "columns per op: epochs {} → {}",
            first.0.epoch, last.0.epoch
        );
        if keep.len() < hist.len() {
            let _ = write!(caption, " ({} of {} epochs shown)", keep.len(), hist.len());
        }
        let snaps = keep
            .iter()
            .map(|&i| (hist[i].1, hist[i].0.beta.as_ref()))
            .collect();
        return Some((snaps, caption));
    }
    let idx = r.index;
    match r
        .genotype
        .as_ref()
        .and_then(|g| Some((g.alpha.as_ref()?, g.beta.as_ref())))
    {
        Some(snap) => {
            missing(
                o,
                &format!("round {idx}: no α history; showing the final α from genotype.json."),
            );
            Some((vec![snap], "final α only".into()))
        }
        None => {
            missing(
                o,
                &format!(
                    "round {idx}: no α recorded (no history.jsonl lines, no α in genotype.json)."
                ),
            );
            None
        }
    }
}

impl Weights {
    fn kind(&self, normal: bool) -> &[Vec<Option<f64>>] {
        if normal {
            &self.normal
        } else {
            &self.reduce
        }
    }
}

fn alpha_maps(o: &mut String, run: &Run) {
    section(o, "alpha", "S1: α over the epochs, per edge");
    o.push_str(r#"<p class="note">Each row is an edge (block ← input); each op's strip runs over the epochs left to right; the color is softmax(α) of that op on that edge. Bold rows (●) are the edges the round's derived S1 genotype kept. The β heat map is each edge's weight among its block's inputs, times their number (1: all inputs equal).</p>"#);
    if run.rounds.is_empty() {
        missing(o, "No round directory yet (S1 not run).");
    }
    for r in &run.rounds {
        let Some((snaps, caption)) = snapshots(o, r) else {
            continue;
        };
        o.push_str(r#"<div class="grid">"#);
        for normal in [true, false] {
            let alphas: Vec<&[Vec<Option<f64>>]> = snaps.iter().map(|s| s.0.kind(normal)).collect();
            let n = alphas[0].len();
            let k = alphas[0].iter().map(Vec::len).max().unwrap_or(0);
            let probs: Vec<Vec<Vec<f64>>> = alphas
                .iter()
                .map(|a| a.iter().map(|row| softmax(row)).collect())
                .collect();
            // values[edge][op][snapshot]
            let values = (0..n)
                .map(|e| {
                    (0..k)
                        .map(|op| {
                            let at = |p: &Vec<Vec<f64>>| p.get(e)?.get(op).copied();
                            probs.iter().map(|p| at(p).unwrap_or(f64::NAN)).collect()
                        })
                        .collect()
                })
                .collect();
            let cell = r
                .genotype
                .as_ref()
                .map(|g| if normal { &g.normal } else { &g.reduce });
            let (rows, marked) = (edge_labels(n), kept_edges(n, cell));
            let kind = if normal { "normal" } else { "reduction" };
            o.push_str(&svg::heat_map(&HeatMap {
                title: format!("round {}: softmax(α), {kind} cell", r.index),
                rows: rows.clone(),
                marked: marked.clone(),
                groups: (0..k)
                    .map(|i| r.ops.get(i).cloned().unwrap_or_else(|| format!("op {i}")))
                    .collect(),
                caption: caption.clone(),
                values,
                value_label: "softmax(α)".into(),
            }));
            // β rows are per block, one value per input: flattened, they
            // are in edge order. Scaled by the block's input count so that
            // 1 is uniform in every block and blocks compare.
            let betas: Option<Vec<Vec<f64>>> = snaps
                .iter()
                .map(|s| {
                    let rows = s.1?.kind(normal);
                    let flat: Vec<f64> = rows
                        .iter()
                        .flat_map(|row| {
                            let k = row.len() as f64;
                            row.iter().map(move |v| v.map_or(f64::NAN, |v| v * k))
                        })
                        .collect();
                    (flat.len() == n).then_some(flat)
                })
                .collect();
            if let Some(betas) = betas {
                o.push_str(&svg::heat_map(&HeatMap {
                    title: format!("round {}: β, {kind} cell", r.index),
                    rows,
                    marked,
                    groups: vec!["β".into()],
                    caption: if snaps.len() > 1 {
                        "epochs →"
                    } else {
                        "final β only"
                    }
                    .into(),
                    values: (0..n)
                        .map(|e| vec![betas.iter().map(|b| b[e]).collect()])
                        .collect(),
                    value_label: "β · inputs (1: uniform)".into(),
                }));
            }
        }
        o.push_str("</div>");
    }
    o.push_str("</section>");
}

fn cells(o: &mut String, run: &Run) {
    section(o, "cells", "The cells");
    let ops = run.ops();
    let color = op_color(&ops);
    o.push_str(r#"<div class="grid">"#);
    match &run.candidate {
        Some(g) if g.normal == g.reduce => o.push_str(&svg::cell_graph(
            "candidate cell (normal and reduction)",
            &graph_blocks(&g.normal),
            &color,
        )),
        Some(g) => {
            o.push_str(&svg::cell_graph(
                "candidate normal cell",
                &graph_blocks(&g.normal),
                &color,
            ));
            o.push_str(&svg::cell_graph(
                "candidate reduction cell",
                &graph_blocks(&g.reduce),
                &color,
            ));
        }
        None => missing(o, "No candidate.json yet (S2 has not finished)."),
    }
    o.push_str("</div>");
    match run.chosen_round() {
        Some(r) => match &r.genotype {
            Some(g) => {
                o.push_str(r#"<div class="grid">"#);
                for (kind, c) in [("normal", &g.normal), ("reduction", &g.reduce)] {
                    o.push_str(&svg::cell_graph(
                        &format!("S1 {kind} cell (round {}, from α and β)", r.index),
                        &graph_blocks(c),
                        &color,
                    ));
                }
                o.push_str("</div>");
            }
            None => missing(
                o,
                &format!("round {}: no genotype.json (S1 not finished).", r.index),
            ),
        },
        None => missing(o, "No S1 genotype yet (S1 not run)."),
    }
    o.push_str("</section>");
}

fn s2(o: &mut String, run: &Run) {
    section(
        o,
        "s2",
        "S2: the predictor-guided progressive search, per level",
    );
    let Some(levels) = run.levels.as_ref().filter(|l| !l.is_empty()) else {
        missing(o, "No predictor.jsonl yet (S2 not run).");
        o.push_str("</section>");
        return;
    };
    let rounds: Vec<usize> = {
        let mut r: Vec<usize> = levels.iter().map(|l| l.round).collect();
        r.dedup();
        r.sort();
        r.dedup();
        r
    };
    let many = rounds.len() > 1;
    let tag = |r: usize, s: &str| {
        if many {
            format!("r{r} {s}")
        } else {
            s.to_string()
        }
    };
    let mut rank = Chart::new(
        "predictor rank correlation with the measured accuracy",
        "blocks per cell (level)",
        "correlation",
    );
    rank.x_integer = true;
    rank.y_range = Some((-1.0, 1.0));
    rank.hlines.push((0.0, String::new()));
    let mut acc = Chart::new(
        "measured one-shot accuracy per level",
        "blocks per cell (level)",
        "validation accuracy",
    );
    acc.x_integer = true;
    let metrics: [(&str, Field<Level>); 4] = [
        ("Kendall τ", |l| l.kendall_tau),
        ("Spearman ρ", |l| l.spearman_rho),
        ("τ, top K only", |l| l.kendall_tau_top),
        ("out-of-fold τ of the refit", |l| l.fit_oof_tau),
    ];
    for (ri, &r) in rounds.iter().enumerate() {
        let ls: Vec<&Level> = levels.iter().filter(|l| l.round == r).collect();
        for (mi, (name, f)) in metrics.iter().enumerate() {
            let pts: Vec<(f64, f64)> = ls
                .iter()
                .map(|l| (l.blocks as f64, f(l).unwrap_or(f64::NAN)))
                .collect();
            if pts.iter().any(|p| p.1.is_finite()) {
                let s = Series::line(tag(r, name), ri * 4 + mi, pts);
                rank.series.push(if mi >= 2 { s.dashed() } else { s });
            }
        }
        let pts = |f: Field<Level>| -> Vec<(f64, f64)> {
            ls.iter()
                .map(|l| (l.blocks as f64, f(l).unwrap_or(f64::NAN)))
                .collect()
        };
        acc.series.push(Series::line(
            tag(r, "best"),
            ri * 2,
            pts(|l| l.best_accuracy),
        ));
        acc.series
            .push(Series::line(tag(r, "mean"), ri * 2 + 1, pts(|l| l.mean_accuracy)).dashed());
    }
    // Which reading the accuracies are (a config without the field is from
    // before the probe: the shared classifier).
    let probe = run
        .config
        .as_ref()
        .and_then(|c| c.pointer("/measure/probe_images")?.as_u64())
        .unwrap_or(0);
    let _ = write!(
        o,
        r#"<p class="note">{}</p>"#,
        if probe > 0 {
            format!("A cell's accuracy is read through a least-squares classifier fitted on its own pooled features of {probe} training images (measure.probe_images), on the supernet's shared weights with batch-norm statistics recomputed.")
        } else {
            "A cell's accuracy is read through the supernet's shared classifier, on its shared weights with batch-norm statistics recomputed.".to_string()
        }
    );
    o.push_str(r#"<div class="grid">"#);
    o.push_str(&svg::chart(&rank));
    o.push_str(&svg::chart(&acc));
    // Predicted vs measured per cell, when the levels carry the pairs.
    let with_pairs: Vec<&Level> = levels
        .iter()
        .filter(|l| l.pairs.as_ref().is_some_and(|p| !p.is_empty()))
        .collect();
    if !with_pairs.is_empty() {
        let mut sc = Chart::new(
            "predicted vs measured accuracy per cell",
            "predicted accuracy",
            "measured accuracy",
        );
        sc.diagonal = true;
        for (k, l) in with_pairs.iter().enumerate() {
            let pts = l
                .pairs
                .iter()
                .flatten()
                .map(|&(p, m)| (p.unwrap_or(f64::NAN), m.unwrap_or(f64::NAN)))
                .collect();
            sc.series.push(Series::scatter(
                tag(l.round, &format!("b = {}", l.blocks)),
                k,
                pts,
            ));
        }
        o.push_str(&svg::chart(&sc));
    }
    o.push_str("</div>");
    if with_pairs.is_empty() {
        missing(
            o,
            "Per-cell predicted vs measured pairs are not in predictor.jsonl (no `pairs` field); τ and ρ above summarize them.",
        );
    }
    let rows: Vec<Vec<String>> = levels
        .iter()
        .map(|l| {
            let mut row = vec![
                l.round.to_string(),
                l.blocks.to_string(),
                int(l.predicted.map(|v| v as u64)),
                int(l.measured.map(|v| v as u64)),
                int(l.explored.map(|v| v as u64)),
                num(l.kendall_tau, 3),
                num(l.spearman_rho, 3),
                num(l.kendall_tau_top, 3),
                num(l.fit_oof_tau, 3),
                num(l.mean_spread, 4),
                pct(l.best_accuracy),
                pct(l.mean_accuracy),
                secs(l.seconds),
            ];
            row.push(cell_html(l.best_cell.as_ref()));
            row
        })
        .collect();
    table(
        o,
        "levels",
        &[
            "round",
            "blocks",
            "scored",
            "measured",
            "explored",
            "τ",
            "ρ",
            "τ top K",
            "OOF τ",
            "spread",
            "best",
            "mean",
            "time",
            "best cell",
        ],
        &rows,
        &[13],
    );
    o.push_str("</section>");
}

fn s3(o: &mut String, run: &Run) {
    section(o, "s3", "S3: the accuracy gate, per round");
    let Some(gate) = run.gate.as_ref().filter(|g| !g.is_empty()) else {
        missing(o, "No gate.jsonl yet (no round has finished S2).");
        o.push_str("</section>");
        return;
    };
    let rows: Vec<Vec<String>> = gate
        .iter()
        .map(|g| {
            vec![
                g.round.to_string(),
                g.width.map_or("—".into(), |v| v.to_string()),
                g.depth.map_or("—".into(), |v| v.to_string()),
                pct(g.accuracy),
                pct(g.threshold),
                if g.passed {
                    r#"<span class="pass">passed</span>"#.into()
                } else {
                    r#"<span class="fail">below</span>"#.into()
                },
                secs(g.seconds),
                cell_html(g.cell.as_ref()),
            ]
        })
        .collect();
    table(
        o,
        "gate",
        &[
            "round",
            "width",
            "depth",
            "accuracy",
            "threshold",
            "gate",
            "time",
            "cell",
        ],
        &rows,
        &[5, 7],
    );
    o.push_str("</section>");
}

fn s4_curves(o: &mut String, run: &Run) {
    section(o, "s4", "S4: training and validation curves per phase");
    let Some(s4) = &run.s4 else {
        missing(o, "No s4/ directory yet (S4 not run).");
        o.push_str("</section>");
        return;
    };
    if s4.rel != "s4" {
        let _ = write!(
            o,
            r#"<p class="note">S4 read from {}/ (the only subdirectory with an s4.json).</p>"#,
            esc(&s4.rel)
        );
    }
    if let Some(d) = s4.report.as_ref().and_then(|r| r.discretize.as_ref()) {
        let _ = write!(
            o,
            r#"<p class="note">Discretization: one-shot validation accuracy {} before; anneal loss {} → {} in {}; after fine-tuning {} validation, {} test ({}).</p>"#,
            pct(d.one_shot_val_accuracy),
            num(d.anneal_loss_first, 3),
            num(d.anneal_loss_last, 3),
            esc(&secs(d.anneal_seconds)),
            pct(d.fine_tune.as_ref().and_then(|f| f.val_accuracy)),
            pct(d.fine_tune.as_ref().and_then(|f| f.test_accuracy)),
            esc(&secs(d.fine_tune.as_ref().and_then(|f| f.seconds))),
        );
    }
    if s4.metrics.is_empty() {
        missing(
            o,
            &format!("No metrics.jsonl in any stage of {}/ yet.", s4.rel),
        );
    }
    o.push_str(r#"<div class="grid">"#);
    for (stage, m) in &s4.metrics {
        let pts = |phase: &str, f: Field<Metric>| -> Vec<(f64, f64)> {
            m.iter()
                .filter(|l| l.phase == phase)
                .map(|l| (l.step.unwrap_or(f64::NAN), f(l).unwrap_or(f64::NAN)))
                .collect()
        };
        let test: Vec<(f64, f64, f64)> = m
            .iter()
            .filter(|l| l.phase == "test")
            .map(|l| {
                (
                    l.step.unwrap_or(f64::NAN),
                    l.loss.unwrap_or(f64::NAN),
                    l.accuracy.unwrap_or(f64::NAN),
                )
            })
            .collect();
        for (what, f, unit) in [
            (
                "loss",
                (|l: &Metric| l.loss) as Field<Metric>,
                "cross-entropy",
            ),
            ("accuracy", |l: &Metric| l.accuracy, "accuracy"),
        ] {
            let mut c = Chart::new(format!("{stage}: {what}"), "step", unit);
            c.width = 390.0;
            c.height = 260.0;
            c.series
                .push(Series::line("train", 0, pts("train", f)).no_markers());
            c.series.push(Series::line("validation", 1, pts("val", f)));
            if !test.is_empty() {
                let tp = test
                    .iter()
                    .map(|t| (t.0, if what == "loss" { t.1 } else { t.2 }))
                    .collect();
                c.series.push(Series::scatter("test", 2, tp));
            }
            o.push_str(&svg::chart(&c));
        }
    }
    o.push_str("</div>");
    for s in &s4.untrained {
        missing(
            o,
            &format!(
                "{}/{s}: no metrics.jsonl (not trained, or not yet).",
                s4.rel
            ),
        );
    }
    o.push_str("</section>");
}

fn pruning(o: &mut String, run: &Run) {
    section(
        o,
        "pruning",
        "S4: the pruning curve (parameters vs accuracy)",
    );
    let Some(r) = run.s4.as_ref().and_then(|s| s.report.as_ref()) else {
        missing(o, "No s4.json yet (S4 not finished).");
        o.push_str("</section>");
        return;
    };
    let mut c = Chart::new("accuracy vs parameters", "parameters", "accuracy");
    c.width = 640.0;
    c.height = 340.0;
    let (pts, labels): (Vec<(f64, f64)>, Vec<String>) = r
        .stages
        .iter()
        .map(|s| {
            (
                (
                    s.params.map_or(f64::NAN, |p| p as f64),
                    s.test_accuracy.unwrap_or(f64::NAN),
                ),
                s.stage.clone(),
            )
        })
        .unzip();
    c.series
        .push(Series::line("S4 stages in order (test)", 0, pts).labeled(labels));
    match &r.pruning_curve {
        Some(curve) if !curve.is_empty() => {
            let mut curve: Vec<&CurvePoint> = curve.iter().collect();
            curve.sort_by(|a, b| {
                a.params
                    .unwrap_or(f64::NAN)
                    .total_cmp(&b.params.unwrap_or(f64::NAN))
            });
            let (pts, labels): (Vec<(f64, f64)>, Vec<String>) = curve
                .iter()
                .map(|p| {
                    (
                        (p.params.unwrap_or(f64::NAN), p.accuracy.unwrap_or(f64::NAN)),
                        p.ratio
                            .map_or(String::new(), |r| format!("{:.0}%", r * 100.0)),
                    )
                })
                .unzip();
            c.series.push(
                Series::line(
                    "sweep: sparse net pruned at each ratio, validation, before fine-tuning",
                    1,
                    pts,
                )
                .dashed()
                .labeled(labels),
            );
        }
        _ => {}
    }
    o.push_str(&svg::chart(&c));
    if r.pruning_curve.as_ref().is_none_or(|c| c.is_empty()) {
        missing(
            o,
            "No pruning sweep in s4.json (no `pruning_curve`); the curve shows the stages of this run.",
        );
    }
    let _ = write!(
        o,
        r#"<p class="note">Pruned {} of the prunable channels: {} of {} removed (BN γ threshold {}).</p>"#,
        r.prune_ratio
            .map_or("—".into(), |p| format!("{:.0}%", p * 100.0)),
        int(r.removed_channels),
        int(r.prunable_channels),
        num(r.threshold, 4)
    );
    o.push_str("</section>");
}

fn final_table(o: &mut String, run: &Run) {
    section(o, "final", "Final table, per S4 stage");
    let Some(r) = run
        .s4
        .as_ref()
        .and_then(|s| s.report.as_ref())
        .filter(|r| !r.stages.is_empty())
    else {
        missing(o, "No s4.json yet (S4 not finished).");
        let _ = write!(
            o,
            r#"<p class="note">Adapter: {}.</p>"#,
            esc(&run.adapter())
        );
        o.push_str("</section>");
        return;
    };
    let base = r.stages.first().and_then(|s| s.params).filter(|&p| p > 0);
    let rows: Vec<Vec<String>> = r
        .stages
        .iter()
        .map(|s| {
            vec![
                esc(&s.stage),
                pct(s.test_accuracy),
                int(s.params),
                match (s.params, base) {
                    (Some(p), Some(b)) => format!("{:.0}%", p as f64 / b as f64 * 100.0),
                    _ => "—".into(),
                },
                int(s.flops),
                num(s.latency_ms_per_image, 3),
            ]
        })
        .collect();
    table(
        o,
        "final",
        &[
            "stage",
            "test accuracy",
            "parameters",
            "of discretized",
            "multiply-adds / image",
            "latency (ms / image)",
        ],
        &rows,
        &[0],
    );
    let mut kv = vec![("adapter", run.adapter())];
    if let Some(p) = &r.onnx {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        kv.push(("ONNX", name.unwrap_or_else(|| p.display().to_string())));
    }
    kv.push(("S4 time", secs(r.seconds)));
    kv_table(o, &kv);
    o.push_str("</section>");
}
