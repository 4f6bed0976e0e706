//! The recorded step: buffers planned and kernels (pipelines, bind groups,
//! uniforms) built once per graph; each step re-encodes that fixed list
//! into one command encoder and submits once. Nothing is read back inside
//! a step.

use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use super::ir::{Graph, Node, Op, T};
use super::planner::{self, Lifetime, MemoryPlan};
use crate::engine::dispatch_log::DispatchLog;
use crate::engine::{place, Buf, Gpu, GpuError, Kernel};
use crate::ops::conv2d_rows::{self, Direction};
use crate::ops::matmul::MatmulKernel;
use crate::ops::{
    affine_scaling, batchnorm, conv2d, elementwise as ew, layout, loss, matmul, mix, mix_bn, optim,
    pool, softmax_xent,
};

/// One entry point's share of a profiled plan ([`Plan::profile`]).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ProfileRow {
    /// "shader::entry", or a generated module's name.
    pub entry: String,
    pub dispatches: usize,
    /// Workgroups over all its dispatches: divided by `dispatches`, how
    /// much of a GPU one dispatch can fill.
    pub workgroups: u64,
    pub seconds: f64,
}

impl ProfileRow {
    /// Rows summed per entry point, costliest first.
    pub fn merge(rows: impl IntoIterator<Item = ProfileRow>) -> Vec<ProfileRow> {
        let mut by: std::collections::BTreeMap<String, ProfileRow> = Default::default();
        for r in rows {
            let e = by.entry(r.entry.clone()).or_insert_with(|| ProfileRow {
                entry: r.entry.clone(),
                ..Default::default()
            });
            e.dispatches += r.dispatches;
            e.workgroups += r.workgroups;
            e.seconds += r.seconds;
        }
        let mut v: Vec<_> = by.into_values().collect();
        v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        v
    }
}

pub struct Plan {
    bufs: Vec<Buf>,
    kernels: Vec<Kernel>,
    node_kernels: Vec<Range<usize>>,
    pub memory: MemoryPlan,
    /// Bytes of tensors that own their buffers (params, states, inputs).
    pub persistent_bytes: u64,
    /// Bytes the kernels hold privately: weight-gradient partials, weight
    /// copies, uniforms.
    pub kernel_bytes: u64,
}

/// Tensors laid out side by side in one buffer, each at an offset aligned
/// for binding alone: the gradients, parameters and optimizer states of a
/// multi-tensor update (`Op::Sgd`, `Op::Adam`), one list per role, so that
/// the update and the clipping norm over the gradients are one dispatch
/// each instead of one (or two) per tensor. Padding between members stays
/// zero, which every update keeps at zero. A list is left out (its node
/// falls back to a dispatch per tensor) when a tensor is in two lists, when
/// a live node reads one member and writes another (a dispatch may not bind
/// one buffer read-only and read-write), or when it would exceed
/// `max_bytes` as one binding.
pub fn arenas(g: &Graph, max_bytes: u64, align: usize) -> Vec<Vec<T>> {
    let live = g.live_nodes();
    let mut lists: Vec<Vec<T>> = Vec::new();
    for (node, _) in g.nodes.iter().zip(&live).filter(|(_, l)| **l) {
        let roles = match node.op {
            Op::Sgd(_) => 2,
            Op::Adam(_) => 3,
            _ => continue,
        };
        let n = node.inputs.len() - 1;
        if n < 2 {
            continue;
        }
        lists.push(node.inputs[..n].to_vec());
        for r in 0..roles {
            lists.push(node.outputs[r * n..(r + 1) * n].to_vec());
        }
    }
    let mut count: std::collections::HashMap<T, usize> = Default::default();
    for t in lists.iter().flatten() {
        *count.entry(*t).or_default() += 1;
    }
    lists.retain(|l| l.iter().all(|t| count[t] == 1));
    lists.retain(|l| arena_layout(g, l, align).1 as u64 * 4 <= max_bytes);
    let mut arena_of: std::collections::HashMap<T, usize> = Default::default();
    for (a, l) in lists.iter().enumerate() {
        for t in l {
            arena_of.insert(*t, a);
        }
    }
    let mut conflicted = vec![false; lists.len()];
    for (node, _) in g.nodes.iter().zip(&live).filter(|(_, l)| **l) {
        for i in &node.inputs {
            if let Some(&a) = arena_of.get(i) {
                conflicted[a] |= node.outputs.iter().any(|o| arena_of.get(o) == Some(&a));
            }
        }
    }
    lists
        .into_iter()
        .zip(conflicted)
        .filter(|(_, c)| !c)
        .map(|(l, _)| l)
        .collect()
}

