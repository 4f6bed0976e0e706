//! ONNX export (`export::onnx`, `gradnas export`): trained model directories
//! (builtin:cnn, a pnas genotype using every pnas op, a darts genotype using
//! every darts op, each with reduction cells, so FactorizedReduce's slice
//! and stride 2 are in the graph) are exported and run in onnxruntime by
//! `tests/onnx_parity.py` on 256 test images; the logits must match
//! gradnas's own GPU inference within 1e-4 with the same predicted
//! classes, also when the batch is cut into other sizes. A hand-built graph
//! covers the mappings the models do not reach (batch norm without affine,
//! convolution bias, crops and pads at other offsets, a linear layer
//! without bias); random genotypes of both op sets convert; ops without a
//! mapping and bad model directories give clear errors.
//!
//! Needs python3 with numpy and onnxruntime (`python3 -m pip install
//! onnxruntime numpy`); without them the tests fail, never skip.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use prost::Message as _;

use gradnas::data::{Dataset, Normalization, Order, Splits};
use gradnas::export::onnx::{self as export, proto};
use gradnas::graph::{Graph, Plan, T};
use gradnas::models::{self, Builtin, GenotypeModel, ModelSpec};
use gradnas::ops::{batchnorm, conv2d::Conv2dShape, layout::SliceShape, matmul::LinearShape, pool};
use gradnas::space::genotype::random_genotype;
use gradnas::space::{Block, Cell, Genotype, OpKind, OpSet};
use gradnas::train::{self, TrainConfig};
use gradnas::verify;

use OpKind::*;

/// Test images compared per model.
const N: usize = 256;
/// The largest logit difference allowed between onnxruntime and gradnas.
const TOL: f64 = 1e-4;

/// 64 training images (4 steps of 16: running statistics and weights
/// move away from their initial values) and the 256 compared test images.
fn splits() -> &'static Splits {
    static S: OnceLock<Splits> = OnceLock::new();
    S.get_or_init(|| common::bundled_subset(64, 8, N))
}

/// A fresh directory for one test, removed when dropped.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gradnas-onnx-{name}-"))
        .tempdir()
        .unwrap()
}

fn b(i1: usize, o1: OpKind, i2: usize, o2: OpKind) -> Block {
    Block::new(i1, o1, i2, o2)
}

/// Every pnas op in both cells; identity on a cell input of the reduction
/// cell is a FactorizedReduce at stride 2.
fn pnas_genotype() -> Genotype {
    Genotype {
        op_set: "pnas".into(),
        normal: Cell {
            blocks: vec![
                b(0, SepConv3x3, 1, SepConv5x5),
                b(1, SepConv7x7, 2, Conv7x1_1x7),
                b(0, Identity, 3, AvgPool3x3),
                b(2, MaxPool3x3, 4, DilConv3x3),
                b(1, SepConv3x3, 5, Identity),
            ],
        },
        reduce: Cell {
            blocks: vec![
                b(0, Identity, 1, MaxPool3x3),
                b(0, AvgPool3x3, 2, SepConv3x3),
                b(1, DilConv3x3, 1, Conv7x1_1x7),
                b(1, SepConv7x7, 3, SepConv5x5),
                b(2, Identity, 4, MaxPool3x3),
            ],
        },
        alpha: None,
        beta: None,
    }
}

/// Every choosable darts op in both cells; skip_connect on a cell input
/// of the reduction cell is a FactorizedReduce.
fn darts_genotype() -> Genotype {
    Genotype {
        op_set: "darts".into(),
        normal: Cell {
            blocks: vec![
                b(0, SepConv3x3, 1, SepConv5x5),
                b(0, DilConv3x3, 2, DilConv5x5),
                b(1, MaxPool3x3, 3, AvgPool3x3),
                b(2, SkipConnect, 4, SepConv3x3),
            ],
        },
        reduce: Cell {
            blocks: vec![
                b(0, SkipConnect, 1, MaxPool3x3),
                b(0, AvgPool3x3, 2, DilConv5x5),
                b(1, SepConv5x5, 3, DilConv3x3),
                b(1, SkipConnect, 4, SepConv3x3),
            ],
        },
        alpha: None,
        beta: None,
    }
}

