//! CIFAR-10 binary batches (`data_batch_1.bin` … `data_batch_5.bin`,
//! `test_batch.bin`): records of 1 label byte then 3072 pixel bytes, the
//! 32×32 red plane, then green, then blue — already CHW. No header, so the
//! file length must be a whole number of records. Gzipped batches are
//! accepted (detected from the bytes).

use std::path::Path;

use super::{check_labels, classes_of, gunzip_if_gzip, read_file, DataError, Dataset, Dims};

/// The record layout the format fixes.
pub const DIMS: Dims = Dims {
    channels: 3,
    height: 32,
    width: 32,
};
/// Label byte + pixels.
pub const RECORD: usize = 1 + 3 * 32 * 32;
/// Labels are 0..=9.
pub const CLASSES: usize = 10;

/// One batch file's bytes (gzipped or raw): (pixels NCHW, labels).
pub fn batch_from_bytes(path: &Path, raw: Vec<u8>) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let bytes = gunzip_if_gzip(path, raw)?;
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            what: "the file is empty".into(),
        });
    }
    let whole = bytes.len() / RECORD;
    if bytes.len() % RECORD != 0 {
        return Err(DataError::Truncated {
            path: path.into(),
            part: format!("record {whole} (records are 1 label byte + 3072 pixel bytes)"),
            expected: ((whole + 1) * RECORD) as u64,
            found: bytes.len() as u64,
        });
    }
    let mut pixels = Vec::with_capacity(whole * (RECORD - 1));
    let mut labels = Vec::with_capacity(whole);
    for (index, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] as usize >= CLASSES {
            return Err(DataError::LabelOutOfRange {
                path: path.into(),
                index,
                label: rec[0] as u32,
                classes: CLASSES,
                why: "CIFAR-10 labels are 0..=9",
            });
        }
        labels.push(rec[0] as u32);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((pixels, labels))
}

/// Batch files concatenated in the given order. `origin` names the set in
/// later errors; `classes` as in [`super::idx::read_pair`].
pub fn read_batches(
    files: &[impl AsRef<Path>],
    origin: &Path,
    classes: Option<usize>,
) -> Result<Dataset, DataError> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for file in files {
        let path = file.as_ref();
        let (p, l) = batch_from_bytes(path, read_file(path)?)?;
        check_labels(path, &l, classes)?;
        pixels.extend(p);
        labels.extend(l);
    }
    if labels.is_empty() {
        return Err(DataError::Empty {
            path: origin.into(),
            what: "no batch files".into(),
        });
    }
    let classes = classes.unwrap_or_else(|| classes_of(&labels));
    Ok(Dataset::new(pixels, labels, DIMS, classes, origin.into()))
}