/// Each member's offset in its arena (elements), and the arena's length.
fn arena_layout(g: &Graph, members: &[T], align: usize) -> (Vec<usize>, usize) {
    let (offsets, end) = place(members.iter().map(|&t| g.len(t)), align, 0);
    (offsets, end.max(1))
}

/// Where the graph's temporaries live (no device needed): what a `Plan`
/// allocates, so memory can be compared without building one. Gradients
/// that go to an arena are not shared by lifetime (see [`arenas`]; the
/// alignment assumed here, 256 bytes, is WebGPU's default).
pub fn memory_plan(g: &Graph) -> MemoryPlan {
    memory_plan_with(g, &arenas(g, u64::MAX, 64))
}

fn memory_plan_with(g: &Graph, arenas: &[Vec<T>]) -> MemoryPlan {
    let mut lifetimes: Vec<Option<Lifetime>> = g
        .temp_lifetimes()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            l.map(|(first, last)| Lifetime {
                first,
                last,
                bytes: g.tensors[i].len() as u64 * 4,
            })
        })
        .collect();
    for t in arenas.iter().flatten() {
        lifetimes[t.0] = None;
    }
    planner::plan(&lifetimes)
}

/// How a [`Plan`] is built where the defaults are not wanted (tests).
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Elements of the buffer in which weight gradients' partial sums wait
    /// for their batched pass 2 on CPU adapters (see `Partials`); at least
    /// the largest one's.
    pub batched_partials: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            batched_partials: BATCHED_PARTIALS,
        }
    }
}

impl Plan {
    pub fn new(gpu: &Gpu, g: &Graph) -> Result<Plan, GpuError> {
        Plan::with_options(gpu, g, PlanOptions::default())
    }

    pub fn with_options(gpu: &Gpu, g: &Graph, options: PlanOptions) -> Result<Plan, GpuError> {
        Plan::assemble(gpu, g, options, &[])
    }

    /// A plan whose inputs `bound` read the given buffers instead of
    /// their own: another plan's results, used where they lie, with no copy
    /// (S2's cells read the network's cell-invariant tensors, computed once).
    /// Writing such an input writes the buffer it was bound to. The buffers
    /// must be `gpu`'s: wgpu cannot bind another device's (it panics).
    pub fn with_bound_inputs(gpu: &Gpu, g: &Graph, bound: &[(T, Buf)]) -> Result<Plan, GpuError> {
        for (t, b) in bound {
            let d = g.def(*t);
            let message = if !g.is_input(*t) {
                format!("{} is not an input of the graph", d.name)
            } else if b.len != d.len() {
                format!("{} has {} elements, its buffer {}", d.name, d.len(), b.len)
            } else {
                continue;
            };
            return Err(GpuError::Validation {
                context: "bound input".into(),
                message,
            });
        }
        Plan::assemble(gpu, g, PlanOptions::default(), bound)
    }