/// Width 4, depth 3: cells 1 and 2 reduce, so cell 2's first input goes
/// through a FactorizedReduce too.
fn genotype_model(genotype: Genotype) -> ModelSpec {
    ModelSpec::Genotype(GenotypeModel {
        width: 4,
        depth: 3,
        ..GenotypeModel::new(genotype)
    })
}

/// Train `model` for 4 steps into a fresh directory (`train::save`'s
/// format). The test set is cut to 8 images here: only the parity check
/// reads all 256.
fn trained(name: &str, model: ModelSpec) -> tempfile::TempDir {
    let dir = tmp(name);
    let mut s = splits().clone();
    s.test = s.test.subset(&(0..8).collect::<Vec<_>>());
    let cfg = TrainConfig {
        epochs: 1,
        batch: 16,
        log_every: 4,
        ..TrainConfig::default()
    };
    train::train(common::gpu(), model, &s, &cfg, dir.path(), |_| {}).expect("train");
    dir
}

/// gradnas's inference on the GPU: `train::load`'s evaluator holds the
/// weights, copied by name into the same evaluation graph with its logits
/// kept readable. Also returns the evaluator's accuracy on `data`, which
/// the logits' argmax must reproduce.
fn gpu_logits(dir: &Path, data: &Dataset) -> (Vec<f32>, f64, Normalization) {
    let gpu = common::gpu();
    let n = data.len();
    let (eval, card) = train::load(gpu, dir, n).expect("load");
    let (_, accuracy) = eval.evaluate(gpu, data, &card.norm).expect("evaluate");
    let mut g = Graph::new();
    let d = card.dims;
    let images = g.input("images", &[n, d.channels, d.height, d.width]);
    let net = models::build(&card.model, &mut g, images, card.classes, false, card.seed);
    g.pin(net.logits);
    let plan = Plan::new(gpu, &g).expect("plan");
    let ours: HashMap<&str, T> = net
        .params
        .iter()
        .chain(&net.running)
        .map(|&t| (g.def(t).name.as_str(), t))
        .collect();
    let pairs: Vec<(T, T)> = eval
        .tensors
        .iter()
        .map(|(name, &t)| (ours[name.as_str()], t))
        .collect();
    assert_eq!(pairs.len(), ours.len(), "every weight copied");
    plan.copy_from(gpu, eval.plan(), &pairs);
    let mut pixels = vec![0f32; n * d.len()];
    let mut labels = vec![0u32; n];
    let idx: Vec<usize> = data.order(Order::Sequential);
    data.fill_batch(
        &idx,
        &card.norm,
        None,
        &mut verify::rng(0),
        &mut pixels,
        &mut labels,
    );
    plan.write(gpu, images, &pixels);
    plan.step(gpu).expect("step");
    let logits = plan.read(gpu, net.logits).expect("read");
    (logits, accuracy, card.norm)
}

/// The raw pixels / 255 a user feeds the ONNX model.
fn raw_pixels(data: &Dataset) -> Vec<f32> {
    (0..data.len())
        .flat_map(|i| data.image(i).iter().map(|&v| v as f32 / 255.0))
        .collect()
}

