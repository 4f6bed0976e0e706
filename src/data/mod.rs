//! The data layer: IDX (MNIST, Fashion-MNIST) and CIFAR-10 binary readers,
//! the seeded train/validation split, per-channel normalization, augmentation
//! and batching into the f32 NCHW buffer the GPU step uploads.
//!
//! Everything about the images (channels, size, class count) comes from the
//! files: classes = max training label + 1, and [`Dataset::check_dims`]
//! compares the data with what a model expects. Bad files give a
//! [`DataError`] naming the file and what was expected, never a panic.
//!
//! ```no_run
//! use gradnas::data::{load, DataSource, Order, SplitConfig};
//! let splits = load(&DataSource::Bundled, &SplitConfig { val_fraction: 0.1, seed: 0 })?;
//! let augment = splits.kind.augment();
//! let (batch, sample) = (64, splits.train.dims.len());
//! let (mut px, mut lb) = (vec![0.0; batch * sample], vec![0; batch]);
//! let mut rng = gradnas::verify::rng(1);
//! for idx in splits.train.batches(batch, Order::Shuffled { seed: 1, epoch: 0 }) {
//!     let real = splits.train.fill_batch(&idx, &splits.norm, Some(&augment), &mut rng, &mut px, &mut lb);
//!     // upload px/lb; rows `real..batch` are padding the loss must mask
//! #   let _ = real;
//! }
//! # Ok::<(), gradnas::data::DataError>(())
//! ```

pub mod cifar;
mod dataset;
pub mod idx;

use std::io::Read as _;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom as _;
use rand::SeedableRng as _;

pub use dataset::{Augment, Batches, Dataset, Dims, Normalization, Order, Stream};

/// Where Debian's `dataset-fashion-mnist` package puts the full data set.
pub const FULL_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Overrides the directory holding the bundled `fashion-mnist/` (default:
/// the crate's `assets/`), e.g. for an installed binary.
pub const ASSETS_ENV: &str = "GRADNAS_ASSETS";

/// The IDX file names of MNIST and Fashion-MNIST (each may end in `.gz`).
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    // The cause is the error's source, which `{:#}` prints after it.
    #[error("{}: cannot read", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: starts like gzip (1f 8b) but does not decompress", .path.display())]
    Gzip {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: magic number {found:#010x}, expected {expected:#010x} ({what})", .path.display())]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        what: &'static str,
    },
    #[error("{}: truncated {part}: expected {expected} bytes, found {found}", .path.display())]
    Truncated {
        path: PathBuf,
        part: String,
        expected: u64,
        found: u64,
    },
    #[error("{}: {found} bytes, expected exactly {expected} (the header's counts); trailing data", .path.display())]
    TrailingData {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{}: {what}; expected at least one image of non-zero size", .path.display())]
    Empty { path: PathBuf, what: String },
    #[error("{} holds {images} images but {} holds {labels} labels; expected equal counts", .images_path.display(), .labels_path.display())]
    CountMismatch {
        images_path: PathBuf,
        images: usize,
        labels_path: PathBuf,
        labels: usize,
    },
    #[error("{}: label {label} of sample {index} is out of range; expected < {classes} ({why})", .path.display())]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u32,
        classes: usize,
        why: &'static str,
    },
    #[error("{}: no data set found; expected {expected}", .dir.display())]
    MissingFiles { dir: PathBuf, expected: String },
    #[error("{} is missing: --full needs Debian's package dataset-fashion-mnist (apt install dataset-fashion-mnist), or pass --data DIR", FULL_DIR)]
    FullMissing,
    #[error("{}: images are {found} (C×H×W) but the model expects {expected}", .origin.display())]
    DimMismatch {
        origin: PathBuf,
        found: Dims,
        expected: Dims,
    },
    #[error("invalid split: {0}")]
    InvalidSplit(String),
}

/// Which data to load.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// `assets/fashion-mnist`: 10,000 training images (split into train and
    /// validation) and the official 10,000-image test set.
    #[default]
    Bundled,
    /// `--data DIR`: IDX files or CIFAR-10 binary batches.
    Dir(PathBuf),
    /// `--full`: all of Fashion-MNIST from [`FULL_DIR`].
    Full,
}

impl DataSource {
    /// The directory this source reads from.
    pub fn dir(&self) -> Result<PathBuf, DataError> {
        match self {
            DataSource::Bundled => {
                let assets = std::env::var_os(ASSETS_ENV)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"));
                Ok(assets.join("fashion-mnist"))
            }
            DataSource::Dir(dir) => Ok(dir.clone()),
            DataSource::Full if Path::new(FULL_DIR).is_dir() => Ok(FULL_DIR.into()),
            DataSource::Full => Err(DataError::FullMissing),
        }
    }
}

/// The file format found in a data directory; it decides the augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// MNIST / Fashion-MNIST IDX files.
    Idx,
    /// CIFAR-10 binary batches.
    Cifar10,
}

impl DataKind {
    /// The usual augmentation: a 2-pixel crop padding for 28×28 digits and
    /// clothes (which have a meaningful left and right, so no flip); for
    /// CIFAR's 32×32 photos a 4-pixel padding and horizontal flips.
    pub fn augment(self) -> Augment {
        match self {
            DataKind::Idx => Augment {
                pad: 2,
                flip: false,
            },
            DataKind::Cifar10 => Augment { pad: 4, flip: true },
        }
    }
}

/// A run's data: where from, and the share held out for validation (the
/// split's seed is the run's seed).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataConfig {
    pub source: DataSource,
    pub val_fraction: f64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: DataSource::Bundled,
            val_fraction: 0.1,
        }
    }
}

