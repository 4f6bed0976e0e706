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
