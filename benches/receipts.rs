//! Receipt throughput: offline verification (target ≥ 200,000 receipts/s on one core),
//! parsing, hashing, and the writer's cost to seal (hash + sign) one receipt.
//!
//! Run: `cargo bench --no-default-features --bench receipts`.
//!
//! Times are this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID` via `cpu-time`), not wall time:
//! the development machine is shared by several builds at once, and CPU time is what "one
//! core" means. The thread being descheduled does not count; everything it executes does.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mom::receipts::demo::{demo_chain, demo_draft};
use mom::receipts::hash::canonical_body;
use mom::receipts::{
    ChainBuilder, SignatureCheck, Signer, TrustedKeys, VerifyOptions, parse_json_lines, receipt_hash, to_json_lines,
    verify_chain, verify_json_lines,
};

const N: u64 = 20_000;
const CHECKPOINT_EVERY: u64 = 1_000;

/// CPU time of the benchmarking thread.
struct ThreadCpu {
    wall: WallTime,
}

impl Measurement for ThreadCpu {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }
    fn end(&self, i: Self::Intermediate) -> Self::Value {
        i.elapsed()
    }
    fn add(&self, v1: &Duration, v2: &Duration) -> Duration {
        *v1 + *v2
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, exactly as for wall time.
        self.wall.formatter()
    }
}

fn bench(c: &mut Criterion<ThreadCpu>) {
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
    // Straight from text: MOM's own lines are hashed from borrowed slices, no Receipt built.
    g.bench_function("verify_json_lines_anchors", |b| {
        b.iter(|| black_box(verify_json_lines(black_box(&text), &keys, &anchors).expect("parse")))
    });
    // What `mom verify` pays: it exits right after, so it never frees the parsed receipts.
    g.bench_function("parse_and_verify_anchors_without_freeing", |b| {
        b.iter_with_large_drop(|| {
            let rs = parse_json_lines(black_box(&text)).expect("parse");
            let report = verify_chain(&rs, &keys, &anchors);
            (rs, report)
        })
    });
    g.bench_function("canonical_body", |b| {
        b.iter(|| {
            for r in &chain {
                black_box(canonical_body(black_box(r)).expect("body"));
            }
        })
    });
    let bodies: Vec<String> = chain.iter().map(|r| canonical_body(r).expect("body")).collect();
    g.bench_function("sha256_of_bodies", |b| {
        b.iter(|| {
            for body in &bodies {
                black_box(<sha2::Sha256 as sha2::Digest>::digest(black_box(body.as_bytes())));
            }
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

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu { wall: WallTime });
    targets = bench
}
criterion_main!(benches);
