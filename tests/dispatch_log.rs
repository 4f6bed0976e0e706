//! `GRADNAS_DISPATCH_LOG` (`engine::dispatch_log`, read by
//! `benches/peers/jit_profile.py`): a profiled plan logs one window per
//! dispatch, in order, with its entry point, and copies the compiled
//! kernels' code on a software adapter; a path it cannot write is an error
//! that names the variable. One test, so the variable is set in a process
//! of its own (test binaries run apart; tests within one share the
//! environment).

mod common;

use gradnas::engine::dispatch_log::DISPATCH_LOG_VAR;
use gradnas::graph::{Graph, Plan};
use gradnas::verify;

#[test]
fn a_profile_logs_each_dispatch_and_the_kernels_code() {
    let gpu = common::gpu();
    let mut g = Graph::new();
    let x = g.input("x", &[4, 3, 5, 7]);
    let r = g.relu(x);
    let y = g.add(r, x);
    g.pin(y);
    let plan = Plan::new(gpu, &g).unwrap();
    plan.write(gpu, x, &verify::randn(&mut verify::rng(3), 4 * 3 * 5 * 7));

    // Removed when dropped, also when an assertion fails.
    let tmp = tempfile::Builder::new()
        .prefix("gradnas-dispatch-log-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let log = dir.join("dispatches.tsv");
    std::env::set_var(DISPATCH_LOG_VAR, &log);
    let rows = plan.profile(gpu).unwrap();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let names: Vec<&str> = plan.kernels().iter().map(|k| k.name.as_str()).collect();
    assert_eq!(lines.len(), names.len(), "one line per dispatch:\n{text}");
    let mut last_end = 0.0;
    for (l, name) in lines.iter().zip(&names) {
        assert_eq!(l.len(), 3, "entry, start, end: {l:?}");
        assert_eq!(l[0], *name);
        let (s, e): (f64, f64) = (l[1].parse().unwrap(), l[2].parse().unwrap());
        // Seconds since the Unix epoch, after 2020, in order, not overlapping.
        assert!(
            s > 1.58e9 && s <= e && s >= last_end,
            "{l:?} after {last_end}"
        );
        last_end = e;
    }
    let logged: usize = rows.iter().map(|r| r.dispatches).sum();
    assert_eq!(logged, names.len());

    let segs = std::fs::read_to_string(dir.join("dispatches.tsv.jit/segs.txt")).unwrap();
    if cfg!(target_os = "linux") && gpu.is_cpu() {
        // llvmpipe's kernels are machine code in anonymous executable
        // mappings of this process: at least one, each copied whole.
        assert!(!segs.is_empty(), "no executable mapping copied");
        for l in segs.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let (s, e) = (
                u64::from_str_radix(f[1], 16).unwrap(),
                u64::from_str_radix(f[2], 16).unwrap(),
            );
            let bin = dir.join(format!("dispatches.tsv.jit/seg{}.bin", f[0]));
            assert_eq!(std::fs::metadata(bin).unwrap().len(), e - s, "{l}");
        }
    }

    // A second profile appends.
    plan.profile(gpu).unwrap();
    let again = std::fs::read_to_string(&log).unwrap();
    assert_eq!(again.lines().count(), 2 * names.len());

    // A path in a directory that does not exist: an error naming the variable.
    std::env::set_var(DISPATCH_LOG_VAR, dir.join("missing/dispatches.tsv"));
    let e = match plan.profile(gpu) {
        Ok(_) => panic!("an unwritable log was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains(DISPATCH_LOG_VAR) && e.contains("missing"), "{e}");
    std::env::remove_var(DISPATCH_LOG_VAR);
}
