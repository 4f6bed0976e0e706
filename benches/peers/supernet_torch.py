#!/usr/bin/env python3
"""The PyTorch peer of gradnas's S1 search step (issue 8), timed on the CPU
(or with --device cuda on a GPU).

The same supernet as gradnas's `search::supernet` (PNAS cell space, 5 blocks,
20 mixed edges per cell, 8 ops, BN without affine, x_j = sum_i beta_ij
sum_o softmax(alpha_ij)_o o(x_i)), the same first-order bilevel step as
`search::bilevel::build_step` (alpha by Adam, beta by the affine-scaling
interior-point step on a validation batch, then the weights by SGD with
momentum, weight decay and global-norm clipping on a training batch), and
the same one-shot cell measurement as `predict::measure::OneShotDiscrete`.
Parameter names and shapes are gradnas's, so the counts can be compared
name by name (README.md). Random data: only the time is of interest.

    python supernet_torch.py --config bench-small --threads 2 --repeats 3 --json
    python supernet_torch.py --check                 # tiny correctness checks
    python supernet_torch.py --compare-step FILE     # against gradnas_ref's dump
"""

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- the configurations (src/bench.rs) --------------------------------------

# Common to all: 1x28x28 images, 10 classes, stem 3 x width, pnas op set.
CONFIGS = {
    "bench-small": dict(width=8, depth=5, batch=32),  # bench::bench_small()
    "bench-medium": dict(width=16, depth=8, batch=64),  # issue 8
    "quick": dict(width=4, depth=3, batch=8),  # bench::quick_supernet()
    "tiny": dict(width=2, depth=2, batch=4),  # correctness checks only
}
DIMS = (1, 28, 28)
CLASSES = 10
STEM_MULTIPLIER = 3

# gradnas's weight count (bilevel::build_step(cfg).weights, summed), from a
# build of the step graph without a GPU (README.md says how).
GRADNAS_PARAMS = {
    "bench-small": 1_496_834,
    "bench-medium": 7_959_866,
    "quick": 244_550,
    "tiny": 29_912,
}

# OpSet::pnas(), in its order (the index in alpha).
OPS = [
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "conv_7x1_1x7",
    "identity",
    "avg_pool_3x3",
    "max_pool_3x3",
    "dil_conv_3x3",
]
BLOCKS = 5


def num_inputs(block):
    """Candidate inputs of a block: cells k-2 and k-1, then earlier blocks."""
    return 2 + block


def is_reduction(depth, cell):
    """cellnet::is_reduction: reductions at 1/3 and 2/3 of the depth."""
    if depth < 3:
        return depth == 2 and cell == 1
    return cell == depth // 3 or cell == 2 * depth // 3


# SearchHyper::default() (first order).
W_LR, W_MOMENTUM, W_WEIGHT_DECAY, W_CLIP = 0.025, 0.9, 3e-4, 5.0
A_LR, A_BETAS, A_WEIGHT_DECAY = 3e-4, (0.5, 0.999), 1e-3
BETA_LR, BETA_THETA = 1.0, 0.9
AFFINE_FLOOR = 1e-12  # ops::affine_scaling::FLOOR

# ---- layers (src/nn/layers.rs); attribute names are gradnas's scope names ----


def conv(c_in, c_out, kh, kw=None, stride=1, pad=(0, 0), dilation=1, groups=1):
    """Bias-free convolution, Kaiming-normal over its fan-in (Init::kaiming)."""
    kw = kh if kw is None else kw
    m = nn.Conv2d(c_in, c_out, (kh, kw), stride, pad, dilation, groups, bias=False)
    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    return m


def bn(c):
    """Training-mode BN without affine (the supernet's), eps 1e-5, momentum 0.1."""
    return nn.BatchNorm2d(c, affine=False)


def conv_in(m, x):
    """`m` on x, with only the leading x.shape[1] input channels of its weight:
    a sub-network of a cell of b < 5 blocks concatenates fewer blocks, and
    inherits the supernet's weights sliced so (measure::inherit)."""
    w = m.weight if x.shape[1] == m.weight.shape[1] else m.weight[:, : x.shape[1]]
    return F.conv2d(x, w, None, m.stride, m.padding, m.dilation, m.groups)


