//! Channel pruning by network slimming (`compress::prune`): the pruned
//! network computes what the unpruned one computes with the removed
//! channels masked to zero (random pnas and darts genotypes, identity and
//! pool blocks tied to their inputs, reduction cells, several ratios);
//! parameter and multiply-add counts against an analytic count; no layer
//! left empty; ratio 0 changes nothing; clear errors; the sparsity term's
//! gradient (finite differences and exact on the CPU, GPU = CPU for a
//! training step); a pruned model directory saved and reloaded.

mod common;

use std::collections::BTreeMap;

use gradnas::compress::prune::{self, PrunePlan, Tensors};
use gradnas::data::{Dims, Normalization};
use gradnas::graph::{self, CpuExec, Graph, Plan, T};
use gradnas::models::{self, Builtin, GenotypeModel, ModelSpec};
use gradnas::space::genotype::random_genotype;
use gradnas::space::{Block, Cell, Genotype, OpKind, OpSet};
use gradnas::train::{self, ModelCard, TrainConfig};
use gradnas::verify::{self, compare, Tol};

use OpKind::*;

const DIMS: Dims = Dims::new(1, 12, 12);
const CLASSES: usize = 10;
const BATCH: usize = 3;
const RATIOS: [f32; 3] = [0.3, 0.6, 0.9];

fn b(i1: usize, o1: OpKind, i2: usize, o2: OpKind) -> Block {
    Block::new(i1, o1, i2, o2)
}

/// Blocks tied to their inputs: identity and pools chain cell inputs and
/// blocks into shared channels (normal cell: inputs 0, 1 and blocks 0, 1,
/// 2 all tied); in the reduction cell a FactorizedReduce (identity at
/// stride 2) adds into a pool of input 1, and a block passes on another.
fn tied_genotype() -> Genotype {
    Genotype {
        op_set: "pnas".into(),
        normal: Cell {
            blocks: vec![
                b(0, Identity, 1, MaxPool3x3),
                b(2, AvgPool3x3, 0, SepConv3x3),
                b(3, Identity, 1, DilConv3x3),
                b(4, SepConv5x5, 2, Conv7x1_1x7),
                b(5, MaxPool3x3, 5, Identity),
            ],
        },
        reduce: Cell {
            blocks: vec![
                b(0, Identity, 1, AvgPool3x3),
                b(2, Identity, 2, MaxPool3x3),
                b(0, SepConv3x3, 3, Identity),
                b(1, Conv7x1_1x7, 1, Conv7x1_1x7),
                b(0, MaxPool3x3, 1, Identity),
            ],
        },
        alpha: None,
        beta: None,
    }
}

/// The genotypes every test runs: the tied one and random ones over both
/// op sets.
fn genotypes() -> Vec<Genotype> {
    let mut v = vec![tied_genotype()];
    for seed in 0..3 {
        v.push(random_genotype(
            &OpSet::pnas(),
            &mut verify::rng(100 + seed),
        ));
        v.push(random_genotype(
            &OpSet::darts(),
            &mut verify::rng(200 + seed),
        ));
    }
    for g in &v {
        g.validate().unwrap();
    }
    v
}

/// Width 4, depth 3: cells 1 and 2 reduce, so cell 2's pre0 is a
/// FactorizedReduce and identities on cell inputs of both are too.
fn card(genotype: Genotype) -> ModelCard {
    ModelCard {
        model: ModelSpec::Genotype(GenotypeModel {
            width: 4,
            depth: 3,
            ..GenotypeModel::new(genotype)
        }),
        dims: DIMS,
        classes: CLASSES,
        norm: Normalization {
            mean: vec![0.0],
            std: vec![1.0],
        },
        seed: 7,
    }
}

fn genotype_model(card: &ModelCard) -> &GenotypeModel {
    match &card.model {
        ModelSpec::Genotype(m) => m,
        other => panic!("not a genotype model: {other:?}"),
    }
}

/// The evaluation graph of `card` for `BATCH` images, logits pinned.
fn eval_net(card: &ModelCard) -> (Graph, T, models::Net) {
    let mut g = Graph::new();
    let d = card.dims;
    let x = g.input("images", &[BATCH, d.channels, d.height, d.width]);
    let net = models::build(&card.model, &mut g, x, card.classes, false, card.seed);
    g.pin(net.logits);
    (g, x, net)
}

