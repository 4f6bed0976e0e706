//! The search space: op sets and names, genotype JSON and validation, the
//! derivation from α/β, entropy, and the S2 enumeration/expansion/encoding.

use std::collections::HashSet;

use gradnas::space::{
    canonical, canonical_cell, derive, edge_index, edges, encode, enumerate_one_block_cells,
    expand, num_edges, num_inputs, softmax_entropy, vocab_sizes, Block, Cell, CellWeights,
    Genotype, OpKind, OpSet, BLOCKS, INPUT_VOCAB,
};
use proptest::prelude::*;
use OpKind::*;

fn names(set: &OpSet) -> Vec<&'static str> {
    set.ops().iter().map(|op| op.name()).collect()
}

/// A fresh directory for one test, removed when dropped.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gradnas-space-{name}-"))
        .tempdir()
        .unwrap()
}

fn assert_err_contains<T: std::fmt::Debug>(r: Result<T, String>, parts: &[&str]) {
    let e = r.expect_err("expected an error");
    for p in parts {
        assert!(e.contains(p), "error {e:?} should mention {p:?}");
    }
}

// ---------------------------------------------------------------- op sets

#[test]
fn op_sets_hold_the_published_lists() {
    let pnas = OpSet::pnas();
    assert_eq!(pnas.name(), "pnas");
    assert_eq!(
        names(&pnas),
        [
            "sep_conv_3x3",
            "sep_conv_5x5",
            "sep_conv_7x7",
            "conv_7x1_1x7",
            "identity",
            "avg_pool_3x3",
            "max_pool_3x3",
            "dil_conv_3x3"
        ]
    );
    let darts = OpSet::darts();
    assert_eq!(darts.name(), "darts");
    assert_eq!(
        names(&darts),
        [
            "none",
            "max_pool_3x3",
            "avg_pool_3x3",
            "skip_connect",
            "sep_conv_3x3",
            "sep_conv_5x5",
            "dil_conv_3x3",
            "dil_conv_5x5"
        ]
    );
    assert_eq!((pnas.len(), darts.len()), (8, 8));
    assert!(!pnas.is_empty());
    assert_eq!(pnas.index_of(Conv7x1_1x7), Some(3));
    assert_eq!(pnas.index_of(None_), None);
    assert_eq!(darts.index_of(None_), Some(0));
    assert_eq!(darts.index_of(DilConv5x5), Some(7));
    assert_eq!(pnas.get(7), DilConv3x3);
    assert_eq!(darts.choosable().count(), 7);
    assert_eq!(OpSet::by_name("pnas").unwrap(), pnas);
    assert_eq!(OpSet::by_name("darts").unwrap(), darts);
    assert_err_contains(
        OpSet::by_name("nasnet"),
        &["op_set", "nasnet", "pnas", "darts"],
    );
}

#[test]
fn op_names_round_trip_through_serde() {
    let mut seen = HashSet::new();
    for op in OpKind::ALL {
        assert!(seen.insert(op.name()), "{} named twice", op.name());
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(json, format!("\"{}\"", op.name()));
        assert_eq!(serde_json::from_str::<OpKind>(&json).unwrap(), op);
        assert_eq!(op.name().parse::<OpKind>().unwrap(), op);
        assert_eq!(op.to_string(), op.name());
    }
    for set in [OpSet::pnas(), OpSet::darts()] {
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<OpSet>(&json).unwrap(), set);
    }
}

#[test]
fn unknown_or_bad_op_names_are_clear_errors() {
    let e = serde_json::from_str::<OpKind>("\"sep_conv_9x9\"").unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("sep_conv_9x9") && e.contains("expected one of") && e.contains("dil_conv_5x5"),
        "{e}"
    );
    assert!(serde_json::from_str::<OpKind>("\"SepConv3x3\"").is_err());
    let dup = r#"{"name": "x", "ops": ["sep_conv_3x3", "sep_conv_3x3"]}"#;
    let e = serde_json::from_str::<OpSet>(dup).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
    let only_none = r#"{"name": "x", "ops": ["none"]}"#;
    let e = serde_json::from_str::<OpSet>(only_none)
        .unwrap_err()
        .to_string();
    assert!(e.contains("other than none"), "{e}");
}

// ---------------------------------------------------------------- cell structure

