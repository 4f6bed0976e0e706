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

#[test]
fn pool() {
    common::run_family("pool");
}

#[test]
fn batchnorm() {
    common::run_family("batchnorm");
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
