//! GPU buffers: `Buf` is a view of 32-bit elements (f32 or u32) in a pooled
//! storage buffer. Buffers return to the pool when the last view drops, so
//! repeated test cases and benchmarks do not churn the allocator.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use super::device::{Gpu, GpuError};

/// Size classes: round up to 256 B, then to 1/8 steps of the next power of
/// two, so at most ~12% is wasted while reuse stays likely.
fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256).next_multiple_of(256);
    let p = b.next_power_of_two();
    let step = (p / 8).max(256);
    b.next_multiple_of(step)
}

#[derive(Default)]
pub(crate) struct BufferPool {
    free: Arc<Mutex<HashMap<u64, Vec<wgpu::Buffer>>>>,
}

/// A pooled wgpu buffer; dropping it hands the buffer back to the pool.
pub struct Pooled {
    buffer: Option<wgpu::Buffer>,
    free: Arc<Mutex<HashMap<u64, Vec<wgpu::Buffer>>>>,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            let size = b.size();
            self.free.lock().unwrap().entry(size).or_default().push(b);
        }
    }
}

impl Pooled {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("live buffer")
    }
}

/// A view of `len` 32-bit elements of a storage buffer, `offset` bytes in
/// (parameters, gradients and optimizer states live side by side in one
/// buffer so that one dispatch updates them all).
#[derive(Clone)]
pub struct Buf {
    pub(crate) mem: Arc<Pooled>,
    pub len: usize,
    pub offset: u64,
}

impl Buf {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.mem.raw()
    }
    pub fn bytes(&self) -> u64 {
        self.len as u64 * 4
    }
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.raw(),
            offset: self.offset,
            // Zero-length tensors still bind one element (never read).
            size: NonZeroU64::new(self.bytes().max(4)),
        })
    }
    /// The first `len` elements of the same buffer (the memory planner's
    /// tenants of a shared slot).
    pub fn view(&self, len: usize) -> Buf {
        assert!(
            len <= self.len,
            "view of {len} elements of a {}-element buffer",
            self.len
        );
        Buf {
            mem: self.mem.clone(),
            len,
            offset: self.offset,
        }
    }
    /// `len` elements starting `at` elements into this view. Bound alone,
    /// `at` must keep the offset a multiple of the adapter's
    /// `min_storage_buffer_offset_alignment`.
    pub fn view_at(&self, at: usize, len: usize) -> Buf {
        assert!(
            at + len <= self.len,
            "view of {len} elements at {at} of a {}-element buffer",
            self.len
        );
        Buf {
            mem: self.mem.clone(),
            len,
            offset: self.offset + at as u64 * 4,
        }
    }
    /// `len` elements from this view's start, which may reach past its own
    /// end (into the buffer's next tenants) but not past the buffer's: a
    /// uniform binding of a fixed size over a shorter tensor, which the
    /// kernel reads only the tensor of.
    pub fn span(&self, len: usize) -> Buf {
        let end = self.offset + len as u64 * 4;
        assert!(
            end <= self.raw().size(),
            "span of {len} elements at byte {} of a {}-byte buffer",
            self.offset,
            self.raw().size()
        );
        Buf {
            mem: self.mem.clone(),
            len,
            offset: self.offset,
        }
    }
    /// The whole underlying buffer as one view, and where this view starts
    /// in it (elements): one dispatch that writes many tensors of one
    /// buffer binds it whole.
    pub fn whole(&self) -> (Buf, usize) {
        let whole = Buf {
            mem: self.mem.clone(),
            len: (self.raw().size() / 4) as usize,
            offset: 0,
        };
        (whole, (self.offset / 4) as usize)
    }
    /// True when both views share one wgpu buffer (a dispatch may not bind
    /// one buffer both read-only and read-write).
    pub fn same_buffer(&self, other: &Buf) -> bool {
        Arc::ptr_eq(&self.mem, &other.mem)
    }
}

/// Places for parts of `lens` side by side in one buffer, each starting at
/// a multiple of `align` elements from `start` on: their offsets and the
/// end of the last (rounded up to `align`).
pub fn place(
    lens: impl IntoIterator<Item = usize>,
    align: usize,
    start: usize,
) -> (Vec<usize>, usize) {
    let mut at = start;
    let offsets = lens
        .into_iter()
        .map(|l| {
            let o = at;
            at = (at + l).next_multiple_of(align);
            o
        })
        .collect();
    (offsets, at)
}

impl Gpu {
    /// The multiple of elements at which a view bound alone must start
    /// (`min_storage_buffer_offset_alignment`, in 4-byte elements).
    pub fn offset_align(&self) -> usize {
        (self.limits.min_storage_buffer_offset_alignment as usize / 4).max(1)
    }

