//! The data layer: readers on small files written here (valid and broken,
//! one test per error kind), random bytes that must never panic, and the
//! bundled Fashion-MNIST (counts, split, normalization, batching).

use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use gradnas::data::{
    cifar, idx, load, Augment, DataError, DataKind, DataSource, Dataset, Dims, Normalization,
    Order, SplitConfig, Splits, IDX_FILES,
};
use proptest::prelude::*;

const SPLIT: SplitConfig = SplitConfig {
    val_fraction: 0.1,
    seed: 7,
};

// ---------------------------------------------------------------- helpers

/// A fresh directory for one test, removed when dropped.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gradnas-data-{name}-"))
        .tempdir()
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn idx_images(n: u32, rows: u32, cols: u32, pixel: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut b = [0x0803u32, n, rows, cols]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect::<Vec<u8>>();
    b.extend((0..(n * rows * cols) as usize).map(pixel));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = [0x0801u32, labels.len() as u32]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect::<Vec<u8>>();
    b.extend_from_slice(labels);
    b
}

const ROWS: u32 = 5;
const COLS: u32 = 4;

fn train_labels() -> Vec<u8> {
    (0..20).map(|i| (i % 7) as u8).collect()
}

/// A valid IDX directory: 20 training images of 5×4 (labels 0..=6, so 7
/// classes), 6 test images. The training images are gzipped under the plain
/// name and the training labels raw under the `.gz` name: the readers must
/// go by the bytes.
fn idx_dir(name: &str) -> tempfile::TempDir {
    let dir = temp_dir(name);
    let w = |f: &str, b: Vec<u8>| std::fs::write(dir.path().join(f), b).unwrap();
    w(
        IDX_FILES[0],
        gzip(&idx_images(20, ROWS, COLS, |i| (i * 7 % 251) as u8)),
    );
    w(&format!("{}.gz", IDX_FILES[1]), idx_labels(&train_labels()));
    w(IDX_FILES[2], idx_images(6, ROWS, COLS, |i| (i % 256) as u8));
    w(
        &format!("{}.gz", IDX_FILES[3]),
        gzip(&idx_labels(&[0, 1, 2, 3, 4, 6])),
    );
    dir
}

fn cifar_batch(labels: &[u8], first_pixel: u8) -> Vec<u8> {
    labels
        .iter()
        .enumerate()
        .flat_map(|(k, &l)| {
            std::iter::once(l).chain((0..3072).map(move |p| (p + k) as u8 ^ first_pixel))
        })
        .collect()
}

/// A valid CIFAR-10 directory: data_batch_1 (3 records), data_batch_2
/// (2 records, the first with label 9), test_batch (2 records).
fn cifar_dir(name: &str) -> tempfile::TempDir {
    let dir = temp_dir(name);
    let w = |f: &str, b: Vec<u8>| std::fs::write(dir.path().join(f), b).unwrap();
    w("data_batch_1.bin", cifar_batch(&[0, 1, 2], 0));
    w("data_batch_2.bin", cifar_batch(&[9, 3], 0x55));
    w("test_batch.bin", cifar_batch(&[4, 5], 0xaa));
    dir
}

fn load_dir(dir: &Path) -> Result<Splits, DataError> {
    load(&DataSource::Dir(dir.into()), &SPLIT)
}

/// The error, which must name `file` in its message.
fn expect_err(r: Result<Splits, DataError>, file: &str) -> DataError {
    let e = r.expect_err("broken data loaded without an error");
    assert!(
        e.to_string().contains(file),
        "error does not name {file}: {e}"
    );
    e
}

// ---------------------------------------------------------------- valid small sets

#[test]
fn idx_dir_loads_gzip_and_raw_by_content() {
    let dir = idx_dir("idx-ok");
    let s = load_dir(dir.path()).unwrap();
    assert_eq!(s.kind, DataKind::Idx);
    assert_eq!(s.train.dims, Dims::new(1, 5, 4));
    assert_eq!(s.train.classes, 7);
    assert_eq!(s.test.classes, 7);
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (18, 2, 6));
    // Pixels and labels are where the file put them.
    for d in [&s.train, &s.val] {
        for (k, &src) in d.source_index.iter().enumerate() {
            assert_eq!(d.labels[k], train_labels()[src] as u32);
            let want: Vec<u8> = (src * 20..src * 20 + 20)
                .map(|i| (i * 7 % 251) as u8)
                .collect();
            assert_eq!(d.image(k), &want[..]);
        }
    }
    assert_eq!(s.test.labels, [0, 1, 2, 3, 4, 6]);
    assert_eq!(
        s.test.image(5),
        &(100..120).map(|i| i as u8).collect::<Vec<_>>()[..]
    );
}

