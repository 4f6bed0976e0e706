//! Candidate operations and the op sets (PNAS's and DARTS's lists) as data.
//! Every op has one canonical name (the one PNAS/DARTS use); serde writes and
//! reads exactly that name, and an unknown name is an error that lists the
//! known ones.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One candidate operation on a cell edge. The declaration order is the
/// order `Ord` uses (and so the order canonical blocks are sorted in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum OpKind {
    /// `sep_conv_3x3`: (ReLU, depthwise 3×3, pointwise, BN) twice.
    SepConv3x3,
    /// `sep_conv_5x5`.
    SepConv5x5,
    /// `sep_conv_7x7`.
    SepConv7x7,
    /// `conv_7x1_1x7`: ReLU, 1×7 conv, 7×1 conv, BN.
    Conv7x1_1x7,
    /// `identity` (PNAS): identity at stride 1, FactorizedReduce at stride 2.
    Identity,
    /// `avg_pool_3x3`.
    AvgPool3x3,
    /// `max_pool_3x3`.
    MaxPool3x3,
    /// `dil_conv_3x3`: ReLU, depthwise 3×3 dilation 2, pointwise, BN.
    DilConv3x3,
    /// `dil_conv_5x5`: as `dil_conv_3x3` with a 5×5 depthwise kernel.
    DilConv5x5,
    /// `none` (DARTS): the zero op. It competes in the supernet but is never
    /// chosen by derivation and never valid in a genotype.
    None_,
    /// `skip_connect` (DARTS): the same layer as `identity`; kept as its own
    /// kind so each op set keeps its source's names.
    SkipConnect,
}

impl OpKind {
    /// Every op kind, in declaration order.
    pub const ALL: [OpKind; 11] = [
        OpKind::SepConv3x3,
        OpKind::SepConv5x5,
        OpKind::SepConv7x7,
        OpKind::Conv7x1_1x7,
        OpKind::Identity,
        OpKind::AvgPool3x3,
        OpKind::MaxPool3x3,
        OpKind::DilConv3x3,
        OpKind::DilConv5x5,
        OpKind::None_,
        OpKind::SkipConnect,
    ];

    /// The canonical name (also the serde form).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::SepConv3x3 => "sep_conv_3x3",
            OpKind::SepConv5x5 => "sep_conv_5x5",
            OpKind::SepConv7x7 => "sep_conv_7x7",
            OpKind::Conv7x1_1x7 => "conv_7x1_1x7",
            OpKind::Identity => "identity",
            OpKind::AvgPool3x3 => "avg_pool_3x3",
            OpKind::MaxPool3x3 => "max_pool_3x3",
            OpKind::DilConv3x3 => "dil_conv_3x3",
            OpKind::DilConv5x5 => "dil_conv_5x5",
            OpKind::None_ => "none",
            OpKind::SkipConnect => "skip_connect",
        }
    }

    /// Whether this is the zero op `none`.
    pub fn is_none(self) -> bool {
        self == OpKind::None_
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<OpKind, String> {
        OpKind::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = OpKind::ALL.iter().map(|op| op.name()).collect();
                format!("unknown op {s:?}: expected one of {}", names.join(", "))
            })
    }
}

impl TryFrom<String> for OpKind {
    type Error = String;
    fn try_from(s: String) -> Result<OpKind, String> {
        s.parse()
    }
}

impl From<OpKind> for &'static str {
    fn from(op: OpKind) -> &'static str {
        op.name()
    }
}

/// A named, ordered list of candidate ops. The position of an op in the list
/// is its index in α (one logit per op per edge) and in the predictor's op
/// vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOpSet")]
pub struct OpSet {
    name: String,
    ops: Vec<OpKind>,
}

/// The unchecked serde form of an `OpSet`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpSet {
    name: String,
    ops: Vec<OpKind>,
}

impl TryFrom<RawOpSet> for OpSet {
    type Error = String;
    fn try_from(raw: RawOpSet) -> Result<OpSet, String> {
        OpSet::new(raw.name, raw.ops)
    }
}

/// The op-set names `OpSet::by_name` knows.
pub const OP_SET_NAMES: [&str; 2] = ["pnas", "darts"];

impl OpSet {
    /// An op set; it must hold at least one op other than `none`, and no op twice.
    pub fn new(name: impl Into<String>, ops: Vec<OpKind>) -> Result<OpSet, String> {
        let name = name.into();
        if !ops.iter().any(|op| !op.is_none()) {
            return Err(format!(
                "op set {name:?}: needs at least one op other than none"
            ));
        }
        for (i, op) in ops.iter().enumerate() {
            if ops[..i].contains(op) {
                return Err(format!("op set {name:?}: op {op} listed twice"));
            }
        }
        Ok(OpSet { name, ops })
    }

    /// PNAS's eight ops (the method's S12 list).
    pub fn pnas() -> OpSet {
        OpSet {
            name: "pnas".into(),
            ops: vec![
                OpKind::SepConv3x3,
                OpKind::SepConv5x5,
                OpKind::SepConv7x7,
                OpKind::Conv7x1_1x7,
                OpKind::Identity,
                OpKind::AvgPool3x3,
                OpKind::MaxPool3x3,
                OpKind::DilConv3x3,
            ],
        }
    }

    /// DARTS's PRIMITIVES, in DARTS's order (`none` first).
    pub fn darts() -> OpSet {
        OpSet {
            name: "darts".into(),
            ops: vec![
                OpKind::None_,
                OpKind::MaxPool3x3,
                OpKind::AvgPool3x3,
                OpKind::SkipConnect,
                OpKind::SepConv3x3,
                OpKind::SepConv5x5,
                OpKind::DilConv3x3,
                OpKind::DilConv5x5,
            ],
        }
    }

    /// `"pnas"` or `"darts"`.
    pub fn by_name(name: &str) -> Result<OpSet, String> {
        match name {
            "pnas" => Ok(OpSet::pnas()),
            "darts" => Ok(OpSet::darts()),
            other => Err(format!(
                "op_set {other:?}: expected one of {}",
                OP_SET_NAMES.join(", ")
            )),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ops(&self) -> &[OpKind] {
        &self.ops
    }

    /// The op at index `i` (panics when out of range).
    pub fn get(&self, i: usize) -> OpKind {
        self.ops[i]
    }

    /// The position of `op` in this set.
    pub fn index_of(&self, op: OpKind) -> Option<usize> {
        self.ops.iter().position(|&o| o == op)
    }

    pub fn contains(&self, op: OpKind) -> bool {
        self.ops.contains(&op)
    }

    /// Number of ops (the α width per edge and the predictor's op vocabulary).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Always false for a constructed set (it holds a non-`none` op).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The ops a block may choose: all but `none`, in set order.
    pub fn choosable(&self) -> impl Iterator<Item = OpKind> + '_ {
        self.ops.iter().copied().filter(|op| !op.is_none())
    }
}
