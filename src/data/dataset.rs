//! Images in memory (u8 NCHW + labels), normalization, augmentation,
//! epoch order and batching into a caller's f32 buffer.

use std::fmt;
use std::path::PathBuf;

use rand::seq::SliceRandom as _;
use rand::{Rng, SeedableRng as _};
use serde::{Deserialize, Serialize};

use super::DataError;

/// Image dimensions, channels × height × width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Dims {
    pub const fn new(channels: usize, height: usize, width: usize) -> Dims {
        Dims {
            channels,
            height,
            width,
        }
    }
    /// Values per image.
    pub const fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

/// A labelled image set: `pixels` is u8 NCHW (`len() · dims.len()` bytes),
/// `labels[i] < classes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub dims: Dims,
    pub classes: usize,
    /// The file (or directory, for several files) the images came from.
    pub origin: PathBuf,
    /// Each sample's position in its source file(s), so subsets can be
    /// traced back (and the split checked disjoint).
    pub source_index: Vec<usize>,
}

/// The order a pass visits the samples in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// File order (evaluation).
    Sequential,
    /// A permutation fixed by (seed, epoch): every epoch differs, and a rerun
    /// with the same seed repeats them all.
    Shuffled { seed: u64, epoch: u64 },
}

/// An endless shuffled stream of sample indices over a dataset: each pass
/// is the next epoch's [`Order::Shuffled`] permutation, and batches run on
/// across pass boundaries (for training by steps rather than epochs).
#[derive(Debug, Clone)]
pub struct Stream {
    seed: u64,
    epoch: u64,
    pos: usize,
    order: Vec<usize>,
}

impl Stream {
    pub fn new(data: &Dataset, seed: u64) -> Stream {
        Stream {
            seed,
            epoch: 0,
            pos: 0,
            order: data.order(Order::Shuffled { seed, epoch: 0 }),
        }
    }

    /// The next `n` indices of `data` (the dataset the stream was made for).
    pub fn next(&mut self, data: &Dataset, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| {
                if self.pos == self.order.len() {
                    self.epoch += 1;
                    self.pos = 0;
                    self.order = data.order(Order::Shuffled {
                        seed: self.seed,
                        epoch: self.epoch,
                    });
                }
                self.pos += 1;
                self.order[self.pos - 1]
            })
            .collect()
    }
}

/// Random augmentation, drawn per sample in [`Dataset::fill_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Random crop of the image padded by `pad` zero pixels on every side,
    /// i.e. a shift of up to ±pad in each direction.
    pub pad: usize,
    /// Mirror left–right with probability ½ (photos, not digits or text).
    pub flip: bool,
}

/// Per-channel mean and standard deviation of the pixels scaled to [0, 1],
/// fitted on the training split; eval and export must reuse the same one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalization {
    /// Population statistics per channel, accumulated in f64.
    pub fn fit(data: &Dataset) -> Normalization {
        let c = data.dims.channels;
        let plane = data.dims.height * data.dims.width;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for (k, chunk) in data.pixels.chunks_exact(plane).enumerate() {
            // Integer sums are exact; one f64 add per plane.
            let (s, q) = chunk.iter().fold((0u64, 0u64), |(s, q), &v| {
                (s + v as u64, q + (v as u64) * (v as u64))
            });
            sum[k % c] += s as f64;
            sq[k % c] += q as f64;
        }
        let count = (data.len() * plane).max(1) as f64;
        let (mean, std) = (0..c)
            .map(|ch| {
                let m = sum[ch] / count / 255.0;
                let var = (sq[ch] / count / (255.0 * 255.0) - m * m).max(0.0);
                // A constant channel carries no information: leave it
                // centred but unscaled rather than divide by zero.
                let s = if var > 1e-12 { var.sqrt() } else { 1.0 };
                (m as f32, s as f32)
            })
            .unzip();
        Normalization { mean, std }
    }

    /// `(v / 255 − mean) / std` for every byte value, one table per channel.
    fn tables(&self) -> Vec<[f32; 256]> {
        self.mean
            .iter()
            .zip(&self.std)
            .map(|(&m, &s)| std::array::from_fn(|v| (v as f32 / 255.0 - m) / s))
            .collect()
    }
}

/// Sample indices in batches of `size`; the last batch holds the remainder
/// (shorter, never dropped).
#[derive(Debug, Clone)]
pub struct Batches {
    order: Vec<usize>,
    size: usize,
    next: usize,
}

impl Iterator for Batches {
    type Item = Vec<usize>;
    fn next(&mut self) -> Option<Vec<usize>> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.size).min(self.order.len());
        let batch = self.order[self.next..end].to_vec();
        self.next = end;
        Some(batch)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.order.len() - self.next).div_ceil(self.size);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batches {}

