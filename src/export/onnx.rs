//! ONNX export of a trained model directory (`model.json` and
//! `model.safetensors`, as `train::save` writes them). The model's
//! evaluation graph — `models::build` with running-statistics batch norm,
//! the graph `train::Evaluator` runs — is walked node by node and each op
//! is mapped onto standard ONNX operators (default domain, opset
//! [`OPSET`]); weights and running statistics become initializers.
//!
//! The ONNX model takes [`INPUT`]: float32 NCHW pixels scaled to [0, 1]
//! (the raw bytes / 255) with a symbolic batch dimension, and applies the
//! card's per-channel normalization itself as `(x − mean) / std`, the
//! arithmetic of `data::Normalization`, so a user feeds raw images. It
//! returns [`OUTPUT`], [batch, classes].
//!
//! | gradnas op | ONNX |
//! |---|---|
//! | `Conv2d` | `Conv` (group, strides, pads, dilations, optional bias) |
//! | `BatchNormEval` | `BatchNormalization` (scale 1, bias 0 without affine) |
//! | `Relu`, `Add` | `Relu`, `Add` |
//! | `MaxPool` | `MaxPool` (the argmax output is training-only) |
//! | `AvgPool` | `AveragePool`, `count_include_pad = 0` |
//! | `GlobalAvgPool` | `GlobalAveragePool`, `Flatten` (to [N, C]) |
//! | `Concat` | `Concat` on axis 1 |
//! | `Slice` | `Slice` (the crop) and `Pad` (zeros past the input) |
//! | `Reshape` | `Reshape` to `[0, …]`: the batch is copied, never baked |
//! | `Linear` | `Gemm` with `transB = 1` (weights are [out, in]) |
//!
//! Any other op (losses, softmax, training-mode batch norm, gradients,
//! optimizer updates) is refused with an error naming it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use prost::Message as _;

use crate::data::Normalization;
use crate::graph::ir::TensorDef;
use crate::graph::{Graph, Kind, Node, Op, T};
use crate::models;
use crate::train::{self, ModelCard};

use proto::{
    AttributeProto, Dim, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor,
    ValueInfoProto,
};

/// The ONNX operator set the graph is written against.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17 (ONNX 1.12).
pub const IR_VERSION: i64 = 8;
/// The graph input: float32 [batch, C, H, W] pixels in [0, 1].
pub const INPUT: &str = "images";
/// The graph output: float32 [batch, classes] logits.
pub const OUTPUT: &str = "logits";
/// The symbolic name of the batch dimension.
pub const BATCH_DIM: &str = "batch";
/// The batch the evaluation graph is built at. Its size is irrelevant to
/// the export (dim 0 of every tensor becomes [`BATCH_DIM`]); 2 rather than
/// 1 so that a tensor whose dim 0 is not the batch is more likely caught
/// by the checks below.
const BUILD_BATCH: usize = 2;

/// The onnx.proto messages the exporter writes, derived with prost. Field
/// numbers are those of onnx.proto in ONNX 1.12 (IR version 8, opset 17),
/// checked against the descriptors of ONNX 1.23, which has not changed
/// them. Fields the exporter never writes are left out. proto2 `optional`
/// scalars are `Option`s so that a zero (an INT attribute of 0) is still
/// written, and repeated int64 fields that onnx.proto does not declare
/// `packed` are written unpacked, as a proto2 writer would.
pub mod proto {
    /// TensorProto.DataType FLOAT.
    pub const FLOAT: i32 = 1;
    /// TensorProto.DataType INT64.
    pub const INT64: i32 = 7;