    fn assemble(
        gpu: &Gpu,
        g: &Graph,
        options: PlanOptions,
        bound: &[(T, Buf)],
    ) -> Result<Plan, GpuError> {
        g.validate().map_err(|message| GpuError::Validation {
            context: "graph".into(),
            message,
        })?;
        let align = gpu.offset_align();
        let arena_lists = arenas(g, gpu.limits.max_storage_buffer_binding_size, align);
        let memory = memory_plan_with(g, &arena_lists);
        let slots: Vec<Buf> = memory
            .slot_bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| gpu.alloc(&format!("slot{i}"), (b / 4) as usize))
            .collect::<Result<_, _>>()?;
        let mut persistent_bytes = 0;
        let mut bufs: Vec<Option<Buf>> = vec![None; g.tensors.len()];
        for (t, b) in bound {
            bufs[t.0] = Some(b.clone());
        }
        let mut arena_bufs = Vec::with_capacity(arena_lists.len());
        for (a, members) in arena_lists.iter().enumerate() {
            let (offsets, len) = arena_layout(g, members, align);
            let mut init = vec![0.0; len];
            for (&t, &o) in members.iter().zip(&offsets) {
                if let Some(v) = &g.def(t).init {
                    init[o..o + v.len()].copy_from_slice(v);
                }
            }
            let arena = gpu.upload(&format!("arena{a}"), &init)?;
            persistent_bytes += len as u64 * 4;
            for (&t, &o) in members.iter().zip(&offsets) {
                bufs[t.0] = Some(arena.view_at(o, g.len(t)));
            }
            arena_bufs.push(arena);
        }
        // Temps only dead nodes touch get no memory (they are never bound).
        let unused = gpu.alloc("unused", 1)?;
        for (i, d) in g.tensors.iter().enumerate() {
            if bufs[i].is_some() {
                continue;
            }
            bufs[i] = Some(match memory.slot_of[i] {
                Some(s) => slots[s].view(d.len()),
                None if g.is_planned(T(i)) => unused.clone(),
                None => {
                    persistent_bytes += d.len() as u64 * 4;
                    match &d.init {
                        Some(v) => gpu.upload(&d.name, v)?,
                        None => gpu.zeros(&d.name, d.len())?,
                    }
                }
            });
        }
        let bufs: Vec<Buf> = bufs.into_iter().map(|b| b.expect("placed")).collect();
        // The arena holding exactly `ts`, in order.
        let whole = |ts: &[T]| -> Option<&Buf> {
            let a = arena_lists.iter().position(|l| l.as_slice() == ts)?;
            Some(&arena_bufs[a])
        };
        let mm = MatmulKernel::default_for(gpu);
        let mut kernels = Vec::new();
        let live = g.live_nodes();
        let mut copies = conv2d::WeightCopies::default();
        let partial_lens: Vec<usize> = g
            .nodes
            .iter()
            .zip(&live)
            .filter_map(|(n, &l)| match &n.op {
                Op::Conv2dBackwardWeight(s) if l => Some(conv2d::weight_partial_len(gpu, s)),
                _ => None,
            })
            .collect();
        let mut partials = Partials::new(gpu, &partial_lens, options.batched_partials)?;
        let mut ahead = copies_ahead(gpu, g, &live, &bufs)?.into_iter().peekable();
        let mut node_kernels: Vec<Range<usize>> = Vec::with_capacity(g.nodes.len());
        // The last live node: a batched pass 2 counts as its dispatch.
        let mut last_live: Option<usize> = None;
        for (node, live) in g.nodes.iter().zip(live) {
            if !live {
                node_kernels.push(kernels.len()..kernels.len());
                continue;
            }
            // Gradients whose pass 2 waits in a batch are summed before
            // anything reads them.
            if node.inputs.iter().any(|t| partials.pending(*t)) {
                kernels.extend(partials.flush(gpu)?);
                if let Some(n) = last_live {
                    node_kernels[n].end = kernels.len();
                }
            }
            last_live = Some(node_kernels.len());
            let start = kernels.len();
            while let Some(batch) = ahead.next_if(|b| b.before <= node_kernels.len()) {
                kernels.extend(batch.kernels);
                for (t, layout, copy) in batch.copies {
                    copies.insert(t.0, layout, copy);
                }
            }
            let (ins, outs) = match flatten(&node.op, &node.inputs, &node.outputs, &bufs, &whole) {
                Some(io) => io,
                None => (
                    node.inputs.iter().map(|t| &bufs[t.0]).collect(),
                    node.outputs.iter().map(|t| &bufs[t.0]).collect(),
                ),
            };
            match &node.op {
                Op::Conv2dBackwardWeight(s) => {
                    let dw = node.outputs[0];
                    kernels.extend(partials.weight_gradient(gpu, s, ins[0], ins[1], outs[0], dw)?);
                }
                _ => kernels.extend(build(gpu, node, &ins, &outs, mm, &mut copies)?),
            }
            for t in &node.outputs {
                copies.forget(t.0);
            }
            node_kernels.push(start..kernels.len());
        }
        kernels.extend(partials.flush(gpu)?);
        if let Some(n) = last_live {
            node_kernels[n].end = kernels.len();
        }
        let mut known: std::collections::HashSet<usize> =
            bufs.iter().map(|b| Arc::as_ptr(&b.mem) as usize).collect();
        let kernel_bytes = kernels.iter().map(|k| k.private_bytes(&mut known)).sum();
        Ok(Plan {
            bufs,
            kernels,
            node_kernels,
            memory,
            persistent_bytes,
            kernel_bytes,
        })
    }

    /// One step: every kernel, one encoder, one submit.
    pub fn step(&self, gpu: &Gpu) -> Result<(), GpuError> {
        gpu.run(&self.kernels)
    }

    /// One step encoded, not submitted (the benchmark times what recording
    /// costs the host each step).
    pub fn encode(&self, gpu: &Gpu) -> wgpu::CommandBuffer {
        gpu.encode(&self.kernels)
    }

    /// One step's GPU time by timestamps (`None` without timestamp
    /// queries).
    pub fn gpu_seconds(&self, gpu: &Gpu) -> Result<Option<f64>, GpuError> {
        gpu.gpu_seconds(&self.kernels)
    }

    /// The same work with one submit per node (for the benchmark that
    /// measures what recording saves).
    pub fn step_per_node(&self, gpu: &Gpu) -> Result<(), GpuError> {
        for r in &self.node_kernels {
            gpu.run(&self.kernels[r.clone()])?;
        }
        Ok(())
    }

    /// Where a step's time goes, summed per entry point as (entry,
    /// dispatches, seconds), costliest first: each dispatch's GPU time by
    /// timestamps where the adapter has them, else each dispatch submitted
    /// and waited for alone (the syncs add a little per dispatch, so read
    /// the shares, not the total). Under `GRADNAS_DISPATCH_LOG` always
    /// alone, each window logged (`engine::dispatch_log`).
    pub fn profile(&self, gpu: &Gpu) -> Result<Vec<ProfileRow>, GpuError> {
        let mut log = DispatchLog::from_env();
        let stamps = match log {
            Some(_) => None,
            None => gpu.dispatch_gpu_seconds(&self.kernels)?,
        };
        let times = match stamps {
            Some(t) => t,
            None => {
                let mut t = Vec::with_capacity(self.kernels.len());
                for k in &self.kernels {
                    let (start, wall) = (std::time::Instant::now(), SystemTime::now());
                    gpu.run(std::slice::from_ref(k))?;
                    gpu.sync()?;
                    t.push(start.elapsed().as_secs_f64());
                    if let Some(log) = &mut log {
                        log.record(&k.name, wall, SystemTime::now());
                    }
                }
                if let Some(log) = log {
                    log.finish()?;
                }
                t
            }
        };
        Ok(ProfileRow::merge(self.kernels.iter().zip(times).map(
            |(k, t)| ProfileRow {
                entry: k.name.clone(),
                dispatches: 1,
                workgroups: k.groups.iter().map(|&g| g as u64).product::<u64>(),
                seconds: t,
            },
        )))
    }

    /// The recorded dispatches, in order.
    pub fn kernels(&self) -> &[Kernel] {
        &self.kernels
    }

    pub fn dispatches(&self) -> usize {
        self.kernels.len()
    }

    /// The dispatches node `node` records (0 for a dead node).
    pub fn node_dispatches(&self, node: usize) -> usize {
        self.node_kernels[node].len()
    }

    pub fn buf(&self, t: T) -> &Buf {
        &self.bufs[t.0]
    }
    pub fn write(&self, gpu: &Gpu, t: T, data: &[f32]) {
        gpu.write(&self.bufs[t.0], data);
    }
    pub fn write_u32(&self, gpu: &Gpu, t: T, data: &[u32]) {
        let b = &self.bufs[t.0];
        assert_eq!(b.len, data.len(), "write size");
        gpu.queue
            .write_buffer(b.raw(), b.offset, bytemuck::cast_slice(data));
    }
    /// Read a tensor back (waits for the GPU). Planned temps are only
    /// meaningful if pinned; others may have been overwritten.
    pub fn read(&self, gpu: &Gpu, t: T) -> Result<Vec<f32>, GpuError> {
        gpu.read(&self.bufs[t.0])
    }

    /// Read several tensors back in one wait (see [`Plan::read`]).
    pub fn read_many(&self, gpu: &Gpu, ts: &[T]) -> Result<Vec<Vec<f32>>, GpuError> {
        let bufs: Vec<&Buf> = ts.iter().map(|t| &self.bufs[t.0]).collect();
        gpu.read_many(&bufs)
    }

    /// Copy tensors from another plan on the GPU, `(ours, theirs)` pairs of
    /// equal size (trained weights into an evaluation plan), one submit.
    pub fn copy_from(&self, gpu: &Gpu, src: &Plan, pairs: &[(T, T)]) {
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("copy"),
            });
        for &(dst, from) in pairs {
            let (d, s) = (&self.bufs[dst.0], &src.bufs[from.0]);
            assert_eq!(d.len, s.len, "copy between tensors of different sizes");
            enc.copy_buffer_to_buffer(s.raw(), s.offset, d.raw(), d.offset, s.bytes());
        }
        gpu.queue.submit([enc.finish()]);
    }

    /// Re-upload the hyperparameters of the optimizer nodes from `g` (after
    /// a schedule changed them there).
    pub fn sync_hyperparameters(&self, gpu: &Gpu, g: &Graph) {
        for (i, node) in g.nodes.iter().enumerate() {
            let words = match &node.op {
                Op::Sgd(h) => optim::sgd_params(h),
                Op::Adam(h) => optim::adam_params(h),
                Op::AffineScaling { h, .. } => affine_scaling::params(h),
                _ => continue,
            };
            for k in &self.kernels[self.node_kernels[i].clone()] {
                k.set_params(gpu, &words);
            }
        }
    }
}

