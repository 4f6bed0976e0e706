//! What a long-running phase tells whoever watches it. Phases send events;
//! the command line turns them into progress bars, plain lines or JSON
//! lines, and the pipeline keeps the ticks in the run's `metrics.jsonl`.

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ask the running phase to stop at its next step (Ctrl-C): S1 writes a
/// checkpoint of that step, the other phases stop and are redone on resume.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether `interrupt` was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The error a phase returns when it stops for `interrupt`.
pub fn stopped(phase: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "interrupted during {phase}; finished phases and checkpoints are kept: continue with `gradnas search --resume RUN_DIR`"
    )
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A phase begins: `total` units of work (steps, cells, paths).
    Begin {
        phase: String,
        total: u64,
        unit: String,
    },
    /// `done` of the phase's `total` units are finished; `figures` are the
    /// live numbers that matter (loss, accuracy, τ …), by name.
    Tick {
        phase: String,
        done: u64,
        total: u64,
        figures: Vec<(String, f64)>,
    },
    /// The phase is over.
    End { phase: String },
    /// A line for the log.
    Log { message: String },
}

impl Event {
    pub fn log(message: impl Into<String>) -> Event {
        Event::Log {
            message: message.into(),
        }
    }
    pub fn begin(phase: &str, total: u64, unit: &str) -> Event {
        Event::Begin {
            phase: phase.into(),
            total,
            unit: unit.into(),
        }
    }
    pub fn tick(phase: &str, done: u64, total: u64, figures: &[(&str, f64)]) -> Event {
        Event::Tick {
            phase: phase.into(),
            done,
            total,
            figures: figures.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
    pub fn end(phase: &str) -> Event {
        Event::End {
            phase: phase.into(),
        }
    }
}

/// The figures as `name value` pairs, accuracies and ratios in percent
/// where the name says so.
pub fn format_figures(figures: &[(String, f64)]) -> String {
    figures
        .iter()
        .map(|(k, v)| {
            if k.contains("acc") {
                format!("{k} {:.2}%", 100.0 * v)
            } else if v.fract() == 0.0 && v.abs() < 1e9 {
                format!("{k} {v}")
            } else {
                format!("{k} {v:.4}")
            }
        })
        .collect::<Vec<_>>()
        .join("  ")
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Begin { phase, total, unit } => write!(f, "{phase}: {total} {unit}"),
            Event::Tick {
                phase,
                done,
                total,
                figures,
            } => write!(f, "{phase} {done}/{total}  {}", format_figures(figures)),
            Event::End { phase } => write!(f, "{phase}: done"),
            Event::Log { message } => f.write_str(message),
        }
    }
}

/// How the command line shows events on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A progress bar per phase (ETA and live figures) with the log lines
    /// above it; on a stderr that is not a terminal, plain lines.
    Bars,
    /// Nothing but errors.
    Quiet,
    /// Every event as one JSON line (for CI and scripts).
    Json,
}

/// Turns events into what `Mode` asks for.
pub struct Reporter {
    mode: Mode,
    terminal: bool,
    bar: Option<(String, ProgressBar)>,
}

impl Reporter {
    pub fn new(mode: Mode) -> Reporter {
        Reporter {
            mode,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
        }
    }

    pub fn event(&mut self, e: &Event) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => eprintln!("{}", serde_json::to_string(e).unwrap_or_default()),
            Mode::Bars if !self.terminal => eprintln!("{e}"),
            Mode::Bars => match e {
                Event::Begin { phase, total, unit } => self.start(phase, *total, unit),
                Event::Tick {
                    phase,
                    done,
                    total,
                    figures,
                } => {
                    if self.bar.as_ref().is_none_or(|(p, _)| p != phase) {
                        self.start(phase, *total, "");
                    }
                    if let Some((_, bar)) = &self.bar {
                        bar.set_length(*total);
                        bar.set_position(*done);
                        bar.set_message(format_figures(figures));
                    }
                }
                Event::End { phase } => {
                    if self.bar.as_ref().is_some_and(|(p, _)| p == phase) {
                        self.finish();
                    }
                }
                Event::Log { message } => match &self.bar {
                    Some((_, bar)) => bar.suspend(|| eprintln!("{message}")),
                    None => eprintln!("{message}"),
                },
            },
        }
    }

    /// A log line.
    pub fn line(&mut self, message: impl Into<String>) {
        self.event(&Event::log(message));
    }

    fn start(&mut self, phase: &str, total: u64, unit: &str) {
        self.finish();
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>22} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (ETA {eta})",
            )
            .expect("a valid template"),
        );
        bar.set_prefix(if unit.is_empty() {
            phase.to_string()
        } else {
            format!("{phase} ({unit})")
        });
        self.bar = Some((phase.to_string(), bar));
    }

    fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_lines_and_as_json() {
        let t = Event::tick("s1", 3, 24, &[("loss", 2.25), ("val_acc", 0.5)]);
        assert_eq!(t.to_string(), "s1 3/24  loss 2.2500  val_acc 50.00%");
        let j = serde_json::to_value(&t).unwrap();
        assert_eq!(j["event"], "tick");
        assert_eq!(j["done"], 3);
        assert_eq!(j["figures"][0][0], "loss");
        let l = serde_json::to_value(Event::log("hello")).unwrap();
        assert_eq!(l, serde_json::json!({"event": "log", "message": "hello"}));
        assert_eq!(Event::begin("s2", 5, "levels").to_string(), "s2: 5 levels");
    }
}