    /// AttributeProto.AttributeType values.
    pub mod attribute_type {
        pub const FLOAT: i32 = 1;
        pub const INT: i32 = 2;
        pub const INTS: i32 = 7;
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, optional, tag = "1")]
        pub ir_version: Option<i64>,
        #[prost(string, optional, tag = "2")]
        pub producer_name: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub producer_version: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub doc_string: Option<String>,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
        #[prost(message, repeated, tag = "14")]
        pub metadata_props: Vec<StringStringEntryProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        #[prost(int64, optional, tag = "2")]
        pub version: Option<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StringStringEntryProto {
        #[prost(string, optional, tag = "1")]
        pub key: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(string, optional, tag = "10")]
        pub doc_string: Option<String>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, optional, tag = "3")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub op_type: Option<String>,
        #[prost(message, repeated, tag = "5")]
        pub attribute: Vec<AttributeProto>,
        #[prost(string, optional, tag = "6")]
        pub doc_string: Option<String>,
        #[prost(string, optional, tag = "7")]
        pub domain: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AttributeProto {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(float, optional, tag = "2")]
        pub f: Option<f32>,
        #[prost(int64, optional, tag = "3")]
        pub i: Option<i64>,
        #[prost(int64, repeated, packed = "false", tag = "8")]
        pub ints: Vec<i64>,
        /// An `attribute_type` value.
        #[prost(int32, optional, tag = "20")]
        pub r#type: Option<i32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, packed = "false", tag = "1")]
        pub dims: Vec<i64>,
        /// A TensorProto.DataType value.
        #[prost(int32, optional, tag = "2")]
        pub data_type: Option<i32>,
        #[prost(int64, repeated, packed = "true", tag = "7")]
        pub int64_data: Vec<i64>,
        #[prost(string, optional, tag = "8")]
        pub name: Option<String>,
        /// Little-endian elements, row-major.
        #[prost(bytes = "vec", optional, tag = "9")]
        pub raw_data: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
    }

    /// TypeProto, of which only the tensor case (`tensor_type`, field 1 of
    /// its `value` oneof) is written.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(message, optional, tag = "1")]
        pub tensor_type: Option<TypeProtoTensor>,
    }

    /// TypeProto.Tensor.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProtoTensor {
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// TensorShapeProto.Dimension.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "Dim", tags = "1, 2")]
        pub value: Option<Dim>,
    }

    /// TensorShapeProto.Dimension's `value` oneof.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Dim {
        #[prost(int64, tag = "1")]
        DimValue(i64),
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

/// What `write` produced.
#[derive(Debug, Clone)]
pub struct Summary {
    /// ONNX nodes per operator type.
    pub ops: BTreeMap<String, usize>,
    pub nodes: usize,
    pub initializers: usize,
    /// Scalars held by the initializers.
    pub scalars: usize,
    pub bytes: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: Vec<String> = self.ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        write!(
            f,
            "{} nodes ({}), {} initializers ({} scalars), {} bytes, opset {OPSET}",
            self.nodes,
            ops.join(", "),
            self.initializers,
            self.scalars,
            self.bytes
        )
    }
}