/// A multi-tensor node's buffers when the lists it takes are arenas: the
/// update over (grads, coef) → (params, states…) as if of one tensor, a
/// norm over one tensor. None: bind the tensors one by one.
fn flatten<'a>(
    op: &Op,
    inputs: &[T],
    outputs: &[T],
    bufs: &'a [Buf],
    whole: &dyn Fn(&[T]) -> Option<&'a Buf>,
) -> Option<(Vec<&'a Buf>, Vec<&'a Buf>)> {
    match op {
        Op::Sgd(_) | Op::Adam(_) => {
            let n = inputs.len() - 1;
            let grads = whole(&inputs[..n])?;
            let outs = outputs
                .chunks(n)
                .map(whole)
                .collect::<Option<Vec<&Buf>>>()?;
            Some((vec![grads, &bufs[inputs[n].0]], outs))
        }
        Op::ClipCoef { .. } | Op::ScaledNorm { .. } => {
            Some((vec![whole(inputs)?], vec![&bufs[outputs[0].0]]))
        }
        _ => None,
    }
}

fn one(k: Kernel) -> Vec<Kernel> {
    vec![k]
}

/// Tap-major weight copies written ahead (`conv2d::CopyBatch`): the
/// dispatches that run before node `before` and the copies they make
/// (weight tensor, layout, buffer), for the plan's `WeightCopies`.
struct CopiesAhead {
    before: usize,
    kernels: Vec<Kernel>,
    copies: Vec<(T, String, Buf)>,
}

