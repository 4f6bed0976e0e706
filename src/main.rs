//! The `gradnas` command line: parse, call the library, print. Progress and
//! diagnostics go to stderr, results to stdout.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use gradnas::engine::{self, Gpu};
use gradnas::{bench, verify};

#[derive(Parser)]
#[command(
    name = "gradnas",
    version,
    about = "Gradient architecture search and compression on any GPU (wgpu + WGSL)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every adapter seen and the limits gradnas uses on the chosen one.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Run every op and gradient on the GPU against the CPU reference.
    Verify {
        #[arg(long)]
        json: bool,
        /// The test suite's full shape set instead of the quick one.
        #[arg(long)]
        full: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Per-op throughput (GFLOP/s, GB/s) on the chosen adapter.
    Bench {
        #[arg(long)]
        json: bool,
        /// Only ops whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        #[arg(long, default_value_t = 7)]
        repeats: usize,
    },
}

fn gpu() -> Result<&'static Gpu> {
    Gpu::shared().map_err(|e| anyhow::anyhow!("{e}"))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gradnas: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Info { json } => info(json),
        Cmd::Verify { json, full, seed } => verify_cmd(json, full, seed),
        Cmd::Bench {
            json,
            filter,
            repeats,
        } => bench_cmd(json, filter, repeats),
    }
}

fn info(json: bool) -> Result<ExitCode> {
    let adapters = engine::list_adapters();
    let chosen = Gpu::shared();
    if json {
        let v = serde_json::json!({
            "adapters": adapters,
            "chosen": chosen.as_ref().ok().map(|g| g.adapter_row()),
            "limits": chosen.as_ref().ok().map(|g| g.used_limits()),
            "error": chosen.as_ref().err().map(|e| e.to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("adapters seen ({}):", adapters.len());
        for a in &adapters {
            println!(
                "  {} | {} | {} {} | {}",
                a.name, a.backend, a.driver, a.driver_info, a.device_type
            );
        }
        match chosen {
            Ok(g) => {
                println!("chosen: {}", g.describe());
                println!("limits gradnas uses:");
                let l = serde_json::to_value(g.used_limits())?;
                for (k, v) in l.as_object().context("limits")? {
                    println!("  {k:<40} {v}");
                }
            }
            Err(e) => println!("chosen: none ({e})"),
        }
    }
    Ok(if chosen.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn verify_cmd(json: bool, full: bool, seed: u64) -> Result<ExitCode> {
    let gpu = gpu()?;
    let level = if full {
        verify::Level::Full
    } else {
        verify::Level::Quick
    };
    let checks = verify::run_all(gpu, level, seed)?;
    let missing: Vec<String> = verify::missing_required(&checks)
        .iter()
        .map(|(op, dir)| format!("{op} {dir}"))
        .collect();
    let failed = checks.iter().filter(|c| !c.pass).count() + missing.len();
    let adapter = gpu.describe();
    if json {
        let v = serde_json::json!({
            "adapter": gpu.adapter_row(),
            "passed": checks.len() + missing.len() - failed,
            "failed": failed,
            "missing": missing,
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:<18} {:<20} {:<24} {:>10} {:>10}  result  adapter",
            "op", "direction", "shape", "max abs", "max rel"
        );
        for c in &checks {
            println!(
                "{:<18} {:<20} {:<24} {:>10.2e} {:>10.2e}  {:<6}  {}",
                c.op,
                c.direction,
                c.shape,
                c.max_abs_err,
                c.max_rel_err,
                if c.pass { "pass" } else { "FAIL" },
                adapter
            );
        }
        for m in &missing {
            println!(
                "{m:<39} {:<24} {:>10} {:>10}  FAIL    not covered by the suite",
                "-", "-", "-"
            );
        }
        println!(
            "verify: {} passed, {} failed",
            checks.len() + missing.len() - failed,
            failed
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench_cmd(json: bool, filter: Option<String>, repeats: usize) -> Result<ExitCode> {
    let gpu = gpu()?;
    let cases: Vec<_> = bench::cases()
        .into_iter()
        .filter(|c| filter.as_deref().is_none_or(|f| c.op.contains(f)))
        .collect();
    anyhow::ensure!(
        !cases.is_empty(),
        "no benchmark matches --filter {filter:?}"
    );
    if !json {
        eprintln!("adapter: {}", gpu.describe());
        println!(
            "{:<28} {:<28} {:>10} {:>9} {:>8} {:>4}",
            "op", "shape", "median ms", "GFLOP/s", "GB/s", "disp"
        );
    }
    let mut rows = Vec::new();
    for c in &cases {
        let r = bench::run_case(gpu, c, repeats)?;
        if !json {
            println!(
                "{:<28} {:<28} {:>10.3} {:>9.2} {:>8.2} {:>4}",
                r.op, r.shape, r.median_ms, r.gflops, r.gbps, r.dispatches
            );
        }
        rows.push(r);
    }
    if json {
        let v = serde_json::json!({ "adapter": gpu.adapter_row(), "results": rows });
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::SUCCESS)
}
