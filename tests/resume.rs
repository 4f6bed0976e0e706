//! Kill and resume: `gradnas search` killed with SIGKILL at several points
//! (inside S1, inside S2, inside S4's sparsity fine-tune) and then
//! continued with `--resume RUN_DIR` ends with the same candidate and the
//! same final network as a run that was never interrupted. Also: the
//! effective configuration is written, and impossible values are refused
//! before any work, naming the field.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_gradnas");

/// The first `n` records of a bundled IDX file, written uncompressed.
fn cut_idx(name: &str, n: usize, dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/fashion-mnist")
        .join(format!("{name}.gz"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&src).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let images = bytes[3] == 3;
    let (header, record) = if images { (16, 28 * 28) } else { (8, 1) };
    let mut out = bytes[..header].to_vec();
    out[4..8].copy_from_slice(&(n as u32).to_be_bytes());
    out.extend_from_slice(&bytes[header..header + n * record]);
    std::fs::write(dir.join(name), out).unwrap();
}

fn tiny_data(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    cut_idx("train-images-idx3-ubyte", 64, dir);
    cut_idx("train-labels-idx1-ubyte", 64, dir);
    cut_idx("t10k-images-idx3-ubyte", 32, dir);
    cut_idx("t10k-labels-idx1-ubyte", 32, dir);
}

/// Every phase tiny: seconds on lavapipe.
const CONFIG: &str = r#"{
  "s1": {"supernet": {"width": 2, "depth": 1, "batch": 4, "stem_multiplier": 1},
         "epochs": 2, "steps_per_epoch": 3, "log_every": 1},
  "paths": {"paths": 3, "steps_per_path": 1, "batch": 4},
  "progressive": {"top_k": 2, "blocks": 2, "explore": 1},
  "predictor": {"epochs": 1},
  "measure": {"bn_batches": 1, "bn_batch": 4, "n_val": 8, "eval_batch": 8},
  "gate": {"threshold": 0.0, "max_rounds": 1},
  "s4": {
    "discretize": {"anneal_steps": 2, "batch": 4,
                   "fine_tune": {"epochs": 1, "batch": 8, "log_every": 1}},
    "prune": {"ratio": 0.5,
              "sparsity": {"epochs": 2, "batch": 8, "l1_gamma": 0.001, "log_every": 1},
              "fine_tune": {"epochs": 1, "batch": 8, "log_every": 1}}
  },
  "data": {"val_fraction": 0.25}
}"#;

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::Builder::new()
        .prefix("gradnas-resume-")
        .tempdir()
        .unwrap();
    let root = tmp.path().to_path_buf();
    tiny_data(&root.join("data"));
    std::fs::write(root.join("tiny.json"), CONFIG).unwrap();
    Setup { _tmp: tmp, root }
}

fn search(s: &Setup, out: &Path) -> Command {
    search_with(s, &s.root.join("tiny.json"), out)
}

fn search_with(s: &Setup, config: &Path, out: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("search")
        .arg("--config")
        .arg(config)
        .arg("--data")
        .arg(s.root.join("data"))
        .arg("--out")
        .arg(out);
    c
}

fn ok(mut c: Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Start the search with JSON-lines progress and SIGKILL it at the first
/// event `at` accepts; returns whether it was killed (not finished first).
fn kill_at(mut c: Command, at: impl Fn(&serde_json::Value) -> bool) -> bool {
    let mut child = c
        .arg("--log-json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line.unwrap();
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if at(&event) {
            child.kill().unwrap(); // SIGKILL: no chance to clean up
            child.wait().unwrap();
            return true;
        }
    }
    child.wait().unwrap();
    false
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

/// What must not depend on interruptions: the candidate, and S4's stages
/// (parameters, test accuracy).
fn outcome(run: &Path) -> (serde_json::Value, Vec<(u64, f64)>) {
    let s4 = json(&run.join("s4/s4.json"));
    let stages = s4["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["params"].as_u64().unwrap(),
                s["test_accuracy"].as_f64().unwrap(),
            )
        })
        .collect();
    (json(&run.join("candidate.json")), stages)
}

type KillPoint = dyn Fn(&serde_json::Value) -> bool;

fn is_tick(e: &serde_json::Value, phase: &str) -> bool {
    e["event"] == "tick" && e["phase"] == phase
}