#[test]
fn edges_are_listed_block_major() {
    let all = edges();
    assert_eq!(all.len(), 20);
    assert_eq!(num_edges(BLOCKS), 20);
    assert_eq!(&all[..5], &[(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]);
    assert_eq!(all[19], (4, 5));
    for (k, &(b, i)) in all.iter().enumerate() {
        assert!(i < num_inputs(b));
        assert_eq!(edge_index(b, i), k);
    }
    assert_eq!(
        (0..BLOCKS).map(num_inputs).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6]
    );
    assert_eq!(INPUT_VOCAB, 6);
}

#[test]
#[should_panic(expected = "not in the cell")]
fn edge_index_rejects_a_missing_edge() {
    edge_index(1, 3);
}

// ---------------------------------------------------------------- genotypes

fn sample_cell(blocks: usize) -> Cell {
    let ops = [SepConv3x3, MaxPool3x3, DilConv3x3, Identity, SepConv5x5];
    Cell {
        blocks: (0..blocks)
            .map(|b| Block::new(b % 2, ops[b], 1 + b, ops[(b + 1) % 5]))
            .collect(),
    }
}

fn sample_genotype() -> Genotype {
    let alpha_rows = || {
        (0..20)
            .map(|e| (0..8).map(|o| (e * 8 + o) as f32 * 0.01 - 0.5).collect())
            .collect::<Vec<Vec<f32>>>()
    };
    let beta_rows = || {
        (0..BLOCKS)
            .map(|b| vec![1.0 / num_inputs(b) as f32; num_inputs(b)])
            .collect::<Vec<Vec<f32>>>()
    };
    Genotype {
        op_set: "pnas".into(),
        normal: sample_cell(5),
        reduce: sample_cell(3),
        alpha: Some(CellWeights {
            normal: alpha_rows(),
            reduce: alpha_rows(),
        }),
        beta: Some(CellWeights {
            normal: beta_rows(),
            reduce: beta_rows(),
        }),
    }
}

#[test]
fn genotype_json_round_trips() {
    let g = sample_genotype();
    g.validate().unwrap();
    let json = g.to_json();
    assert!(json.contains("\"sep_conv_3x3\"") && json.contains("\"op_set\": \"pnas\""));
    assert_eq!(Genotype::from_json(&json).unwrap(), g);

    // Without weights the fields are left out and read back as None.
    let bare = Genotype {
        alpha: None,
        beta: None,
        ..g.clone()
    };
    let json = bare.to_json();
    assert!(!json.contains("alpha") && !json.contains("beta"));
    assert_eq!(Genotype::from_json(&json).unwrap(), bare);

    let dir = temp_dir("roundtrip");
    let path = dir.path().join("genotype.json");
    g.save(&path).unwrap();
    assert_eq!(Genotype::load(&path).unwrap(), g);
}

#[test]
fn genotype_files_errors_name_the_file() {
    let dir = temp_dir("errors");
    let missing = dir.path().join("missing.json");
    assert_err_contains(Genotype::load(&missing), &["missing.json"]);
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"op_set\": \"pnas\", ").unwrap();
    assert_err_contains(Genotype::load(&broken), &["broken.json"]);
    let bad_op = dir.path().join("bad_op.json");
    let text = sample_genotype()
        .to_json()
        .replace("max_pool_3x3", "max_pool_9x9");
    std::fs::write(&bad_op, text).unwrap();
    assert_err_contains(Genotype::load(&bad_op), &["bad_op.json", "max_pool_9x9"]);
    let mut invalid = sample_genotype();
    invalid.normal.blocks.clear();
    assert_err_contains(
        invalid.save(&dir.path().join("invalid.json")),
        &["invalid.json", "empty"],
    );
    assert!(!dir.path().join("invalid.json").exists());
}

