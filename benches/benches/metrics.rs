//! Criterion benches of relata-metrics' hot paths: popcount kernels, exact top-k Hamming
//! search, mAP@all at CUB size and R@K. Side-by-side comparisons against FAISS / numpy are
//! `cargo xtask bench metrics`; these track relata's own numbers over time.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use relata_benches::{random_bytes, structured_codes};
use relata_metrics::hamming::{Kernel, distances_with};
use relata_metrics::{
    HammingIndex, HashingEvalConfig, Labels, PackedCodes, evaluate_hashing, recall_at_k,
};

fn popcount(c: &mut Criterion) {
    let n = 1 << 16;
    let mut g = c.benchmark_group("hamming_distances_64bit");
    g.throughput(Throughput::Elements(n as u64));
    let db = PackedCodes::from_packbits(&random_bytes(n * 8, 1), n, 64).unwrap();
    let mut out = vec![0u16; n];
    for k in Kernel::available() {
        g.bench_function(BenchmarkId::from_parameter(k.name()), |b| {
            b.iter(|| distances_with(k, db.code(0), db.as_words(), &mut out))
        });
    }
    g.finish();
}

fn topk(c: &mut Criterion) {
    let n = 200_000;
    let index =
        HammingIndex::new(PackedCodes::from_packbits(&random_bytes(n * 8, 2), n, 64).unwrap())
            .unwrap();
    let queries = PackedCodes::from_packbits(&random_bytes(64 * 8, 3), 64, 64).unwrap();
    let mut g = c.benchmark_group("hamming_top100_200k");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("single_query", |b| {
        b.iter(|| index.search(queries.code(0), 100).unwrap())
    });
    g.throughput(Throughput::Elements((n * 64) as u64));
    g.bench_function("batch_64_queries", |b| {
        b.iter(|| index.search_batch(&queries, 100).unwrap())
    });
    g.finish();
}

fn map_cub(c: &mut Criterion) {
    let mut g = c.benchmark_group("map_all_cub");
    g.sample_size(10);
    for bits in [12usize, 48] {
        let (q, ql) = structured_codes(5794, 200, bits, 4);
        let (d, dl) = structured_codes(5994, 200, bits, 5);
        let (ql, dl) = (Labels::single(ql), Labels::single(dl));
        let cfg = HashingEvalConfig::default();
        g.bench_function(BenchmarkId::from_parameter(bits), |b| {
            b.iter(|| evaluate_hashing(&q, &d, &ql, &dl, &cfg).unwrap())
        });
    }
    g.finish();
}

fn recall(c: &mut Criterion) {
    let n = 1000;
    let bytes = random_bytes(n * n * 5, 6);
    let sims: Vec<f32> = bytes.iter().map(|&b| b as f32 / 255.0).collect();
    let mut g = c.benchmark_group("recall_at_k");
    g.sample_size(10);
    g.bench_function("1k_images", |b| {
        b.iter(|| recall_at_k(&sims, n, 5).unwrap())
    });
    g.finish();
}

criterion_group!(benches, popcount, topk, map_cub, recall);
criterion_main!(benches);
