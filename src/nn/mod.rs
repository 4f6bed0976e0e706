//! Layers composed from the graph IR's ops: a parameter store that names
//! and initializes weights, the DARTS/PNAS candidate ops and a classifier
//! head (`layers`), and an unrolled LSTM with a one-hot embedding (`lstm`).
//! Every layer appends nodes to a `Graph` and returns its output tensor;
//! gradients come from `graph::backward` on the finished graph.

pub mod cellnet;
pub mod genotype_net;
pub mod layers;
pub mod lstm;

use std::collections::{HashMap, HashSet};

use crate::graph::{Graph, T};
use crate::verify::{self, Rng};

/// How a parameter starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// N(0, std²).
    Normal {
        std: f32,
    },
    /// U(−bound, bound) (PyTorch's LSTM init).
    Uniform {
        bound: f32,
    },
    /// Given values (e.g. architecture weights loaded from a checkpoint).
    Values(Vec<f32>),
}

impl Init {
    /// Kaiming-normal for a ReLU network (PyTorch's `kaiming_normal_` with
    /// mode fan_in): std = √(2 / fan_in).
    pub fn kaiming(fan_in: usize) -> Init {
        Init::Normal {
            std: (2.0 / fan_in as f32).sqrt(),
        }
    }
}

/// Creates the parameters and persistent states of a network under
/// hierarchical names ("cell0.edge3.sep3x3.dw1.weight") and remembers them,
/// so a trainer can hand `params` to `graph::append_updates` and save
/// params and states under their graph names. Initial values are drawn
/// from one seeded ChaCha8 stream in creation order, so a network built
/// twice from the same seed starts identical.
pub struct ParamStore {
    rng: Rng,
    scope: Vec<String>,
    names: HashSet<String>,
    /// Trained tensors, in creation order.
    pub params: Vec<T>,
    /// Persistent non-trained tensors (batch-norm running statistics).
    pub states: Vec<T>,
    /// Tensors created so far, by name: with `reuse`, asking for a name
    /// again returns the same tensor (a network applied twice in one graph,
    /// like the supernet's validation and training passes).
    made: HashMap<String, T>,
    pub reuse: bool,
    /// Output channels of convolutions by scope name (the weight's name
    /// less `.weight`), overriding what the builder asks for: a pruned
    /// network (S4) built by the unpruned network's builders, under the
    /// same names. Empty for every other network.
    pub widths: HashMap<String, usize>,
    /// Build for evaluation: batch norm uses its running statistics. The
    /// same builder with the same seed then names and shapes every tensor
    /// as in training, so trained weights move over by name.
    pub eval: bool,
}

impl ParamStore {
    pub fn new(seed: u64) -> ParamStore {
        ParamStore {
            rng: verify::rng(seed),
            scope: Vec::new(),
            names: HashSet::new(),
            params: Vec::new(),
            states: Vec::new(),
            made: HashMap::new(),
            reuse: false,
            widths: HashMap::new(),
            eval: false,
        }
    }

    /// Enter a name scope (one more component of every later name).
    pub fn push(&mut self, name: &str) {
        assert!(
            !name.is_empty() && !name.contains('.'),
            "scope names are single non-empty components, got {name:?}"
        );
        self.scope.push(name.to_string());
    }
    pub fn pop(&mut self) {
        self.scope.pop().expect("pop of the root scope");
    }
    /// Run `f` inside scope `name`.
    pub fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.push(name);
        let r = f(self);
        self.pop();
        r
    }

    /// The full name of `leaf` in the current scope.
    pub fn name_of(&self, leaf: &str) -> String {
        let mut parts = self.scope.clone();
        parts.push(leaf.to_string());
        parts.join(".")
    }

    /// The output channels of convolution `leaf` here: its entry in
    /// `widths`, else `default`.
    pub fn width(&self, leaf: &str, default: usize) -> usize {
        if self.widths.is_empty() {
            return default;
        }
        self.widths
            .get(&self.name_of(leaf))
            .copied()
            .unwrap_or(default)
    }

    /// The full name of `leaf` in the current scope; panics if it is taken,
    /// since checkpoint names must be unique (call layers that share a
    /// scope inside their own `scoped`).
    fn claim(&mut self, leaf: &str) -> String {
        let mut parts = self.scope.clone();
        parts.push(leaf.to_string());
        let name = parts.join(".");
        assert!(
            self.names.insert(name.clone()),
            "duplicate parameter name {name}: give each layer its own scope"
        );
        name
    }

    fn values(&mut self, init: Init, n: usize) -> Vec<f32> {
        match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Normal { std } => verify::randn(&mut self.rng, n)
                .into_iter()
                .map(|v| v * std)
                .collect(),
            Init::Uniform { bound } => verify::uniform(&mut self.rng, n, -bound, bound),
            Init::Values(v) => v,
        }
    }

    /// The tensor already made under `leaf` here, when reusing.
    fn reused(&self, g: &Graph, leaf: &str, shape: &[usize]) -> Option<T> {
        if !self.reuse {
            return None;
        }
        let mut parts = self.scope.clone();
        parts.push(leaf.to_string());
        let t = *self.made.get(&parts.join("."))?;
        assert_eq!(
            g.def(t).shape,
            shape,
            "{} reused with another shape",
            g.def(t).name
        );
        Some(t)
    }

    /// A trained tensor named `leaf` in the current scope.
    pub fn param(&mut self, g: &mut Graph, leaf: &str, shape: &[usize], init: Init) -> T {
        if let Some(t) = self.reused(g, leaf, shape) {
            return t;
        }
        let name = self.claim(leaf);
        let v = self.values(init, shape.iter().product());
        let t = g.param(&name, shape, v);
        self.params.push(t);
        self.made.insert(name, t);
        t
    }

    /// A persistent non-trained tensor (running statistics) filled with `value`.
    pub fn state(&mut self, g: &mut Graph, leaf: &str, shape: &[usize], value: f32) -> T {
        if let Some(t) = self.reused(g, leaf, shape) {
            return t;
        }
        let name = self.claim(leaf);
        let n = shape.iter().product();
        let t = g.state(&name, shape, Some(vec![value; n]));
        self.states.push(t);
        self.made.insert(name, t);
        t
    }

    /// Run `f` with the tensors of `subs` standing in for the ones they
    /// replace: the same network applied to other weights (the virtual
    /// weights w − ξ∇w of the second-order search step). Needs `reuse`;
    /// with substitutes, `f` must not create parameters (they would not be
    /// the substituted network's).
    pub fn substituted<R>(&mut self, subs: &HashMap<T, T>, f: impl FnOnce(&mut Self) -> R) -> R {
        assert!(self.reuse, "substituted weights need a reusing store");
        let mut saved = Vec::new();
        for (name, t) in self.made.iter_mut() {
            if let Some(&s) = subs.get(t) {
                saved.push((name.clone(), *t));
                *t = s;
            }
        }
        let count = self.params.len();
        let r = f(self);
        assert!(
            subs.is_empty() || self.params.len() == count,
            "new parameters created while weights were substituted"
        );
        self.made.extend(saved);
        r
    }

    /// Number of trained scalars so far.
    pub fn count(&self, g: &Graph) -> usize {
        self.params.iter().map(|p| g.len(*p)).sum()
    }
}