impl Dataset {
    pub(crate) fn new(
        pixels: Vec<u8>,
        labels: Vec<u32>,
        dims: Dims,
        classes: usize,
        origin: PathBuf,
    ) -> Dataset {
        let source_index = (0..labels.len()).collect();
        Dataset {
            pixels,
            labels,
            dims,
            classes,
            origin,
            source_index,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`, CHW.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.dims.len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The samples at `indices`, in that order (same dims and classes).
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            pixels: indices
                .iter()
                .flat_map(|&i| self.image(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            dims: self.dims,
            classes: self.classes,
            origin: self.origin.clone(),
            source_index: indices.iter().map(|&i| self.source_index[i]).collect(),
        }
    }

    /// The images are what a model built for `expected` takes.
    pub fn check_dims(&self, expected: Dims) -> Result<(), DataError> {
        if self.dims == expected {
            Ok(())
        } else {
            Err(DataError::DimMismatch {
                origin: self.origin.clone(),
                found: self.dims,
                expected,
            })
        }
    }

    /// Every sample index once, in `order`.
    pub fn order(&self, order: Order) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        if let Order::Shuffled { seed, epoch } = order {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            // Independent ChaCha streams per epoch.
            rng.set_stream(epoch);
            idx.shuffle(&mut rng);
        }
        idx
    }

    /// One pass over the data in batches of `size` (the last one shorter
    /// when `size` does not divide the count).
    ///
    /// # Panics
    /// If `size` is 0.
    pub fn batches(&self, size: usize, order: Order) -> Batches {
        assert!(size > 0, "batch size must be at least 1");
        Batches {
            order: self.order(order),
            size,
            next: 0,
        }
    }

    /// Write the samples at `indices` into a fixed-size batch buffer for one
    /// upload: `out_pixels` gets normalized f32 NCHW, `out_labels` the
    /// labels; the batch capacity is `out_labels.len()`. With `augment`,
    /// each sample gets a random crop of its zero-padded image (zero is the
    /// raw pixel value, padded before normalizing, as torchvision does) and,
    /// if enabled, a random horizontal flip, drawn from `rng` in sample order
    /// (deterministic per rng seed).
    ///
    /// Returns how many rows are real: `indices.len()`. A short final batch
    /// is padded explicitly: rows from the returned count on hold pixels 0.0
    /// and label 0 (a valid class, so GPU kernels stay in bounds) — the
    /// trainer must mask those rows out of the loss, the gradient and the
    /// accuracy, or the padding would count as data.
    ///
    /// # Panics
    /// If `indices` exceed the capacity or the dataset, if `out_pixels` is
    /// not capacity × `dims.len()` long, or if `norm` has another channel
    /// count: all caller bugs, not data errors.
    pub fn fill_batch<R: Rng + ?Sized>(
        &self,
        indices: &[usize],
        norm: &Normalization,
        augment: Option<&Augment>,
        rng: &mut R,
        out_pixels: &mut [f32],
        out_labels: &mut [u32],
    ) -> usize {
        let Dims {
            channels: c,
            height: h,
            width: w,
        } = self.dims;
        let sample = self.dims.len();
        let capacity = out_labels.len();
        assert!(
            indices.len() <= capacity,
            "fill_batch: {} samples for a batch of {capacity}",
            indices.len()
        );
        assert_eq!(
            out_pixels.len(),
            capacity * sample,
            "fill_batch: pixel buffer for {capacity} images of {}",
            self.dims
        );
        assert_eq!(
            norm.mean.len(),
            c,
            "fill_batch: normalization for another channel count"
        );
        let tables = norm.tables();
        for (row, &i) in indices.iter().enumerate() {
            let img = self.image(i);
            let (dy, dx, flip) = match augment {
                Some(a) => {
                    // i64, not isize: rand draws the same numbers on every
                    // platform only for fixed-width integers.
                    let pad = a.pad as i64;
                    let dy = rng.random_range(-pad..=pad) as isize;
                    let dx = rng.random_range(-pad..=pad) as isize;
                    (dy, dx, a.flip && rng.random_bool(0.5))
                }
                None => (0, 0, false),
            };
            let out = &mut out_pixels[row * sample..(row + 1) * sample];
            for ch in 0..c {
                let table = &tables[ch];
                let plane = &img[ch * h * w..(ch + 1) * h * w];
                for y in 0..h {
                    let sy = y as isize + dy;
                    for x in 0..w {
                        let xm = if flip { w - 1 - x } else { x };
                        let sx = xm as isize + dx;
                        let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                        let v = if inside {
                            plane[sy as usize * w + sx as usize]
                        } else {
                            0
                        };
                        out[(ch * h + y) * w + x] = table[v as usize];
                    }
                }
            }
            out_labels[row] = self.labels[i];
        }
        out_pixels[indices.len() * sample..].fill(0.0);
        out_labels[indices.len()..].fill(0);
        indices.len()
    }
}
