//! Receipt throughput: offline verification (target ≥ 200,000 receipts/s on one core),
//! parsing, hashing, and the writer's cost to seal (hash + sign) one receipt.
//!
//! Run: `cargo bench --no-default-features --bench receipts`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mom::receipts::demo::{demo_chain, demo_draft};
use mom::receipts::{
    ChainBuilder, SignatureCheck, Signer, TrustedKeys, VerifyOptions, parse_json_lines, receipt_hash, to_json_lines,
    verify_chain,
};

const N: u64 = 20_000;
const CHECKPOINT_EVERY: u64 = 1_000;

fn bench(c: &mut Criterion) {
    let signer = Signer::from_seed([7; 32]);
    let chain = demo_chain(&signer, N, CHECKPOINT_EVERY).expect("demo chain");
    let text = to_json_lines(&chain);
    let mut keys = TrustedKeys::new();
    keys.add(signer.public_key());
    let anchors = VerifyOptions::default();
    let all = VerifyOptions {
        signatures: SignatureCheck::All,
        pinned: Vec::new(),
    };
    assert!(verify_chain(&chain, &keys, &anchors).is_ok());

    let mut g = c.benchmark_group("receipts");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("verify_anchors_parsed", |b| {
        b.iter(|| black_box(verify_chain(black_box(&chain), &keys, &anchors)))
    });
    g.bench_function("parse_json_lines", |b| {
        b.iter(|| black_box(parse_json_lines(black_box(&text))))
    });
    g.bench_function("parse_and_verify_anchors", |b| {
        b.iter(|| {
            let rs = parse_json_lines(black_box(&text)).expect("parse");
            black_box(verify_chain(&rs, &keys, &anchors))
        })
    });
    g.bench_function("receipt_hash", |b| {
        b.iter(|| {
            for r in &chain {
                black_box(receipt_hash(black_box(r)).expect("hash"));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("receipts_signatures");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("verify_all_signatures_batch", |b| {
        b.iter(|| black_box(verify_chain(black_box(&chain), &keys, &all)))
    });
    g.finish();

    let mut g = c.benchmark_group("receipts_writer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_one_receipt", |b| {
        let builder = ChainBuilder::genesis(signer.clone());
        b.iter_batched(
            || demo_draft(5).expect("draft"),
            |d| black_box(builder.prepare(d)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