#[test]
fn validate_catches_each_bad_case() {
    let check = |edit: &dyn Fn(&mut Genotype), parts: &[&str]| {
        let mut g = sample_genotype();
        edit(&mut g);
        assert_err_contains(g.validate(), parts);
        // The same error comes back through JSON loading.
        assert_err_contains(Genotype::from_json(&g.to_json()), parts);
    };
    check(
        &|g| g.normal.blocks[1].inputs[1] = 3,
        &[
            "normal cell",
            "block 1 input 1",
            "index 3 out of range",
            "0..=2",
        ],
    );
    check(
        &|g| g.reduce.blocks[0].inputs[0] = 2,
        &["reduce cell", "block 0 input 0", "out of range"],
    );
    check(
        &|g| g.normal.blocks[2].ops[0] = DilConv5x5,
        &["block 2 op 0", "dil_conv_5x5", "not in op set pnas"],
    );
    check(
        &|g| g.reduce.blocks[2].ops[1] = None_,
        &["reduce cell", "block 2 op 1", "none"],
    );
    check(
        &|g| {
            g.op_set = "darts".into();
            g.alpha = None;
            g.normal = Cell {
                blocks: vec![Block::new(0, SepConv3x3, 1, None_)],
            };
        },
        &["normal cell", "block 0 op 1", "`none` cannot be chosen"],
    );
    check(&|g| g.reduce.blocks.clear(), &["reduce cell", "empty cell"]);
    check(
        &|g| {
            g.normal
                .blocks
                .push(Block::new(0, SepConv3x3, 1, SepConv3x3))
        },
        &["normal cell", "6 blocks", "at most 5"],
    );
    check(
        &|g| g.op_set = "nasnet".into(),
        &["op_set", "nasnet", "pnas, darts"],
    );
    check(
        &|g| {
            g.alpha.as_mut().unwrap().normal.pop();
        },
        &["alpha.normal", "19 rows, expected 20"],
    );
    check(
        &|g| g.alpha.as_mut().unwrap().reduce[4].push(0.0),
        &["alpha.reduce[4]", "9 values, expected 8"],
    );
    check(
        &|g| {
            g.beta.as_mut().unwrap().reduce[3].pop();
        },
        &["beta.reduce[3]", "4 values, expected 5"],
    );
    let g = sample_genotype();
    let mut bad = g.clone();
    bad.beta.as_mut().unwrap().normal[0][1] = f32::NAN;
    assert_err_contains(bad.validate(), &["beta.normal[0]", "non-finite"]);
    // A typo'd field is not silently ignored.
    let typo = g.to_json().replace("\"reduce\": {", "\"reduction\": {");
    assert_err_contains(Genotype::from_json(&typo), &["reduction"]);
    // Identical inputs in one block are legal (PNAS allows I1 = I2).
    let mut same = g.clone();
    same.normal.blocks[3] = Block::new(3, AvgPool3x3, 3, AvgPool3x3);
    same.validate().unwrap();
}

// ---------------------------------------------------------------- derivation

/// α for `blocks` blocks: every edge uniform, then `set` overrides logits
/// (edge (block, input), op, value).
fn alpha_with(
    set: &OpSet,
    blocks: usize,
    overrides: &[((usize, usize), OpKind, f32)],
) -> Vec<Vec<f32>> {
    let mut a = vec![vec![0.0; set.len()]; num_edges(blocks)];
    for &((b, i), op, v) in overrides {
        a[edge_index(b, i)][set.index_of(op).unwrap()] = v;
    }
    a
}

fn uniform_beta(blocks: usize) -> Vec<Vec<f32>> {
    (0..blocks)
        .map(|b| vec![1.0 / num_inputs(b) as f32; num_inputs(b)])
        .collect()
}

#[test]
fn derive_picks_the_expected_inputs_and_ops() {
    let set = OpSet::darts();
    let alpha = alpha_with(
        &set,
        5,
        &[
            // Block 0 keeps both inputs; `none` is largest on edge (0,0),
            // so the next-best op must be picked.
            ((0, 0), None_, 5.0),
            ((0, 0), SepConv3x3, 2.0),
            ((0, 1), DilConv5x5, 3.0),
            // Block 1: equal α peaks on all inputs; β decides (inputs 1, 2).
            ((1, 0), SkipConnect, 2.0),
            ((1, 1), AvgPool3x3, 2.0),
            ((1, 2), SepConv5x5, 2.0),
            // Block 2: uniform β; the two most peaked α win (inputs 0 and 3).
            ((2, 0), AvgPool3x3, 3.0),
            ((2, 3), MaxPool3x3, 4.0),
            ((2, 1), SepConv3x3, 1.0),
            // Block 4: β prefers input 5, but `none` dominates its edge, so
            // its non-`none` weight is tiny and it must lose.
            ((4, 5), None_, 10.0),
            ((4, 5), SepConv5x5, 1.0),
            ((4, 2), DilConv3x3, 0.5),
        ],
    );
    let mut beta = uniform_beta(5);
    beta[1] = vec![0.2, 0.3, 0.5];
    beta[4] = vec![0.1, 0.1, 0.1, 0.1, 0.1, 0.5];
    let cell = derive(&set, &alpha, &beta);
    let expected = Cell {
        blocks: vec![
            Block::new(0, SepConv3x3, 1, DilConv5x5),
            Block::new(1, AvgPool3x3, 2, SepConv5x5),
            Block::new(0, AvgPool3x3, 3, MaxPool3x3),
            // All tied: lower inputs, and the first non-`none` op of the set.
            Block::new(0, MaxPool3x3, 1, MaxPool3x3),
            // Input 2 is the only one above the tie; then the lowest index.
            Block::new(0, MaxPool3x3, 2, DilConv3x3),
        ],
    };
    assert_eq!(cell, expected);
    cell.validate(&set).unwrap();
}

