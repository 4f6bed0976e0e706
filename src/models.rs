//! The networks `gradnas train` builds, from `nn` layers on the graph IR:
//! a built-in CNN, or the discrete network of a genotype (S1's
//! `genotype.json`, or a random one for a baseline). The same builder makes
//! the training graph (batch-statistics BN) and the evaluation graph
//! (running statistics) with the same tensor names, so trained weights move
//! from one plan to the other by name.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::Dims;
use crate::graph::{Graph, T};
use crate::nn::cellnet::Skeleton;
use crate::nn::genotype_net;
use crate::nn::layers::{self, ConvSpec};
use crate::nn::ParamStore;
use crate::ops::pool;
use crate::space::genotype::random_genotype;
use crate::space::{Genotype, OpSet};
use crate::verify;

/// The built-in networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Builtin {
    /// conv3×3(16)-BN-ReLU-maxpool, conv3×3(32)-BN-ReLU-maxpool,
    /// conv3×3(64)-BN-ReLU, flatten, linear.
    Cnn,
}

impl Builtin {
    pub fn parse(s: &str) -> Result<Builtin, String> {
        match s {
            "builtin:cnn" => Ok(Builtin::Cnn),
            other => Err(format!("--model {other:?}: expected builtin:cnn")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Cnn => "builtin:cnn",
        }
    }
}

/// Default channels of the first cell of a genotype network (DARTS's
/// CIFAR network uses 36; 16 keeps lavapipe and laptop runs short).
pub const DEFAULT_WIDTH: usize = 16;
/// Default number of cells of a genotype network.
pub const DEFAULT_DEPTH: usize = 5;
/// Stem channels = this × width (DARTS: 3).
pub const DEFAULT_STEM_MULTIPLIER: usize = 3;

/// The discrete network of a genotype, stacked `depth` cells deep from
/// `width` channels (reductions at 1/3 and 2/3 of the depth, as the
/// supernet), possibly channel-pruned (S4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenotypeModel {
    pub genotype: Genotype,
    pub width: usize,
    pub depth: usize,
    pub stem_multiplier: usize,
    /// A pruned network (`compress::prune`): the output channels each
    /// pruned convolution keeps, by its scope name (its weight's name less
    /// `.weight`, e.g. `cell0.pre1.conv`), as ascending indices into the
    /// unpruned network's channels. Absent or empty: unpruned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keep: BTreeMap<String, Vec<usize>>,
}

impl GenotypeModel {
    /// The default shape (width 16, depth 5, stem ×3).
    pub fn new(genotype: Genotype) -> GenotypeModel {
        GenotypeModel {
            genotype,
            width: DEFAULT_WIDTH,
            depth: DEFAULT_DEPTH,
            stem_multiplier: DEFAULT_STEM_MULTIPLIER,
            keep: BTreeMap::new(),
        }
    }

    /// The genotype (`Genotype::validate`) and every size, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.genotype
            .validate()
            .map_err(|e| format!("genotype: {e}"))?;
        for (field, v) in [
            ("width", self.width),
            ("depth", self.depth),
            ("stem_multiplier", self.stem_multiplier),
        ] {
            if v == 0 {
                return Err(format!("{field} 0: must be at least 1"));
            }
        }
        if !self.keep.is_empty() {
            crate::compress::prune::check_keep(self).map_err(|e| format!("keep: {e}"))?;
        }
        Ok(())
    }

    /// Whether channels were pruned away.
    pub fn is_pruned(&self) -> bool {
        !self.keep.is_empty()
    }

    /// The output channels of every convolution of a pruned network, for
    /// the builders (`ParamStore::widths`; empty when unpruned).
    pub fn widths(&self) -> std::collections::HashMap<String, usize> {
        crate::compress::prune::widths(self)
    }

    /// Its stack of cells (affine batch norm: a discrete network).
    pub fn skeleton(&self, classes: usize) -> Skeleton {
        Skeleton {
            width: self.width,
            depth: self.depth,
            stem_multiplier: self.stem_multiplier,
            classes,
            affine: true,
        }
    }

    /// Trained scalars for inputs of `dims` and `classes` outputs.
    pub fn count_params(&self, dims: Dims, classes: usize) -> usize {
        if !self.is_pruned() {
            return genotype_net::count_params(&self.skeleton(classes), &self.genotype, dims);
        }
        let mut g = Graph::new();
        let x = g.input("images", &[1, dims.channels, dims.height, dims.width]);
        let net = build(&self.clone().into(), &mut g, x, classes, false, 0);
        net.params.iter().map(|p| g.len(*p)).sum()
    }
}

/// What `--model` names and a model card records: a built-in network or a
/// genotype's discrete network. In JSON a built-in is its variant name
/// (`"Cnn"`, as model cards written before genotypes existed) and a
/// genotype model the object of its fields (`{"genotype": …, "width": …}`);
/// reading validates the genotype.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
// Made once per run and matched everywhere: boxing the genotype model
// would cost every match a deref for a couple of hundred bytes saved.
#[allow(clippy::large_enum_variant)]
pub enum ModelSpec {
    Builtin(Builtin),
    Genotype(GenotypeModel),
}

impl From<Builtin> for ModelSpec {
    fn from(b: Builtin) -> ModelSpec {
        ModelSpec::Builtin(b)
    }
}

impl From<GenotypeModel> for ModelSpec {
    fn from(m: GenotypeModel) -> ModelSpec {
        ModelSpec::Genotype(m)
    }
}