/// Every tap-major weight copy the plan's convolutions read, written
/// before the first reader as early as it can be, right after the last
/// node that writes the weights (or at the start): a copy per convolution
/// was a dispatch of its own (the search step's 1,050), while the copies
/// of one module whose weights lie in one buffer take one dispatch. The
/// copies share one buffer. Convolutions share a copy until a node writes
/// its weights, as `WeightCopies` has them; one whose copy is not here
/// writes its own. Empty when the copies would not fit one binding.
fn copies_ahead(
    gpu: &Gpu,
    g: &Graph,
    live: &[bool],
    bufs: &[Buf],
) -> Result<Vec<CopiesAhead>, GpuError> {
    let mut valid: std::collections::HashSet<(T, String)> = Default::default();
    let mut written: std::collections::HashMap<T, usize> = Default::default();
    let mut needs = Vec::new();
    for (n, node) in g.nodes.iter().enumerate().filter(|(n, _)| live[*n]) {
        let read = match &node.op {
            Op::Conv2d { s, .. } => Some((node.inputs[1], s, Direction::Forward)),
            Op::Conv2dBackwardInput(s) => Some((node.inputs[0], s, Direction::InputGradient)),
            _ => None,
        };
        let need = read.and_then(|(w, s, dir)| Some((w, conv2d_rows::weight_copy(gpu, s, dir)?)));
        if let Some((w, need)) = need {
            if valid.insert((w, need.layout.clone())) {
                needs.push((written.get(&w).copied().unwrap_or(0), w, need));
            }
        }
        for &o in &node.outputs {
            valid.retain(|(t, _)| *t != o);
            written.insert(o, n + 1);
        }
    }
    let (at, total) = conv2d_rows::place_copies(gpu, needs.iter().map(|(.., c)| c.len), 0);
    if needs.is_empty() || total as u64 * 4 > gpu.limits.max_storage_buffer_binding_size {
        return Ok(Vec::new());
    }
    let arena = gpu.alloc("conv2d.weights4", total)?;
    // Per node: its batches and the copies they make.
    let mut by_node: std::collections::BTreeMap<usize, (Vec<conv2d::CopyBatch>, Vec<_>)> =
        Default::default();
    for ((before, w, need), at) in needs.into_iter().zip(at) {
        let copy = arena.view_at(at, need.len);
        let (batches, copies) = by_node.entry(before).or_default();
        conv2d::CopyBatch::join(batches, &need, &bufs[w.0], &copy);
        copies.push((w, need.layout, copy));
    }
    by_node
        .into_iter()
        .map(|(before, (batches, copies))| {
            let kernels = batches
                .into_iter()
                .map(|b| b.kernel(gpu))
                .collect::<Result<_, _>>()?;
            Ok(CopiesAhead {
                before,
                kernels,
                copies,
            })
        })
        .collect()
}

/// Where a plan's weight gradients put their partial sums (pass 1) and
/// how they are added up (pass 2). On a GPU (`Gpu::wide`), one scratch
/// buffer as long as the largest, each pass 2 right after its pass 1 (the
/// partials are dead then). On CPU adapters, where a pass 2 is a dispatch
/// of a few workgroups and lavapipe spends ~35 µs on each, pass 1 writes
/// into the next free part of a larger buffer and the pass 2s wait in a
/// [`conv2d::FinishBatch`], one dispatch for all of them, run before
/// anything reads one of its gradients, when the buffer is full, when a
/// gradient lies in another buffer than the batch's (they must share
/// one), and at the end: the search step's 1,653 pass 2s become 6.
enum Partials {
    None,
    Scratch(Buf),
    Batched {
        buf: Buf,
        /// Elements of `buf` in use, and the alignment of each part.
        used: usize,
        align: usize,
        batch: Option<conv2d::FinishBatch>,
        pending: std::collections::HashSet<T>,
    },
}

