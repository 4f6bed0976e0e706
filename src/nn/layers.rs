//! The DARTS/PNAS candidate ops and the building blocks of a classifier,
//! NCHW, with every shape derived from the input tensor. Convolutions have
//! no bias (each is followed by batch norm, as in DARTS); batch norm is the
//! training-mode op with running statistics as graph states and γ, β only
//! when `affine` (the DARTS supernet runs without). Parameter names follow
//! PyTorch's leaves ("weight", "bias", "running_mean", "running_var") under
//! the store's current scope plus one component per sub-layer ("dw1", "bn").

use super::{Init, ParamStore};
use crate::graph::{Graph, T};
use crate::ops::{batchnorm, conv2d::Conv2dShape, layout::SliceShape, matmul::LinearShape, pool};

/// [n, c, h, w] of an NCHW tensor.
fn nchw(g: &Graph, x: T) -> [usize; 4] {
    match g.def(x).shape[..] {
        [n, c, h, w] => [n, c, h, w],
        ref s => panic!("{} is not NCHW: {s:?}", g.def(x).name),
    }
}

/// The hyperparameters of one bias-free convolution; `conv` derives the
/// rest of its shape from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl ConvSpec {
    /// A k×k convolution to `c_out` channels: stride 1, no padding, no
    /// dilation, one group.
    pub fn new(c_out: usize, k: usize) -> ConvSpec {
        ConvSpec {
            c_out,
            kh: k,
            kw: k,
            stride: 1,
            pad_h: 0,
            pad_w: 0,
            dilation: 1,
            groups: 1,
        }
    }
    /// A kh×kw kernel (the factorized 1×7 / 7×1 convolutions).
    pub fn rect(c_out: usize, kh: usize, kw: usize) -> ConvSpec {
        ConvSpec {
            kh,
            kw,
            ..ConvSpec::new(c_out, kh)
        }
    }
    pub fn stride(self, stride: usize) -> ConvSpec {
        ConvSpec { stride, ..self }
    }
    pub fn pad(self, pad_h: usize, pad_w: usize) -> ConvSpec {
        ConvSpec {
            pad_h,
            pad_w,
            ..self
        }
    }
    pub fn dilation(self, dilation: usize) -> ConvSpec {
        ConvSpec { dilation, ..self }
    }
    pub fn groups(self, groups: usize) -> ConvSpec {
        ConvSpec { groups, ..self }
    }
    /// The full geometry for input dims [n, c, h, w].
    pub fn shape(&self, [n, c_in, h, w]: [usize; 4]) -> Conv2dShape {
        Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out: self.c_out,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            pad_h: self.pad_h,
            pad_w: self.pad_w,
            dilation: self.dilation,
            groups: self.groups,
        }
    }
}

/// A bias-free convolution with weight `{leaf}.weight` [c_out, c_in/groups,
/// kh, kw], Kaiming-normal over its fan-in. A pruned network's store
/// overrides `c_out` by name (`ParamStore::widths`; depthwise convolutions
/// follow their input instead).
pub fn conv(g: &mut Graph, store: &mut ParamStore, leaf: &str, x: T, spec: ConvSpec) -> T {
    let spec = ConvSpec {
        c_out: store.width(leaf, spec.c_out),
        ..spec
    };
    let s = spec.shape(nchw(g, x));
    if let Err(e) = s.validate() {
        panic!("{leaf}: {e}");
    }
    let fan_in = s.cpg_in() * s.kh * s.kw;
    let w = store.scoped(leaf, |st| {
        st.param(
            g,
            "weight",
            &[s.c_out, s.cpg_in(), s.kh, s.kw],
            Init::kaiming(fan_in),
        )
    });
    g.conv2d(x, w, None, s)
}

/// Training-mode batch norm over the channels of an NCHW tensor: γ
/// (`{leaf}.weight`, ones) and β (`{leaf}.bias`, zeros) when `affine`;
/// running mean (zeros) and variance (ones) as states.
pub fn batchnorm(g: &mut Graph, store: &mut ParamStore, leaf: &str, x: T, affine: bool) -> T {
    let [n, c, h, w] = nchw(g, x);
    batchnorm_of(
        g,
        store,
        leaf,
        x,
        batchnorm::Shape::new(n, c, h * w, affine),
    )
}

/// [`batchnorm`] then ReLU: one op without affine
/// (`batchnorm::Shape::with_relu`, a pass over the tensor fewer each way,
/// in training and in evaluation), the two ops otherwise. The same values
/// either way.
pub fn batchnorm_relu(g: &mut Graph, store: &mut ParamStore, leaf: &str, x: T, affine: bool) -> T {
    if affine {
        let y = batchnorm(g, store, leaf, x, affine);
        return g.relu(y);
    }
    let [n, c, h, w] = nchw(g, x);
    let s = batchnorm::Shape::new(n, c, h * w, affine).with_relu();
    batchnorm_of(g, store, leaf, x, s)
}

