//! `report.html` from run directories built here: a complete one (every
//! section and plot present, the heat maps one row per edge, a graph node
//! per block, the table's numbers), partial ones (sections say what is
//! missing), malformed files (the error names the file) and escaping. No
//! GPU: the report only reads files.

use std::path::Path;

use gradnas::report;
use gradnas::space::OpSet;
use serde_json::{json, Value};

/// PNAS's op names, in α's column order.
fn ops() -> Vec<&'static str> {
    OpSet::pnas().ops().iter().map(|o| o.name()).collect()
}

fn put(dir: &Path, rel: &str, v: &Value) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn put_lines(dir: &Path, rel: &str, lines: &[Value]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A full cell: block j reads inputs j and j + 1 with ops j and j + 3.
fn cell(shift: usize) -> Value {
    let ops = ops();
    let blocks: Vec<Value> = (0..5)
        .map(|j| {
            json!({"inputs": [j, j + 1], "ops": [ops[(j + shift) % 8], ops[(j + shift + 3) % 8]]})
        })
        .collect();
    json!({ "blocks": blocks })
}

/// α: 20 edges × 8 logits, edge e favoring op e % 8 more each epoch.
fn alpha(epoch: usize) -> Value {
    let rows: Vec<Vec<f64>> = (0..20)
        .map(|e| {
            (0..8)
                .map(|o| if o == e % 8 { 0.1 * epoch as f64 } else { 0.0 })
                .collect()
        })
        .collect();
    json!({"normal": rows, "reduce": rows})
}

/// β: per block j, uniform over its j + 2 inputs.
fn beta() -> Value {
    let rows: Vec<Vec<f64>> = (0..5).map(|j| vec![1.0 / (j + 2) as f64; j + 2]).collect();
    json!({"normal": rows, "reduce": rows})
}

/// Every file a finished search writes (weights aside).
fn full_run(dir: &Path) {
    put(
        dir,
        "config.json",
        &json!({
            "s1": {"supernet": {"width": 4, "depth": 3, "op_set": {"name": "pnas", "ops": ops()}},
                   "epochs": 3},
            "progressive": {"top_k": 8, "blocks": 5},
            "measure": {"n_val": 256, "probe_images": 256},
            "gate": {"threshold": 0.8, "max_rounds": 1}
        }),
    );
    let candidate = json!({"op_set": "pnas", "normal": cell(0), "reduce": cell(1)});
    put(dir, "candidate.json", &candidate);
    put(
        dir,
        "s1_s3.json",
        &json!({
            "candidate": candidate, "candidate_accuracy": 0.6914, "one_shot_accuracy": 0.6914,
            "s1_one_shot_accuracy": 0.582, "candidate_is_s1": false, "accepted": false,
            "rounds": [], "width": 4, "depth": 3, "round_dir": "/elsewhere/round0",
            "adapter": "Test <GPU> & Co / Vulkan"
        }),
    );
    put_lines(
        dir,
        "gate.jsonl",
        &[
            json!({"round": 0, "width": 4, "depth": 3, "accuracy": 0.6914, "threshold": 0.8,
                 "passed": false, "cell": cell(0), "seconds": 540.5}),
        ],
    );
    let levels: Vec<Value> = (1..=3)
        .map(|b| {
            let mut l = json!({
                "round": 0, "blocks": b, "predicted": if b == 1 { 0 } else { 2400 * b },
                "measured": if b == 1 { 136 } else { 8 },
                "kendall_tau": if b == 1 { Value::Null } else { json!(0.25 * b as f64) },
                "spearman_rho": if b == 1 { Value::Null } else { json!(0.3 * b as f64) },
                "mean_spread": 0.03, "best_accuracy": 0.6 + 0.01 * b as f64,
                "mean_accuracy": 0.5 + 0.01 * b as f64,
                "best_cell": {"blocks": [{"inputs": [0, 1], "ops": ["sep_conv_3x3", "identity"]}]},
                "seconds": 10.0, "measure_seconds": 5.0, "predict_seconds": 1.0, "fit_seconds": 4.0
            });
            if b > 1 {
                l["pairs"] = json!([[0.5, 0.52], [0.6, 0.58], [0.55, null]]);
            }
            l
        })
        .collect();
    put_lines(dir, "predictor.jsonl", &levels);
    put_lines(dir, "round0/predictor.jsonl", &levels);
    let history: Vec<Value> = (0..3)
        .map(|e| {
            json!({
                "epoch": e, "step": 8 * (e + 1), "train_loss": 2.3 - 0.1 * e as f64,
                "val_loss": 2.2 - 0.05 * e as f64, "entropy_normal": 2.07 - 0.01 * e as f64,
                "entropy_reduce": 2.06 - 0.01 * e as f64, "alpha": alpha(e), "beta": beta(),
                "seconds": 40.0 * (e + 1) as f64
            })
        })
        .collect();
    put_lines(dir, "round0/history.jsonl", &history);
    put(
        dir,
        "round0/genotype.json",
        &json!({"op_set": "pnas", "normal": cell(2), "reduce": cell(3),
                "alpha": alpha(3), "beta": beta()}),
    );
    put(
        dir,
        "round0/paths.json",
        &json!({"config": {"paths": 40}, "report": {"paths": 40, "seconds": 72.3}}),
    );
    put(
        dir,
        "round0/s1_config.json",
        &json!({"supernet": {"op_set": {"name": "pnas", "ops": ops()}}}),
    );
    let stage = |name: &str, acc: f64, params: u64, flops: u64, ms: f64| {
        json!({"stage": name, "test_accuracy": acc, "params": params, "flops": flops,
               "latency_ms_per_image": ms, "dir": format!("/elsewhere/s4/{name}")})
    };
    put(
        dir,
        "s4/s4.json",
        &json!({
            "discretize": {"one_shot_val_accuracy": 0.344, "anneal_loss_first": 2.07,
                           "anneal_loss_last": 1.26, "anneal_seconds": 68.2,
                           "fine_tune": {"test_accuracy": 0.7784, "val_accuracy": 0.773, "seconds": 157.5}},
            "prune_ratio": 0.5, "prunable_channels": 52, "removed_channels": 26, "threshold": 1.018,
            "stages": [
                stage("discretized", 0.7784, 3958, 552736, 3.674),
                stage("sparse", 0.7855, 3958, 552736, 4.111),
                stage("pruned", 0.1849, 2892, 344290, 2.859),
                stage("final", 0.7693, 2892, 344290, 2.576),
            ],
            "onnx": "/elsewhere/s4/final.onnx", "seconds": 648.9,
            "pruning_curve": [
                {"ratio": 0.25, "params": 3500, "accuracy": 0.775},
                {"ratio": 0.5, "params": 2892, "accuracy": 0.7693},
                {"ratio": 0.75, "params": 2100, "accuracy": 0.70}
            ]
        }),
    );
    for name in ["discretized", "sparse", "final"] {
        let mut lines: Vec<Value> = (1..=4)
            .map(|k| {
                json!({"phase": "train", "epoch": 0, "step": 50 * k, "loss": 1.0 / k as f64,
                       "accuracy": 0.6 + 0.03 * k as f64, "lr": 0.01, "images_per_s": 100.0,
                       "seconds": 10.0 * k as f64})
            })
            .collect();
        lines.push(
            json!({"phase": "val", "epoch": 0, "step": 200, "loss": 0.3, "accuracy": 0.77,
                          "lr": 0.0, "images_per_s": 300.0, "seconds": 45.0}),
        );
        lines.push(
            json!({"phase": "test", "epoch": 1, "step": 200, "loss": 0.31,
                          "accuracy": 0.7693, "lr": 0.0, "images_per_s": 0.0, "seconds": 50.0}),
        );
        put_lines(dir, &format!("s4/{name}/metrics.jsonl"), &lines);
    }
}

/// The SVG elements of `html` whose opening tag has `class`.
fn svgs<'a>(html: &'a str, class: &str) -> Vec<&'a str> {
    let open = format!(r#"<svg class="{class}""#);
    html.match_indices(&open)
        .map(|(i, _)| {
            let end = html[i..].find("</svg>").unwrap();
            &html[i..i + end]
        })
        .collect()
}

