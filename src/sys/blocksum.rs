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
//!
//! Cheaper still, [`BlockSums::check_nth`] compares only the first and the last word of every
//! 512-byte sector with the pattern's words at their offsets (16 words of a 4 KiB block, ~10 ns
//! against ~95 ns for the checksum here) and runs the whole checksum on every
//! [`BlockSums::full_every`]-th block. The sector words catch what a storage path gets wrong
//! in whole sectors or blocks: a block from another offset, a shifted block, a torn read that
//! mixes sectors of different offsets or leaves zeros, a block never written; a corruption
//! inside a sector, away from its first and last word, is caught only in the fully checked
//! blocks.
//!
//! The plain pattern depends on the offset alone, so a block of another file of the lab's at
//! the same offset (a stale block: an earlier run's, or one a filesystem failed to overwrite)
//! would pass. A file written with a key of its own ([`super::file::PatternFile::create_keyed`],
//! [`BlockSums::for_pattern_keyed`]) has every word XOR-ed with it, and both checks compare
//! against the keyed words: a block of a file with another key fails every word. storage_read
//! writes its file with a key drawn for each run.

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
    /// The pattern's key ([`super::file::fill_pattern_keyed`]; 0: the plain pattern).
    pub key: u64,
    sums: Vec<u64>,
    /// [`Self::check_nth`] runs the whole checksum on every this-many-th block (1: on all).
    pub full_every: u64,
}

/// Bytes per sector for [`BlockSums::check_nth`]'s sector words.
pub const SECTOR: usize = 512;

impl BlockSums {
    /// Computes the sums from the pattern generator ([`super::file::fill_pattern`]).
    pub fn for_pattern(size: u64, bs: u64) -> BlockSums {
        BlockSums::for_pattern_keyed(size, bs, 0)
    }

    /// The sums of a file written with the pattern XOR-ed with `key`
    /// ([`super::file::PatternFile::create_keyed`]).
    pub fn for_pattern_keyed(size: u64, bs: u64, key: u64) -> BlockSums {
        let n = size / bs;
        let mut buf = vec![0u8; bs as usize];
        let sums = (0..n)
            .map(|k| {
                super::file::fill_pattern_keyed(&mut buf, k * bs, key);
                block_sum(&buf)
            })
            .collect();
        BlockSums {
            bs,
            key,
            sums,
            full_every: 1,
        }
    }

    /// The same sums, with [`Self::check_nth`] checking every `n`-th block in full (n >= 1).
    pub fn with_full_every(mut self, n: u64) -> BlockSums {
        self.full_every = n.max(1);
        self
    }

    /// Number of whole blocks.
    pub fn blocks(&self) -> u64 {
        self.sums.len() as u64
    }

    /// Whether `buf` is the whole block at file offset `off`.
    #[inline]
    pub fn check(&self, buf: &[u8], off: u64) -> bool {
        buf.len() as u64 == self.bs
            && self
                .block_index(off)
                .is_some_and(|k| self.sums[k] == block_sum(buf))
    }

    /// The index of the block at file offset `off`, if `off` starts a whole block. A shift and
    /// a mask where the block size is a power of two: a 64-bit division is tens of cycles, a
    /// sizeable part of a sector check.
    #[inline]
    fn block_index(&self, off: u64) -> Option<usize> {
        let k = if self.bs.is_power_of_two() {
            (off & (self.bs - 1) == 0).then(|| off >> self.bs.trailing_zeros())
        } else {
            (off % self.bs == 0).then(|| off / self.bs)
        }?;
        (k < self.blocks()).then_some(k as usize)
    }

    /// Whether [`Self::check_nth`] runs the whole checksum on the `seq`-th block read.
    #[inline]
    pub fn is_full(&self, seq: u64) -> bool {
        if self.full_every.is_power_of_two() {
            seq & (self.full_every - 1) == 0
        } else {
            seq % self.full_every == 0
        }
    }

    /// The check of the `seq`-th block read (counting from 0): the whole checksum
    /// ([`Self::check`]) when `seq` is a multiple of [`Self::full_every`] or the block's words
    /// are not 8-byte aligned in the file, else the first and last word of each 512-byte sector
    /// against the pattern's.
    #[inline]
    pub fn check_nth(&self, buf: &[u8], off: u64, seq: u64) -> bool {
        self.check_full_or_sectors(buf, off, self.is_full(seq))
    }

    /// [`Self::check_nth`] with its choice made by the caller: the whole checksum when `full`
    /// (or the block's words are not 8-byte aligned in the file), else the sector words.
    #[inline]
    pub fn check_full_or_sectors(&self, buf: &[u8], off: u64, full: bool) -> bool {
        if full || off % 8 != 0 || buf.len() % 8 != 0 {
            return self.check(buf, off);
        }
        buf.len() as u64 == self.bs
            && self.block_index(off).is_some()
            && sector_words_match(buf, off, self.key)
    }
}

