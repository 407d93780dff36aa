//! What the harness adds per recorded sample: one clock read plus one histogram record
//! (`Recorder::record_since`, the call every variant's loop makes once per step), against a
//! bare clock read and `Instant::now()` for reference. The README quotes the first figure.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;
use zclab::measure::{Clock, Recorder};

fn per_sample(c: &mut Criterion) {
    let clock = Clock::new();
    let mut g = c.benchmark_group("per_sample");
    let mut rec = Recorder::new(clock);
    let mut s = rec.now();
    g.bench_function(
        format!("record_since ({} clock)", clock.info().source),
        |b| {
            b.iter(|| {
                s = rec.record_since(black_box(s));
            })
        },
    );
    g.bench_function(format!("clock read only ({})", clock.info().source), |b| {
        b.iter(|| black_box(clock.now()))
    });
    g.bench_function("Instant::now", |b| b.iter(|| black_box(Instant::now())));
    g.finish();
    assert!(!rec.histogram().is_empty());
}

criterion_group!(benches, per_sample);
criterion_main!(benches);
