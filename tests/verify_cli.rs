//! `gradnas verify --json` end to end: every required op and direction is
//! named, all pass on this adapter, and the exit code says so.

use std::process::Command;

use gradnas::verify::{self, REQUIRED};

#[test]
fn verify_json_names_every_op_and_direction_and_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_gradnas"))
        .args(["verify", "--json"])
        .output()
        .expect("run gradnas verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let checks = v["checks"].as_array().expect("checks array");
    for (op, dir) in REQUIRED {
        assert!(
            checks
                .iter()
                .any(|c| c["op"] == *op && c["direction"] == *dir),
            "verify --json does not name {op} {dir}"
        );
    }
    let bad: Vec<_> = checks.iter().filter(|c| c["pass"] != true).collect();
    assert!(bad.is_empty(), "failing rows: {bad:#?}");
    assert_eq!(v["failed"], 0);
    assert!(v["adapter"]["name"].is_string());
    assert!(out.status.success(), "exit code {:?}", out.status.code());
}

#[test]
fn comparator_catches_poison_and_error() {
    let cpu = [1.0f32, -2.0, 3.0];
    let ok = verify::compare(
        "t",
        "forward",
        "[3]",
        &cpu,
        &[1.0, -2.0, 3.0001],
        verify::FORWARD,
    );
    assert!(ok.pass, "{ok:?}");
    // An element the kernel never wrote stays NaN and must fail.
    let nan = verify::compare(
        "t",
        "forward",
        "[3]",
        &cpu,
        &[1.0, f32::NAN, 3.0],
        verify::FORWARD,
    );
    assert!(!nan.pass);
    // Outside rel+abs tolerance.
    let off = verify::compare(
        "t",
        "forward",
        "[3]",
        &cpu,
        &[1.0, -2.0, 3.01],
        verify::FORWARD,
    );
    assert!(!off.pass);
    assert!((off.max_abs_err - 0.01).abs() < 1e-4);
    // Inside the looser gradient tolerance.
    let g = verify::compare(
        "t",
        "backward",
        "[3]",
        &cpu,
        &[1.0, -2.0, 3.002],
        verify::GRADIENT,
    );
    assert!(g.pass, "{g:?}");
    // A length mismatch fails.
    let short = verify::compare("t", "forward", "[3]", &cpu, &[1.0, -2.0], verify::FORWARD);
    assert!(!short.pass);
    assert!(verify::missing_required(&[]).len() == REQUIRED.len());
}
