//! `gradnas bench --serve` refuses what it would otherwise ignore: the
//! options of the per-op and step benchmarks, and more than one search
//! variant (it would serve the first alone). Both are refused before any
//! adapter is opened.

use std::process::Command;

fn bench(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gradnas"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run gradnas bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_refuses_the_options_it_ignores() {
    for opt in [
        &["--json"][..],
        &["--filter", "conv"],
        &["--repeats", "3"],
        &["--profile"],
        &["--batch", "8"],
        &["--model", "random:1"],
    ] {
        let mut args = vec!["--serve"];
        args.extend_from_slice(opt);
        let (ok, err) = bench(&args);
        assert!(!ok, "bench {args:?} succeeded");
        assert!(
            err.contains("cannot be used with") && err.contains(opt[0]),
            "bench {args:?}: {err}"
        );
    }
}

#[test]
fn serve_takes_one_search_variant() {
    let (ok, err) = bench(&["--serve", "--search", "small,medium"]);
    assert!(!ok);
    assert!(
        err.contains("one search variant") && err.contains("small,medium"),
        "{err}"
    );
}