impl Summary {
    pub fn of(model: &ModelProto) -> Summary {
        let empty = GraphProto::default();
        let g = model.graph.as_ref().unwrap_or(&empty);
        let mut ops = BTreeMap::new();
        for n in &g.node {
            *ops.entry(n.op_type.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        let scalars = g
            .initializer
            .iter()
            .map(|t| t.dims.iter().product::<i64>() as usize)
            .sum();
        Summary {
            ops,
            nodes: g.node.len(),
            initializers: g.initializer.len(),
            scalars,
            bytes: model.encoded_len(),
        }
    }
}

/// The encoded ONNX model of the trained model directory `dir`.
pub fn export_model(dir: &Path) -> Result<Vec<u8>> {
    Ok(model_proto(dir)?.encode_to_vec())
}

/// Export `dir` to the file `onnx` (through a temp file and a rename).
pub fn write(dir: &Path, onnx: &Path) -> Result<Summary> {
    let model = model_proto(dir)?;
    train::write_atomic(onnx, &model.encode_to_vec())?;
    Ok(Summary::of(&model))
}

/// The ONNX model of the trained model directory `dir`: its card's
/// evaluation graph with the directory's weights.
pub fn model_proto(dir: &Path) -> Result<ModelProto> {
    let card_path = dir.join("model.json");
    let card: ModelCard = serde_json::from_slice(
        &std::fs::read(&card_path).with_context(|| format!("reading {}", card_path.display()))?,
    )
    .with_context(|| format!("{}: not a gradnas model card", card_path.display()))?;
    let d = card.dims;
    if d.is_empty() || card.classes == 0 {
        bail!(
            "{}: dims {d} and classes {}: expected non-empty images and at least one class",
            card_path.display(),
            card.classes
        );
    }
    let wpath = dir.join("model.safetensors");
    let bytes = std::fs::read(&wpath).with_context(|| format!("reading {}", wpath.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", wpath.display()))?;

    let mut g = Graph::new();
    let images = g.input("images", &[BUILD_BATCH, d.channels, d.height, d.width]);
    let net = models::build(&card.model, &mut g, images, card.classes, false, card.seed);
    let mut weights = |def: &TensorDef| -> Result<Vec<f32>> {
        let view = st
            .tensor(&def.name)
            .with_context(|| format!("{}: no tensor {:?}", wpath.display(), def.name))?;
        if view.dtype() != safetensors::Dtype::F32 || view.shape() != def.shape.as_slice() {
            bail!(
                "{}: tensor {:?} is {:?} {:?}, expected F32 {:?}",
                wpath.display(),
                def.name,
                view.dtype(),
                view.shape(),
                def.shape
            );
        }
        Ok(crate::train::f32s_le(view.data()))
    };
    let mut graph = convert_graph(&g, images, net.logits, &card.norm, &mut weights)
        .with_context(|| format!("exporting {} ({})", dir.display(), card.model.name()))?;
    graph.doc_string = Some(format!(
        "{}: {} classes from {} images in [0, 1], normalized inside the graph",
        card.model.name(),
        card.classes,
        d
    ));
    let meta = [
        ("gradnas.model", serde_json::to_string(&card.model)?),
        ("gradnas.classes", card.classes.to_string()),
        ("gradnas.normalization", serde_json::to_string(&card.norm)?),
        ("gradnas.seed", card.seed.to_string()),
    ];
    Ok(ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("gradnas".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!(
            "gradnas {}: feed `{INPUT}` as float32 NCHW pixels / 255; `{OUTPUT}` are the class scores",
            card.model.name()
        )),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        metadata_props: meta
            .into_iter()
            .map(|(k, v)| StringStringEntryProto {
                key: Some(k.into()),
                value: Some(v),
            })
            .collect(),
    })
}

/// Map the part of `g` that computes `logits` from `images` onto an ONNX
/// graph. `images` ([batch, C, H, W]) becomes the raw-pixel input
/// [`INPUT`], normalized in the graph by `norm`; `logits` ([batch,
/// classes]) the output [`OUTPUT`]. Dim 0 of every tensor is taken to be
/// the batch and becomes symbolic. `weights` gives the values of the
/// parameters and states the graph reads (by their definitions). Nodes
/// that do not lead to `logits` are left out; an op without a mapping is an
/// error naming the node and the op.
pub fn convert_graph(
    g: &Graph,
    images: T,
    logits: T,
    norm: &Normalization,
    weights: &mut dyn FnMut(&TensorDef) -> Result<Vec<f32>>,
) -> Result<GraphProto> {
    let (batch, c, h, w) = match g.def(images).shape[..] {
        [n, c, h, w] => (n, c, h, w),
        ref s => bail!("the input must be NCHW, got {s:?}"),
    };
    let classes = match g.def(logits).shape[..] {
        [n, k] if n == batch => k,
        ref s => bail!("the logits must be [{batch}, classes] (the input's batch), got {s:?}"),
    };
    if norm.mean.len() != c || norm.std.len() != c {
        bail!(
            "normalization has {} means and {} stds for {c} channels",
            norm.mean.len(),
            norm.std.len()
        );
    }
    if let Some(s) = norm.std.iter().find(|s| !s.is_finite() || **s == 0.0) {
        bail!("normalization std {s}: expected finite and non-zero");
    }
    let needed = needed_nodes(g, logits)?;

    let mut b = Builder {
        g,
        batch,
        logits,
        weights,
        nodes: Vec::new(),
        initializers: Vec::new(),
        values: HashMap::new(),
        at: 0,
    };
    // The pixels the data layer would have normalized: (x − mean) / std,
    // the same two f32 operations as `Normalization`'s tables.
    let mean = b.const_f32("normalization.mean", &[1, c, 1, 1], &norm.mean);
    let std = b.const_f32("normalization.std", &[1, c, 1, 1], &norm.std);
    let centred = "images.centred".to_string();
    b.emit(
        "Sub",
        vec![INPUT.into(), mean],
        vec![centred.clone()],
        vec![],
    );
    b.emit(
        "Div",
        vec![centred, std],
        vec!["images.normalized".into()],
        vec![],
    );
    b.values.insert(images, "images.normalized".into());

    for (i, node) in g.nodes.iter().enumerate() {
        if needed[i] {
            b.at = i;
            b.node(node)?;
        }
    }
    debug_assert_eq!(b.values.get(&logits).map(String::as_str), Some(OUTPUT));

    let batch_dim = || Dimension {
        value: Some(Dim::DimParam(BATCH_DIM.into())),
    };
    let fixed = |n: usize| Dimension {
        value: Some(Dim::DimValue(n as i64)),
    };
    Ok(GraphProto {
        node: b.nodes,
        name: Some("gradnas".into()),
        initializer: b.initializers,
        doc_string: None,
        input: vec![value_info(
            INPUT,
            vec![batch_dim(), fixed(c), fixed(h), fixed(w)],
        )],
        output: vec![value_info(OUTPUT, vec![batch_dim(), fixed(classes)])],
    })
}

/// Which nodes lead to `logits`, walking back from it.
fn needed_nodes(g: &Graph, logits: T) -> Result<Vec<bool>> {
    let mut wanted = vec![false; g.tensors.len()];
    wanted[logits.0] = true;
    let mut needed = vec![false; g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|t| wanted[t.0]) {
            needed[i] = true;
            for t in &node.inputs {
                wanted[t.0] = true;
            }
        }
    }
    if !g.nodes.iter().any(|n| n.outputs.contains(&logits)) {
        bail!("no node writes the output tensor {:?}", g.def(logits).name);
    }
    Ok(needed)
}

fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(proto::FLOAT),
                shape: Some(TensorShapeProto { dim: dims }),
            }),
        }),
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.iter().map(|&x| x as i64).collect(),
        r#type: Some(proto::attribute_type::INTS),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(v),
        r#type: Some(proto::attribute_type::INT),
        ..Default::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(v),
        r#type: Some(proto::attribute_type::FLOAT),
        ..Default::default()
    }
}