#[test]
fn derive_never_picks_none_even_when_it_dominates() {
    let set = OpSet::darts();
    let mut alpha = alpha_with(&set, 5, &[]);
    for (e, row) in alpha.iter_mut().enumerate() {
        row[0] = 20.0; // none
        row[1 + e % 7] = 1.0 + e as f32 * 0.01;
    }
    let cell = derive(&set, &alpha, &uniform_beta(5));
    for (b, block) in cell.blocks.iter().enumerate() {
        for k in 0..2 {
            assert!(!block.ops[k].is_none(), "block {b} chose none");
            let e = edge_index(b, block.inputs[k]);
            assert_eq!(block.ops[k], set.get(1 + e % 7), "edge {e}");
        }
    }
    cell.validate(&set).unwrap();
}

#[test]
fn derive_handles_partial_cells_and_pnas() {
    let set = OpSet::pnas();
    let alpha = alpha_with(
        &set,
        2,
        &[((0, 1), Conv7x1_1x7, 2.0), ((1, 2), Identity, 1.0)],
    );
    let beta = vec![vec![0.5, 0.5], vec![0.1, 0.3, 0.6]];
    let cell = derive(&set, &alpha, &beta);
    assert_eq!(
        cell.blocks,
        [
            Block::new(0, SepConv3x3, 1, Conv7x1_1x7),
            Block::new(1, SepConv3x3, 2, Identity),
        ]
    );
}

#[test]
#[should_panic(expected = "alpha rows")]
fn derive_rejects_mismatched_alpha() {
    derive(&OpSet::pnas(), &vec![vec![0.0; 8]; 19], &uniform_beta(5));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn derived_cells_are_valid_and_canonical(
        darts in any::<bool>(),
        raw in prop::collection::vec(-4.0f32..4.0, 20 * 8),
        beta_raw in prop::collection::vec(0.01f32..1.0, 20),
    ) {
        let set = if darts { OpSet::darts() } else { OpSet::pnas() };
        let alpha: Vec<Vec<f32>> = raw.chunks(8).map(|c| c.to_vec()).collect();
        let beta: Vec<Vec<f32>> = (0..BLOCKS)
            .map(|b| beta_raw[num_edges(b)..num_edges(b + 1)].to_vec())
            .collect();
        let cell = derive(&set, &alpha, &beta);
        prop_assert!(cell.validate(&set).is_ok());
        prop_assert_eq!(canonical_cell(&cell), cell.clone());
        for block in &cell.blocks {
            prop_assert!(block.inputs[0] < block.inputs[1]);
        }
    }
}

// ---------------------------------------------------------------- entropy

#[test]
fn entropy_is_ln_k_for_uniform_alpha_and_falls_when_peaked() {
    let uniform = vec![vec![0.3f32; 8]; 20];
    assert!((softmax_entropy(&uniform) - 8f32.ln()).abs() < 1e-6);
    let seven = vec![vec![-1.0f32; 7]; 3];
    assert!((softmax_entropy(&seven) - 7f32.ln()).abs() < 1e-6);
    let mut last = softmax_entropy(&uniform);
    for t in [0.5f32, 1.0, 2.0, 4.0, 8.0, 16.0] {
        let mut peaked = uniform.clone();
        for (e, row) in peaked.iter_mut().enumerate() {
            row[e % 8] += t;
        }
        let h = softmax_entropy(&peaked);
        assert!(h < last, "entropy {h} at peak {t} not below {last}");
        last = h;
    }
    assert!(
        last < 0.01,
        "near one-hot α should have near-zero entropy, got {last}"
    );
    // The mean is over edges: one one-hot edge and one uniform edge.
    let mixed = vec![vec![100.0, 0.0, 0.0, 0.0], vec![0.0; 4]];
    assert!((softmax_entropy(&mixed) - 4f32.ln() / 2.0).abs() < 1e-5);
}

// ---------------------------------------------------------------- S2 encoding