#[test]
fn cifar_dir_loads() {
    let dir = cifar_dir("cifar-ok");
    let s = load(
        &DataSource::Dir(dir.path().to_path_buf()),
        &SplitConfig {
            val_fraction: 0.0,
            seed: 1,
        },
    )
    .unwrap();
    assert_eq!(s.kind, DataKind::Cifar10);
    assert_eq!(s.kind.augment(), Augment { pad: 4, flip: true });
    assert_eq!(s.train.dims, Dims::new(3, 32, 32));
    assert_eq!(s.train.classes, 10);
    assert!(s.val.is_empty());
    // Batches concatenated in numeric order, records CHW as stored.
    assert_eq!(s.train.labels, [0, 1, 2, 9, 3]);
    assert_eq!(s.test.labels, [4, 5]);
    let want: Vec<u8> = (0..3072).map(|p| (p + 1) as u8 ^ 0x55).collect();
    assert_eq!(s.train.image(4), &want[..]);
}

// ---------------------------------------------------------------- one test per error kind

#[test]
fn error_bad_magic() {
    let dir = idx_dir("bad-magic");
    // A labels file where the images file belongs.
    std::fs::write(dir.path().join(IDX_FILES[0]), idx_labels(&[1; 20])).unwrap();
    let e = expect_err(load_dir(dir.path()), IDX_FILES[0]);
    assert!(
        matches!(
            e,
            DataError::BadMagic {
                found: 0x801,
                expected: 0x803,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("0x00000803"), "{e}");
}

#[test]
fn error_truncated_header() {
    let dir = idx_dir("trunc-header");
    std::fs::write(
        dir.path().join(IDX_FILES[2]),
        &idx_images(6, ROWS, COLS, |_| 0)[..10],
    )
    .unwrap();
    let e = expect_err(load_dir(dir.path()), IDX_FILES[2]);
    assert!(
        matches!(&e, DataError::Truncated { part, expected: 16, found: 10, .. } if part.contains("header")),
        "{e:?}"
    );
}

#[test]
fn error_truncated_body() {
    let dir = idx_dir("trunc-body");
    let full = idx_images(6, ROWS, COLS, |_| 0);
    std::fs::write(dir.path().join(IDX_FILES[2]), gzip(&full[..full.len() - 1])).unwrap();
    let e = expect_err(load_dir(dir.path()), IDX_FILES[2]);
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 136,
                found: 135,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn error_trailing_data() {
    let dir = idx_dir("trailing");
    let mut b = idx_labels(&[0, 1, 2, 3, 4, 5]);
    b.push(0);
    std::fs::write(dir.path().join(format!("{}.gz", IDX_FILES[3])), b).unwrap();
    let e = expect_err(load_dir(dir.path()), IDX_FILES[3]);
    assert!(
        matches!(
            e,
            DataError::TrailingData {
                expected: 14,
                found: 15,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn error_count_mismatch() {
    let dir = idx_dir("count");
    std::fs::write(
        dir.path().join(format!("{}.gz", IDX_FILES[3])),
        idx_labels(&[0; 5]),
    )
    .unwrap();
    let e = expect_err(load_dir(dir.path()), IDX_FILES[3]);
    assert!(e.to_string().contains(IDX_FILES[2]), "{e}");
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                images: 6,
                labels: 5,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn error_test_label_out_of_range() {
    let dir = idx_dir("label-range");
    // Training labels go up to 6, so 7 classes: a test label 7 is invalid.
    std::fs::write(
        dir.path().join(format!("{}.gz", IDX_FILES[3])),
        idx_labels(&[0, 1, 2, 7, 4, 5]),
    )
    .unwrap();
    let e = expect_err(load_dir(dir.path()), IDX_FILES[3]);
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                index: 3,
                label: 7,
                classes: 7,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn error_cifar_label_out_of_range() {
    let dir = cifar_dir("cifar-label");
    std::fs::write(
        dir.path().join("data_batch_2.bin"),
        cifar_batch(&[1, 10], 0),
    )
    .unwrap();
    let e = expect_err(load_dir(dir.path()), "data_batch_2.bin");
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                classes: 10,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn error_cifar_truncated_record() {
    let dir = cifar_dir("cifar-trunc");
    let b = cifar_batch(&[4, 5], 0);
    std::fs::write(dir.path().join("test_batch.bin"), &b[..3073 + 100]).unwrap();
    let e = expect_err(load_dir(dir.path()), "test_batch.bin");
    assert!(
        matches!(&e, DataError::Truncated { part, expected: 6146, found: 3173, .. } if part.contains("record 1")),
        "{e:?}"
    );
}

#[test]
fn error_zero_images() {
    let dir = idx_dir("zero");
    std::fs::write(
        dir.path().join(IDX_FILES[0]),
        idx_images(0, ROWS, COLS, |_| 0),
    )
    .unwrap();
    let e = expect_err(load_dir(dir.path()), IDX_FILES[0]);
    assert!(matches!(e, DataError::Empty { .. }), "{e:?}");
    // Images of size 0 are no images either; nor is an empty CIFAR batch.
    let e = idx::images_from_bytes(Path::new("x"), idx_images(3, 0, 4, |_| 0)).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e:?}");
    let e = cifar::batch_from_bytes(Path::new("x"), Vec::new()).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e:?}");
}

#[test]
fn error_unreadable_gzip() {
    let dir = idx_dir("bad-gzip");
    let mut b = gzip(&idx_labels(&train_labels()));
    b.truncate(b.len() / 2);
    std::fs::write(dir.path().join(format!("{}.gz", IDX_FILES[1])), b).unwrap();
    let e = expect_err(load_dir(dir.path()), IDX_FILES[1]);
    assert!(matches!(e, DataError::Gzip { .. }), "{e:?}");
    assert!(e.to_string().contains("gzip"), "{e}");
}

#[test]
fn error_missing_files() {
    let dir = idx_dir("missing");
    std::fs::remove_file(dir.path().join(IDX_FILES[2])).unwrap();
    let e = expect_err(load_dir(dir.path()), "gradnas-data");
    let msg = e.to_string();
    assert!(matches!(e, DataError::MissingFiles { .. }), "{e:?}");
    for f in IDX_FILES
        .iter()
        .chain(&["data_batch_1.bin", "test_batch.bin"])
    {
        assert!(msg.contains(f), "message does not name {f}: {msg}");
    }
    assert!(
        msg.contains(&format!("missing: {}[.gz])", IDX_FILES[2])),
        "{msg}"
    );
    // CIFAR batches without the test batch are not a data set either.
    let dir = cifar_dir("missing-cifar");
    std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
    let e = expect_err(load_dir(dir.path()), "test_batch.bin");
    assert!(matches!(e, DataError::MissingFiles { .. }), "{e:?}");
}

#[test]
fn error_no_such_directory() {
    let absent = temp_dir("absent");
    let dir = absent.path().join("nope");
    let e = expect_err(load_dir(&dir), "nope");
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    // The system's reason, once: as `gradnas` prints an error with its
    // causes (a missing directory was once "not a directory", twice).
    let shown = format!("{:#}", anyhow::Error::from(e));
    let reason = std::fs::metadata(&dir).unwrap_err().to_string();
    assert!(
        shown.ends_with(&format!("nope: cannot read: {reason}"))
            && shown.matches(&reason).count() == 1,
        "{shown} (expected the cause {reason:?} once)"
    );
    // A file where a directory should be says so, once.
    let file = absent.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let shown = format!(
        "{:#}",
        anyhow::Error::from(expect_err(load_dir(&file), "file"))
    );
    assert_eq!(shown.matches("not a directory").count(), 1, "{shown}");
}

#[test]
fn error_dims_disagree_with_model() {
    let s = load_dir(idx_dir("dims").path()).unwrap();
    s.train.check_dims(Dims::new(1, 5, 4)).unwrap();
    let e = s.train.check_dims(Dims::new(3, 32, 32)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::DimMismatch { .. }), "{e:?}");
    assert!(msg.contains("1×5×4") && msg.contains("3×32×32"), "{msg}");
    assert!(msg.contains(IDX_FILES[0]), "{msg}");
}

#[test]
fn error_invalid_split() {
    let dir = idx_dir("split");
    for f in [1.0, -0.1, f64::NAN, 0.99] {
        let r = load(
            &DataSource::Dir(dir.path().to_path_buf()),
            &SplitConfig {
                val_fraction: f,
                seed: 0,
            },
        );
        assert!(matches!(r, Err(DataError::InvalidSplit(_))), "{f}: {r:?}");
    }
}

#[test]
fn full_loads_or_names_the_package() {
    match load(&DataSource::Full, &SPLIT) {
        Ok(s) => {
            assert_eq!(s.train.len() + s.val.len(), 60_000);
            assert_eq!(s.val.len(), 6_000);
            assert_eq!(s.test.len(), 10_000);
            assert_eq!(s.train.dims, Dims::new(1, 28, 28));
        }
        Err(e) => {
            assert!(matches!(e, DataError::FullMissing), "{e:?}");
            assert!(e.to_string().contains("dataset-fashion-mnist"), "{e}");
        }
    }
}

// ---------------------------------------------------------------- random bytes never panic

fn idx_prefix(magic: u32) -> impl Strategy<Value = Vec<u8>> {
    // A valid magic and small random sizes, then random bytes: reaches the
    // size checks, not just the magic check.
    (
        0u32..4,
        0u32..6,
        0u32..6,
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(move |(n, r, c, tail)| {
            let mut b: Vec<u8> = [magic, n, r, c]
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect();
            b.truncate(if magic == idx::LABELS_MAGIC { 8 } else { 16 });
            b.extend(tail);
            b
        })
}

fn all_readers(bytes: Vec<u8>) {
    let p = Path::new("fuzz");
    if let Ok((dims, px)) = idx::images_from_bytes(p, bytes.clone()) {
        assert_eq!(dims.channels, 1);
        assert!(!px.is_empty() && px.len() % dims.len() == 0);
    }
    if let Ok(l) = idx::labels_from_bytes(p, bytes.clone()) {
        assert!(!l.is_empty());
    }
    if let Ok((px, l)) = cifar::batch_from_bytes(p, bytes) {
        assert_eq!(px.len(), l.len() * 3072);
        assert!(l.iter().all(|&l| l < 10));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..8000)) {
        all_readers(bytes.clone());
        all_readers(gzip(&bytes));
    }

    #[test]
    fn random_idx_bodies_never_panic(
        bytes in prop_oneof![idx_prefix(idx::IMAGES_MAGIC), idx_prefix(idx::LABELS_MAGIC)]
    ) {
        all_readers(bytes.clone());
        all_readers(gzip(&bytes));
    }

    #[test]
    fn cut_gzip_never_panics(cut in 0usize..1000, flip in 0usize..1000) {
        let mut b = gzip(&idx_images(3, 5, 4, |i| i as u8));
        let n = b.len();
        b[flip % n] ^= 0x5a;
        b.truncate(cut % (n + 1));
        all_readers(b);
    }

    #[test]
    fn random_cifar_records_never_panic(
        labels in prop::collection::vec(0u8..12, 1..4),
        cut in 0usize..3073,
    ) {
        let mut b = cifar_batch(&labels, 3);
        b.truncate(b.len() - cut);
        let r = cifar::batch_from_bytes(Path::new("fuzz"), gzip(&b));
        prop_assert_eq!(r.is_ok(), cut == 0 && labels.iter().all(|&l| l < 10));
    }
}

// ---------------------------------------------------------------- the bundled data

fn bundled() -> &'static Splits {
    static S: OnceLock<Splits> = OnceLock::new();
    S.get_or_init(|| load(&DataSource::Bundled, &SPLIT).expect("bundled data"))
}

#[test]
fn bundled_counts_and_dims() {
    let s = bundled();
    assert_eq!(s.kind, DataKind::Idx);
    assert_eq!(s.train.len(), 9_000);
    assert_eq!(s.val.len(), 1_000);
    assert_eq!(s.test.len(), 10_000);
    for d in [&s.train, &s.val, &s.test] {
        assert_eq!(d.dims, Dims::new(1, 28, 28));
        assert_eq!(d.classes, 10);
        assert_eq!(d.pixels.len(), d.len() * 784);
    }
    // Fashion-MNIST's classes are balanced: each about a tenth of the test set.
    let mut per_class = [0usize; 10];
    s.test
        .labels
        .iter()
        .for_each(|&l| per_class[l as usize] += 1);
    assert_eq!(per_class, [1000; 10]);
}

#[test]
fn split_is_disjoint_and_deterministic_by_seed() {
    let s = bundled();
    let mut all: Vec<usize> = s
        .train
        .source_index
        .iter()
        .chain(&s.val.source_index)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..10_000).collect::<Vec<_>>(),
        "train ∪ val must be every training image once"
    );

    let again = load(&DataSource::Bundled, &SPLIT).unwrap();
    assert_eq!(again.val.source_index, s.val.source_index);
    assert_eq!(again.train.pixels, s.train.pixels);
    assert_eq!(again.norm, s.norm);
    let other = load(
        &DataSource::Bundled,
        &SplitConfig {
            seed: SPLIT.seed + 1,
            ..SPLIT
        },
    )
    .unwrap();
    assert_eq!(other.val.len(), 1_000);
    assert_ne!(other.val.source_index, s.val.source_index);
}

/// Every train image through `fill_batch` (no augmentation), in batches.
fn normalized(d: &Dataset, norm: &Normalization) -> Vec<f32> {
    let bs = 500;
    let (mut px, mut lb) = (vec![0f32; bs * d.dims.len()], vec![0u32; bs]);
    let mut rng = gradnas::verify::rng(0);
    let mut out = Vec::new();
    for idx in d.batches(bs, Order::Sequential) {
        let real = d.fill_batch(&idx, norm, None, &mut rng, &mut px, &mut lb);
        out.extend_from_slice(&px[..real * d.dims.len()]);
    }
    out
}

#[test]
fn normalization_centres_the_train_split() {
    let s = bundled();
    // Fashion-MNIST's known statistics (0.286, 0.353 on the full set).
    assert!((0.27..0.30).contains(&s.norm.mean[0]), "{:?}", s.norm);
    assert!((0.34..0.37).contains(&s.norm.std[0]), "{:?}", s.norm);
    let v = normalized(&s.train, &s.norm);
    assert_eq!(v.len(), 9_000 * 784);
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 1e-4, "mean {mean}");
    assert!((var.sqrt() - 1.0).abs() < 1e-4, "std {}", var.sqrt());
}

#[test]
fn multi_channel_normalization_is_per_channel() {
    let d = load_dir(cifar_dir("norm-cifar").path()).unwrap().train;
    let norm = Normalization::fit(&d);
    assert_eq!(norm.mean.len(), 3);
    let v = normalized(&d, &norm);
    for c in 0..3 {
        let ch: Vec<f64> = v
            .chunks(1024)
            .skip(c)
            .step_by(3)
            .flatten()
            .map(|&x| x as f64)
            .collect();
        let m = ch.iter().sum::<f64>() / ch.len() as f64;
        let s = (ch.iter().map(|x| (x - m).powi(2)).sum::<f64>() / ch.len() as f64).sqrt();
        assert!(
            m.abs() < 1e-4 && (s - 1.0).abs() < 1e-4,
            "channel {c}: {m} {s}"
        );
    }
}

#[test]
fn every_sample_once_per_epoch_and_short_last_batch_padded() {
    let s = bundled();
    let d = &s.train;
    let bs = 128; // 9000 = 70 · 128 + 40
    let order = Order::Shuffled { seed: 3, epoch: 0 };
    let batches: Vec<Vec<usize>> = d.batches(bs, order).collect();
    assert_eq!(batches.len(), 71);
    assert_eq!(d.batches(bs, order).len(), 71);
    assert_eq!(batches.last().unwrap().len(), 40);
    let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
    assert_ne!(seen, (0..d.len()).collect::<Vec<_>>(), "not shuffled");
    seen.sort_unstable();
    assert_eq!(seen, (0..d.len()).collect::<Vec<_>>());

    // Same seed and epoch: same order; next epoch: another order.
    assert_eq!(d.order(order), d.order(order));
    assert_ne!(
        d.order(order),
        d.order(Order::Shuffled { seed: 3, epoch: 1 })
    );
    assert_ne!(
        d.order(order),
        d.order(Order::Shuffled { seed: 4, epoch: 0 })
    );

    // The short batch: real rows first, padding zeroed with label 0.
    let (mut px, mut lb) = (vec![f32::NAN; bs * 784], vec![u32::MAX; bs]);
    let last = batches.last().unwrap();
    let mut rng = gradnas::verify::rng(0);
    let real = d.fill_batch(
        last,
        &s.norm,
        Some(&s.kind.augment()),
        &mut rng,
        &mut px,
        &mut lb,
    );
    assert_eq!(real, 40);
    let want: Vec<u32> = last.iter().map(|&i| d.labels[i]).collect();
    assert_eq!(&lb[..40], &want[..]);
    assert!(lb[40..].iter().all(|&l| l == 0));
    assert!(px[40 * 784..].iter().all(|&v| v == 0.0));
    assert!(px[..40 * 784].iter().all(|v| v.is_finite()));
}

/// A 2-channel 5×5 image whose pixels are all distinct and non-zero, so a
/// crop / flip can be recognised from the output.
fn probe() -> (Dataset, Normalization) {
    let d = Dataset {
        pixels: (1..=50).collect(),
        labels: vec![3],
        dims: Dims::new(2, 5, 5),
        classes: 4,
        origin: "probe".into(),
        source_index: vec![0],
    };
    // Identity on the 0..=255 scale: out = pixel value.
    let norm = Normalization {
        mean: vec![0.0; 2],
        std: vec![1.0 / 255.0; 2],
    };
    (d, norm)
}

/// The (dy, dx, flipped) that produce `out` from the probe image.
fn recognise(out: &[f32], pad: isize) -> Option<(isize, isize, bool)> {
    let at = |c: usize, y: isize, x: isize| {
        if (0..5).contains(&y) && (0..5).contains(&x) {
            (c * 25 + y as usize * 5 + x as usize + 1) as f32
        } else {
            0.0
        }
    };
    for flip in [false, true] {
        for dy in -pad..=pad {
            for dx in -pad..=pad {
                let ok = (0..2).all(|c| {
                    (0..5).all(|y| {
                        (0..5).all(|x| {
                            let xm = if flip { 4 - x } else { x };
                            (out[c * 25 + y * 5 + x] - at(c, y as isize + dy, xm as isize + dx))
                                .abs()
                                < 1e-3
                        })
                    })
                });
                if ok {
                    return Some((dy, dx, flip));
                }
            }
        }
    }
    None
}

#[test]
fn augmentation_crops_and_flips_as_specified() {
    let (d, norm) = probe();
    let aug = Augment { pad: 2, flip: true };
    let mut rng = gradnas::verify::rng(11);
    let (mut px, mut lb) = (vec![0f32; 50], vec![0u32; 1]);
    let mut shifts = std::collections::HashSet::new();
    let mut flips = 0;
    for _ in 0..2000 {
        assert_eq!(
            d.fill_batch(&[0], &norm, Some(&aug), &mut rng, &mut px, &mut lb),
            1
        );
        assert_eq!(lb[0], 3);
        let (dy, dx, f) = recognise(&px, 2).expect("output is not a crop of the padded image");
        shifts.insert((dy, dx));
        flips += f as usize;
    }
    assert_eq!(shifts.len(), 25, "every offset in ±2 must occur");
    assert!((800..1200).contains(&flips), "flips {flips} of 2000");
    // Without flip: never flipped; without augmentation: the image itself.
    for _ in 0..200 {
        d.fill_batch(
            &[0],
            &norm,
            Some(&Augment {
                pad: 1,
                flip: false,
            }),
            &mut rng,
            &mut px,
            &mut lb,
        );
        assert_eq!(recognise(&px, 1).map(|r| r.2), Some(false));
    }
    d.fill_batch(&[0], &norm, None, &mut rng, &mut px, &mut lb);
    assert_eq!(recognise(&px, 0), Some((0, 0, false)));
}

#[test]
fn augmentation_keeps_shapes_and_is_deterministic_per_seed() {
    let s = bundled();
    let d = &s.train;
    let idx: Vec<usize> = (0..32).collect();
    let aug = s.kind.augment();
    assert_eq!(
        aug,
        Augment {
            pad: 2,
            flip: false
        }
    );
    let run = |seed: u64| {
        let (mut px, mut lb) = (vec![0f32; 32 * 784], vec![0u32; 32]);
        let real = d.fill_batch(
            &idx,
            &s.norm,
            Some(&aug),
            &mut gradnas::verify::rng(seed),
            &mut px,
            &mut lb,
        );
        assert_eq!(real, 32);
        assert_eq!(px.len(), 32 * 784);
        assert_eq!(lb, d.labels[..32]);
        px
    };
    let plain = {
        let (mut px, mut lb) = (vec![0f32; 32 * 784], vec![0u32; 32]);
        d.fill_batch(
            &idx,
            &s.norm,
            None,
            &mut gradnas::verify::rng(5),
            &mut px,
            &mut lb,
        );
        px
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    assert_ne!(run(5), plain);
}
