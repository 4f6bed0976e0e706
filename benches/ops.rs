//! Criterion benchmarks over the same kernels as `gradnas bench`: each
//! iteration submits one op's dispatches and waits for the device.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use gradnas::bench;
use gradnas::engine::Gpu;

fn ops(c: &mut Criterion) {
    let gpu = Gpu::shared().unwrap_or_else(|e| panic!("benchmarks need a GPU adapter: {e}"));
    let mut group = c.benchmark_group("ops");
    group.sample_size(10);
    for case in bench::cases() {
        let kernels = case.build(gpu).expect("build kernels");
        group.throughput(Throughput::Elements(case.flops as u64));
        group.bench_function(format!("{} {}", case.op, case.shape), |b| {
            b.iter(|| bench::run_repeated(gpu, &kernels, 1).expect("run"))
        });
    }
    group.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