/// Elements of the batched partial-sum buffer when the plan's partials
/// add up to more (and no single one is longer): 16 MB, against the 89 MB
/// all of the search step's would take.
const BATCHED_PARTIALS: usize = 1 << 22;

impl Partials {
    fn new(gpu: &Gpu, lens: &[usize], budget: usize) -> Result<Partials, GpuError> {
        let Some(&largest) = lens.iter().max() else {
            return Ok(Partials::None);
        };
        if gpu.wide {
            return Ok(Partials::Scratch(gpu.alloc("conv2d.dw_partials", largest)?));
        }
        let align = gpu.offset_align();
        let total: usize = lens.iter().map(|l| l.next_multiple_of(align)).sum();
        let len = total.min(budget.max(largest.next_multiple_of(align)));
        Ok(Partials::Batched {
            buf: gpu.alloc("conv2d.dw_partials", len)?,
            used: 0,
            align,
            batch: None,
            pending: Default::default(),
        })
    }

    /// Whether `t` is a gradient whose pass 2 has not run yet.
    fn pending(&self, t: T) -> bool {
        matches!(self, Partials::Batched { pending, .. } if pending.contains(&t))
    }

    /// The batch's one dispatch, if it holds anything; the buffer is free
    /// again after it.
    fn flush(&mut self, gpu: &Gpu) -> Result<Vec<Kernel>, GpuError> {
        let Partials::Batched {
            used,
            batch,
            pending,
            ..
        } = self
        else {
            return Ok(Vec::new());
        };
        *used = 0;
        pending.clear();
        match batch.take() {
            Some(b) if !b.is_empty() => Ok(vec![b.kernel(gpu)?]),
            _ => Ok(Vec::new()),
        }
    }

    /// The kernels of weight gradient `t` (buffer `dw`) of `s` from x, dy.
    fn weight_gradient(
        &mut self,
        gpu: &Gpu,
        s: &conv2d::Conv2dShape,
        x: &Buf,
        dy: &Buf,
        dw: &Buf,
        t: T,
    ) -> Result<Vec<Kernel>, GpuError> {
        let len = conv2d::weight_partial_len(gpu, s);
        let mut kernels = Vec::new();
        if let Partials::Batched {
            buf, used, batch, ..
        } = self
        {
            let full = *used + len > buf.len;
            let elsewhere = batch.as_ref().is_some_and(|b| !b.takes(dw));
            if full || elsewhere {
                kernels.extend(self.flush(gpu)?);
            }
        }
        match self {
            Partials::None => unreachable!("a plan with weight gradients has partials"),
            Partials::Scratch(b) => {
                kernels.extend(conv2d::backward_weight_shared(gpu, s, x, dy, dw, Some(b))?)
            }
            Partials::Batched {
                buf,
                used,
                align,
                batch,
                pending,
            } => {
                let partial = buf.view_at(*used, len);
                *used = (*used + len).next_multiple_of(*align).min(buf.len);
                kernels.push(conv2d::backward_weight_partials(gpu, s, x, dy, &partial)?);
                batch
                    .get_or_insert_with(|| conv2d::FinishBatch::new(dw, buf))
                    .push(gpu, s, &partial, dw);
                pending.insert(t);
            }
        }
        Ok(kernels)
    }
}