/// The network's initial weights, with batch norms made non-trivial: γ of
/// either sign and spread magnitudes (the scores), β, running means and
/// variances drawn at random.
fn random_tensors(card: &ModelCard, seed: u64) -> Tensors {
    let (g, _, net) = eval_net(card);
    let mut rng = verify::rng(seed);
    net.params
        .iter()
        .chain(&net.running)
        .map(|&t| {
            let d = g.def(t);
            let n = d.len();
            let bn = d.shape.len() == 1 && !d.name.starts_with("classifier");
            let v = if !bn {
                d.init.clone().unwrap()
            } else if d.name.ends_with(".weight") {
                verify::uniform(&mut rng, n, -1.5, 1.5)
            } else if d.name.ends_with(".bias") {
                verify::randn(&mut rng, n)
            } else if d.name.ends_with(".running_mean") {
                verify::randn(&mut rng, n).iter().map(|v| 0.3 * v).collect()
            } else {
                verify::uniform(&mut rng, n, 0.5, 2.0)
            };
            (d.name.clone(), v)
        })
        .collect()
}

/// Logits of `card`'s network with `tensors` on the CPU reference.
fn logits(card: &ModelCard, tensors: &Tensors, images: &[f32]) -> Vec<f32> {
    let (g, x, net) = eval_net(card);
    let mut cpu = CpuExec::new(&g);
    let named: Vec<T> = net.params.iter().chain(&net.running).copied().collect();
    assert_eq!(named.len(), tensors.len(), "tensor sets differ");
    for t in named {
        cpu.write(t, &tensors[&g.def(t).name]);
    }
    cpu.write(x, images);
    cpu.step(&g);
    cpu.read(net.logits).to_vec()
}

/// The unpruned weights with every removed channel silenced: γ and β of
/// the batch norms writing it set to 0, so it carries exactly zero.
fn masked(tensors: &Tensors, plan: &PrunePlan) -> Tensors {
    let mut out = tensors.clone();
    for (name, axes) in &plan.slices {
        let is_affine = name.ends_with(".weight") || name.ends_with(".bias");
        if plan.shapes[name].len() != 1 || !is_affine {
            continue;
        }
        let kept = axes[0].as_ref().unwrap();
        for (i, v) in out.get_mut(name).unwrap().iter_mut().enumerate() {
            if kept.binary_search(&i).is_err() {
                *v = 0.0;
            }
        }
    }
    out
}

fn images(seed: u64) -> Vec<f32> {
    verify::randn(&mut verify::rng(seed), BATCH * DIMS.len())
}

#[test]
fn pruned_network_equals_the_masked_one() {
    let x = images(1);
    let mut ops_seen = std::collections::HashSet::new();
    let mut rows = Vec::new();
    for (gi, genotype) in genotypes().into_iter().enumerate() {
        for cell in [&genotype.normal, &genotype.reduce] {
            ops_seen.extend(cell.blocks.iter().flat_map(|b| b.ops));
        }
        let card = card(genotype);
        let tensors = random_tensors(&card, 10 + gi as u64);
        let full = prune::params(&card);
        for ratio in RATIOS {
            let plan = prune::plan(&card, &tensors, ratio, 0.0).unwrap();
            assert!(
                plan.removed > 0,
                "genotype {gi} ratio {ratio}: nothing removed"
            );
            let (small, cut) = prune::apply(&card, &tensors, &plan).unwrap();
            assert!(prune::params(&small) < full);
            let want = logits(&card, &masked(&tensors, &plan), &x);
            let got = logits(&small, &cut, &x);
            let c = compare("prune", "forward", "", &want, &got, verify::FORWARD);
            assert!(
                c.pass,
                "genotype {gi}, ratio {ratio}: pruned vs masked: max abs {:e}, max rel {:e} {:?}",
                c.max_abs_err, c.max_rel_err, c.detail
            );
            // The mask must matter, or the comparison proves nothing.
            let unmasked = logits(&card, &tensors, &x);
            assert!(want
                .iter()
                .zip(&unmasked)
                .any(|(a, b)| (a - b).abs() > 1e-3));
            rows.push((
                gi,
                ratio,
                plan.prunable,
                plan.removed,
                prune::params(&small),
            ));
        }
    }
    for op in [
        SepConv3x3,
        SepConv5x5,
        Conv7x1_1x7,
        Identity,
        SkipConnect,
        AvgPool3x3,
        MaxPool3x3,
        DilConv3x3,
        DilConv5x5,
    ] {
        assert!(ops_seen.contains(&op), "no genotype uses {op:?}");
    }
    eprintln!("(genotype, ratio, prunable, removed, params): {rows:?}");
}