/// Whether the first and the last 8-byte word of every [`SECTOR`] of `buf` (a whole number of
/// words, at an 8-byte aligned file offset `off`) are the pattern's, keyed with `key`. The differences are
/// OR-ed together and tested once, whole sectors taken as fixed-size chunks: no branch and no
/// bounds check per word, and no early exit, so the cost does not depend on where a block goes
/// wrong.
#[inline]
fn sector_words_match(buf: &[u8], off: u64, key: u64) -> bool {
    const WORDS: u64 = (SECTOR / 8) as u64;
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("8 bytes"));
    let mut diff = 0u64;
    let mut idx = off / 8;
    let mut sectors = buf.chunks_exact(SECTOR);
    for s in &mut sectors {
        diff |= word(&s[..8]) ^ super::file::pattern_word(idx) ^ key;
        diff |= word(&s[SECTOR - 8..]) ^ super::file::pattern_word(idx + WORDS - 1) ^ key;
        idx += WORDS;
    }
    let tail = sectors.remainder();
    if let (Some(first), Some(last)) = (tail.get(..8), tail.len().checked_sub(8)) {
        diff |= word(first) ^ super::file::pattern_word(idx) ^ key;
        diff |= word(&tail[last..]) ^ super::file::pattern_word(idx + last as u64 / 8) ^ key;
    }
    !buf.is_empty() && diff == 0
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

    #[test]
    fn sector_words_catch_whole_sector_errors_and_full_checks_the_rest() {
        let sums = BlockSums::for_pattern(64 * 1024, 4096).with_full_every(4);
        let mut b = vec![0u8; 4096];
        fill_pattern(&mut b, 8192);
        for seq in 0..8 {
            assert!(sums.check_nth(&b, 8192, seq), "a good block, read {seq}");
            assert!(!sums.check_nth(&b, 4096, seq), "another offset, read {seq}");
            assert!(
                !sums.check_nth(&[0u8; 4096], 8192, seq),
                "zeros, read {seq}"
            );
            assert!(!sums.check_nth(&b[..4000], 8192, seq), "short, read {seq}");
            assert!(
                !sums.check_nth(&b, 64 * 1024, seq),
                "past the end, read {seq}"
            );
        }
        // A torn read: its 4th sector from the block at 0.
        let mut torn = b.clone();
        let mut other = vec![0u8; 4096];
        fill_pattern(&mut other, 0);
        torn[3 * 512..4 * 512].copy_from_slice(&other[3 * 512..4 * 512]);
        assert!(!sums.check_nth(&torn, 8192, 1), "torn at a sector");
        let mut shifted = vec![0u8; 4096];
        fill_pattern(&mut shifted, 8200);
        assert!(!sums.check_nth(&shifted, 8192, 1), "shifted by a word");
        // A flip inside a sector: missed by the sector words, caught by the full check.
        let mut flip = b.clone();
        flip[1234] ^= 1;
        assert!(
            sums.check_nth(&flip, 8192, 1),
            "the sector words do not see it"
        );
        assert!(!sums.check_nth(&flip, 8192, 4), "the full check does");
        let every = BlockSums::for_pattern(64 * 1024, 4096);
        assert!(
            !every.check_nth(&flip, 8192, 1),
            "full_every 1 checks all in full"
        );
    }

    #[test]
    fn a_block_of_another_key_is_stale() {
        let key = 0x5EED_0000_0000_0001;
        let sums = BlockSums::for_pattern_keyed(64 * 1024, 4096, key).with_full_every(4);
        let mut ours = vec![0u8; 4096];
        crate::sys::file::fill_pattern_keyed(&mut ours, 8192, key);
        let mut stale = vec![0u8; 4096];
        fill_pattern(&mut stale, 8192); // the same offset, the plain pattern
        let mut other = vec![0u8; 4096];
        crate::sys::file::fill_pattern_keyed(&mut other, 8192, key ^ 0x80);
        for seq in 0..4 {
            assert!(
                sums.check_nth(&ours, 8192, seq),
                "this run's block, read {seq}"
            );
            assert!(
                !sums.check_nth(&stale, 8192, seq),
                "the plain pattern, read {seq}"
            );
            assert!(
                !sums.check_nth(&other, 8192, seq),
                "another key, read {seq}"
            );
        }
        // One sector of another key in a block of ours.
        let mut torn = ours.clone();
        torn[512..1024].copy_from_slice(&other[512..1024]);
        assert!(!sums.check_nth(&torn, 8192, 1));
    }

    #[test]
    fn block_sizes_and_full_intervals_that_are_not_powers_of_two() {
        let sums = BlockSums::for_pattern(16 * 3072, 3072).with_full_every(3);
        let mut b = vec![0u8; 3072];
        fill_pattern(&mut b, 2 * 3072);
        let mut flip = b.clone();
        flip[700] ^= 1;
        for seq in 0..6 {
            assert_eq!(sums.is_full(seq), seq % 3 == 0, "read {seq}");
            assert!(
                sums.check_nth(&b, 2 * 3072, seq),
                "a good block, read {seq}"
            );
            assert!(
                !sums.check_nth(&b, 4096, seq),
                "not a block's start, read {seq}"
            );
            assert!(
                !sums.check_nth(&b, 16 * 3072, seq),
                "past the end, read {seq}"
            );
            assert_eq!(
                sums.check_nth(&flip, 2 * 3072, seq),
                seq % 3 != 0,
                "a flip inside a sector, read {seq}"
            );
        }
    }
}