/// The name of an op variant, without its shape ("Softmax").
fn op_name(op: &Op) -> String {
    let dbg = format!("{op:?}");
    dbg.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

const MAPPED: &str =
    "Conv2d, BatchNormEval, Relu, Add, MaxPool, AvgPool, GlobalAvgPool, Concat, Slice, Reshape, Linear";

struct Builder<'a> {
    g: &'a Graph,
    batch: usize,
    logits: T,
    weights: &'a mut dyn FnMut(&TensorDef) -> Result<Vec<f32>>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// The ONNX value holding each gradnas tensor mapped so far.
    values: HashMap<T, String>,
    /// The gradnas node being mapped (for names and errors).
    at: usize,
}

impl Builder<'_> {
    fn emit(
        &mut self,
        op_type: &str,
        input: Vec<String>,
        output: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input,
            output,
            name: Some(format!("{op_type}_{}", self.nodes.len())),
            op_type: Some(op_type.into()),
            attribute,
            doc_string: None,
            domain: Some(String::new()),
        });
    }

    fn initializer(&mut self, t: TensorProto) -> String {
        let name = t.name.clone().expect("initializers are named");
        self.initializers.push(t);
        name
    }

    fn const_f32(&mut self, name: &str, shape: &[usize], v: &[f32]) -> String {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        self.initializer(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(proto::FLOAT),
            name: Some(name.into()),
            raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ..Default::default()
        })
    }

    /// A 1-D int64 constant named after the current node.
    fn const_i64(&mut self, what: &str, v: &[i64]) -> String {
        self.initializer(TensorProto {
            dims: vec![v.len() as i64],
            data_type: Some(proto::INT64),
            int64_data: v.to_vec(),
            name: Some(format!("n{}.{what}", self.at)),
            ..Default::default()
        })
    }

    fn shape(&self, t: T) -> &[usize] {
        &self.g.def(t).shape
    }

    /// "node 12 (Conv2d)" for errors.
    fn here(&self) -> String {
        format!("node {} ({})", self.at, op_name(&self.g.nodes[self.at].op))
    }

    /// The ONNX value of an input tensor: already mapped, or a parameter
    /// or state made an initializer on first use.
    fn value(&mut self, t: T) -> Result<String> {
        if let Some(v) = self.values.get(&t) {
            return Ok(v.clone());
        }
        let d = self.g.def(t);
        match d.kind {
            Kind::Param | Kind::State => {
                let v = (self.weights)(d)?;
                if v.len() != d.len() {
                    bail!("{:?}: {} values for shape {:?}", d.name, v.len(), d.shape);
                }
                let name = self.const_f32(&d.name, &d.shape, &v);
                self.values.insert(t, name.clone());
                Ok(name)
            }
            Kind::Input | Kind::Temp => bail!(
                "{} reads {:?}, which is not the image input and no exported node writes",
                self.here(),
                d.name
            ),
        }
    }

    /// The ONNX value a gradnas output tensor is written to.
    fn output(&mut self, t: T) -> Result<String> {
        let d = self.g.def(t);
        if d.kind != Kind::Temp {
            bail!(
                "{} writes {:?}, a {:?} tensor: not an evaluation graph",
                self.here(),
                d.name,
                d.kind
            );
        }
        let name = if t == self.logits {
            OUTPUT.to_string()
        } else {
            format!("{}.{}", d.name, t.0)
        };
        self.values.insert(t, name.clone());
        Ok(name)
    }

    /// Fail unless dim 0 of `t` is the batch (what lets shapes leave it
    /// symbolic).
    fn batched(&self, t: T) -> Result<()> {
        if self.shape(t).first() != Some(&self.batch) {
            bail!(
                "{}: {:?} has shape {:?}, whose first dimension is not the batch {}",
                self.here(),
                self.g.def(t).name,
                self.shape(t),
                self.batch
            );
        }
        Ok(())
    }

    fn node(&mut self, node: &Node) -> Result<()> {
        let ins = &node.inputs;
        match &node.op {
            Op::Conv2d { s, bias, relu } => {
                let want = [self.batch, s.c_in, s.h, s.w];
                if self.shape(ins[0]) != want {
                    bail!(
                        "{}: input {:?}, expected {want:?}",
                        self.here(),
                        self.shape(ins[0])
                    );
                }
                let mut x = self.value(ins[0])?;
                if *relu {
                    // The fused ReLU as its own node.
                    let r = format!("n{}.relu_in", self.at);
                    self.emit("Relu", vec![x], vec![r.clone()], vec![]);
                    x = r;
                }
                let mut inputs = vec![x, self.value(ins[1])?];
                if *bias {
                    inputs.push(self.value(ins[2])?);
                }
                let y = self.output(node.outputs[0])?;
                let attrs = vec![
                    ints("kernel_shape", &[s.kh, s.kw]),
                    ints("strides", &[s.stride, s.stride]),
                    ints("pads", &[s.pad_h, s.pad_w, s.pad_h, s.pad_w]),
                    ints("dilations", &[s.dilation, s.dilation]),
                    int("group", s.groups as i64),
                ];
                self.emit("Conv", inputs, vec![y], attrs);
            }
            Op::BatchNormEval(s) => {
                let x = self.value(ins[0])?;
                let (mean, var) = (self.value(ins[1])?, self.value(ins[2])?);
                let (scale, bias) = if s.affine {
                    (self.value(ins[3])?, self.value(ins[4])?)
                } else {
                    // Without affine the op is γ = 1, β = 0.
                    let at = self.at;
                    (
                        self.const_f32(&format!("n{at}.scale"), &[s.c], &vec![1.0; s.c]),
                        self.const_f32(&format!("n{at}.bias"), &[s.c], &vec![0.0; s.c]),
                    )
                };
                let y = self.output(node.outputs[0])?;
                let inputs = vec![x, scale, bias, mean, var];
                let eps = vec![float("epsilon", s.eps)];
                if s.relu {
                    // The fused ReLU: ONNX's two nodes.
                    let z = format!("n{}.bn", self.at);
                    self.emit("BatchNormalization", inputs, vec![z.clone()], eps);
                    self.emit("Relu", vec![z], vec![y], vec![]);
                } else {
                    self.emit("BatchNormalization", inputs, vec![y], eps);
                }
            }
            Op::Relu => {
                let x = self.value(ins[0])?;
                let y = self.output(node.outputs[0])?;
                self.emit("Relu", vec![x], vec![y], vec![]);
            }
            Op::Add => {
                // gradnas adds equal lengths; ONNX would broadcast unequal
                // shapes, so insist on equal ones.
                for x in &ins[1..] {
                    if self.shape(ins[0]) != self.shape(*x) {
                        bail!(
                            "{}: adds {:?} and {:?}; expected equal shapes",
                            self.here(),
                            self.shape(ins[0]),
                            self.shape(*x)
                        );
                    }
                }
                let xs = ins
                    .iter()
                    .map(|x| self.value(*x))
                    .collect::<Result<Vec<_>>>()?;
                let y = self.output(node.outputs[0])?;
                // ONNX's Add takes two; Sum any number.
                let op = if xs.len() == 2 { "Add" } else { "Sum" };
                self.emit(op, xs, vec![y], vec![]);
            }
            Op::MaxPool(s) | Op::AvgPool(s) => {
                let x = self.value(ins[0])?;
                // Only y: MaxPool's argmax feeds its backward alone.
                let y = self.output(node.outputs[0])?;
                let mut attrs = vec![
                    ints("kernel_shape", &[s.k, s.k]),
                    ints("strides", &[s.stride, s.stride]),
                    ints("pads", &[s.pad; 4]),
                ];
                let op_type = if matches!(node.op, Op::MaxPool(_)) {
                    "MaxPool"
                } else {
                    // Padding is not counted (PyTorch's count_include_pad=False).
                    attrs.push(int("count_include_pad", 0));
                    "AveragePool"
                };
                self.emit(op_type, vec![x], vec![y], attrs);
            }
            Op::GlobalAvgPool { .. } => {
                self.batched(ins[0])?;
                let x = self.value(ins[0])?;
                let y = self.output(node.outputs[0])?;
                let pooled = format!("{y}.pooled");
                self.emit("GlobalAveragePool", vec![x], vec![pooled.clone()], vec![]);
                // [N, C, 1, 1] → [N, C], the batch left as it is.
                self.emit("Flatten", vec![pooled], vec![y], vec![int("axis", 1)]);
            }
            Op::Concat(_) => {
                for &t in ins.iter().chain(&node.outputs) {
                    self.batched(t)?;
                    if self.shape(t).len() != 4 {
                        bail!(
                            "{}: {:?} is not NCHW; only channel concatenation is exported",
                            self.here(),
                            self.shape(t)
                        );
                    }
                }
                let xs = ins
                    .iter()
                    .map(|&t| self.value(t))
                    .collect::<Result<Vec<_>>>()?;
                let y = self.output(node.outputs[0])?;
                self.emit("Concat", xs, vec![y], vec![int("axis", 1)]);
            }
            Op::Slice { s, relu } => {
                // y[.., i, j] = x[.., i + oy, j + ox] inside x, else 0: the
                // crop of x that lies under y, then zeros after it.
                if s.oy >= s.h || s.ox >= s.w {
                    bail!(
                        "{}: offset ({}, {}) lies outside the {}×{} input (an all-zero slice)",
                        self.here(),
                        s.oy,
                        s.ox,
                        s.h,
                        s.w
                    );
                }
                let end_h = s.h.min(s.oy + s.out_h);
                let end_w = s.w.min(s.ox + s.out_w);
                let (pad_h, pad_w) = (s.oy + s.out_h - end_h, s.ox + s.out_w - end_w);
                let mut x = self.value(ins[0])?;
                if *relu {
                    // The fused ReLU as its own node.
                    let r = format!("n{}.relu_in", self.at);
                    self.emit("Relu", vec![x], vec![r.clone()], vec![]);
                    x = r;
                }
                let y = self.output(node.outputs[0])?;
                let crop = s.oy > 0 || s.ox > 0 || end_h < s.h || end_w < s.w;
                let pad = pad_h > 0 || pad_w > 0;
                let cropped = if !crop {
                    x
                } else {
                    let starts = self.const_i64("starts", &[s.oy as i64, s.ox as i64]);
                    let ends = self.const_i64("ends", &[end_h as i64, end_w as i64]);
                    let axes = self.const_i64("axes", &[2, 3]);
                    let out = if pad { format!("{y}.crop") } else { y.clone() };
                    self.emit(
                        "Slice",
                        vec![x, starts, ends, axes],
                        vec![out.clone()],
                        vec![],
                    );
                    out
                };
                if pad {
                    let (ph, pw) = (pad_h as i64, pad_w as i64);
                    let pads = self.const_i64("pads", &[0, 0, 0, 0, 0, 0, ph, pw]);
                    self.emit("Pad", vec![cropped, pads], vec![y], vec![]);
                } else if !crop {
                    // An offset-0 slice of the same size: a copy.
                    self.emit("Identity", vec![cropped], vec![y], vec![]);
                }
            }
            Op::Reshape => {
                self.batched(ins[0])?;
                self.batched(node.outputs[0])?;
                // 0 copies the input's batch: nothing depends on its size.
                let mut shape = vec![0i64];
                shape.extend(self.shape(node.outputs[0])[1..].iter().map(|&d| d as i64));
                let x = self.value(ins[0])?;
                let y = self.output(node.outputs[0])?;
                let shape = self.const_i64("shape", &shape);
                self.emit("Reshape", vec![x, shape], vec![y], vec![]);
            }
            Op::Linear { s, bias } => {
                if self.shape(ins[0]) != [self.batch, s.in_features] {
                    bail!(
                        "{}: input {:?}, expected [{}, {}]",
                        self.here(),
                        self.shape(ins[0]),
                        self.batch,
                        s.in_features
                    );
                }
                let mut inputs = vec![self.value(ins[0])?, self.value(ins[1])?];
                if *bias {
                    inputs.push(self.value(ins[2])?);
                }
                let y = self.output(node.outputs[0])?;
                // y = x·Wᵀ + b with W stored [out, in].
                self.emit("Gemm", inputs, vec![y], vec![int("transB", 1)]);
            }
            op => {
                let training = op.is_optimizer()
                    || matches!(op, Op::BatchNormTrain(_))
                    || op_name(op).ends_with("Backward");
                bail!(
                    "{}: the ONNX export has no mapping for op {}; it maps the ops of \
                     evaluation graphs ({MAPPED}){}",
                    self.here(),
                    op_name(op),
                    if training {
                        ". This is a training-graph op: export the evaluation graph \
                         (models::build with train = false)"
                    } else {
                        ""
                    }
                );
            }
        }
        Ok(())
    }
}