/// Trained scalars and multiply-adds per image of a (pruned) genotype
/// network, counted layer by layer from the definitions of the ops and the
/// kept channel counts, not through the graph.
fn analytic(m: &GenotypeModel, dims: Dims, classes: usize) -> (usize, u64) {
    #[derive(Default)]
    struct Count {
        params: usize,
        flops: u64,
    }
    impl Count {
        /// A convolution of `cpg` input channels per output channel.
        fn conv(&mut self, cpg: usize, c_out: usize, kh: usize, kw: usize, out_hw: usize) {
            self.params += c_out * cpg * kh * kw;
            self.flops += (c_out * cpg * kh * kw * out_hw * out_hw) as u64;
        }
        fn bn(&mut self, c: usize) {
            self.params += 2 * c;
        }
    }
    let out = |h: usize, s: usize| (h - 1) / s + 1;
    let w = |name: String, nominal: usize| m.keep.get(&name).map_or(nominal, |k| k.len());
    let mut n = Count::default();
    let h = dims.height;
    // A tensor: (channels, unpruned channels, height = width).
    let nominal = m.stem_multiplier * m.width;
    let stem = w("stem.conv".into(), nominal);
    n.conv(dims.channels, stem, 3, 3, h);
    n.bn(stem);
    let (mut s0, mut s1) = ((stem, nominal, h), (stem, nominal, h));
    let mut c = m.width;
    let mut reduction_prev = false;
    let is_reduction = |k: usize| m.depth >= 3 && (k == m.depth / 3 || k == 2 * m.depth / 3);
    let cell_of = |k: usize| {
        if is_reduction(k) {
            &m.genotype.reduce
        } else {
            &m.genotype.normal
        }
    };
    // Inputs a cell reads (an unread one gets no preprocessing), and cells
    // something reads (the others are not built).
    let used: Vec<[bool; 2]> = (0..m.depth)
        .map(|k| [0, 1].map(|i| cell_of(k).blocks.iter().any(|b| b.inputs.contains(&i))))
        .collect();
    let mut live = vec![false; m.depth];
    for k in (0..m.depth).rev() {
        live[k] = k + 1 == m.depth
            || (live[k + 1] && used[k + 1][1])
            || (k + 2 < m.depth && live[k + 2] && used[k + 2][0]);
    }
    for k in 0..m.depth {
        let reduction = is_reduction(k);
        if reduction {
            c *= 2;
        }
        if !live[k] {
            (s0, s1) = (s1, s1);
            reduction_prev = reduction;
            continue;
        }
        let p = format!("cell{k}");
        let pre0 = if !used[k][0] {
            s0
        } else if reduction_prev {
            let o = out(s0.2, 2);
            let c1 = w(format!("{p}.pre0.conv1"), c / 2);
            let c2 = w(format!("{p}.pre0.conv2"), c / 2);
            n.conv(s0.0, c1, 1, 1, o);
            n.conv(s0.0, c2, 1, 1, o);
            n.bn(c1 + c2);
            (c1 + c2, c, o)
        } else {
            let co = w(format!("{p}.pre0.conv"), c);
            n.conv(s0.0, co, 1, 1, s0.2);
            n.bn(co);
            (co, c, s0.2)
        };
        let pre1 = if used[k][1] {
            let co = w(format!("{p}.pre1.conv"), c);
            n.conv(s1.0, co, 1, 1, s1.2);
            n.bn(co);
            (co, c, s1.2)
        } else {
            s1
        };
        let mut states = vec![pre0, pre1];
        let cell = cell_of(k);
        for (j, blk) in cell.blocks.iter().enumerate() {
            let mut outs = Vec::new();
            for slot in 0..2 {
                let (i, op) = (blk.inputs[slot], blk.ops[slot]);
                let twin = slot == 1 && blk.inputs[0] == blk.inputs[1] && blk.ops[0] == blk.ops[1];
                let scope = format!(
                    "{p}.b{j}_in{i}.{}{}",
                    op.name(),
                    if twin { "_2" } else { "" }
                );
                let stride = if reduction && i < 2 { 2 } else { 1 };
                // Inner widths default to the unpruned input's channels.
                let (cin, nin, hin) = states[i];
                let o = out(hin, stride);
                let (cout, nout) = match op {
                    SepConv3x3 | SepConv5x5 | SepConv7x7 => {
                        let k = match op {
                            SepConv3x3 => 3,
                            SepConv5x5 => 5,
                            _ => 7,
                        };
                        let mid = w(format!("{scope}.pw1"), nin);
                        let cout = w(format!("{scope}.pw2"), c);
                        n.conv(1, cin, k, k, o);
                        n.conv(cin, mid, 1, 1, o);
                        n.bn(mid);
                        n.conv(1, mid, k, k, o);
                        n.conv(mid, cout, 1, 1, o);
                        n.bn(cout);
                        (cout, c)
                    }
                    DilConv3x3 | DilConv5x5 => {
                        let k = if op == DilConv3x3 { 3 } else { 5 };
                        let cout = w(format!("{scope}.pw"), c);
                        n.conv(1, cin, k, k, o);
                        n.conv(cin, cout, 1, 1, o);
                        n.bn(cout);
                        (cout, c)
                    }
                    Conv7x1_1x7 => {
                        let mid = w(format!("{scope}.conv1x7"), nin);
                        let cout = w(format!("{scope}.conv7x1"), c);
                        n.conv(cin, mid, 1, 7, hin);
                        n.conv(mid, cout, 7, 1, o);
                        n.bn(cout);
                        (cout, c)
                    }
                    Identity | SkipConnect if stride == 2 => {
                        let c1 = w(format!("{scope}.conv1"), c / 2);
                        let c2 = w(format!("{scope}.conv2"), c / 2);
                        n.conv(cin, c1, 1, 1, o);
                        n.conv(cin, c2, 1, 1, o);
                        n.bn(c1 + c2);
                        (c1 + c2, c)
                    }
                    Identity | SkipConnect | AvgPool3x3 | MaxPool3x3 => (cin, nin),
                    None_ => unreachable!(),
                };
                outs.push((cout, nout, o));
            }
            assert_eq!(outs[0], outs[1], "{p} block {j}: the slots disagree");
            states.push(outs[0]);
        }
        let total = states[2..].iter().map(|s| s.0).sum();
        let nominal = states[2..].iter().map(|s| s.1).sum();
        (s0, s1) = (s1, (total, nominal, states[2].2));
        reduction_prev = reduction;
    }
    n.params += s1.0 * classes + classes;
    n.flops += (s1.0 * classes) as u64;
    (n.params, n.flops)
}