/// The kernels of one node; argument orders as documented on `Op`. The
/// convolutions share their weights' copies, keyed by the weight tensor
/// (the caller forgets a tensor's copies once a node writes it).
fn build(
    gpu: &Gpu,
    node: &Node,
    i: &[&Buf],
    o: &[&Buf],
    mm: MatmulKernel,
    copies: &mut conv2d::WeightCopies,
) -> Result<Vec<Kernel>, GpuError> {
    let opt = |k: usize, present: bool| present.then(|| i[k]);
    let w = |k: usize| node.inputs[k].0;
    Ok(match &node.op {
        Op::Conv2d { s, bias, relu } => {
            let shared = Some((copies, w(1)));
            conv2d::forward_shared(gpu, s, i[0], i[1], opt(2, *bias), o[0], shared, *relu)?
        }
        Op::Conv2dBackwardInput(s) => {
            let shared = Some((copies, w(0)));
            conv2d::backward_input_shared(gpu, s, i[0], i[1], o[0], shared)?
        }
        Op::Conv2dBackwardWeight(_) => unreachable!("built by Partials::weight_gradient"),
        Op::Conv2dBackwardBias(s) => one(conv2d::backward_bias(gpu, s, i[0], o[0])?),
        Op::Relu => one(ew::relu_forward(gpu, i[0], o[0])?),
        Op::ReluBackward => one(ew::relu_backward(gpu, i[0], i[1], o[0])?),
        Op::Add => one(ew::sum_forward(gpu, i, o[0])?),
        Op::Reshape => one(ew::copy_scaled(gpu, i[0], o[0], 1.0)?),
        Op::Sigmoid => one(ew::sigmoid_forward(gpu, i[0], o[0])?),
        Op::SigmoidBackward => one(ew::sigmoid_backward(gpu, i[0], i[1], o[0])?),
        Op::Tanh => one(ew::tanh_forward(gpu, i[0], o[0])?),
        Op::TanhBackward => one(ew::tanh_backward(gpu, i[0], i[1], o[0])?),
        Op::Mul => one(ew::mul_forward(gpu, i[0], i[1], o[0])?),
        Op::MulBackward => one(ew::mul_backward(gpu, i[0], i[1], i[2], o[0], o[1])?),
        Op::RowScale => one(ew::row_scale_forward(gpu, i[0], i[1], o[0])?),
        Op::RowScaleBackwardScale { .. } => {
            one(ew::row_scale_backward_scale(gpu, i[0], i[1], o[0])?)
        }
        Op::Concat(s) => layout::concat_forward(gpu, s, i, o[0])?,
        Op::ConcatSums { s, addends } => layout::concat_sums_forward(gpu, s, addends, i, o[0])?,
        Op::Split(s) => layout::split_forward(gpu, s, i[0], o)?,
        Op::Slice { s, relu } => one(layout::slice_forward(gpu, s, *relu, i[0], o[0])?),
        Op::SliceBackward(s) => one(layout::slice_backward(gpu, s, i[0], o[0])?),
        Op::WeightedSum(s) => mix::forward(gpu, s, &i[..s.k], i[s.k], o[0])?,
        Op::WeightedSumBackwardInputs(s) => mix::backward_inputs(gpu, s, i[0], i[1], o)?,
        Op::WeightedSumBackwardWeights(s) => {
            mix::backward_weights(gpu, s, &i[..s.k], i[s.k], o[0])?
        }
        Op::WeightedSumBackwardInput { s, k } => mix::backward_input(gpu, s, *k, i[0], i[1], o[0])?,
        Op::MixBnForward { s, norm } => mix_bn::forward(gpu, s, norm, &i[..s.k], i[s.k + 1], o[0])?,
        Op::MixChannelDot { s, norm } => {
            let (xs, rest) = i.split_at(s.k);
            mix_bn::channel_dot(gpu, s, norm, xs, rest[0], rest[1], o[0], o[1])?
        }
        Op::MixBnBackward { s, ks } => {
            let (zs, rest) = i.split_at(ks.len());
            one(mix_bn::bn_backward(
                gpu, s, ks, zs, rest[0], rest[1], rest[2], o,
            )?)
        }
        Op::FoldBatchNorm {
            s,
            per,
            c_off,
            bias,
        } => {
            let at = usize::from(*bias);
            let affine = |j: usize| s.affine.then(|| i[j + at]);
            one(batchnorm::fold(
                gpu,
                s,
                *per,
                *c_off,
                i[0],
                bias.then(|| i[1]),
                i[1 + at],
                i[2 + at],
                affine(3),
                affine(4),
                o[0],
                o[1],
            )?)
        }
        Op::BatchNormStats { s, st } => one(batchnorm::train_stats(
            gpu, s, *st, i[0], i[1], o[0], o[1], o[2],
        )?),
        Op::Softmax(s) => one(softmax_xent::softmax_forward(gpu, s, i[0], o[0])?),
        Op::SoftmaxBackward(s) => one(softmax_xent::softmax_backward(gpu, s, i[0], i[1], o[0])?),
        Op::L1Loss => loss::l1_forward(gpu, i[0], i[1], o[0])?,
        Op::L1LossBackward => one(loss::l1_backward(gpu, i[0], i[1], i[2], o[0])?),
        Op::BatchNormTrain(s) => one(batchnorm::train_forward(
            gpu,
            s,
            i[0],
            opt(1, s.affine),
            opt(2, s.affine),
            o[0],
            o[1],
            o[2],
            o[3],
            o[4],
        )?),
        Op::BatchNormTrainBackward(s) => one(batchnorm::train_backward(
            gpu,
            s,
            i[0],
            i[1],
            i[2],
            opt(3, s.affine),
            i[i.len() - 1],
            o[0],
            s.affine.then(|| o[1]),
            s.affine.then(|| o[2]),
        )?),
        Op::BatchNormEval(s) => one(batchnorm::eval_forward(
            gpu,
            s,
            i[0],
            i[1],
            i[2],
            opt(3, s.affine),
            opt(4, s.affine),
            o[0],
        )?),
        Op::MaxPool(s) => one(pool::max_pool_forward(gpu, s, i[0], o[0], o[1])?),
        Op::MaxPoolBackward(s) => one(pool::max_pool_backward(gpu, s, i[0], i[1], o[0])?),
        Op::AvgPool(s) => one(pool::avg_pool_forward(gpu, s, i[0], o[0])?),
        Op::PoolBatchNorm { pool: s, kind, bn } => {
            let affine = bn.affine.then(|| (i[3], i[4]));
            let stats = (i[1], i[2]);
            one(pool::pool_bn_forward(
                gpu, s, *kind, bn, i[0], stats, affine, o[0],
            )?)
        }
        Op::AvgPoolBackward(s) => one(pool::avg_pool_backward(gpu, s, i[0], o[0])?),
        Op::GlobalAvgPool { hw } => one(pool::global_avg_pool_forward(gpu, i[0], *hw, o[0])?),
        Op::GlobalAvgPoolBackward { hw } => {
            one(pool::global_avg_pool_backward(gpu, i[0], *hw, o[0])?)
        }
        Op::Linear { s, bias } => one(matmul::linear_forward(
            gpu,
            s,
            mm,
            i[0],
            i[1],
            opt(2, *bias),
            o[0],
        )?),
        Op::LinearBackwardInput(s) => {
            one(matmul::linear_backward_input(gpu, s, mm, i[0], i[1], o[0])?)
        }
        Op::LinearBackwardWeight(s) => one(matmul::linear_backward_weight(
            gpu, s, mm, i[0], i[1], o[0],
        )?),
        Op::LinearBackwardBias(s) => one(matmul::linear_backward_bias(gpu, s, i[0], o[0])?),
        Op::LogSoftmaxXent(s) => {
            softmax_xent::log_softmax_xent_forward(gpu, s, i[0], i[1], o[1], o[0])?
        }
        Op::LogSoftmaxXentBackward(s) => one(softmax_xent::log_softmax_xent_backward(
            gpu, s, i[0], i[1], i[2], o[0],
        )?),
        Op::CorrectCount(s) => softmax_xent::correct_count(gpu, s, i[0], i[1], o[0])?,
        Op::Accumulate => one(ew::accumulate(gpu, i[0], o[0], 1.0)?),
        Op::ClipCoef { max_norm } => optim::clip_coef(gpu, i, *max_norm, o[0])?,
        Op::Axpy { alpha } => one(ew::axpy(gpu, i[0], i[1], i[2], o[0], *alpha)?),
        Op::ScaledNorm { scale, inverse } => optim::scaled_norm(gpu, i, *scale, *inverse, o[0])?,
        // Per tensor; one dispatch in all when `flatten` passed arenas.
        Op::Sgd(h) => {
            let n = i.len() - 1;
            (0..n)
                .map(|k| optim::sgd(gpu, h, o[k], i[k], o[n + k], i[n]))
                .collect::<Result<_, _>>()?
        }
        Op::Adam(h) => {
            let n = i.len() - 1;
            (0..n)
                .map(|k| optim::adam(gpu, h, o[k], i[k], o[n + k], o[2 * n + k], i[n]))
                .collect::<Result<_, _>>()?
        }
        Op::AffineScaling { h, segments } => {
            one(affine_scaling::step(gpu, h, segments, o[0], i[0])?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_members_are_aligned_and_disjoint() {
        let mut g = Graph::new();
        let lens = [1usize, 63, 64, 65, 7, 200, 3];
        let ts: Vec<T> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| g.param(&format!("p{i}"), &[n], vec![0.0; n]))
            .collect();
        for align in [1, 4, 64] {
            let (offsets, len) = arena_layout(&g, &ts, align);
            for (k, (&o, &n)) in offsets.iter().zip(&lens).enumerate() {
                assert_eq!(o % align, 0, "member {k} at {o}, align {align}");
                if let Some(&next) = offsets.get(k + 1) {
                    assert!(o + n <= next, "member {k} overlaps the next");
                }
            }
            assert!(offsets[lens.len() - 1] + lens[lens.len() - 1] <= len);
            assert!(len <= lens.iter().map(|n| n.next_multiple_of(align)).sum());
        }
    }
}