#[test]
fn a_full_run_has_every_section_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    full_run(tmp.path());
    let html = report::render(tmp.path()).unwrap();
    assert!(
        html.contains("fitted on its own pooled features of 256 training images"),
        "S2 says which reading its accuracies are"
    );
    // A run from before the probe (no measure.probe_images) read the
    // shared classifier.
    let mut old: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap())
            .unwrap();
    old.as_object_mut().unwrap().remove("measure");
    put(tmp.path(), "config.json", &old);
    let before = report::render(tmp.path()).unwrap();
    assert!(before.contains("read through the supernet's shared classifier"));
    full_run(tmp.path());

    for id in [
        "summary", "s1", "alpha", "cells", "s2", "s3", "s4", "pruning", "final",
    ] {
        assert!(
            html.contains(&format!(r#"<section id="{id}">"#)),
            "section {id}"
        );
    }
    // Nothing is "missing" in a full run, except the pruned stage's curves
    // (it is not trained).
    let notes: Vec<&str> = html
        .match_indices(r#"class="missing""#)
        .map(|(i, _)| &html[i..i + html[i..].find("</p>").unwrap()])
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("s4/pruned: no metrics.jsonl"));

    // S1: loss and entropy; S2: τ/ρ, accuracy, the pairs scatter; S4: loss
    // and accuracy for the three trained stages; the pruning curve.
    let charts = svgs(&html, "chart");
    assert_eq!(charts.len(), 2 + 3 + 6 + 1, "charts");
    for c in &charts {
        assert!(!c.contains("no data"), "an empty chart: {}", &c[..200]);
    }
    let titles = [
        "S1 loss per epoch",
        "softmax(α) entropy per epoch",
        "predictor rank correlation",
        "measured one-shot accuracy per level",
        "predicted vs measured accuracy per cell",
        "discretized: loss",
        "sparse: accuracy",
        "final: loss",
        "accuracy vs parameters",
    ];
    for t in titles {
        assert!(charts.iter().any(|c| c.contains(t)), "chart {t}");
    }
    let scatter = charts
        .iter()
        .find(|c| c.contains("predicted vs measured"))
        .unwrap();
    // Two levels with pairs, two finite pairs each (the null one is left out).
    assert_eq!(
        scatter.matches("<circle").count() - 2,
        4,
        "scatter points + legend"
    );
    let pruning = charts
        .iter()
        .find(|c| c.contains("accuracy vs parameters"))
        .unwrap();
    assert!(pruning.contains("sweep: sparse net pruned"));
    for label in ["discretized", "pruned", "final", "25%", "75%"] {
        assert!(
            pruning.contains(&format!(">{label}</text>")),
            "pruning label {label}"
        );
    }

    // α heat maps (normal, reduce) and β's: one row per edge; α rows hold
    // 8 ops × 3 epochs, β rows 3 epochs.
    let maps = svgs(&html, "heatmap");
    assert_eq!(maps.len(), 4);
    for m in &maps {
        let rows: Vec<&str> = m.split(r#"<g class="hm-row">"#).skip(1).collect();
        assert_eq!(rows.len(), 20, "edges");
        let per_row = if m.contains("softmax(α)") { 24 } else { 3 };
        for r in &rows {
            let r = &r[..r.find("</g>").unwrap()];
            assert_eq!(r.matches("<rect").count(), per_row);
        }
        assert!(m.contains("b4 ← b3") && m.contains("b0 ← c[k-2]"));
    }
    // The S1 genotype's kept edges are marked: 2 per block.
    assert_eq!(maps[0].matches("rowlabel marked").count(), 10);

    // Cells: candidate normal and reduction, S1 normal and reduction.
    let graphs = svgs(&html, "cellgraph");
    assert_eq!(graphs.len(), 4);
    for g in &graphs {
        assert_eq!(g.matches(r#"class="node block""#).count(), 5);
        assert_eq!(g.matches(r#"class="node input""#).count(), 2);
        assert_eq!(g.matches(r#"class="node output""#).count(), 1);
        assert_eq!(g.matches(r#"class="elabel""#).count(), 10);
    }
    assert!(graphs[0].contains(">sep_conv_3x3</text>"));

    // S2's table, S3's gate, the final table, the summary.
    for text in [
        "77.84%",
        "78.55%",
        "76.93%",
        "3,958",
        "2,892",
        "552,736",
        "344,290",
        "3.674",
        "2.576",
        "69.14%",
        "58.20%",
        "below",
        "4,800",
        "7,200",
        "0.500",
        "0.900",
        "26 of 52",
        "Test &lt;GPU&gt; &amp; Co / Vulkan",
    ] {
        assert!(html.contains(text), "missing {text:?}");
    }
    assert!(!html.contains("Test <GPU>"));
    assert!(!html.contains("adapter not recorded"));

    // Self-contained: no scripts, links or fetched resources.
    for bad in ["<script", "<link", "<img", "src=", "url(", "https:"] {
        assert!(!html.contains(bad), "{bad}");
    }
    let http: Vec<_> = html.match_indices("http:").collect();
    assert_eq!(
        http.len(),
        html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
}

#[test]
fn write_puts_report_html_in_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    full_run(tmp.path());
    let path = report::write(tmp.path()).unwrap();
    assert_eq!(path, tmp.path().join("report.html"));
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written, report::render(tmp.path()).unwrap());
    assert!(written.starts_with("<!DOCTYPE html>") && written.ends_with("</html>\n"));
    assert!(!tmp.path().join("report.tmp").exists());
}

#[test]
fn a_partial_run_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    full_run(tmp.path());
    // S1–S3 finished, S4 not started.
    std::fs::remove_dir_all(tmp.path().join("s4")).unwrap();
    let html = report::render(tmp.path()).unwrap();
    assert!(html.contains("No s4/ directory yet (S4 not run)."));
    assert!(html.contains("No s4.json yet (S4 not finished)."));
    assert!(html.contains("Test &lt;GPU&gt;"), "adapter from s1_s3.json");
    assert_eq!(svgs(&html, "chart").len(), 2 + 3);
    assert_eq!(svgs(&html, "cellgraph").len(), 4);

    // S1 only: its curves, α and cell, no S2/S3 yet.
    for f in [
        "candidate.json",
        "s1_s3.json",
        "gate.jsonl",
        "predictor.jsonl",
    ] {
        std::fs::remove_file(tmp.path().join(f)).unwrap();
    }
    std::fs::remove_file(tmp.path().join("round0/predictor.jsonl")).unwrap();
    let html = report::render(tmp.path()).unwrap();
    for note in [
        "No candidate.json yet",
        "No predictor.jsonl yet (S2 not run).",
        "No gate.jsonl yet",
        "adapter not recorded",
    ] {
        assert!(html.contains(note), "{note}");
    }
    assert_eq!(svgs(&html, "chart").len(), 2);
    assert_eq!(svgs(&html, "heatmap").len(), 4);
    assert_eq!(svgs(&html, "cellgraph").len(), 2);

    // S1 running: a history line half written is left out.
    let history = tmp.path().join("round0/history.jsonl");
    let mut text = std::fs::read_to_string(&history).unwrap();
    text.push_str(r#"{"epoch": 3, "train_loss": 2.0, "alpha": {"normal": [[0.1,"#);
    std::fs::write(&history, text).unwrap();
    let html = report::render(tmp.path()).unwrap();
    assert!(html.contains("columns per op: epochs 0 → 2"));

    // S1 running: an empty history and no genotype yet.
    std::fs::write(tmp.path().join("round0/history.jsonl"), "").unwrap();
    std::fs::remove_file(tmp.path().join("round0/genotype.json")).unwrap();
    let html = report::render(tmp.path()).unwrap();
    assert!(html.contains("round 0: history.jsonl is empty"));
    assert!(html.contains("round 0: no α recorded"));
    assert!(html.contains("round 0: no genotype.json"));
    assert!(!html.contains("<svg"));

    // Nothing at all yet.
    let empty = tempfile::tempdir().unwrap();
    let html = report::render(empty.path()).unwrap();
    let sections: Vec<&str> = html.split("<section id=").skip(1).collect();
    assert_eq!(sections.len(), 9);
    for s in sections {
        assert!(
            s.contains(r#"class="missing""#),
            "{}",
            &s[..s.find('>').unwrap()]
        );
    }
    assert!(!html.contains("<svg"));
}

#[test]
fn s4_under_another_name_and_final_alpha_without_history() {
    let tmp = tempfile::tempdir().unwrap();
    full_run(tmp.path());
    std::fs::rename(tmp.path().join("s4"), tmp.path().join("s4p07")).unwrap();
    std::fs::write(tmp.path().join("round0/history.jsonl"), "").unwrap();
    let html = report::render(tmp.path()).unwrap();
    assert!(html.contains("S4 read from s4p07/"));
    assert!(html.contains("76.93%"));
    assert!(html.contains("no α history; showing the final α from genotype.json"));
    let maps = svgs(&html, "heatmap");
    assert_eq!(maps.len(), 4);
    let first_row = maps[0].split(r#"<g class="hm-row">"#).nth(1).unwrap();
    assert_eq!(
        first_row[..first_row.find("</g>").unwrap()]
            .matches("<rect")
            .count(),
        8
    );
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    let cases: [(&str, &str, &str); 5] = [
        ("s4/s4.json", "{\"stages\": [", "s4.json"),
        (
            "gate.jsonl",
            "{\"round\": 0}\nnot json\n",
            "gate.jsonl line 2",
        ),
        (
            "round0/history.jsonl",
            "{\"epoch\": \"one\"}\n",
            "history.jsonl line 1",
        ),
        (
            "candidate.json",
            r#"{"op_set": "pnas", "normal": {"blocks": [{"inputs": [0, 7], "ops": ["identity", "identity"]}]}, "reduce": {"blocks": []}}"#,
            "candidate.json: normal block 0: input 7 out of range",
        ),
        (
            "s4/final/metrics.jsonl",
            "{\"step\": 1}\n",
            "final/metrics.jsonl line 1",
        ),
    ];
    for (file, text, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        full_run(tmp.path());
        std::fs::write(tmp.path().join(file), text).unwrap();
        let err = format!("{:#}", report::render(tmp.path()).unwrap_err());
        assert!(err.contains(expect), "{file}: {err}");
        assert!(report::write(tmp.path()).is_err());
        assert!(!tmp.path().join("report.html").exists());
    }
    let err = report::render(Path::new("/nonexistent/run")).unwrap_err();
    assert!(format!("{err}").contains("/nonexistent/run"));
}

#[test]
fn text_from_the_run_is_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    full_run(tmp.path());
    let evil = r#"<img src=x onerror="alert(1)">"#;
    put(
        tmp.path(),
        "candidate.json",
        &json!({"op_set": "pnas",
                "normal": {"blocks": [{"inputs": [0, 1], "ops": [evil, "identity"]}]},
                "reduce": {"blocks": [{"inputs": [0, 1], "ops": [evil, "identity"]}]}}),
    );
    let mut s4: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("s4/s4.json")).unwrap())
            .unwrap();
    s4["stages"][0]["stage"] = json!("<b>bold</b> & \"quoted\"");
    s4["adapter"] = json!("Other <adapter>");
    put(tmp.path(), "s4/s4.json", &s4);
    let html = report::render(tmp.path()).unwrap();
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>bold"));
    assert!(html.contains("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"));
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;"));
    // The two files disagree on the adapter: both are shown.
    assert!(html.contains("S1–S3: Test &lt;GPU&gt; &amp; Co / Vulkan; S4: Other &lt;adapter&gt;"));
}