    /// `offset_align` for a view bound as a uniform
    /// (`min_uniform_buffer_offset_alignment`, in 4-byte elements).
    pub fn uniform_offset_align(&self) -> usize {
        (self.limits.min_uniform_buffer_offset_alignment as usize / 4).max(1)
    }

    /// An uninitialised buffer of `len` elements (`name` is for errors).
    pub fn alloc(&self, name: &str, len: usize) -> Result<Buf, GpuError> {
        let bytes = len as u64 * 4;
        let limit = self.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(GpuError::TooLarge {
                name: name.to_string(),
                bytes,
                limit,
                what: "storage binding",
            });
        }
        let class = size_class(bytes).min(limit.max(256));
        let reused = self
            .pool
            .free
            .lock()
            .unwrap()
            .get_mut(&class)
            .and_then(|v| v.pop());
        let buffer = match reused {
            Some(b) => b,
            None => self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: class,
                // Uniform too: a convolution may read its weights through
                // a uniform binding (`Gpu::uniform_weights`).
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        Ok(Buf {
            mem: Arc::new(Pooled {
                buffer: Some(buffer),
                free: self.pool.free.clone(),
            }),
            len,
            offset: 0,
        })
    }

    pub fn upload(&self, name: &str, data: &[f32]) -> Result<Buf, GpuError> {
        let b = self.alloc(name, data.len())?;
        self.write(&b, data);
        Ok(b)
    }

    pub fn upload_u32(&self, name: &str, data: &[u32]) -> Result<Buf, GpuError> {
        let b = self.alloc(name, data.len())?;
        if !data.is_empty() {
            self.queue
                .write_buffer(b.raw(), b.offset, bytemuck::cast_slice(data));
        }
        Ok(b)
    }

    /// A buffer filled with NaN: tests poison outputs so that an element a
    /// kernel forgets to write fails the comparison.
    pub fn poisoned(&self, name: &str, len: usize) -> Result<Buf, GpuError> {
        self.upload(name, &vec![f32::NAN; len])
    }

    pub fn zeros(&self, name: &str, len: usize) -> Result<Buf, GpuError> {
        self.upload(name, &vec![0.0; len])
    }

    pub fn write(&self, b: &Buf, data: &[f32]) {
        assert_eq!(b.len, data.len(), "write size mismatch");
        if !data.is_empty() {
            self.queue
                .write_buffer(b.raw(), b.offset, bytemuck::cast_slice(data));
        }
    }

    /// Copy a buffer back to the host (waits for the GPU).
    pub fn read(&self, b: &Buf) -> Result<Vec<f32>, GpuError> {
        Ok(bytemuck::cast_slice(&self.read_words(&[b])?).to_vec())
    }

    /// Copy several buffers back with one staging buffer, one submit and
    /// one wait (a plan's trained parameters: `read` per tensor waits for
    /// the GPU once per tensor).
    pub fn read_many(&self, bufs: &[&Buf]) -> Result<Vec<Vec<f32>>, GpuError> {
        let words = self.read_words(bufs)?;
        let all: &[f32] = bytemuck::cast_slice(&words);
        let mut at = 0;
        Ok(bufs
            .iter()
            .map(|b| {
                at += b.len;
                all[at - b.len..at].to_vec()
            })
            .collect())
    }

    pub fn read_u32(&self, b: &Buf) -> Result<Vec<u32>, GpuError> {
        self.read_words(&[b])
    }

    /// The 32-bit words of `bufs`, one after the other, through one
    /// staging buffer. Words, not bytes: a Vec<u8> need not be aligned for
    /// a cast to f32 (the mapped range is).
    fn read_words(&self, bufs: &[&Buf]) -> Result<Vec<u32>, GpuError> {
        let total: u64 = bufs.iter().map(|b| b.bytes()).sum();
        if total == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut at = 0;
        for b in bufs.iter().filter(|b| b.len > 0) {
            enc.copy_buffer_to_buffer(b.raw(), b.offset, &staging, at, b.bytes());
            at += b.bytes();
        }
        self.queue.submit([enc.finish()]);
        self.read_staging(&staging)
    }

    /// The contents of a MAP_READ buffer once the queue's work is done, as
    /// `T`s (maps it, waits, copies out, unmaps).
    pub(crate) fn read_staging<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
    ) -> Result<Vec<T>, GpuError> {
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.sync()?;
        rx.recv()
            .map_err(|e| GpuError::Lost(e.to_string()))?
            .map_err(|e| GpuError::Lost(e.to_string()))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Lost(e.to_string()))?;
        let out: Vec<T> = bytemuck::pod_collect_to_vec(&view);
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
