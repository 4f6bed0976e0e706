//! S3's gate loop on stand-in rounds: a failed round grows the space and
//! runs again, a passing round ends the loop, and the loop ends after
//! `max_rounds` whatever happens, keeping the best round.

use gradnas::search::gate::{self, GateConfig, RoundOutcome};
use gradnas::space::{Block, Cell, OpKind};

fn cell(i: usize) -> Cell {
    Cell {
        blocks: vec![Block::new(0, OpKind::SepConv3x3, i, OpKind::MaxPool3x3)],
    }
}

#[test]
fn a_failed_round_grows_the_space_and_the_next_can_pass() {
    let cfg = GateConfig::default();
    let mut sizes = Vec::new();
    let mut logged = Vec::new();
    let r = gate::run(
        &cfg,
        4,
        3,
        |round, w, d| {
            sizes.push((w, d));
            // Below the 80% gate at the first size, above it after growing.
            let accuracy = if round == 0 { 0.6 } else { 0.85 };
            Ok(RoundOutcome {
                cell: cell(round),
                accuracy,
                extra: (w, d),
            })
        },
        |l| {
            logged.push(l.clone());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(sizes, vec![(4, 3), (6, 5)]);
    assert!(r.accepted);
    assert_eq!(r.chosen, 1);
    assert_eq!(r.outcome.extra, (6, 5));
    assert_eq!(logged.len(), 2);
    assert!(!logged[0].passed && logged[1].passed);
    assert!(logged[1].width > logged[0].width && logged[1].depth > logged[0].depth);
}

#[test]
fn an_unreachable_gate_ends_after_max_rounds_with_the_best_round() {
    let cfg = GateConfig {
        threshold: 0.99,
        max_rounds: 3,
        ..GateConfig::default()
    };
    let accs = [0.5, 0.7, 0.6];
    let mut calls = 0;
    let r = gate::run(
        &cfg,
        2,
        1,
        |round, _, _| {
            calls += 1;
            Ok(RoundOutcome {
                cell: cell(round),
                accuracy: accs[round],
                extra: (),
            })
        },
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(calls, 3);
    assert!(!r.accepted);
    assert_eq!(r.chosen, 1);
    assert_eq!(r.outcome.accuracy, 0.7);
    let widths: Vec<usize> = r.rounds.iter().map(|l| l.width).collect();
    assert_eq!(widths, vec![2, 4, 6]);
}

#[test]
fn impossible_gate_configs_are_refused() {
    let bad = [
        GateConfig {
            threshold: 1.5,
            ..GateConfig::default()
        },
        GateConfig {
            max_rounds: 0,
            ..GateConfig::default()
        },
        GateConfig {
            width_factor: 0.5,
            ..GateConfig::default()
        },
        GateConfig {
            width_factor: 1.0,
            depth_step: 0,
            ..GateConfig::default()
        },
    ];
    for (c, field) in bad
        .iter()
        .zip(["gate", "max_rounds", "width_factor", "depth_step"])
    {
        let e = c.validate().unwrap_err();
        assert!(e.contains(field), "{e:?} should name {field}");
    }
}