class ReluConvBn(nn.Module):
    """ReLU, 1x1 conv (`conv`), BN (`bn`): a cell's input preprocessing."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = conv(c_in, c_out, 1)
        self.bn = bn(c_out)

    def forward(self, x):
        return self.bn(conv_in(self.conv, F.relu(x)))


class FactorizedReduce(nn.Module):
    """ReLU, two 1x1 stride-2 convs to c_out/2 (`conv1` on x, `conv2` on
    x[:, :, 1:, 1:] zero-padded back to full size), concat, BN (`bn`)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        assert c_out % 2 == 0, f"FactorizedReduce needs an even width, got {c_out}"
        self.conv1 = conv(c_in, c_out // 2, 1, stride=2)
        self.conv2 = conv(c_in, c_out // 2, 1, stride=2)
        self.bn = bn(c_out)

    def forward(self, x):
        r = F.relu(x)
        shifted = F.pad(r[:, :, 1:, 1:], (0, 1, 0, 1))
        y = torch.cat([conv_in(self.conv1, r), conv_in(self.conv2, shifted)], 1)
        return self.bn(y)


class SepConv(nn.Module):
    """(ReLU, depthwise kxk, pointwise, BN) twice; stride on dw1."""

    def __init__(self, c, k, stride):
        super().__init__()
        p = (k - 1) // 2
        self.dw1 = conv(c, c, k, stride=stride, pad=(p, p), groups=c)
        self.pw1 = conv(c, c, 1)
        self.bn1 = bn(c)
        self.dw2 = conv(c, c, k, pad=(p, p), groups=c)
        self.pw2 = conv(c, c, 1)
        self.bn2 = bn(c)

    def forward(self, x):
        y = self.bn1(self.pw1(self.dw1(F.relu(x))))
        return self.bn2(self.pw2(self.dw2(F.relu(y))))


class DilConv(nn.Module):
    """ReLU, depthwise kxk dilation 2 (`dw`), pointwise (`pw`), BN (`bn`)."""

    def __init__(self, c, k, stride):
        super().__init__()
        p = k - 1
        self.dw = conv(c, c, k, stride=stride, pad=(p, p), dilation=2, groups=c)
        self.pw = conv(c, c, 1)
        self.bn = bn(c)

    def forward(self, x):
        return self.bn(self.pw(self.dw(F.relu(x))))


class Conv7x1_1x7(nn.Module):
    """ReLU, 1x7 conv (`conv1x7`, stride 1), 7x1 conv (`conv7x1`, the whole
    stride), BN (`bn`): gradnas's form of DARTS's (1, s) / (s, 1) strides,
    the same function (layers::conv_7x1_1x7)."""

    def __init__(self, c, stride):
        super().__init__()
        self.conv1x7 = conv(c, c, 1, 7, pad=(0, 3))
        self.conv7x1 = conv(c, c, 7, 1, stride=stride, pad=(3, 0))
        self.bn = bn(c)

    def forward(self, x):
        return self.bn(self.conv7x1(self.conv1x7(F.relu(x))))


class Pool(nn.Module):
    """3x3 pool, padding 1 (avg: padding not counted), then the supernet's BN."""

    def __init__(self, c, stride, kind):
        super().__init__()
        self.stride, self.kind = stride, kind
        self.bn = bn(c)

    def forward(self, x):
        if self.kind == "avg":
            y = F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        else:
            y = F.max_pool2d(x, 3, self.stride, 1)
        return self.bn(y)


def candidate(op, c, stride):
    """supernet::candidate: one op of an edge at `stride`, c -> c channels."""
    if op.startswith("sep_conv_"):
        return SepConv(c, int(op[-1]), stride)
    if op == "dil_conv_3x3":
        return DilConv(c, 3, stride)
    if op == "conv_7x1_1x7":
        return Conv7x1_1x7(c, stride)
    if op == "identity":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if op in ("avg_pool_3x3", "max_pool_3x3"):
        return Pool(c, stride, op[:3])
    raise ValueError(f"unknown op {op!r}")


# ---- the supernet (src/search/supernet.rs, src/nn/cellnet.rs) ---------------


class Cell(nn.Module):
    """Preprocessing `pre0`/`pre1`, then edges `b{j}_in{i}`, each holding
    every op by name; the output concatenates the blocks."""

    def __init__(self, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReluConvBn(c_pp, c)
        self.pre1 = ReluConvBn(c_p, c)
        for j in range(BLOCKS):
            for i in range(num_inputs(j)):
                stride = 2 if reduction and i < 2 else 1
                edge = nn.ModuleDict({op: candidate(op, c, stride) for op in OPS})
                self.add_module(f"b{j}_in{i}", edge)

    def edge(self, j, i):
        return getattr(self, f"b{j}_in{i}")

    def forward(self, s0, s1, mix):
        """The supernet cell: block j = sum over inputs i and ops o of
        mix[j][i, o] * o(x_i), mix[j] = beta_j (rows) * softmax(alpha_j)."""
        states = [self.pre0(s0), self.pre1(s1)]
        for j in range(BLOCKS):
            w = mix[j]
            out = 0
            for i in range(num_inputs(j)):
                edge, x = self.edge(j, i), states[i]
                for o, op in enumerate(OPS):
                    out = out + w[i, o] * edge[op](x)
            states.append(out)
        return torch.cat(states[2:], 1)

    def forward_discrete(self, s0, s1, cell, pre=None):
        """The sub-network of `cell` (measure::discrete_cell): block j =
        O1(x_I1) + O2(x_I2), two identical slots computed once and doubled;
        an input no block reads is not preprocessed in evaluation (gradnas's
        plan drops it there; its train-mode BN passes keep it, as here).
        `pre` maps an input to its preprocessing computed ahead."""
        pre = pre or {}
        reads = {i for block in cell for (i, _) in block}
        states = [
            pre[i] if i in pre else p(s) if self.training or i in reads else None
            for i, (p, s) in enumerate(((self.pre0, s0), (self.pre1, s1)))
        ]
        for j, ((i1, o1), (i2, o2)) in enumerate(cell):
            a = self.edge(j, i1)[o1](states[i1])
            if (i1, o1) == (i2, o2):
                out = a + a
            else:
                out = a + self.edge(j, i2)[o2](states[i2])
            states.append(out)
        outs = states[2:]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


class Supernet(nn.Module):
    """Stem (3x3 conv, BN), `depth` cells (reductions double the channels),
    global average pooling, linear classifier with bias."""

    def __init__(self, width, depth, classes=CLASSES, dims=DIMS):
        super().__init__()
        assert width >= 2 and width % 2 == 0, f"width {width}: an even number >= 2"
        self.depth = depth
        stem_c = STEM_MULTIPLIER * width
        self.stem = nn.Sequential()
        self.stem.add_module("conv", conv(dims[0], stem_c, 3, pad=(1, 1)))
        self.stem.add_module("bn", bn(stem_c))
        c_pp, c_p, c = stem_c, stem_c, width
        reduction_prev = False
        for k in range(depth):
            reduction = is_reduction(depth, k)
            if reduction:
                c *= 2
            self.add_module(f"cell{k}", Cell(c_pp, c_p, c, reduction, reduction_prev))
            c_pp, c_p = c_p, BLOCKS * c
            reduction_prev = reduction
        self.classifier = nn.Linear(c_p, classes)
        nn.init.kaiming_normal_(self.classifier.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.classifier.bias)
        self.cells = [getattr(self, f"cell{k}") for k in range(depth)]

    def head(self, s1):
        w = self.classifier.weight
        if s1.shape[1] != w.shape[1]:
            w = w[:, : s1.shape[1]]
        return F.linear(s1.mean((2, 3)), w, self.classifier.bias)

    def forward(self, x, mix_normal, mix_reduce):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            mix = mix_reduce if cell.reduction else mix_normal
            s0, s1 = s1, cell(s0, s1, mix)
        return self.head(s1)

    def prefix_modules(self):
        """What every cell's sub-network computes alike (cellnet::Invariant):
        the stem and the preprocessing that reads it, cell 0's two inputs and
        cell 1's input 0."""
        mods = [self.stem, self.cells[0].pre0, self.cells[0].pre1]
        return mods + ([self.cells[1].pre0] if self.depth > 1 else [])

    def prefix(self, x):
        """(stem output, {(cell, input): preprocessed input}) of `x`."""
        s = self.stem(x)
        pre = {(0, 0): self.cells[0].pre0(s), (0, 1): self.cells[0].pre1(s)}
        if self.depth > 1:
            pre[(1, 0)] = self.cells[1].pre0(s)
        return s, pre

    def forward_discrete(self, x, normal, reduce, prefix=None):
        """`x` the images, or with `prefix` (what `prefix` gave for them)
        ignored: the network from there."""
        s, pre = prefix if prefix is not None else (self.stem(x), {})
        s0 = s1 = s
        for k, cell in enumerate(self.cells):
            c = reduce if cell.reduction else normal
            mine = {i: t for (j, i), t in pre.items() if j == k}
            s0, s1 = s1, cell.forward_discrete(s0, s1, c, mine)
        return self.head(s1)


class Arch:
    """alpha_j [num_inputs(j), 8] ~ 1e-3 N(0, 1) and beta_j uniform on the
    simplex, per block j and cell kind (supernet::Arch::new)."""

    def __init__(self, device):
        def kind():
            alpha = [1e-3 * torch.randn(num_inputs(j), len(OPS), device=device) for j in range(BLOCKS)]
            beta = [
                torch.full((num_inputs(j),), 1.0 / num_inputs(j), device=device) for j in range(BLOCKS)
            ]
            return [a.requires_grad_() for a in alpha], [b.requires_grad_() for b in beta]

        self.normal = kind()
        self.reduce = kind()
        self.alphas = self.normal[0] + self.reduce[0]
        self.betas = self.normal[1] + self.reduce[1]

    def mixing(self):
        """supernet::mixing_weights of both kinds: beta_j (rows) * softmax(alpha_j)."""

        def kind(k):
            return [b[:, None] * torch.softmax(a, -1) for a, b in zip(*k)]

        return kind(self.normal), kind(self.reduce)


@torch.no_grad()
def affine_scaling_(beta, grad, lr=BETA_LR, theta=BETA_THETA):
    """One affine-scaling step of beta on its simplex, in place, in float64
    inside as ops::affine_scaling::cpu::segment:
        lambda = (1'X^2 g)/(1'X^2 1), d = -X^2 (g - lambda), X = diag(beta)
        t = min(lr, theta * min_{d_i < 0} beta_i / -d_i)
        beta <- beta + t d, clamped at FLOOR * sum, renormalised."""
    b = beta.double()
    g = grad.double()
    g = g - g[0]  # as gradnas: a constant gradient gives d = 0 exactly
    lam = (b * b * g).sum() / (b * b).sum()
    d = -b * b * (g - lam)
    ratios = torch.where(d < 0, theta * b / -d, torch.full_like(b, math.inf))
    t = torch.clamp(ratios.min(), max=lr)
    stepped = b + t * d
    clamped = torch.clamp(stepped, min=AFFINE_FLOOR * stepped.sum().item())
    beta.copy_((clamped / clamped.sum()).to(beta.dtype))


class Search:
    """The first-order bilevel step of bilevel::build_step."""

    def __init__(self, cfg, device, seed=1):
        torch.manual_seed(seed)
        self.model = Supernet(cfg["width"], cfg["depth"]).to(device)
        self.arch = Arch(device)
        self.weights = list(self.model.parameters())
        self.w_opt = torch.optim.SGD(
            self.weights, lr=W_LR, momentum=W_MOMENTUM, weight_decay=W_WEIGHT_DECAY
        )
        self.a_opt = torch.optim.Adam(
            self.arch.alphas, lr=A_LR, betas=A_BETAS, eps=1e-8, weight_decay=A_WEIGHT_DECAY
        )
        shape = (cfg["batch"],) + DIMS
        labels = torch.arange(cfg["batch"], device=device) % CLASSES
        self.val = (torch.randn(shape, device=device), labels)
        self.train = (torch.randn(shape, device=device), labels.clone())

    def loss(self, batch, mix):
        x, y = batch
        return F.cross_entropy(self.model(x, *mix), y)

    def arch_step(self):
        """grad_a L_val(w, a) (no weight gradients: autograd.grad skips them,
        as gradnas's plan drops its dead weight-gradient nodes); alpha by
        Adam (L2 decay), beta by affine scaling."""
        self.model.train()
        loss = self.loss(self.val, self.arch.mixing())
        params = self.arch.alphas + self.arch.betas
        grads = torch.autograd.grad(loss, params)
        na = len(self.arch.alphas)
        for a, g in zip(self.arch.alphas, grads[:na]):
            a.grad = g
        self.a_opt.step()
        self.a_opt.zero_grad(set_to_none=True)
        for b, g in zip(self.arch.betas, grads[na:]):
            affine_scaling_(b, g)
        return loss

    def weight_step(self):
        """L_train(w, a) with the updated a held fixed; SGD with momentum and
        weight decay after clipping the global gradient norm to 5."""
        self.model.train()
        with torch.no_grad():
            mix = self.arch.mixing()
        loss = self.loss(self.train, mix)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.weights, W_CLIP)
        self.w_opt.step()
        return loss

    @torch.no_grad()
    def forward(self):
        """bench::search_step's forward: one batch, train-mode BN, no grad."""
        self.model.train()
        return self.model(self.val[0], *self.arch.mixing())


# ---- the one-shot measurement (src/predict/measure.rs) -----------------------


def random_cell(blocks, rng):
    """genotype::random_cell: per block, two (input, op) slots drawn uniformly."""
    return [
        tuple((rng.randrange(num_inputs(b)), rng.choice(OPS)) for _ in range(2))
        for b in range(blocks)
    ]


def covering_cells(blocks):
    """bench::covering_cells: cells in which every op reads a cell input
    and (with 2 blocks or more) a block's output, the warm-up of the rates."""
    want = [(False, o) for o in OPS] + ([(True, o) for o in OPS] if blocks > 1 else [])
    cells = []
    while want:
        cell = []
        for j in range(blocks):
            block = []
            for s in range(2):
                at = next((k for k, (later, _) in enumerate(want) if not later or j > 0), None)
                later, op = want.pop(at) if at is not None else (False, OPS[0])
                block.append((j + 1 if later else s, op))
            cell.append(tuple(block))
        cells.append(cell)
    return cells


class Measure:
    """OneShotDiscrete on the quick preset's supernet: per cell pair, BN
    running statistics recomputed as the plain average over `bn_batches`
    train-mode passes (momentum None, as gradnas's momentum 1/t), then the
    sub-network evaluated on n_val validation images in passes of
    `eval_batch` (the last pass holds only the images left), counting the
    correct answers. With `prefix`, as gradnas does: the stem and the
    preprocessing that reads it, the same for every cell, computed once for
    every pass (their statistics too) and each cell's network started there."""

    def __init__(self, device, n_val, bn_batches=2, bn_batch=32, eval_batch=64, seed=0, prefix=False):
        # bench::quick_supernet() and bench::quick_measure() but n_val.
        torch.manual_seed(seed)
        cfg = CONFIGS["quick"]
        self.model = Supernet(cfg["width"], cfg["depth"]).to(device).requires_grad_(False)
        self.bns = [m for m in self.model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in self.bns:
            m.momentum = None
        self.bn_images = [torch.randn((bn_batch,) + DIMS, device=device) for _ in range(bn_batches)]
        self.val = [
            (
                torch.randn((min(eval_batch, n_val - s),) + DIMS, device=device),
                torch.randint(0, CLASSES, (min(eval_batch, n_val - s),), device=device),
            )
            for s in range(0, n_val, eval_batch)
        ]
        self.n_val = n_val
        self.config = (
            f"width {cfg['width']} depth {cfg['depth']} pnas; "
            f"BN {bn_batches}×{bn_batch}, {n_val} val images in passes of {eval_batch}"
        )
        self.bn_prefix = [None] * len(self.bn_images)
        self.val_prefix = [None] * len(self.val)
        if prefix:
            with torch.no_grad():
                ahead = {id(b) for m in self.model.prefix_modules() for b in m.modules()}
                for m in self.bns:
                    if id(m) in ahead:
                        m.num_batches_tracked.zero_()
                self.model.train()
                self.bn_prefix = [self.model.prefix(x) for x in self.bn_images]
                self.model.eval()
                self.val_prefix = [self.model.prefix(x) for x, _ in self.val]
            # Their statistics are final: only the cells' are recomputed.
            self.bns = [m for m in self.bns if id(m) not in ahead]

    @torch.no_grad()
    def measure(self, normal, reduce):
        for m in self.bns:
            m.num_batches_tracked.zero_()  # the first batch overwrites
        self.model.train()
        for x, p in zip(self.bn_images, self.bn_prefix):
            self.model.forward_discrete(x, normal, reduce, p)
        self.model.eval()
        device = self.bn_images[0].device
        correct = torch.zeros((), dtype=torch.long, device=device)
        finite = torch.ones((), dtype=torch.bool, device=device)
        for (x, y), p in zip(self.val, self.val_prefix):
            logits = self.model.forward_discrete(x, normal, reduce, p)
            correct += (logits.argmax(1) == y).sum()
            finite &= torch.isfinite(logits).all()  # gradnas's 0·‖logits‖ guard
        if not finite.item():
            raise RuntimeError(f"cell {normal} / {reduce}: the sub-network's logits are not finite")
        return correct.item() / self.n_val


# ---- timing -------------------------------------------------------------------


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def time_step(search, repeats, device):
    """Median seconds of the bilevel step and of its two halves (one warm-up
    step first: allocator, oneDNN primitives, optimizer state). On a GPU the
    whole step is timed again without the synchronization between halves."""
    search.arch_step()
    search.weight_step()
    sync(device)
    arch, weight, total = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        search.arch_step()
        sync(device)
        t1 = time.perf_counter()
        search.weight_step()
        sync(device)
        t2 = time.perf_counter()
        arch.append(t1 - t0)
        weight.append(t2 - t1)
        total.append(t2 - t0)
    if device.type == "cuda":
        total = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            search.arch_step()
            search.weight_step()
            sync(device)
            total.append(time.perf_counter() - t0)
    return median(total), median(arch), median(weight)


def serve_steps(cfg, device):
    """Steps on demand (see --serve): one warm-up step, then a step per line."""
    search = Search(cfg, device)
    search.arch_step()
    search.weight_step()
    sync(device)
    print("ready", flush=True)
    for _ in sys.stdin:
        t0 = time.perf_counter()
        search.arch_step()
        search.weight_step()
        sync(device)
        print(f"{(time.perf_counter() - t0) * 1e3:.3f}", flush=True)


def time_forward(search, repeats, device):
    search.forward()
    sync(device)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        search.forward()
        sync(device)
        ts.append(time.perf_counter() - t0)
    return median(ts)


def time_measure(measures, blocks, rounds, device):
    """Seconds per measured cell of each of `measures`, as bench::s2: a
    first round over `covering_cells` (every op on a cell input and on a
    block output; the same cell for both kinds), then the median of
    `rounds` timed rounds, the measures taking turns within each round (so
    a drifting host slows them alike)."""
    cs = covering_cells(blocks)
    for meas in measures:
        for c in cs:
            meas.measure(c, c)
    ts = [[] for _ in measures]
    for _ in range(rounds):
        for meas, t in zip(measures, ts):
            sync(device)
            t0 = time.perf_counter()
            for c in cs:
                meas.measure(c, c)
            sync(device)
            t.append((time.perf_counter() - t0) / len(cs))
    return [median(t) for t in ts]


def measure_rates(args, device):
    """The one-shot measurement's seconds per cell, recomputing the cells'
    common prefix per cell and computing it once (`Measure(prefix=True)`)."""
    meas = Measure(device, args.n_val, eval_batch=args.eval_batch)
    ahead = Measure(device, args.n_val, eval_batch=args.eval_batch, prefix=True)
    one, one_p = time_measure([meas, ahead], 1, args.measure_cells, device)
    five, five_p = time_measure([meas, ahead], 5, args.measure_cells, device)
    return {
        "config": meas.config,
        "n_val": args.n_val,
        "eval_batch": args.eval_batch,
        "rounds": args.measure_cells,
        "s_per_cell_1_block": one,
        "s_per_cell_5_blocks": five,
        "cells_per_s_1_block": 1 / one,
        "cells_per_s_5_blocks": 1 / five,
        "s_per_cell_1_block_prefix": one_p,
        "s_per_cell_5_blocks_prefix": five_p,
    }


# ---- peak memory ----------------------------------------------------------------


def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(args, device):
    """Run in a fresh process: build the model and data, run one `phase`,
    report the peak memory over what the process held before the model.
    CPU: peak RSS (VmHWM, reset through /proc/self/clear_refs when the
    kernel allows, else the process's lifetime peak) minus the RSS before
    building; CUDA: torch.cuda.max_memory_allocated (the caching allocator's
    peak of live tensors)."""
    cfg = CONFIGS[args.config]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        base = rss_kib("VmRSS")
    s = Search(cfg, device)
    if args.memory_child == "step":
        s.arch_step()
        s.weight_step()
    else:
        s.forward()
    sync(device)
    if device.type == "cuda":
        mb = torch.cuda.max_memory_allocated(device) / 1e6
    else:
        mb = (rss_kib("VmHWM") - base) * 1024 / 1e6
    print(json.dumps({"peak_mb": mb}))


def _die_with_parent():
    """The measuring child must not run on alone when its parent is killed
    (the kernel's out-of-memory killer may pick the parent): Linux's
    PR_SET_PDEATHSIG sends it SIGKILL then."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def peak_memory(args, phase):
    cmd = [
        sys.executable,
        __file__,
        "--config",
        args.config,
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--memory-child",
        phase,
    ]
    linux = sys.platform.startswith("linux")
    out = subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=_die_with_parent if linux else None,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


# ---- checks -------------------------------------------------------------------


def check(device):
    """Correctness checks at tiny sizes (seconds): parameter counts against
    gradnas's, one bilevel step (everything moves, beta stays on its
    simplex), the affine-scaling step against its formulas, and the
    measured sub-network against the supernet under the cell's mask."""
    for name, cfg in CONFIGS.items():
        n = sum(p.numel() for p in Supernet(cfg["width"], cfg["depth"]).parameters())
        assert n == GRADNAS_PARAMS[name], f"{name}: {n} weights, gradnas has {GRADNAS_PARAMS[name]}"
        print(f"{name}: {n:,} weights (gradnas {GRADNAS_PARAMS[name]:,})")
    s = Search(CONFIGS["tiny"], device)
    before = [b.detach().clone() for b in s.arch.betas]
    alphas0 = [a.detach().clone() for a in s.arch.alphas]
    w0 = [w.detach().clone() for w in s.weights]
    lv = s.arch_step()
    lt = s.weight_step()
    assert torch.isfinite(lv) and torch.isfinite(lt), (lv, lt)
    assert abs(lv.item() - math.log(CLASSES)) < 1.0, f"initial loss {lv.item()} far from ln 10"
    for b0, b in zip(before, s.arch.betas):
        assert abs(b.sum().item() - 1) < 1e-6 and (b > 0).all(), b
        assert not torch.equal(b0, b), "beta did not move"
    assert all(not torch.equal(a0, a) for a0, a in zip(alphas0, s.arch.alphas)), "alpha did not move"
    moved = sum(not torch.equal(a, b) for a, b in zip(w0, s.weights))
    assert moved == len(w0), f"{len(w0) - moved} weights did not move"
    assert s.forward().shape == (CONFIGS["tiny"]["batch"], CLASSES)
    # The affine-scaling step against the method's formulas: Sum d = 0, the
    # step stays inside the simplex, and a constant gradient leaves beta.
    b = torch.tensor([0.5, 0.3, 0.2])
    g = torch.tensor([1.0, -2.0, 0.5])
    bd, gd = b.double(), g.double()
    lam = (bd**2 * gd).sum() / (bd**2).sum()
    d = -(bd**2) * (gd - lam)
    t = min(BETA_LR, min(BETA_THETA * bd[i] / -d[i] for i in range(3) if d[i] < 0))
    want = (bd + t * d) / (bd + t * d).sum()
    got = b.clone()
    affine_scaling_(got, g)
    assert torch.allclose(got.double(), want, atol=1e-7), (got, want)
    assert abs(d.sum().item()) < 1e-12
    same = b.clone()
    affine_scaling_(same, torch.full((3,), 0.7))
    assert torch.equal(same, b), same
    # A long step (lr 1e6) goes theta of the way to the boundary.
    far = b.clone()
    affine_scaling_(far, g, lr=1e6)
    # (Sum d = 0 keeps the sum at 1, so the renormalisation changes nothing.)
    i = int(torch.argmin(torch.where(d < 0, bd / -d, torch.full_like(bd, math.inf))))
    assert abs(far[i].item() - (1 - BETA_THETA) * b[i].item()) < 1e-6, (far, i)
    # The sub-network against the supernet with the cell's mask as mixing
    # weights (measure.rs, "the mask reading": w[i, o] = the block's slots on
    # (i, o), zero rows past the cell's blocks): the same logits after the
    # same BN passes, so the narrower concatenation and sliced weights of
    # a b-block cell are right.
    m = Measure(device, n_val=10, bn_batches=2, bn_batch=4, eval_batch=4)
    rng = random.Random(0)
    x = m.val[0][0]
    # One pair by hand: two identical slots (doubled), an input never read.
    doubled = [((1, "sep_conv_3x3"), (1, "sep_conv_3x3")), ((2, "identity"), (1, "max_pool_3x3"))]
    pairs = [(doubled, doubled)] + [(random_cell(b, rng), random_cell(b, rng)) for b in (1, 2, 5)]
    for normal, reduce in pairs:
        blocks = len(normal)
        acc = m.measure(normal, reduce)
        assert 0.0 <= acc <= 1.0, acc
        with torch.no_grad():
            discrete = m.model.forward_discrete(x, normal, reduce)
            masks = []
            for cell in (normal, reduce):
                w = [torch.zeros(num_inputs(j), len(OPS), device=device) for j in range(BLOCKS)]
                for j, block in enumerate(cell):
                    for i, op in block:
                        w[j][i, OPS.index(op)] += 1
                masks.append(w)
            for bn_ in m.bns:
                bn_.num_batches_tracked.zero_()
            m.model.train()
            for xb in m.bn_images:
                m.model(xb, *masks)
            m.model.eval()
            masked = m.model(x, *masks)
        err = (discrete - masked).abs().max().item()
        assert err < 1e-4 * (1 + masked.abs().max().item()), f"{blocks} blocks: {err}"
    # The prefix computed once measures every cell as computing it per cell.
    ahead = Measure(device, n_val=10, bn_batches=2, bn_batch=4, eval_batch=4, prefix=True)
    for normal, reduce in pairs:
        a, b = m.measure(normal, reduce), ahead.measure(normal, reduce)
        assert a == b, (normal, reduce, a, b)
        with torch.no_grad():
            whole = m.model.forward_discrete(m.val[0][0], normal, reduce)
            part = ahead.model.forward_discrete(None, normal, reduce, ahead.val_prefix[0])
        assert torch.allclose(whole, part, rtol=1e-5, atol=1e-6), (whole - part).abs().max()
    print("checks passed")


def compare_step(path, device):
    """Replay one bilevel step that gradnas's CPU reference executor took
    (gradnas_ref/, README.md) from the same weights, alpha, beta and batches,
    and fail unless the losses and every updated tensor agree up to float
    rounding."""
    with open(path) as f:
        d = json.load(f)
    cfg = dict(width=d["width"], depth=d["depth"], batch=d["batch"])
    s = Search(cfg, device)
    tensors = dict(s.model.named_parameters())
    for kind, (alpha, beta) in (("normal", s.arch.normal), ("reduce", s.arch.reduce)):
        for j in range(BLOCKS):
            tensors[f"arch.{kind}.alpha{j}"] = alpha[j]
            tensors[f"arch.{kind}.beta{j}"] = beta[j]
    if set(tensors) != set(d["init"]):
        diff = sorted(set(tensors) ^ set(d["init"]))
        raise SystemExit(f"{path}: tensor names differ from gradnas's: {diff[:10]}")
    with torch.no_grad():
        for name, v in d["init"].items():
            t = tensors[name]
            if t.numel() != len(v):
                raise SystemExit(f"{name}: {t.numel()} values here, gradnas has {len(v)}")
            t.copy_(torch.tensor(v, device=device).reshape(t.shape))
    shape = (cfg["batch"],) + DIMS
    y = torch.tensor(d["labels"], device=device)
    s.val = (torch.tensor(d["val_images"], device=device).reshape(shape), y)
    s.train = (torch.tensor(d["train_images"], device=device).reshape(shape), y)
    lv, lt = s.arch_step().item(), s.weight_step().item()
    print(f"width {cfg['width']} depth {cfg['depth']} batch {cfg['batch']}: {d['weights']:,} weights")
    print(f"  validation loss {lv:.7f} (gradnas {d['val_loss']:.7f})")
    print(f"  training loss   {lt:.7f} (gradnas {d['train_loss']:.7f})")
    ok = abs(lv - d["val_loss"]) < 1e-5 and abs(lt - d["train_loss"]) < 1e-5
    # Per kind, the worst difference after the step relative to the size of
    # gradnas's update (a tensor that did not move would show any error).
    worst = {}
    for name, v in d["final"].items():
        want = torch.tensor(v, device=device)
        before = torch.tensor(d["init"][name], device=device)
        err = (tensors[name].detach().flatten() - want).abs().max().item()
        moved = (want - before).abs().max().item()
        kind = "alpha" if ".alpha" in name else "beta" if ".beta" in name else "weights"
        rel = err / max(moved, 1e-12)
        if rel > worst.get(kind, (-1.0,))[0]:
            worst[kind] = (rel, err, moved, name)
    for kind, (rel, err, moved, name) in sorted(worst.items()):
        print(
            f"  {kind:<8} max |torch - gradnas| {err:.1e} = {rel:.1e} of its update "
            f"({moved:.1e}), at {name}"
        )
        ok = ok and err < 1e-5 and rel < 0.05
    if not ok:
        raise SystemExit("the PyTorch step differs from gradnas's")
    print("same step as gradnas")


# ---- main ---------------------------------------------------------------------


# The op classes of BENCHMARKS.md's comparison with `gradnas bench --profile`,
# by the ATen op name's first match.
OP_CLASSES = [
    ("convolutions", ("conv",)),
    ("batch norm", ("batch_norm",)),
    ("pools", ("pool",)),
    (
        "element-wise",
        ("mul", "add", "relu", "clamp", "threshold", "copy", "fill", "sum", "div", "sub"),
    ),
]


def profile_step(cfg, device):
    """Self time of one bilevel step (after a warm-up step) by op class."""
    from torch.profiler import ProfilerActivity, profile

    search = Search(cfg, device)
    search.arch_step()
    search.weight_step()
    sync(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        search.arch_step()
        search.weight_step()
        sync(device)
    by = {}
    averages = prof.key_averages()
    if device.type == "cuda":
        # On a GPU the step can be bound by the host's launches, not the
        # kernels: the kernel count and the host's own time tell which.
        kernels = sum(e.count for e in averages if "CUDA" in str(getattr(e, "device_type", "")))
        host = sum(e.self_cpu_time_total for e in averages) / 1e3
        print(f"one bilevel step: {kernels} GPU kernels and copies; host self time {host:.1f} ms")
    for e in averages:
        name = e.key.lower()
        cls = next((c for c, keys in OP_CLASSES if any(k in name for k in keys)), "rest")
        us = e.self_device_time_total if device.type == "cuda" else e.self_cpu_time_total
        by[cls] = by.get(cls, 0.0) + us / 1e3
    total = sum(by.values())
    print(f"one bilevel step, self {'device' if device.type == 'cuda' else 'CPU'} time by op class:")
    for cls, ms in sorted(by.items(), key=lambda kv: -kv[1]):
        print(f"  {cls:<14} {ms:>9.1f} ms  {100 * ms / total:5.1f}%")
    print(f"  {'all':<14} {total:>9.1f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="bench-small", choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--n-val", type=int, default=1000, help="validation images per measured cell")
    ap.add_argument(
        "--eval-batch",
        type=int,
        default=64,
        help="validation images per evaluation pass of a measured cell (compare.sh passes gradnas's)",
    )
    ap.add_argument(
        "--measure-cells",
        type=int,
        default=3,
        help="timed rounds over the covering cells per length (1 and 5 blocks); 0 skips the measurement",
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    ap.add_argument(
        "--measure-only",
        action="store_true",
        help="time only the one-shot measurement (--measure-cells rounds) and print its JSON",
    )
    ap.add_argument("--check", action="store_true", help="run the tiny correctness checks and exit")
    ap.add_argument(
        "--compare-step", metavar="FILE", help="replay gradnas_ref's step dump (README.md) and exit"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="torch.profiler over one bilevel step, self time by op class (as "
        "`gradnas bench --profile`), and exit",
    )
    ap.add_argument(
        "--serve",
        action="store_true",
        help="print 'ready', then take one bilevel step per line read on stdin and print its "
        "milliseconds (benches/peers/duel.py alternates it with gradnas's)",
    )
    ap.add_argument("--memory-child", choices=["step", "forward"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_only and args.measure_cells < 1:
        ap.error("--measure-only needs --measure-cells >= 1")
    if min(args.threads, args.repeats, args.n_val, args.eval_batch) < 1 or args.measure_cells < 0:
        ap.error("--threads, --repeats, --n-val and --eval-batch must be >= 1, --measure-cells >= 0")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: this torch sees no CUDA device")
    torch.set_num_threads(args.threads)

    if args.memory_child:
        return memory_child(args, device)
    if args.check:
        return check(device)
    if args.compare_step:
        return compare_step(args.compare_step, device)
    if args.profile:
        return profile_step(CONFIGS[args.config], device)
    if args.serve:
        return serve_steps(CONFIGS[args.config], device)

    if args.measure_only:
        print(json.dumps(measure_rates(args, device), indent=2))
        return
    cfg = CONFIGS[args.config]
    load = os.getloadavg()[0]  # other work on the cores stalls the thread pool
    search = Search(cfg, device)
    params = sum(p.numel() for p in search.weights)
    step, arch, weight = time_step(search, args.repeats, device)
    fwd = time_forward(search, args.repeats, device)
    del search
    res = {
        "peer": "pytorch",
        "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": args.threads,
        "load_avg_1min_before": load,
        "config": args.config,
        "shape": (
            f"width {cfg['width']} depth {cfg['depth']} batch {cfg['batch']} "
            "1×28×28 pnas, first order"
        ),
        "params": params,
        "gradnas_params": GRADNAS_PARAMS[args.config],
        "repeats": args.repeats,
        "bilevel_ms": step * 1e3,
        "arch_ms": arch * 1e3,
        "weight_ms": weight * 1e3,
        "forward_ms": fwd * 1e3,
    }
    if not args.no_memory:
        res["peak_memory_mb"] = {
            "step": peak_memory(args, "step"),
            "forward": peak_memory(args, "forward"),
            "what": (
                "torch.cuda.max_memory_allocated over a fresh process's first step"
                if device.type == "cuda"
                else "peak RSS of a fresh process over its first step (or forward) "
                "minus its RSS before building model and data: weights, optimizer "
                "state, data, activations, gradients, allocator and oneDNN caches"
            ),
        }
    if args.measure_cells:
        res["measure"] = measure_rates(args, device)
    # This process's lifetime peak RSS (KiB on Linux), torch itself included.
    res["process_max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(
        f"PyTorch {res['torch']} on {res['device']}, {args.threads} threads, "
        f"{args.repeats} repeats (load average before: {load:.2f})"
    )
    print(f"{args.config} ({res['shape']}): {params:,} weights (gradnas {res['gradnas_params']:,})")
    rows = [
        ("bilevel step", res["bilevel_ms"]),
        ("  architecture step", res["arch_ms"]),
        ("  weight step", res["weight_ms"]),
        ("forward (no grad)", res["forward_ms"]),
    ]
    for name, ms in rows:
        print(f"  {name:<22} {ms:>10.1f} ms")
    if "peak_memory_mb" in res:
        pm = res["peak_memory_mb"]
        print(f"  {'peak memory, step':<22} {pm['step']:>10.1f} MB")
        print(f"  {'peak memory, forward':<22} {pm['forward']:>10.1f} MB")
    if "measure" in res:
        m = res["measure"]
        print(f"one-shot measurement ({m['config']}):")
        for b, key in ((1, "1_block"), (5, "5_blocks")):
            secs, rate = m[f"s_per_cell_{key}"], m[f"cells_per_s_{key}"]
            print(f"  {f'{b}-block cell':<22} {secs * 1e3:>10.1f} ms  ({rate:.2f} cells/s)")
            ahead = m[f"s_per_cell_{key}_prefix"]
            print(f"  {'  prefix once':<22} {ahead * 1e3:>10.1f} ms  ({1 / ahead:.2f} cells/s)")


if __name__ == "__main__":
    main()