#[test]
fn parameter_and_flop_counts_match_an_analytic_count() {
    for (gi, genotype) in genotypes().into_iter().enumerate() {
        let card = card(genotype);
        let m = genotype_model(&card);
        let (p, f) = analytic(m, DIMS, CLASSES);
        assert_eq!(
            (prune::params(&card), prune::flops(&card)),
            (p, f),
            "genotype {gi} unpruned"
        );
        let tensors = random_tensors(&card, 30 + gi as u64);
        for ratio in RATIOS {
            let plan = prune::plan(&card, &tensors, ratio, 0.0).unwrap();
            let (small, cut) = prune::apply(&card, &tensors, &plan).unwrap();
            let sm = genotype_model(&small);
            let (p, f) = analytic(sm, DIMS, CLASSES);
            assert_eq!(
                prune::params(&small),
                p,
                "genotype {gi} ratio {ratio}: params"
            );
            assert_eq!(
                prune::flops(&small),
                f,
                "genotype {gi} ratio {ratio}: flops"
            );
            assert_eq!(sm.count_params(DIMS, CLASSES), p);
            // The weights are exactly the smaller network's.
            let stored: usize = cut
                .iter()
                .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
                .map(|(_, v)| v.len())
                .sum();
            assert_eq!(stored, p);
        }
    }
}