impl<'de> Deserialize<'de> for ModelSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ModelSpec, D::Error> {
        use serde::de::Error;
        // Through a JSON value, so each form reports its own error rather
        // than serde's "did not match any variant".
        let v = serde_json::Value::deserialize(d)?;
        if v.is_string() {
            let b: Builtin =
                serde_json::from_value(v).map_err(|e| D::Error::custom(format!("model: {e}")))?;
            return Ok(ModelSpec::Builtin(b));
        }
        if !v.is_object() {
            return Err(D::Error::custom(format!(
                "model: expected a built-in name (\"Cnn\") or a genotype model object, got {v}"
            )));
        }
        let m: GenotypeModel =
            serde_json::from_value(v).map_err(|e| D::Error::custom(format!("model: {e}")))?;
        m.validate()
            .map_err(|e| D::Error::custom(format!("model: {e}")))?;
        Ok(ModelSpec::Genotype(m))
    }
}

impl ModelSpec {
    /// The `--model` argument: `builtin:cnn`, `random:SEED` (a random pnas
    /// genotype, `random_genotype` with `verify::rng(SEED)`: the baseline),
    /// or the path of a genotype JSON file (S1's `genotype.json`). `width`
    /// and `depth` shape a genotype network (defaults 16 and 5) and are
    /// refused for a built-in, whose shape is fixed.
    pub fn parse(
        model: &str,
        width: Option<usize>,
        depth: Option<usize>,
    ) -> Result<ModelSpec, String> {
        if model.starts_with("builtin:") {
            if width.is_some() || depth.is_some() {
                return Err(format!(
                    "--width and --depth shape genotype networks; {model} has a fixed shape"
                ));
            }
            return Builtin::parse(model).map(ModelSpec::Builtin);
        }
        let genotype = if let Some(seed) = model.strip_prefix("random:") {
            let seed: u64 = seed.parse().map_err(|_| {
                format!("--model {model:?}: expected random:SEED with SEED a whole number")
            })?;
            random_genotype(&OpSet::pnas(), &mut verify::rng(seed))
        } else {
            let path = Path::new(model);
            if path.is_dir() {
                return Err(format!(
                    "--model {model}: is a directory; expected builtin:cnn, random:SEED \
                     or a genotype JSON file (e.g. {})",
                    path.join("genotype.json").display()
                ));
            }
            if !path.exists() {
                return Err(format!(
                    "--model {model}: no such file; expected builtin:cnn, random:SEED \
                     or a genotype JSON file"
                ));
            }
            Genotype::load(path).map_err(|e| format!("--model: {e}"))?
        };
        let m = GenotypeModel {
            width: width.unwrap_or(DEFAULT_WIDTH),
            depth: depth.unwrap_or(DEFAULT_DEPTH),
            ..GenotypeModel::new(genotype)
        };
        m.validate().map_err(|e| format!("--model {model}: {e}"))?;
        Ok(ModelSpec::Genotype(m))
    }

    /// A short name: `builtin:cnn`, `genotype(pnas, width 16, depth 5)`.
    pub fn name(&self) -> String {
        match self {
            ModelSpec::Builtin(b) => b.name().to_string(),
            ModelSpec::Genotype(m) => format!(
                "genotype({}, width {}, depth {}{})",
                m.genotype.op_set,
                m.width,
                m.depth,
                if m.is_pruned() { ", pruned" } else { "" }
            ),
        }
    }
}

/// A network in a graph: its logits, its weights and its BN running
/// statistics (both saved with the model, by tensor name).
pub struct Net {
    pub logits: T,
    pub params: Vec<T>,
    pub running: Vec<T>,
}

/// Appends `model` for input `x` ([batch, C, H, W]) with `classes` outputs;
/// weights are drawn from `seed`.
pub fn build(
    model: &ModelSpec,
    g: &mut Graph,
    x: T,
    classes: usize,
    train: bool,
    seed: u64,
) -> Net {
    let mut store = ParamStore::new(seed);
    store.eval = !train;
    let logits = match model {
        ModelSpec::Builtin(Builtin::Cnn) => cnn(g, &mut store, x, classes),
        ModelSpec::Genotype(m) => {
            store.widths = m.widths();
            genotype_net::forward(g, &mut store, &m.skeleton(classes), &m.genotype, x)
        }
    };
    Net {
        logits,
        params: store.params,
        running: store.states,
    }
}

/// conv 3×3 "same" → BN (affine) → ReLU, under `name`.
fn conv_bn_relu(g: &mut Graph, st: &mut ParamStore, name: &str, x: T, c_out: usize) -> T {
    st.scoped(name, |st| {
        let y = layers::conv(g, st, "conv", x, ConvSpec::new(c_out, 3).pad(1, 1));
        let y = layers::batchnorm(g, st, "bn", y, true);
        g.relu(y)
    })
}

/// 3×3 max pool, stride 2, padding 1: 28 → 14 → 7.
fn downsample(g: &mut Graph, x: T) -> T {
    let sh = g.def(x).shape.clone();
    let s = pool::Shape {
        n: sh[0],
        c: sh[1],
        h: sh[2],
        w: sh[3],
        k: 3,
        stride: 2,
        pad: 1,
    };
    g.max_pool(x, s)
}

fn cnn(g: &mut Graph, st: &mut ParamStore, x: T, classes: usize) -> T {
    let batch = g.def(x).shape[0];
    let y = conv_bn_relu(g, st, "conv1", x, 16);
    let y = downsample(g, y);
    let y = conv_bn_relu(g, st, "conv2", y, 32);
    let y = downsample(g, y);
    let y = conv_bn_relu(g, st, "conv3", y, 64);
    let features = g.len(y) / batch;
    let flat = g.reshape(y, &[batch, features]);
    st.scoped("fc", |st| layers::linear(g, st, flat, classes, true))
}
