//! IDX files (MNIST, Fashion-MNIST): a big-endian header — magic
//! `00 00 08 ndims` (08 = unsigned bytes), then `ndims` u32 sizes — followed
//! by the data. Images are `[n, rows, cols]` (one channel), labels `[n]`.
//! Files may be gzipped; that is detected from the bytes, not the name.

use std::path::Path;

use super::{check_labels, classes_of, gunzip_if_gzip, read_file, DataError, Dataset, Dims};

/// u8 data, 3 dimensions.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// u8 data, 1 dimension.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The header's sizes and length, the file checked to be exactly as long as
/// the sizes say.
fn parse(
    path: &Path,
    bytes: &[u8],
    magic: u32,
    what: &'static str,
) -> Result<(Vec<usize>, usize), DataError> {
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() >= 4 && word(0) != magic {
        return Err(DataError::BadMagic {
            path: path.into(),
            found: word(0),
            expected: magic,
            what,
        });
    }
    if bytes.len() < header {
        return Err(DataError::Truncated {
            path: path.into(),
            part: format!("header ({what})"),
            expected: header as u64,
            found: bytes.len() as u64,
        });
    }
    let dims: Vec<usize> = (0..ndims).map(|d| word(4 + 4 * d) as usize).collect();
    // u128: three u32 sizes cannot overflow it, so a hostile header is
    // caught by the length comparison instead of an allocation.
    let expected = header as u128 + dims.iter().map(|&d| d as u128).product::<u128>();
    let found = bytes.len() as u128;
    if found < expected {
        return Err(DataError::Truncated {
            path: path.into(),
            part: format!("data ({what} of sizes {dims:?})"),
            expected: expected as u64,
            found: found as u64,
        });
    }
    if found > expected {
        return Err(DataError::TrailingData {
            path: path.into(),
            expected: expected as u64,
            found: found as u64,
        });
    }
    Ok((dims, header))
}

/// Images from a file's bytes (gzipped or raw): (1×rows×cols, pixels NCHW).
pub fn images_from_bytes(path: &Path, raw: Vec<u8>) -> Result<(Dims, Vec<u8>), DataError> {
    let mut bytes = gunzip_if_gzip(path, raw)?;
    let (d, header) = parse(path, &bytes, IMAGES_MAGIC, "IDX images: u8, 3 dimensions")?;
    if d[0] == 0 || d[1] == 0 || d[2] == 0 {
        return Err(DataError::Empty {
            path: path.into(),
            what: format!("header says {} images of {}×{}", d[0], d[1], d[2]),
        });
    }
    bytes.drain(..header);
    Ok((Dims::new(1, d[1], d[2]), bytes))
}

/// Labels from a file's bytes (gzipped or raw).
pub fn labels_from_bytes(path: &Path, raw: Vec<u8>) -> Result<Vec<u32>, DataError> {
    let bytes = gunzip_if_gzip(path, raw)?;
    let (_, header) = parse(path, &bytes, LABELS_MAGIC, "IDX labels: u8, 1 dimension")?;
    let body = &bytes[header..];
    if body.is_empty() {
        return Err(DataError::Empty {
            path: path.into(),
            what: "header says 0 labels".into(),
        });
    }
    Ok(body.iter().map(|&l| l as u32).collect())
}

/// An images file and its labels file. `classes`: the training set's class
/// count, which the labels must respect (the test set); `None` derives it
/// from the labels (the training set).
pub fn read_pair(
    images: &Path,
    labels: &Path,
    classes: Option<usize>,
) -> Result<Dataset, DataError> {
    let (dims, pixels) = images_from_bytes(images, read_file(images)?)?;
    let lbl = labels_from_bytes(labels, read_file(labels)?)?;
    let n = pixels.len() / dims.len();
    if n != lbl.len() {
        return Err(DataError::CountMismatch {
            images_path: images.into(),
            images: n,
            labels_path: labels.into(),
            labels: lbl.len(),
        });
    }
    check_labels(labels, &lbl, classes)?;
    let classes = classes.unwrap_or_else(|| classes_of(&lbl));
    Ok(Dataset::new(pixels, lbl, dims, classes, images.into()))
}