#[test]
fn a_search_killed_anywhere_resumes_to_the_same_result() {
    let s = setup();
    let whole = s.root.join("whole");
    ok(search(&s, &whole));
    let want = outcome(&whole);
    for f in [
        "config.json",
        "metrics.jsonl",
        "s1_s3.json",
        "candidate.json",
        "predictor.jsonl",
        "gate.jsonl",
        "round0/genotype.json",
        "s4/final/model.safetensors",
        "s4/final.onnx",
        "report.html",
        "genotype.json",
        "model.safetensors",
        "architecture.json",
        "model.onnx",
    ] {
        assert!(whole.join(f).is_file(), "{f} missing");
    }
    // The effective configuration: the file's values over the preset's.
    let cfg = json(&whole.join("config.json"));
    assert_eq!(cfg["s1"]["supernet"]["width"], 2);
    assert_eq!(cfg["progressive"]["top_k"], 2);
    assert_eq!(cfg["s4"]["prune"]["sparsity"]["epochs"], 2);
    let a_lr = cfg["s1"]["hyper"]["a_lr"].as_f64().unwrap();
    assert!(
        (a_lr - 0.01).abs() < 1e-6,
        "the quick preset's a_lr kept: {a_lr}"
    );

    let points: [(&str, Box<KillPoint>); 3] = [
        (
            "inside S1",
            Box::new(|e| is_tick(e, "s1") && e["done"] == 4),
        ),
        (
            "inside S2, after its first cell",
            Box::new(|e| is_tick(e, "s2")),
        ),
        (
            "inside the sparsity fine-tune",
            Box::new(|e| is_tick(e, "s4 sparsity") && e["done"].as_u64() > Some(2)),
        ),
    ];
    for (k, (name, at)) in points.iter().enumerate() {
        let run = s.root.join(format!("killed{k}"));
        assert!(kill_at(search(&s, &run), at), "never reached {name}");
        let log = ok({
            let mut c = Command::new(BIN);
            c.arg("search").arg("--resume").arg(&run);
            c
        });
        assert_eq!(outcome(&run), want, "killed {name}; resumed:\n{log}");
        if k == 0 {
            // Killed at step 4 of 6: the checkpoint after epoch 0 (step 3).
            assert!(
                log.contains("s1: resuming at step 3 of 6"),
                "{name}:\n{log}"
            );
        } else {
            assert!(
                log.contains("S1 already done"),
                "{name}: S1 not reused\n{log}"
            );
        }
        if k > 1 {
            assert!(
                log.contains("S2 already done"),
                "{name}: S2 not reused\n{log}"
            );
            assert!(
                log.contains("s4 discretize: already done"),
                "{name}:\n{log}"
            );
        }
    }
}

/// Ctrl-C (SIGINT) inside S1: the step is checkpointed, the process ends
/// with status 130, and the resumed run ends like an uninterrupted one.
#[test]
fn ctrl_c_checkpoints_s1_and_the_run_resumes() {
    let s = setup();
    let whole = s.root.join("whole");
    ok(search(&s, &whole));
    let run = s.root.join("interrupted");
    let mut child = search(&s, &run)
        .arg("--log-json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "S1 never ticked");
        let e: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if is_tick(&e, "s1") && e["done"] == 2 {
            break;
        }
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("checkpoint at step"), "{rest}");
    assert!(run
        .join("round0")
        .join(gradnas::search::s1::CHECKPOINT)
        .is_file());
    let log = ok({
        let mut c = Command::new(BIN);
        c.arg("search").arg("--resume").arg(&run);
        c
    });
    assert!(log.contains("s1: resuming at step"), "{log}");
    assert_eq!(outcome(&run), outcome(&whole), "{log}");
}

/// A loss that becomes NaN stops the phase with a message; nothing is
/// marked done, so a resume would start the phase again.
#[test]
fn a_non_finite_loss_stops_the_phase_with_a_message() {
    let s = setup();
    let mut cfg: serde_json::Value = serde_json::from_str(CONFIG).unwrap();
    cfg["s1"]["hyper"] = serde_json::json!({"w_lr": 1e30});
    let path = s.root.join("nan.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let run = s.root.join("nan");
    let o = search_with(&s, &path, &run).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("became non-finite"), "{err}");
    assert!(!run.join("round0/s1_config.json").exists());
    assert!(!run.join("candidate.json").exists());
}

#[test]
fn resume_refuses_new_settings_and_missing_runs() {
    let s = setup();
    let o = Command::new(BIN)
        .args(["search", "--resume"])
        .arg(s.root.join("nowhere"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("config.json"));
    let o = Command::new(BIN)
        .args(["search", "--top-k", "4", "--resume"])
        .arg(&s.root)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be changed"));
}

#[test]
fn impossible_settings_are_refused_before_any_work_naming_the_field() {
    let s = setup();
    let cases = [
        (r#"{"s1": {"supernet": {"width": 0}}}"#, "width"),
        (r#"{"progressive": {"top_k": 0}}"#, "top_k"),
        (r#"{"gate": {"threshold": 1.5}}"#, "threshold"),
        (r#"{"s4": {"prune": {"ratio": 1.0}}}"#, "prune.ratio"),
        (r#"{"s4": {"prune": {"min_keep": 1.5}}}"#, "prune.min_keep"),
        (
            r#"{"s4": {"prune": {"fine_tune": {"epochs": 0}}}}"#,
            "fine_tune.epochs",
        ),
        (r#"{"progressive": {"top_kk": 3}}"#, "progressive.top_kk"),
        (
            r#"{"s1": {"supernet": {"op_set": {"ops": ["fancy"]}}}}"#,
            "fancy",
        ),
    ];
    for (k, (cfg, field)) in cases.iter().enumerate() {
        let path = s.root.join(format!("bad{k}.json"));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(cfg.as_bytes())
            .unwrap();
        let out = s.root.join(format!("bad{k}"));
        let o = search_with(&s, &path, &out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{cfg} was accepted");
        assert!(
            err.contains(field),
            "{cfg}: the error does not name {field}:\n{err}"
        );
        assert!(!out.exists(), "{cfg}: work started before the refusal");
    }
}