fn batchnorm_of(g: &mut Graph, store: &mut ParamStore, leaf: &str, x: T, s: batchnorm::Shape) -> T {
    let (c, affine) = (s.c, s.affine);
    let check = if store.eval {
        s.validate()
    } else {
        s.validate_train()
    };
    if let Err(e) = check {
        panic!("{leaf}: {e}");
    }
    let (gb, running) = store.scoped(leaf, |st| {
        let gb = affine.then(|| {
            (
                st.param(g, "weight", &[c], Init::Ones),
                st.param(g, "bias", &[c], Init::Zeros),
            )
        });
        let running = (
            st.state(g, "running_mean", &[c], 0.0),
            st.state(g, "running_var", &[c], 1.0),
        );
        (gb, running)
    });
    if store.eval {
        g.batchnorm_eval(x, gb, running, s)
    } else {
        g.batchnorm_train(x, gb, running, s)
    }
}

/// DARTS's ReLUConvBN: ReLU, k×k convolution (`conv`), batch norm (`bn`).
#[allow(clippy::too_many_arguments)]
pub fn relu_conv_bn(
    g: &mut Graph,
    store: &mut ParamStore,
    x: T,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    affine: bool,
) -> T {
    let r = g.relu(x);
    let spec = ConvSpec::new(c_out, k).stride(stride).pad(pad, pad);
    let y = conv(g, store, "conv", r, spec);
    batchnorm(g, store, "bn", y, affine)
}

/// ReLU, depthwise k×k (`{dw}`), pointwise 1×1 to `c_out` (`{pw}`), BN
/// (`{bn}`): the half of a SepConv, and the whole of a DilConv.
fn relu_dw_pw_bn(
    g: &mut Graph,
    store: &mut ParamStore,
    names: [&str; 3],
    x: T,
    c_out: usize,
    dw: ConvSpec,
    affine: bool,
) -> T {
    let r = g.relu(x);
    dw_pw_bn(g, store, names, r, c_out, dw, affine, false)
}

/// [`relu_dw_pw_bn`] after its ReLU, with a ReLU after the BN if `relu`.
#[allow(clippy::too_many_arguments)]
fn dw_pw_bn(
    g: &mut Graph,
    store: &mut ParamStore,
    names: [&str; 3],
    r: T,
    c_out: usize,
    dw: ConvSpec,
    affine: bool,
    relu: bool,
) -> T {
    let d = conv(g, store, names[0], r, dw);
    let p = conv(g, store, names[1], d, ConvSpec::new(c_out, 1));
    if relu {
        batchnorm_relu(g, store, names[2], p, affine)
    } else {
        batchnorm(g, store, names[2], p, affine)
    }
}

/// A depthwise k×k spec for `x`'s channels ("same" padding for odd k at
/// stride 1, scaled by the dilation).
fn depthwise(g: &Graph, x: T, k: usize, stride: usize, dilation: usize) -> ConvSpec {
    let c = nchw(g, x)[1];
    let pad = dilation * (k - 1) / 2;
    ConvSpec::new(c, k)
        .stride(stride)
        .pad(pad, pad)
        .dilation(dilation)
        .groups(c)
}

/// DARTS's SepConv (sep_conv_kxk): twice ReLU, depthwise k×k, pointwise,
/// BN; the stride is on the first depthwise, the channel change on the
/// last pointwise. Names dw1, pw1, bn1, dw2, pw2, bn2. Without affine it
/// has 2·k²·c_in + c_in² + c_in·c_out parameters.
pub fn sep_conv(
    g: &mut Graph,
    store: &mut ParamStore,
    x: T,
    c_out: usize,
    k: usize,
    stride: usize,
    affine: bool,
) -> T {
    let c_in = nchw(g, x)[1];
    let dw1 = depthwise(g, x, k, stride, 1);
    // The second half's ReLU is fused into the first half's BN.
    let r = g.relu(x);
    let y = dw_pw_bn(g, store, ["dw1", "pw1", "bn1"], r, c_in, dw1, affine, true);
    let dw2 = depthwise(g, y, k, 1, 1);
    dw_pw_bn(
        g,
        store,
        ["dw2", "pw2", "bn2"],
        y,
        c_out,
        dw2,
        affine,
        false,
    )
}

/// DARTS's DilConv (dil_conv_kxk): ReLU, depthwise k×k with dilation 2 and
/// padding k − 1 (`dw`), pointwise to `c_out` (`pw`), BN (`bn`).
pub fn dil_conv(
    g: &mut Graph,
    store: &mut ParamStore,
    x: T,
    c_out: usize,
    k: usize,
    stride: usize,
    affine: bool,
) -> T {
    let dw = depthwise(g, x, k, stride, 2);
    relu_dw_pw_bn(g, store, ["dw", "pw", "bn"], x, c_out, dw, affine)
}