impl DataConfig {
    pub fn load(&self, seed: u64) -> Result<Splits, DataError> {
        load(
            &self.source,
            &SplitConfig {
                val_fraction: self.val_fraction,
                seed,
            },
        )
    }
}

/// How the training files are split: `val_fraction` of them (rounded) go to
/// validation, chosen by `seed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitConfig {
    pub val_fraction: f64,
    pub seed: u64,
}

/// Train / validation (both from the training files, disjoint) and test,
/// plus the normalization fitted on `train` that eval and export reuse.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
    pub norm: Normalization,
    pub kind: DataKind,
    pub dir: PathBuf,
}

/// Load a data source and split its training files.
pub fn load(source: &DataSource, split: &SplitConfig) -> Result<Splits, DataError> {
    if !(0.0..1.0).contains(&split.val_fraction) {
        return Err(DataError::InvalidSplit(format!(
            "val_fraction is {}, expected 0 ≤ val_fraction < 1",
            split.val_fraction
        )));
    }
    let dir = source.dir()?;
    let (kind, all_train, test) = match detect(&dir)? {
        Layout::Idx(files) => {
            let train = idx::read_pair(&files[0], &files[1], None)?;
            let test = idx::read_pair(&files[2], &files[3], Some(train.classes))?;
            (DataKind::Idx, train, test)
        }
        Layout::Cifar { train, test } => {
            let train = cifar::read_batches(&train, &dir, None)?;
            let test =
                cifar::read_batches(std::slice::from_ref(&test), &test, Some(train.classes))?;
            (DataKind::Cifar10, train, test)
        }
    };
    let (train, val) = split_train(&all_train, split)?;
    let norm = Normalization::fit(&train);
    Ok(Splits {
        train,
        val,
        test,
        norm,
        kind,
        dir,
    })
}

/// Seeded, disjoint train/validation subsets of the training files, each in
/// file order (the epoch shuffle reorders them).
fn split_train(all: &Dataset, split: &SplitConfig) -> Result<(Dataset, Dataset), DataError> {
    let n = all.len();
    let n_val = (n as f64 * split.val_fraction).round() as usize;
    if n_val >= n {
        return Err(DataError::InvalidSplit(format!(
            "val_fraction {} of {n} images leaves no training images",
            split.val_fraction
        )));
    }
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(split.seed));
    let (val, train) = perm.split_at_mut(n_val);
    val.sort_unstable();
    train.sort_unstable();
    Ok((all.subset(train), all.subset(val)))
}

enum Layout {
    Idx([PathBuf; 4]),
    Cifar { train: Vec<PathBuf>, test: PathBuf },
}

/// Which data set a directory holds, by which files exist.
fn detect(dir: &Path) -> Result<Layout, DataError> {
    // Missing, unreadable, or a file: the system's own words for the first
    // two.
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(DataError::Io {
                path: dir.into(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            })
        }
        Err(source) => {
            return Err(DataError::Io {
                path: dir.into(),
                source,
            })
        }
    }
    let idx: Vec<Option<PathBuf>> = IDX_FILES
        .iter()
        .map(|name| {
            [name.to_string(), format!("{name}.gz")]
                .into_iter()
                .map(|f| dir.join(f))
                .find(|p| p.is_file())
        })
        .collect();
    if let [Some(a), Some(b), Some(c), Some(d)] = &idx[..] {
        return Ok(Layout::Idx([a.clone(), b.clone(), c.clone(), d.clone()]));
    }
    let mut train: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|source| DataError::Io {
            path: dir.into(),
            source,
        })?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let k = name.strip_prefix("data_batch_")?.strip_suffix(".bin")?;
            Some((k.parse().ok()?, path))
        })
        .collect();
    let test = dir.join("test_batch.bin");
    if !train.is_empty() && test.is_file() {
        train.sort();
        return Ok(Layout::Cifar {
            train: train.into_iter().map(|(_, p)| p).collect(),
            test,
        });
    }
    let missing: Vec<String> = IDX_FILES
        .iter()
        .zip(&idx)
        .filter(|(_, found)| found.is_none())
        .map(|(name, _)| format!("{name}[.gz]"))
        .collect();
    Err(DataError::MissingFiles {
        dir: dir.into(),
        expected: format!(
            "MNIST/Fashion-MNIST IDX files {} (missing: {}), or CIFAR-10 binary batches \
             data_batch_1.bin … data_batch_5.bin and test_batch.bin",
            IDX_FILES.map(|f| format!("{f}[.gz]")).join(", "),
            missing.join(", ")
        ),
    })
}

/// The file's undecoded bytes: the readers' `*_from_bytes` functions
/// decode them, so tests can drive those with in-memory bytes.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })
}

/// `raw` gunzipped when it starts with gzip's magic 1f 8b (whatever the file
/// is called), else unchanged.
pub(crate) fn gunzip_if_gzip(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|source| DataError::Gzip {
            path: path.into(),
            source,
        })?;
    Ok(out)
}

/// Every label below `classes` (when given: the test set against the
/// training set's classes).
pub(crate) fn check_labels(
    path: &Path,
    labels: &[u32],
    classes: Option<usize>,
) -> Result<(), DataError> {
    let Some(classes) = classes else {
        return Ok(());
    };
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(index) => Err(DataError::LabelOutOfRange {
            path: path.into(),
            index,
            label: labels[index],
            classes,
            why: "classes = max training label + 1",
        }),
        None => Ok(()),
    }
}

/// max label + 1 (labels are non-empty: readers reject empty files).
pub(crate) fn classes_of(labels: &[u32]) -> usize {
    labels.iter().max().map_or(0, |&m| m as usize + 1)
}
