//! XXH3-64 (seed 0, the default secret): the digest every stream, file and datagram check of
//! the lab compares, on this host and with a peer host's `zclab serve`. One wrapper, so the
//! implementation is chosen in one place: twox-hash, which picks AVX2 or SSE2 when it runs
//! (xxhash-rust, used before, picks at build time and so ran SSE2 on every x86-64 build:
//! 18.5 GiB/s against 32.3 over 128 KiB on the 2-vCPU EPYC VM, 2026-12-07). The digests are
//! the same; a test checks them against xxhash-rust's.

use std::hash::Hasher;
use twox_hash::XxHash3_64;

/// A streaming XXH3-64: [`Xxh3::update`] with any split of the bytes gives the digest of
/// their concatenation.
#[derive(Clone)]
pub struct Xxh3(XxHash3_64);

impl Xxh3 {
    pub fn new() -> Xxh3 {
        Xxh3(XxHash3_64::with_seed(0))
    }

    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The digest of everything given so far (the state is kept: more may follow).
    #[inline]
    pub fn digest(&self) -> u64 {
        self.0.finish()
    }

    /// Starts over, as [`Xxh3::new`].
    pub fn reset(&mut self) {
        *self = Xxh3::new();
    }
}

impl Default for Xxh3 {
    fn default() -> Xxh3 {
        Xxh3::new()
    }
}

impl std::fmt::Debug for Xxh3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Xxh3({:#018x})", self.digest())
    }
}

/// A receiver's [`Xxh3`] of its stream with the wall time spent hashing it: the part of its
/// CPU that a receiver which only copies does not spend. Two clock readings per update (one
/// per read of up to 256 KiB in the lab's receivers): tens of ns against microseconds.
#[derive(Debug, Clone, Default)]
pub struct TimedXxh3 {
    h: Xxh3,
    ns: u64,
}

impl TimedXxh3 {
    pub fn new() -> TimedXxh3 {
        TimedXxh3::default()
    }

    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        let t0 = std::time::Instant::now();
        self.h.update(bytes);
        self.ns += t0.elapsed().as_nanos() as u64;
    }

    pub fn digest(&self) -> u64 {
        self.h.digest()
    }

    /// Nanoseconds spent in [`TimedXxh3::update`] so far.
    pub fn ns(&self) -> u64 {
        self.ns
    }
}

/// XXH3-64 of `bytes` in one call.
#[inline]
pub fn xxh3_64(bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length class of XXH3 (0, 1-3, 4-8, 9-16, 17-128, 129-240, the long loop and its
    /// stripes and blocks), in one piece and split at odd places, against xxhash-rust's
    /// digests: the digests peers and earlier runs computed.
    #[test]
    fn digests_are_xxhash_rusts() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..=300).chain([1023, 1024, 1025, 4096, 65_536, 131_072, 299_999]) {
            let b = &data[..len];
            let want = xxhash_rust::xxh3::xxh3_64(b);
            assert_eq!(xxh3_64(b), want, "one-shot, {len} B");
            let mut h = Xxh3::new();
            for part in b.chunks(77) {
                h.update(part);
            }
            assert_eq!(h.digest(), want, "streamed in 77-byte parts, {len} B");
            let mut h = Xxh3::default();
            let (x, y) = b.split_at(len / 3);
            h.update(x);
            h.update(&[]);
            h.update(y);
            assert_eq!(h.digest(), want, "streamed in two, {len} B");
            h.reset();
            h.update(b);
            assert_eq!(h.digest(), want, "after reset, {len} B");
        }
    }
}
