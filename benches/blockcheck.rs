//! What checking one block read costs the measured thread: the sector words
//! (`BlockSums::check_full_or_sectors` with `full` false, the check of 63 of every 64 blocks by
//! default) and the full positional checksum (the 64th), on a 4 KiB block already in the cache,
//! as a page-cache read leaves it. storage_read reports the same cost per read, measured inside
//! its trials, as `check_ns_per_io`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use zclab::sys::blocksum::BlockSums;
use zclab::sys::file::fill_pattern;

fn block_check(c: &mut Criterion) {
    let bs = 4096u64;
    let sums = BlockSums::for_pattern(1 << 20, bs);
    let off = 37 * bs;
    let mut block = vec![0u8; bs as usize];
    fill_pattern(&mut block, off);
    let mut g = c.benchmark_group("block_check_4KiB");
    g.bench_function("sector words", |b| {
        b.iter(|| assert!(sums.check_full_or_sectors(black_box(&block), black_box(off), false)))
    });
    g.bench_function("full checksum", |b| {
        b.iter(|| assert!(sums.check_full_or_sectors(black_box(&block), black_box(off), true)))
    });
    g.finish();
}

criterion_group!(benches, block_check);
criterion_main!(benches);