#[test]
fn no_layer_is_emptied_and_ratio_zero_changes_nothing() {
    let x = images(2);
    for (gi, genotype) in genotypes().into_iter().enumerate() {
        let card = card(genotype);
        let tensors = random_tensors(&card, 50 + gi as u64);

        let plan = prune::plan(&card, &tensors, 0.0, 0.0).unwrap();
        assert_eq!((plan.removed, plan.threshold), (0, None));
        assert!(plan.keep.is_empty() && plan.slices.is_empty());
        let (same, same_t) = prune::apply(&card, &tensors, &plan).unwrap();
        assert_eq!(same.model, card.model);
        assert_eq!(same_t, tensors);

        let plan = prune::plan(&card, &tensors, 0.99, 0.0).unwrap();
        assert!(plan.keep.values().all(|k| !k.is_empty()));
        // Only the channels protected as a layer's last may stay: at width
        // 4 that is well under half.
        assert!(
            plan.achieved_ratio() > 0.5,
            "genotype {gi}: {}",
            plan.achieved_ratio()
        );
        let (small, cut) = prune::apply(&card, &tensors, &plan).unwrap();
        let (g, _, net) = eval_net(&small);
        assert!(g.tensors.iter().all(|t| !t.is_empty()), "an empty tensor");
        assert!(net.params.iter().all(|p| g.len(*p) > 0));
        let y = logits(&small, &cut, &x);
        assert!(y.iter().all(|v| v.is_finite()));

        // A pruned network prunes further, recorded against the original.
        let again = prune::plan(&small, &cut, 0.5, 0.0).unwrap();
        let (smaller, _) = prune::apply(&small, &cut, &again).unwrap();
        if again.removed > 0 {
            assert!(prune::params(&smaller) < prune::params(&small));
        }
        let sm = genotype_model(&smaller);
        let s0 = genotype_model(&small);
        for (conv, kept) in &sm.keep {
            if let Some(before) = s0.keep.get(conv) {
                assert!(kept.iter().all(|i| before.contains(i)), "{conv}");
            }
        }
    }
}

/// The per-layer floor: asked for nearly everything, each channel-making
/// convolution still keeps ⌈min_keep · width⌉ channels, its best by |γ|,
/// and a higher floor removes fewer channels.
#[test]
fn each_layer_keeps_its_floor_of_best_channels() {
    for (gi, genotype) in genotypes().into_iter().enumerate() {
        let card = card(genotype);
        let tensors = random_tensors(&card, 70 + gi as u64);
        let mut removed = Vec::new();
        for min_keep in [0.0f32, 0.25, 0.5, 1.0] {
            let plan = prune::plan(&card, &tensors, 0.99, min_keep).unwrap();
            for (scope, kept) in &plan.keep {
                let width = plan.shapes[&format!("{scope}.weight")][0];
                let floor = ((min_keep * width as f32).ceil() as usize).max(1);
                assert!(
                    kept.len() >= floor,
                    "genotype {gi}, min_keep {min_keep}: {scope} keeps {} of {width}",
                    kept.len()
                );
            }
            if min_keep == 1.0 {
                assert_eq!(plan.removed, 0, "min_keep 1 keeps everything");
            }
            removed.push(plan.removed);
        }
        assert!(
            removed.windows(2).all(|w| w[0] >= w[1]) && removed[0] > removed[2],
            "genotype {gi}: removed {removed:?}"
        );
    }
}

