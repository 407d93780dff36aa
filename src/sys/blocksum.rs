//! Checking blocks read from a pattern file fast enough to check every one of them.
//!
//! [`super::file::check_pattern`] regenerates the pattern byte by byte and costs about 3 us per
//! 4 KiB here — three times a page-cache read. A storage benchmark that checks every block
//! inline instead compares a positional checksum of the block ([`block_sum`], ~0.1 us per 4 KiB)
//! with the same checksum of the pattern at that offset, computed from the pattern generator
//! (never from the file) before the trial: [`BlockSums`].
//!
//! The checksum is four interleaved Fletcher-64 lanes (per lane `a += word; b += a`) over the
//! block's 8-byte words, folded to 64 bits. Every byte counts and its position counts (the `b`
//! sums weight each word by its distance from the end), so a block from another offset, a
//! shifted or partial block, zeros, or a flipped byte all fail; two errors cancelling exactly
//! is the only miss, a 2^-64 chance for unrelated data.

/// Positional checksum of `buf` (any length; a final partial word is zero-padded and the
/// length is folded in).
#[inline]
pub fn block_sum(buf: &[u8]) -> u64 {
    let mut a = [0u64; 4];
    let mut b = [0u64; 4];
    let mut chunks = buf.chunks_exact(32);
    for c in &mut chunks {
        for j in 0..4 {
            let w = u64::from_le_bytes(c[j * 8..j * 8 + 8].try_into().expect("8 bytes"));
            a[j] = a[j].wrapping_add(w);
            b[j] = b[j].wrapping_add(a[j]);
        }
    }
    for (j, w) in chunks.remainder().chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..w.len()].copy_from_slice(w);
        a[j] = a[j].wrapping_add(u64::from_le_bytes(word));
        b[j] = b[j].wrapping_add(a[j]);
    }
    let mut h = buf.len() as u64;
    for v in a.iter().chain(b.iter()) {
        h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    h
}

/// The expected [`block_sum`] of every whole `bs`-byte block of a pattern file of `size`
/// bytes (blocks at offsets `k * bs`).
pub struct BlockSums {
    pub bs: u64,
    sums: Vec<u64>,
}

impl BlockSums {
    /// Computes the sums from the pattern generator ([`super::file::fill_pattern`]).
    pub fn for_pattern(size: u64, bs: u64) -> BlockSums {
        let n = size / bs;
        let mut buf = vec![0u8; bs as usize];
        let sums = (0..n)
            .map(|k| {
                super::file::fill_pattern(&mut buf, k * bs);
                block_sum(&buf)
            })
            .collect();
        BlockSums { bs, sums }
    }

    /// Number of whole blocks.
    pub fn blocks(&self) -> u64 {
        self.sums.len() as u64
    }

    /// Whether `buf` is the whole block at file offset `off`.
    #[inline]
    pub fn check(&self, buf: &[u8], off: u64) -> bool {
        if buf.len() as u64 != self.bs || off % self.bs != 0 {
            return false;
        }
        self.sums
            .get((off / self.bs) as usize)
            .is_some_and(|&s| s == block_sum(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::file::fill_pattern;

    #[test]
    fn detects_wrong_offset_flip_swap_and_shift() {
        let sums = BlockSums::for_pattern(64 * 1024, 4096);
        assert_eq!(sums.blocks(), 16);
        let mut b = vec![0u8; 4096];
        fill_pattern(&mut b, 8192);
        assert!(sums.check(&b, 8192));
        assert!(!sums.check(&b, 4096), "block from another offset");
        let mut flip = b.clone();
        flip[1234] ^= 1;
        assert!(!sums.check(&flip, 8192), "one flipped bit");
        let mut swap = b.clone();
        swap.swap(0, 32); // same lane, different position
        let (x, y) = swap.split_at_mut(40);
        x[32..40].swap_with_slice(&mut y[..8]); // adjacent words, different lanes
        assert!(!sums.check(&swap, 8192), "swapped words");
        let mut shifted = vec![0u8; 4096];
        fill_pattern(&mut shifted, 8193);
        assert!(!sums.check(&shifted, 8192), "shifted by a byte");
        assert!(!sums.check(&[0u8; 4096], 8192), "zeros");
        assert!(!sums.check(&b[..4000], 8192), "short");
        let odd = BlockSums::for_pattern(10_000, 1000);
        let mut c = vec![0u8; 1000];
        fill_pattern(&mut c, 3000);
        assert!(odd.check(&c, 3000));
        c[999] ^= 0x80;
        assert!(
            !odd.check(&c, 3000),
            "last byte of a block with a partial word"
        );
    }
}
