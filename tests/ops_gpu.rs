//! Every op and every gradient: GPU against the CPU reference on freshly
//! drawn random inputs over the full shape set (see `verify::Level::Full`).

mod common;

#[test]
fn elementwise() {
    common::run_family("elementwise");
}

#[test]
fn reduce() {
    common::run_family("reduce");
}

#[test]
fn conv2d() {
    common::run_family("conv2d");
}

/// The convolutions again with the other split of their weight gradients
/// (on lavapipe: many short chunks and the lane-parallel pass 2 a GPU gets).
#[test]
fn conv2d_other_split() {
    let gpu = common::other_split_gpu();
    common::run_family_on(&gpu, "conv2d");
}

#[test]
fn pool() {
    common::run_family("pool");
}

/// The pools again with the other adapter kind's kernels (on lavapipe: the
/// forward one output row per invocation, scalar loads, as on a GPU).
#[test]
fn pool_other_split() {
    let gpu = common::other_split_gpu();
    common::run_family_on(&gpu, "pool");
}

#[test]
fn batchnorm() {
    common::run_family("batchnorm");
}

/// Batch norm again with the other adapter kind's training workgroups (on
/// lavapipe: 256 wide, as on a GPU).
#[test]
fn batchnorm_other_split() {
    let gpu = common::other_split_gpu();
    common::run_family_on(&gpu, "batchnorm");
}

#[test]
fn layout() {
    common::run_family("layout");
}

#[test]
fn mix() {
    common::run_family("mix");
}

#[test]
fn mix_bn() {
    common::run_family("mix_bn");
}

/// mix_bn again with the other adapter kind's dot-product workgroups (on
/// lavapipe: 256 wide, as on a GPU).
#[test]
fn mix_bn_other_split() {
    let gpu = common::other_split_gpu();
    common::run_family_on(&gpu, "mix_bn");
}

#[test]
fn matmul() {
    common::run_family("matmul");
}

#[test]
fn softmax_xent() {
    common::run_family("softmax_xent");
}

#[test]
fn loss() {
    common::run_family("loss");
}

#[test]
fn optim() {
    common::run_family("optim");
}

#[test]
fn affine_scaling() {
    common::run_family("affine_scaling");
}

/// One wait for several tensors: `read_many` returns what `read` returns
/// for each, in order, empty and odd-sized buffers included.
#[test]
fn read_many_is_read_per_buffer() {
    let gpu = common::gpu();
    let mut rng = gradnas::verify::rng(3);
    let bufs: Vec<_> = [0usize, 3, 1, 7, 0, 1000]
        .iter()
        .map(|&n| {
            gpu.upload("t", &gradnas::verify::randn(&mut rng, n))
                .unwrap()
        })
        .collect();
    let refs: Vec<_> = bufs.iter().collect();
    let many = gpu.read_many(&refs).unwrap();
    assert_eq!(many.len(), bufs.len());
    for (b, got) in bufs.iter().zip(&many) {
        assert_eq!(got, &gpu.read(b).unwrap());
        assert_eq!(got.len(), b.len);
    }
    assert!(gpu.read_many(&[]).unwrap().is_empty());
}