/// Every ordered block over `inputs` candidate inputs and the set's
/// choosable ops, canonicalized into a set.
fn brute_force_blocks(set: &OpSet, inputs: usize) -> HashSet<Block> {
    let ops: Vec<OpKind> = set.choosable().collect();
    let mut out = HashSet::new();
    for i1 in 0..inputs {
        for i2 in 0..inputs {
            for &o1 in &ops {
                for &o2 in &ops {
                    out.insert(canonical(&Block::new(i1, o1, i2, o2)));
                }
            }
        }
    }
    out
}

#[test]
fn canonical_makes_symmetric_blocks_equal() {
    let a = Block::new(1, SepConv3x3, 0, MaxPool3x3);
    let b = Block::new(0, MaxPool3x3, 1, SepConv3x3);
    assert_ne!(a, b);
    assert_eq!(canonical(&a), canonical(&b));
    assert_eq!(canonical(&a), b);
    // Same input, different ops: ordered by op.
    let c = Block::new(0, MaxPool3x3, 0, SepConv3x3);
    assert_eq!(canonical(&c), Block::new(0, SepConv3x3, 0, MaxPool3x3));
}

#[test]
fn one_block_enumeration_matches_the_hand_count() {
    // PNAS: 2 inputs × 8 ops = 16 (input, op) pairs; unordered pairs with
    // repetition: 16·17/2 = 136 (of the 256 ordered ones).
    let pnas = enumerate_one_block_cells(&OpSet::pnas());
    assert_eq!(pnas.len(), 136);
    // DARTS: `none` is never chosen, so 2 × 7 = 14 pairs: 14·15/2 = 105.
    let darts = enumerate_one_block_cells(&OpSet::darts());
    assert_eq!(darts.len(), 105);
    for (set, cells) in [(OpSet::pnas(), pnas), (OpSet::darts(), darts)] {
        let got: HashSet<Block> = cells
            .iter()
            .map(|c| {
                assert_eq!(c.blocks.len(), 1);
                c.validate(&set).unwrap();
                assert_eq!(canonical(&c.blocks[0]), c.blocks[0]);
                c.blocks[0]
            })
            .collect();
        assert_eq!(got.len(), cells.len(), "duplicates in {}", set.name());
        assert_eq!(got, brute_force_blocks(&set, 2));
    }
}

#[test]
fn expand_adds_one_block_in_every_distinct_way() {
    for set in [OpSet::pnas(), OpSet::darts()] {
        let k = set.choosable().count();
        // A non-canonical parent: expansions must still come out canonical.
        let mut cell = Cell {
            blocks: vec![Block::new(1, MaxPool3x3, 0, MaxPool3x3)],
        };
        for b in 1..BLOCKS {
            let kids = expand(&cell, &set);
            let n = num_inputs(b) * k;
            assert_eq!(kids.len(), n * (n + 1) / 2, "{} block {b}", set.name());
            let mut seen = HashSet::new();
            for kid in &kids {
                assert_eq!(kid.blocks.len(), b + 1);
                kid.validate(&set).unwrap();
                assert_eq!(&canonical_cell(kid), kid);
                assert_eq!(&kid.blocks[..b], &canonical_cell(&cell).blocks[..]);
                assert!(seen.insert(kid.blocks[b]), "duplicate expansion");
            }
            assert_eq!(seen, brute_force_blocks(&set, num_inputs(b)));
            // Walk down one middle child to the next depth.
            cell = kids[kids.len() / 2].clone();
        }
        assert_eq!(cell.blocks.len(), BLOCKS);
        assert!(expand(&cell, &set).is_empty());
    }
}

#[test]
fn encode_gives_in_range_tokens_equal_for_symmetric_cells() {
    let set = OpSet::pnas();
    assert_eq!(vocab_sizes(&set), (6, 8));
    let cell = sample_cell(5);
    let tokens = encode(&cell, &set).unwrap();
    assert_eq!(tokens.len(), 5);
    for &(i1, i2, o1, o2) in &tokens {
        assert!(i1 <= i2 && i2 < INPUT_VOCAB && o1 < set.len() && o2 < set.len());
    }
    // Block 0 of the sample is (0, sep_conv_3x3, 1, max_pool_3x3).
    assert_eq!(tokens[0], (0, 1, 0, 6));
    let mut swapped = cell.clone();
    for block in &mut swapped.blocks {
        block.inputs.swap(0, 1);
        block.ops.swap(0, 1);
    }
    assert_ne!(swapped, cell);
    assert_eq!(encode(&swapped, &set).unwrap(), tokens);
    let darts_only = Cell {
        blocks: vec![Block::new(0, DilConv5x5, 1, SepConv3x3)],
    };
    assert_err_contains(encode(&darts_only, &set), &["dil_conv_5x5", "pnas"]);
}
