//! Where a profiled step's CPU time goes inside a software adapter's
//! compiled kernels (`GRADNAS_DISPATCH_LOG=FILE`, read by
//! `benches/peers/jit_profile.py`).
//!
//! Why: on lavapipe every kernel is machine code that llvmpipe compiles at
//! run time, so a sampling profiler sees addresses without names. With the
//! variable set, `Plan::profile` runs each dispatch alone and appends its
//! entry point and wall-clock window to FILE (`entry<TAB>start<TAB>end`,
//! seconds since the Unix epoch: what `perf record -k realtime` stamps its
//! samples with), then copies this process's anonymous executable mappings,
//! where the compiled kernels live, to `FILE.jit/` while they are still
//! mapped. A sample then names its kernel by time and its instruction by
//! address.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The variable that turns the log on.
pub const DISPATCH_LOG_VAR: &str = "GRADNAS_DISPATCH_LOG";

#[derive(Debug, thiserror::Error)]
pub enum DispatchLogError {
    #[error("{DISPATCH_LOG_VAR}: cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{DISPATCH_LOG_VAR}: cannot copy the compiled kernels from /proc/self")]
    Mappings { source: std::io::Error },
}

/// Dispatch windows collected over one profile, written at `finish`.
pub struct DispatchLog {
    path: PathBuf,
    lines: String,
}

impl DispatchLog {
    /// The log the environment asks for, if any.
    pub fn from_env() -> Option<DispatchLog> {
        let path = std::env::var_os(DISPATCH_LOG_VAR).filter(|p| !p.is_empty())?;
        Some(DispatchLog {
            path: path.into(),
            lines: String::new(),
        })
    }

    pub fn record(&mut self, entry: &str, start: SystemTime, end: SystemTime) {
        let secs = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let _ = writeln!(self.lines, "{entry}\t{:.9}\t{:.9}", secs(start), secs(end));
    }

    /// Append the windows to the file and copy the executable mappings
    /// (each profile of a run appends; a later copy replaces an earlier).
    pub fn finish(self) -> Result<(), DispatchLogError> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(self.lines.as_bytes()))
            .map_err(cannot_write(&self.path))?;
        let mut dir = self.path.into_os_string();
        dir.push(".jit");
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).map_err(cannot_write(&dir))?;
        copy_executable_mappings(&dir)
    }
}

/// The error for a failed write of `path`.
fn cannot_write(path: &Path) -> impl FnOnce(std::io::Error) -> DispatchLogError + '_ {
    move |source| DispatchLogError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Each anonymous executable mapping of this process as `seg<i>.bin` in
/// `dir`, listed in `segs.txt` as `i start end` (hexadecimal addresses).
/// Elsewhere than Linux there is no /proc and nothing is copied.
fn copy_executable_mappings(dir: &Path) -> Result<(), DispatchLogError> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    use std::io::{Read, Seek, SeekFrom};
    let io = |source| DispatchLogError::Mappings { source };
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(io)?;
    let mut mem = std::fs::File::open("/proc/self/mem").map_err(io)?;
    let mut list = String::new();
    for (i, (start, end)) in maps
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // JIT code: readable, executable, backed by no file.
            let (anonymous, perms) = (f.len() == 5, f.get(1)?);
            (anonymous && perms.contains('r') && perms.contains('x')).then_some(f[0])
        })
        .filter_map(|range| {
            let (s, e) = range.split_once('-')?;
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        })
        .enumerate()
    {
        let mut bytes = vec![0u8; (end - start) as usize];
        mem.seek(SeekFrom::Start(start)).map_err(io)?;
        mem.read_exact(&mut bytes).map_err(io)?;
        let path = dir.join(format!("seg{i}.bin"));
        std::fs::write(&path, &bytes).map_err(cannot_write(&path))?;
        let _ = writeln!(list, "{i} {start:x} {end:x}");
    }
    let path = dir.join("segs.txt");
    std::fs::write(&path, list).map_err(cannot_write(&path))
}