#[test]
fn bad_requests_are_refused_clearly() {
    let card = card(tied_genotype());
    let tensors = random_tensors(&card, 3);
    for r in [1.0, 1.5, -0.1, f32::NAN] {
        let e = prune::plan(&card, &tensors, r, 0.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[0, 1)"), "{r}: {e}");
    }
    for k in [1.5, -0.1, f32::NAN] {
        let e = prune::plan(&card, &tensors, 0.5, k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_keep"), "{k}: {e}");
    }
    let cnn = ModelCard {
        model: Builtin::Cnn.into(),
        ..card.clone()
    };
    let e = prune::plan(&cnn, &Tensors::new(), 0.5, 0.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("genotype networks"), "{e}");
    let mut partial = tensors.clone();
    partial.remove("cell0.pre1.bn.weight");
    let e = prune::plan(&card, &partial, 0.5, 0.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cell0.pre1.bn.weight"), "{e}");

    // A plan is for its own network only.
    let plan = prune::plan(&card, &tensors, 0.5, 0.0).unwrap();
    let other = self::card(random_genotype(&OpSet::pnas(), &mut verify::rng(1)));
    let e = prune::apply(&other, &random_tensors(&other, 1), &plan).unwrap_err();
    assert!(e.to_string().contains("another network"), "{e}");

    // Hand-edited cards: the keep must build a consistent network. In the
    // tied genotype, cell 0's pre0 and pre1 are added together.
    let spec = |keep: serde_json::Value| {
        let mut v = serde_json::to_value(&card.model).unwrap();
        v["keep"] = keep;
        serde_json::from_value::<ModelSpec>(v)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = spec(serde_json::json!({"cell0.pre1.conv": [0, 2]}));
    assert!(
        e.contains("cell0.pre0.conv") && e.contains("cell0.pre1.conv"),
        "{e}"
    );
    let e = spec(serde_json::json!({"cell0.b1_in0.sep_conv_3x3.dw1": [0]}));
    assert!(e.contains("not a channel-making convolution"), "{e}");
    let e = spec(serde_json::json!({"stem.conv": [3, 1]}));
    assert!(e.contains("ascending"), "{e}");
    let e = spec(serde_json::json!({"stem.conv": []}));
    assert!(e.contains("keeps no channel"), "{e}");
    // Stem 12 → 3 channels: 9 fewer 3×3 filters on 1 channel and BN pairs,
    // 9 fewer inputs to cell 0's pre0 and pre1 (4 channels each) and to
    // cell 1's pre0 (8).
    let ok = spec_ok(&card, serde_json::json!({"stem.conv": [0, 5, 11]}));
    assert_eq!(
        prune::params(&ok),
        prune::params(&card) - 9 * (9 + 2) - 9 * (4 + 4 + 8)
    );
}

/// A card whose model is `card`'s with `keep` (must be valid).
fn spec_ok(card: &ModelCard, keep: serde_json::Value) -> ModelCard {
    let mut v = serde_json::to_value(&card.model).unwrap();
    v["keep"] = keep;
    ModelCard {
        model: serde_json::from_value(v).unwrap(),
        ..card.clone()
    }
}

/// A batch norm's scale γ: the one-dimensional weights outside the
/// classifier.
fn is_gamma(d: &gradnas::graph::ir::TensorDef) -> bool {
    d.shape.len() == 1 && d.name.ends_with(".weight") && !d.name.starts_with("classifier")
}

/// Training-mode loss (cross-entropy, plus λ·Σ|γ| when `lambda` > 0) of the
/// tied genotype's network on fixed data, with every γ's gradient pinned.
struct Objective {
    g: Graph,
    x: T,
    labels: T,
    objective: T,
    gammas: Vec<(T, T)>,
}

fn objective(lambda: f32) -> Objective {
    let card = card(tied_genotype());
    let mut g = Graph::new();
    let x = g.input("images", &[BATCH, 1, 12, 12]);
    let labels = g.input("labels", &[BATCH]);
    let net = models::build(&card.model, &mut g, x, CLASSES, true, 5);
    let loss = g.log_softmax_xent(net.logits, labels);
    let objective = if lambda > 0.0 {
        let s = prune::l1_gamma(&mut g, lambda);
        g.add(loss, s)
    } else {
        loss
    };
    g.pin(objective);
    let grads = graph::backward(&mut g, objective);
    let gammas: Vec<(T, T)> = net
        .params
        .iter()
        .filter(|p| is_gamma(g.def(**p)))
        .map(|&p| (p, grads[&p]))
        .collect();
    for &(_, d) in &gammas {
        g.pin(d);
    }
    Objective {
        g,
        x,
        labels,
        objective,
        gammas,
    }
}

/// Runs the objective with γs set to `gammas` (None: their init).
fn run(o: &Objective, gammas: Option<&[Vec<f32>]>) -> CpuExec {
    let mut cpu = CpuExec::new(&o.g);
    if let Some(v) = gammas {
        for ((t, _), v) in o.gammas.iter().zip(v) {
            cpu.write(*t, v);
        }
    }
    cpu.write(o.x, &images(4));
    cpu.write_u32(o.labels, &[3, 7, 1]);
    cpu.step(&o.g);
    cpu
}

#[test]
fn sparsity_term_gradient_on_the_cpu() {
    let lambda = 0.5;
    let with = objective(lambda);
    let without = objective(0.0);
    assert!(with.gammas.len() > 10, "{} batch norms", with.gammas.len());
    // γ away from 0 (where |γ| bends), of both signs.
    let mut rng = verify::rng(8);
    let gammas: Vec<Vec<f32>> = with
        .gammas
        .iter()
        .map(|(t, _)| {
            verify::uniform(&mut rng, with.g.len(*t), 0.3, 1.5)
                .into_iter()
                .enumerate()
                .map(|(i, v)| if i % 3 == 1 { -v } else { v })
                .collect()
        })
        .collect();
    let a = run(&with, Some(&gammas));
    let b = run(&without, Some(&gammas));
    // The value: λ·Σ|γ| on top of the same cross-entropy.
    let l1: f64 = gammas.iter().flatten().map(|v| v.abs() as f64).sum();
    let diff = (a.read(with.objective)[0] - b.read(without.objective)[0]) as f64;
    assert!(
        (diff - lambda as f64 * l1).abs() < 1e-4 * l1,
        "{diff} vs {}",
        lambda as f64 * l1
    );
    // The gradient: exactly λ·sign(γ) more than without.
    for (k, ((_, dw), (_, dn))) in with.gammas.iter().zip(&without.gammas).enumerate() {
        let got: Vec<f32> = a
            .read(*dw)
            .iter()
            .zip(b.read(*dn))
            .map(|(x, y)| x - y)
            .collect();
        let want: Vec<f32> = gammas[k].iter().map(|v| lambda * v.signum()).collect();
        let c = compare(
            "l1_gamma",
            "grad",
            "",
            &want,
            &got,
            Tol {
                rel: 1e-4,
                abs: 1e-5,
            },
        );
        assert!(c.pass, "γ {k}: {:e} {:?}", c.max_abs_err, c.detail);
    }
    // And against central differences of the whole objective (f32: a
    // loose tolerance; the ReLU and max-pool kinks stay far at this step).
    let eps = 1e-2f32;
    let mut checked = 0;
    for k in (0..gammas.len()).step_by(3) {
        let analytic = a.read(with.gammas[k].1)[0];
        let mut plus = gammas.clone();
        plus[k][0] += eps;
        let mut minus = gammas.clone();
        minus[k][0] -= eps;
        let fp = run(&with, Some(&plus)).read(with.objective)[0];
        let fm = run(&with, Some(&minus)).read(with.objective)[0];
        let fd = (fp - fm) / (2.0 * eps);
        assert!(
            (fd - analytic).abs() < 2e-3 + 2e-2 * analytic.abs(),
            "γ {k}[0]: finite differences {fd}, autodiff {analytic}"
        );
        checked += 1;
    }
    assert!(checked >= 5);
}

#[test]
fn sparsity_training_step_gpu_matches_cpu() {
    let gpu = common::gpu();
    let card = card(tied_genotype());
    let cfg = TrainConfig {
        batch: BATCH,
        l1_gamma: 1e-2,
        clip: None,
        ..TrainConfig::default()
    };
    let tg = train::train_graph(card.model.clone(), DIMS, CLASSES, &cfg);
    let plain = train::train_graph(
        card.model.clone(),
        DIMS,
        CLASSES,
        &TrainConfig {
            l1_gamma: 0.0,
            ..cfg.clone()
        },
    );
    let plan = Plan::new(gpu, &tg.g).unwrap();
    let mut cpu = CpuExec::new(&tg.g);
    let mut cpu_plain = CpuExec::new(&plain.g);
    let x = images(6);
    let labels = [1u32, 4, 9];
    plan.write(gpu, tg.images, &x);
    plan.write_u32(gpu, tg.labels, &labels);
    cpu.write(tg.images, &x);
    cpu.write_u32(tg.labels, &labels);
    cpu_plain.write(plain.images, &x);
    cpu_plain.write_u32(plain.labels, &labels);
    cpu_plain.step(&plain.g);
    let mut bad = Vec::new();
    for step in 0..2 {
        plan.step(gpu).unwrap();
        cpu.step(&tg.g);
        let names: BTreeMap<_, _> = tg.trained.iter().collect();
        for (name, &t) in names {
            let got = plan.read(gpu, t).unwrap();
            let c = compare("train", name, "", cpu.read(t), &got, verify::GRADIENT);
            if !c.pass {
                bad.push(format!(
                    "step {step} {name}: {:e} {:?}",
                    c.max_abs_err, c.detail
                ));
            }
        }
        if step == 0 {
            // After one SGD step from equal weights (momentum 0 so far, no
            // clipping), each γ differs from the plain step by −lr·λ·sign(γ).
            for (name, &t) in &tg.trained {
                if !is_gamma(tg.g.def(t)) {
                    continue;
                }
                let init = tg.g.def(t).init.clone().unwrap();
                let p = plain.trained[name];
                let got: Vec<f32> = cpu
                    .read(t)
                    .iter()
                    .zip(cpu_plain.read(p))
                    .map(|(a, b)| a - b)
                    .collect();
                let want: Vec<f32> = init
                    .iter()
                    .map(|v| -cfg.lr * cfg.l1_gamma * v.signum())
                    .collect();
                let c = compare(
                    "l1",
                    name,
                    "",
                    &want,
                    &got,
                    Tol {
                        rel: 1e-3,
                        abs: 1e-6,
                    },
                );
                assert!(c.pass, "{name}: {:e} {:?}", c.max_abs_err, c.detail);
            }
        }
    }
    assert!(bad.is_empty(), "GPU vs CPU:\n{}", bad.join("\n"));
}

#[test]
fn pruned_model_directory_saves_and_reloads() {
    let gpu = common::gpu();
    let splits = common::bundled_subset(32, 16, 40);
    let mut card = card(tied_genotype());
    card.norm = splits.norm.clone();
    card.dims = splits.train.dims;
    let tensors = random_tensors(&card, 9);
    let plan = prune::plan(&card, &tensors, 0.6, 0.0).unwrap();
    let (small, cut) = prune::apply(&card, &tensors, &plan).unwrap();
    let eval = prune::evaluator(gpu, &small, &cut, 16).unwrap();
    let (loss, acc) = eval.evaluate(gpu, &splits.test, &small.norm).unwrap();
    assert!(loss.is_finite());

    let dir = tempfile::Builder::new()
        .prefix("gradnas-prune-")
        .tempdir()
        .unwrap();
    train::save(gpu, &eval, &small, dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join("model.json")).unwrap();
    assert!(json.contains("\"keep\""), "{json}");
    let (back, card_back) = train::load(gpu, dir.path(), 8).unwrap();
    assert_eq!(card_back.model, small.model);
    assert_eq!(prune::read_tensors(gpu, &back).unwrap(), cut);
    let (loss2, acc2) = back.evaluate(gpu, &splits.test, &card_back.norm).unwrap();
    assert_eq!(acc, acc2);
    assert!(
        (loss - loss2).abs() < 1e-4 * loss.max(1.0),
        "{loss} vs {loss2}"
    );

    // Fine-tuning starts from the pruned weights.
    let cfg = TrainConfig {
        epochs: 1,
        batch: 16,
        log_every: 1,
        ..TrainConfig::default()
    };
    let tuned = dir.path().join("tuned");
    let report = train::train_from(
        gpu,
        small.model.clone(),
        &splits,
        &cfg,
        Some(&cut),
        &tuned,
        |_| {},
    )
    .unwrap();
    assert!(report.test_loss.is_finite());
}