/// A little-endian float32 .npy file (format 1.0).
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    assert_eq!(shape.iter().product::<usize>(), data.len());
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims = if dims.len() == 1 {
        format!("{},", dims[0])
    } else {
        dims.join(", ")
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n', to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// Fail (never skip) without python3, numpy and onnxruntime.
fn require_onnxruntime() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import numpy, onnxruntime"])
            .output();
        let why = match out {
            Err(e) => format!("python3 could not be run: {e}"),
            Ok(o) if !o.status.success() => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Ok(_) => return Ok(()),
        };
        let ci = if std::env::var("CI").is_ok_and(|v| v == "true") {
            " (CI=true: .ci/run installs them before cargo test)"
        } else {
            ""
        };
        Err(format!(
            "the ONNX parity tests need python3 with numpy and onnxruntime: \
             run `python3 -m pip install onnxruntime numpy`{ci}. {why}"
        ))
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// What `tests/onnx_parity.py` printed.
#[derive(Debug, serde::Deserialize)]
struct Parity {
    n: usize,
    classes: usize,
    max_abs_diff: f64,
    /// Logits that are NaN or infinite on either side.
    nonfinite: usize,
    max_abs_logit: f64,
    argmax_agree: usize,
    chunked_max_abs_diff: f64,
    input: Io,
    output: Io,
    checker: String,
}

#[derive(Debug, serde::Deserialize)]
struct Io {
    name: String,
    shape: Vec<serde_json::Value>,
}

/// Run the ONNX file `onnx` in onnxruntime on `data` and compare with
/// `reference` logits.
fn run_parity(onnx: &Path, data: &Dataset, reference: &[f32], work: &Path) -> Parity {
    require_onnxruntime();
    let d = data.dims;
    let images = work.join("images.npy");
    let refs = work.join("reference.npy");
    write_npy(
        &images,
        &[data.len(), d.channels, d.height, d.width],
        &raw_pixels(data),
    );
    write_npy(
        &refs,
        &[data.len(), reference.len() / data.len()],
        reference,
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_parity.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([onnx, &images, &refs])
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "onnx_parity.py failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Export the model directory `dir` (with the CLI when `cli`), run it in
/// onnxruntime against gradnas's GPU logits, and hold it to the tolerance.
fn check_model(name: &str, dir: &Path, cli: bool) {
    let start = Instant::now();
    let data = &splits().test;
    let onnx = dir.join("model.onnx");
    let bytes = export::export_model(dir).expect("export");
    if cli {
        let out = Command::new(env!("CARGO_BIN_EXE_gradnas"))
            .arg("export")
            .arg("--model")
            .arg(dir)
            .arg("--onnx")
            .arg(&onnx)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "gradnas export: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("opset 17"), "{stdout}");
        // The CLI writes exactly what the library encodes.
        assert_eq!(
            std::fs::read(&onnx).unwrap(),
            bytes,
            "CLI and library differ"
        );
    } else {
        std::fs::write(&onnx, &bytes).unwrap();
    }
    check_proto(&bytes, data);

    let (logits, accuracy, _) = gpu_logits(dir, data);
    let classes = data.classes;
    let correct = logits
        .chunks_exact(classes)
        .zip(&data.labels)
        .filter(|(row, &l)| argmax(row) == l as usize)
        .count();
    assert!(
        (correct as f64 / N as f64 - accuracy).abs() < 1e-9,
        "{name}: the read-back logits give accuracy {}, the evaluator {accuracy}",
        correct as f64 / N as f64
    );

    let p = run_parity(&onnx, data, &logits, dir);
    eprintln!(
        "{name}: max |Δlogit| {:.3e} (largest |logit| {:.2}), {}/{} argmax agree, \
         chunked {:.1e}, accuracy {:.3}, checker {}, {:.1} s",
        p.max_abs_diff,
        p.max_abs_logit,
        p.argmax_agree,
        p.n,
        p.chunked_max_abs_diff,
        accuracy,
        p.checker,
        start.elapsed().as_secs_f64()
    );
    assert_eq!((p.n, p.classes), (N, classes));
    assert_eq!(p.nonfinite, 0, "{name}: non-finite logits: {p:?}");
    assert!(
        p.max_abs_diff <= TOL,
        "{name}: onnxruntime's logits differ from gradnas's by {:.3e} > {TOL:e}",
        p.max_abs_diff
    );
    assert_eq!(p.argmax_agree, N, "{name}: predicted classes differ");
    assert!(p.max_abs_logit > 0.1, "{name}: degenerate logits {p:?}");
    assert!(
        p.chunked_max_abs_diff <= 1e-5,
        "{name}: batches of 1 and 7 give other logits: {p:?}"
    );
    assert_eq!(p.input.name, "images");
    assert_eq!(p.output.name, "logits");
    let d = data.dims;
    let want_in = serde_json::json!(["batch", d.channels, d.height, d.width]);
    assert_eq!(serde_json::Value::from(p.input.shape.clone()), want_in);
    let want_out = serde_json::json!(["batch", classes]);
    assert_eq!(serde_json::Value::from(p.output.shape.clone()), want_out);
    assert!(
        p.checker.starts_with("passed") || p.checker.starts_with("skipped"),
        "{}",
        p.checker
    );
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// The decoded model: IR version, opset, a symbolic batch, weights as
/// initializers, only standard operators.
fn check_proto(bytes: &[u8], data: &Dataset) {
    let m = proto::ModelProto::decode(bytes).expect("decodes as ModelProto");
    assert_eq!(m.ir_version, Some(export::IR_VERSION));
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(m.opset_import[0].version, Some(17));
    assert_eq!(m.opset_import[0].domain.as_deref(), Some(""));
    let g = m.graph.expect("a graph");
    let dims = |v: &proto::ValueInfoProto| -> Vec<proto::Dim> {
        let t = v.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
        assert_eq!(t.elem_type, Some(proto::FLOAT));
        let s = t.shape.as_ref().unwrap();
        s.dim.iter().map(|d| d.value.clone().unwrap()).collect()
    };
    let d = data.dims;
    assert_eq!(
        dims(&g.input[0]),
        vec![
            proto::Dim::DimParam("batch".into()),
            proto::Dim::DimValue(d.channels as i64),
            proto::Dim::DimValue(d.height as i64),
            proto::Dim::DimValue(d.width as i64),
        ]
    );
    assert_eq!(
        dims(&g.output[0]),
        vec![
            proto::Dim::DimParam("batch".into()),
            proto::Dim::DimValue(data.classes as i64)
        ]
    );
    assert!(g.initializer.len() > 4, "weights are initializers");
    let standard: BTreeSet<&str> = [
        "Sub",
        "Div",
        "Conv",
        "BatchNormalization",
        "Relu",
        "Add",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Flatten",
        "Concat",
        "Slice",
        "Pad",
        "Identity",
        "Reshape",
        "Gemm",
    ]
    .into();
    for n in &g.node {
        assert_eq!(n.domain.as_deref(), Some(""));
        let op = n.op_type.as_deref().unwrap();
        assert!(standard.contains(op), "unexpected op {op}");
        // Shapes are data: no Reshape may hold the batch size.
        if op == "Reshape" {
            let shape = g
                .initializer
                .iter()
                .find(|t| t.name.as_ref() == Some(&n.input[1]))
                .unwrap();
            assert_eq!(shape.int64_data[0], 0, "Reshape bakes the batch");
        }
    }
}

/// BN running statistics (mean, var) of a model directory, as min/max of
/// each, to show the comparison runs on moved statistics.
fn bn_stats(dir: &Path) -> ((f32, f32), (f32, f32)) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut mean = (f32::MAX, f32::MIN);
    let mut var = (f32::MAX, f32::MIN);
    for (name, view) in st.tensors() {
        let which = if name.ends_with("running_mean") {
            &mut mean
        } else if name.ends_with("running_var") {
            &mut var
        } else {
            continue;
        };
        for c in view.data().chunks_exact(4) {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            which.0 = which.0.min(v);
            which.1 = which.1.max(v);
        }
    }
    (mean, var)
}

fn check_trained(name: &str, model: ModelSpec, cli: bool) {
    let dir = trained(name, model);
    let (mean, var) = bn_stats(dir.path());
    eprintln!(
        "{name}: running mean in [{:.3}, {:.3}], var in [{:.3}, {:.3}]",
        mean.0, mean.1, var.0, var.1
    );
    // Statistics that moved: a BN mapping that swapped or dropped them
    // could not pass.
    assert!(
        mean.1 - mean.0 > 0.05 && var.1 - var.0 > 0.05,
        "{name}: statistics barely moved"
    );
    check_model(name, dir.path(), cli);
}

#[test]
fn builtin_cnn_matches_onnxruntime() {
    check_trained("cnn", ModelSpec::Builtin(Builtin::Cnn), true);
}

#[test]
fn pnas_genotype_matches_onnxruntime() {
    check_trained("pnas", genotype_model(pnas_genotype()), false);
}

#[test]
fn darts_genotype_matches_onnxruntime() {
    check_trained("darts", genotype_model(darts_genotype()), false);
}

/// The gradnas op names of a graph's nodes.
fn op_names(g: &Graph) -> BTreeSet<String> {
    g.nodes
        .iter()
        .map(|n| {
            format!("{:?}", n.op)
                .split(['(', ' ', '{'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Random genotypes of both op sets: every evaluation graph converts, and
/// the ops they hold are the ones the exporter maps.
#[test]
fn random_genotypes_of_both_op_sets_convert() {
    let norm = Normalization {
        mean: vec![0.3],
        std: vec![0.35],
    };
    let mut seen = BTreeSet::new();
    for (op_set, seeds) in [(OpSet::pnas(), 0..12u64), (OpSet::darts(), 100..112)] {
        for seed in seeds {
            let genotype = random_genotype(&op_set, &mut verify::rng(seed));
            let model = genotype_model(genotype);
            let mut g = Graph::new();
            let images = g.input("images", &[2, 1, 28, 28]);
            let net = models::build(&model, &mut g, images, 10, false, seed);
            let mut weights = |d: &gradnas::graph::ir::TensorDef| Ok(d.init.clone().unwrap());
            let graph = export::convert_graph(&g, images, net.logits, &norm, &mut weights)
                .unwrap_or_else(|e| panic!("{} seed {seed}: {e:#}", op_set.name()));
            assert!(graph.node.len() > 20);
            seen.extend(op_names(&g));
        }
    }
    let want: BTreeSet<String> = [
        "Conv2d",
        "BatchNormEval",
        "Relu",
        "Add",
        "MaxPool",
        "AvgPool",
        "GlobalAvgPool",
        "Concat",
        "Slice",
        "Linear",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(seen, want, "ops of genotype networks");
}

/// A graph with what the models do not reach: a 3-channel input, a
/// grouped, dilated, strided convolution with bias and unequal padding, BN
/// without affine on moved statistics, both pools at stride 1 and 2 with
/// padding, slices that crop, pad and do both, a reshape and a linear
/// layer without bias, run by gradnas on the GPU and by onnxruntime.
#[test]
fn hand_built_graph_matches_onnxruntime() {
    let gpu = common::gpu();
    let mut rng = verify::rng(7);
    let (n, c, h, w) = (5, 3, 11, 9);
    let mut g = Graph::new();
    let images = g.input("images", &[n, c, h, w]);
    let mut param = |g: &mut Graph, name: &str, shape: &[usize], lo: f32, hi: f32| {
        let len = shape.iter().product();
        g.param(name, shape, verify::uniform(&mut rng, len, lo, hi))
    };
    let cs = Conv2dShape {
        n,
        c_in: c,
        h,
        w,
        c_out: 6,
        kh: 3,
        kw: 2,
        stride: 2,
        pad_h: 2,
        pad_w: 1,
        dilation: 2,
        groups: 3,
    };
    let wt = param(&mut g, "conv.weight", &[6, 1, 3, 2], -0.5, 0.5);
    let bias = param(&mut g, "conv.bias", &[6], -0.5, 0.5);
    let y = g.conv2d(images, wt, Some(bias), cs);
    let (oh, ow) = (cs.oh(), cs.ow());
    let rm = param(&mut g, "bn.running_mean", &[6], -0.5, 0.5);
    let rv = param(&mut g, "bn.running_var", &[6], 0.3, 2.0);
    let y = g.batchnorm_eval(
        y,
        None,
        (rm, rv),
        batchnorm::Shape::new(n, 6, oh * ow, false),
    );
    let y = g.relu(y);
    let ps = |stride| pool::Shape {
        n,
        c: 6,
        h: oh,
        w: ow,
        k: 3,
        stride,
        pad: 1,
    };
    let a = g.avg_pool(y, ps(1));
    let m = g.max_pool(y, ps(1));
    let y = g.add(a, m);
    let slice = |oy, ox, out_h, out_w| SliceShape {
        batch: n,
        channels: 6,
        h: oh,
        w: ow,
        oy,
        ox,
        out_h,
        out_w,
    };
    // Crop only (at an offset); pad only, then crop at an offset; crop
    // and pad, then crop at the end only.
    let s1 = g.slice(y, slice(1, 2, oh - 2, ow - 2));
    let padded = g.slice(y, slice(0, 0, oh + 1, ow + 2));
    let s2 = g.slice(
        padded,
        SliceShape {
            h: oh + 1,
            w: ow + 2,
            ..slice(1, 3, oh - 2, ow - 2)
        },
    );
    let both = g.slice(y, slice(2, 1, oh, ow));
    let s3 = g.slice(both, slice(0, 0, oh - 2, ow - 2));
    let y = g.concat(&[s1, s2, s3]);
    let y = g.avg_pool(
        y,
        pool::Shape {
            n,
            c: 18,
            h: oh - 2,
            w: ow - 2,
            k: 2,
            stride: 2,
            pad: 1,
        },
    );
    let sh = g.def(y).shape.clone();
    let features = sh[1] * sh[2] * sh[3];
    let flat = g.reshape(y, &[n, features]);
    let lw = param(&mut g, "fc.weight", &[4, features], -0.3, 0.3);
    let logits = g.linear(
        flat,
        lw,
        None,
        LinearShape {
            batch: n,
            in_features: features,
            out_features: 4,
        },
    );
    g.pin(logits);
    let ops = op_names(&g);

    let norm = Normalization {
        mean: vec![0.2, 0.5, 0.7],
        std: vec![0.3, 0.25, 0.5],
    };
    let mut weights = |d: &gradnas::graph::ir::TensorDef| Ok(d.init.clone().unwrap());
    let graph = export::convert_graph(&g, images, logits, &norm, &mut weights).expect("convert");
    let ops_out: BTreeSet<&str> = graph
        .node
        .iter()
        .map(|n| n.op_type.as_deref().unwrap())
        .collect();
    for op in ["Slice", "Pad", "AveragePool", "MaxPool", "Gemm", "Reshape"] {
        assert!(ops_out.contains(op), "{op} missing from {ops_out:?}");
    }
    let model = proto::ModelProto {
        ir_version: Some(export::IR_VERSION),
        producer_name: Some("gradnas-test".into()),
        graph: Some(graph),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(export::OPSET),
        }],
        ..Default::default()
    };
    let dir = tmp("hand");
    let onnx = dir.path().join("hand.onnx");
    std::fs::write(&onnx, model.encode_to_vec()).unwrap();

    // Raw pixels in [0, 1] for ONNX, normalized for gradnas.
    let raw: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i * 37 + 11) % 256) as f32 / 255.0)
        .collect();
    let normalized: Vec<f32> = raw
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let ch = (i / (h * w)) % c;
            (x - norm.mean[ch]) / norm.std[ch]
        })
        .collect();
    let plan = Plan::new(gpu, &g).expect("plan");
    plan.write(gpu, images, &normalized);
    plan.step(gpu).unwrap();
    let reference = plan.read(gpu, logits).unwrap();

    // A dataset view of the raw pixels for the script.
    let data = Dataset {
        pixels: raw.iter().map(|&x| (x * 255.0).round() as u8).collect(),
        labels: vec![0; n],
        dims: gradnas::data::Dims {
            channels: c,
            height: h,
            width: w,
        },
        classes: 4,
        origin: dir.path().into(),
        source_index: (0..n).collect(),
    };
    assert_eq!(raw_pixels(&data), raw);
    let p = run_parity(&onnx, &data, &reference, dir.path());
    eprintln!(
        "hand graph ({ops:?}): max |Δ| {:.3e}, largest |logit| {:.2}, checker {}",
        p.max_abs_diff, p.max_abs_logit, p.checker
    );
    assert_eq!(p.nonfinite, 0, "{p:?}");
    assert!(p.max_abs_diff <= TOL, "{p:?}");
    assert!(p.max_abs_logit > 0.1, "{p:?}");
    assert!(p.chunked_max_abs_diff <= 1e-5, "{p:?}");
}

#[test]
fn ops_without_a_mapping_are_refused_by_name() {
    let norm = Normalization {
        mean: vec![0.5],
        std: vec![0.5],
    };
    let mut weights = |d: &gradnas::graph::ir::TensorDef| Ok(d.init.clone().unwrap_or_default());

    // Softmax after a linear layer.
    let mut g = Graph::new();
    let images = g.input("images", &[2, 1, 4, 4]);
    let flat = g.reshape(images, &[2, 16]);
    let wt = g.param("fc.weight", &[3, 16], vec![0.1; 48]);
    let s = LinearShape {
        batch: 2,
        in_features: 16,
        out_features: 3,
    };
    let y = g.linear(flat, wt, None, s);
    let probs = g.softmax(y);
    let e = export::convert_graph(&g, images, probs, &norm, &mut weights)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Softmax") && e.contains("no mapping"), "{e}");

    // The linear layer alone exports; an L1 loss is no logits.
    export::convert_graph(&g, images, y, &norm, &mut weights).expect("linear part");
    let target = g.input("target", &[2, 3]);
    let loss = g.l1_loss(y, target);
    let e = export::convert_graph(&g, images, loss, &norm, &mut weights)
        .unwrap_err()
        .to_string();
    assert!(e.contains("logits must be"), "{e}");

    // A training graph: batch-statistics BN.
    let mut g = Graph::new();
    let images = g.input("images", &[4, 1, 28, 28]);
    let net = models::build(
        &ModelSpec::Builtin(Builtin::Cnn),
        &mut g,
        images,
        10,
        true,
        1,
    );
    let e = export::convert_graph(&g, images, net.logits, &norm, &mut weights)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("BatchNormTrain") && e.contains("training-graph"),
        "{e}"
    );
}

#[test]
fn bad_model_directories_are_refused_clearly() {
    let dir = tmp("bad");
    let e = format!("{:#}", export::export_model(dir.path()).unwrap_err());
    assert!(e.contains("model.json"), "{e}");
    std::fs::write(dir.path().join("model.json"), "{not json").unwrap();
    let e = format!("{:#}", export::export_model(dir.path()).unwrap_err());
    assert!(e.contains("not a gradnas model card"), "{e}");
    // A valid card without weights.
    let card = serde_json::json!({
        "model": "Cnn",
        "dims": {"channels": 1, "height": 28, "width": 28},
        "classes": 10,
        "norm": {"mean": [0.3], "std": [0.35]},
        "seed": 1,
    });
    std::fs::write(dir.path().join("model.json"), card.to_string()).unwrap();
    let e = format!("{:#}", export::export_model(dir.path()).unwrap_err());
    assert!(e.contains("model.safetensors"), "{e}");
    // Weights missing a tensor.
    let data: Vec<u8> = vec![0; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    let st = safetensors::serialize(vec![("other".to_string(), view)], None).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), st).unwrap();
    let e = format!("{:#}", export::export_model(dir.path()).unwrap_err());
    assert!(
        e.contains("no tensor") && e.contains("conv1.conv.weight"),
        "{e}"
    );
    // The CLI reports the same and exits 2.
    let out = Command::new(env!("CARGO_BIN_EXE_gradnas"))
        .arg("export")
        .arg("--model")
        .arg(dir.path())
        .arg("--onnx")
        .arg(dir.path().join("x.onnx"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tensor"));
    assert!(!dir.path().join("x.onnx").exists());
}