/// conv_7x1_1x7: ReLU, 1×7 convolution c_in → c_in at stride 1 with
/// padding (0, 3) (`conv1x7`), 7×1 convolution c_in → c_out at stride
/// `stride` with padding (3, 0) (`conv7x1`), BN (`bn`).
///
/// DARTS strides the first by (1, s) and the second by (s, 1); the conv op
/// here has one stride for both axes. Putting the whole stride on the 7×1
/// gives exactly DARTS's result: a kernel one column wide at column stride
/// s just picks every s-th column of the stride-1 1×7 output, which is
/// what DARTS's (1, s) first convolution computes. It costs s× the first
/// convolution's work; striding the 1×7 instead would subsample rows before
/// the 7×1 mixes them, a different function.
pub fn conv_7x1_1x7(
    g: &mut Graph,
    store: &mut ParamStore,
    x: T,
    c_out: usize,
    stride: usize,
    affine: bool,
) -> T {
    let c_in = nchw(g, x)[1];
    let r = g.relu(x);
    let a = conv(g, store, "conv1x7", r, ConvSpec::rect(c_in, 1, 7).pad(0, 3));
    let spec = ConvSpec::rect(c_out, 7, 1).stride(stride).pad(3, 0);
    let b = conv(g, store, "conv7x1", a, spec);
    batchnorm(g, store, "bn", b, affine)
}

/// DARTS's FactorizedReduce (halves h and w): ReLU, then two 1×1 stride-2
/// convolutions to c_out/2 channels each, one on the input (`conv1`) and
/// one on it shifted by one cell diagonally (`conv2`, the input's
/// `x[:, :, 1:, 1:]` zero-padded back to full size so both branches agree
/// for odd sizes too), concatenated along channels, BN (`bn`).
pub fn factorized_reduce(
    g: &mut Graph,
    store: &mut ParamStore,
    x: T,
    c_out: usize,
    affine: bool,
) -> T {
    assert!(
        c_out.is_multiple_of(2),
        "FactorizedReduce needs an even channel count, got {c_out}"
    );
    let [n, c, h, w] = nchw(g, x);
    let r = g.relu(x);
    let spec = ConvSpec::new(c_out / 2, 1).stride(2);
    let a = conv(g, store, "conv1", r, spec);
    let shifted = g.slice(r, SliceShape::factorized_reduce(n, c, h, w));
    let b = conv(g, store, "conv2", shifted, spec);
    let y = g.concat(&[a, b]);
    batchnorm(g, store, "bn", y, affine)
}

/// skip_connect: the input itself at stride 1 (same channels), a
/// FactorizedReduce at stride 2.
pub fn skip_connect(
    g: &mut Graph,
    store: &mut ParamStore,
    x: T,
    c_out: usize,
    stride: usize,
    affine: bool,
) -> T {
    match stride {
        1 => {
            // In a pruned network the identity carries its input's kept
            // channels, which the add after it checks against the other slot.
            if store.widths.is_empty() {
                assert_eq!(nchw(g, x)[1], c_out, "identity cannot change channels");
            }
            x
        }
        2 => factorized_reduce(g, store, x, c_out, affine),
        s => panic!("skip_connect supports stride 1 or 2, got {s}"),
    }
}

fn pool3x3(g: &Graph, x: T, stride: usize) -> pool::Shape {
    let [n, c, h, w] = nchw(g, x);
    let s = pool::Shape {
        n,
        c,
        h,
        w,
        k: 3,
        stride,
        pad: 1,
    };
    if let Err(e) = s.validate() {
        panic!("{e}");
    }
    s
}

/// max_pool_3x3: 3×3 window, padding 1.
pub fn max_pool_3x3(g: &mut Graph, x: T, stride: usize) -> T {
    let s = pool3x3(g, x, stride);
    g.max_pool(x, s)
}

/// avg_pool_3x3: 3×3 window, padding 1, padding not counted (DARTS's
/// `count_include_pad=False`).
pub fn avg_pool_3x3(g: &mut Graph, x: T, stride: usize) -> T {
    let s = pool3x3(g, x, stride);
    g.avg_pool(x, s)
}

/// A fully connected layer on x [batch, in]: `weight` [out, in]
/// (Kaiming-normal) and, with `bias`, `bias` [out] (zeros), in the current
/// scope.
pub fn linear(g: &mut Graph, store: &mut ParamStore, x: T, out_features: usize, bias: bool) -> T {
    let (batch, in_features) = match g.def(x).shape[..] {
        [b, i] => (b, i),
        ref s => panic!("linear wants [batch, features], got {s:?}"),
    };
    let w = store.param(
        g,
        "weight",
        &[out_features, in_features],
        Init::kaiming(in_features),
    );
    let b = bias.then(|| store.param(g, "bias", &[out_features], Init::Zeros));
    let s = LinearShape {
        batch,
        in_features,
        out_features,
    };
    g.linear(x, w, b, s)
}
