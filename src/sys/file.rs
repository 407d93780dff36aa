//! Files with known content, and page-cache control (posix_fadvise(2)).

use crate::hash::Xxh3;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Fills `buf` with the lab's pattern for the bytes at file offset `off`: a xorshift stream
/// keyed by the 8-byte word index, so any byte's value depends on its position (reordered or
/// shifted data cannot pass a check).
pub fn fill_pattern(buf: &mut [u8], off: u64) {
    fill_pattern_keyed(buf, off, 0);
}

/// A random non-zero key for a run's pattern files ([`fill_pattern_keyed`]), from the
/// standard library's randomly seeded hasher (the OS's random source, read once per process).
pub fn run_key() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        .max(1)
}

/// The pattern XOR-ed word by word with `key` (0: the lab's pattern itself). A file written
/// with a key of its own run tells its blocks from those of any other file at the same offset:
/// every word of theirs differs from its by the XOR of the two keys.
pub fn fill_pattern_keyed(buf: &mut [u8], off: u64, key: u64) {
    if off % 8 == 0 {
        // Whole words at aligned offsets (the common case: a stream generated as it is sent).
        let whole = buf.len() / 8 * 8;
        let (words, tail) = buf.split_at_mut(whole);
        for (k, w) in words.chunks_exact_mut(8).enumerate() {
            w.copy_from_slice(&(pattern_word(off / 8 + k as u64) ^ key).to_le_bytes());
        }
        if !tail.is_empty() {
            fill_pattern_slow(tail, off + whole as u64, key);
        }
        return;
    }
    fill_pattern_slow(buf, off, key);
}

fn fill_pattern_slow(buf: &mut [u8], off: u64, key: u64) {
    let mut i = 0;
    while i < buf.len() {
        let pos = off + i as u64;
        let word = pattern_word(pos / 8) ^ key;
        let bytes = word.to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&bytes[start..start + n]);
        i += n;
    }
}

/// The pattern's 8-byte word at word index `idx` (file offset `8 * idx`).
#[inline]
pub(crate) fn pattern_word(idx: u64) -> u64 {
    let mut x = idx.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^ (x >> 33)
}

/// Whether `buf` holds the pattern for file offset `off`.
pub fn check_pattern(buf: &[u8], off: u64) -> bool {
    let mut tmp = [0u8; 4096];
    let mut i = 0;
    while i < buf.len() {
        let n = (buf.len() - i).min(tmp.len());
        fill_pattern(&mut tmp[..n], off + i as u64);
        if tmp[..n] != buf[i..i + n] {
            return false;
        }
        i += n;
    }
    true
}

/// A file of `size` pattern bytes at `path`, removed when dropped; `hash` is the xxh3-64 of
/// its content.
pub struct PatternFile {
    pub path: PathBuf,
    pub size: u64,
    pub hash: u64,
    /// The key its pattern was written with ([`fill_pattern_keyed`]; 0: the plain pattern).
    pub key: u64,
}

impl PatternFile {
    /// Writes the file (refusing when the filesystem lacks the space), fsyncs it so a cold-cache
    /// drop can evict it, and hashes it.
    pub fn create(path: &Path, size: u64) -> io::Result<PatternFile> {
        PatternFile::create_keyed(path, size, 0)
    }

    /// [`PatternFile::create`] with the pattern XOR-ed with `key` ([`fill_pattern_keyed`]).
    pub fn create_keyed(path: &Path, size: u64, key: u64) -> io::Result<PatternFile> {
        let free = free_bytes(path.parent().unwrap_or(Path::new(".")))?;
        if size > free {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "{} needs {size} B but its filesystem has {free} B free",
                    path.display()
                ),
            ));
        }
        let mut f = File::create(path).map_err(|e| super::named(e, "cannot create", path))?;
        // From here on the guard removes the file if writing fails.
        let mut guard = PatternFile {
            path: path.to_path_buf(),
            size,
            hash: 0,
            key,
        };
        let mut h = Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < size {
            let n = (size - off).min(buf.len() as u64) as usize;
            fill_pattern_keyed(&mut buf[..n], off, key);
            h.update(&buf[..n]);
            f.write_all(&buf[..n])
                .map_err(|e| super::named(e, "cannot write", path))?;
            off += n as u64;
        }
        f.sync_all()?;
        guard.hash = h.digest();
        Ok(guard)
    }

    /// Drops the file's pages from the page cache (POSIX_FADV_DONTNEED; no root needed).
    pub fn drop_cache(&self) -> io::Result<()> {
        drop_cache(&File::open(&self.path)?)
    }

    /// Reads the file once so its pages are cached.
    pub fn warm(&self) -> io::Result<()> {
        let mut f = File::open(&self.path)?;
        let mut buf = vec![0u8; 1 << 20];
        while f.read(&mut buf)? > 0 {}
        Ok(())
    }
}

impl Drop for PatternFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// posix_fadvise(POSIX_FADV_DONTNEED) over the whole file.
pub fn drop_cache(f: &File) -> io::Result<()> {
    nix::fcntl::posix_fadvise(
        f.as_fd(),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    )?;
    Ok(())
}

/// Bytes available to this user on the filesystem holding `dir` (statvfs(3)).
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| super::named(io::Error::from(e), "statvfs", dir))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// xxh3-64 of a whole file.
pub fn hash_file(path: &Path) -> io::Result<u64> {
    let mut f = File::open(path)?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.digest())
}

/// Maps `f` read-only and shared (mmap(2) with PROT_READ, MAP_SHARED).
pub fn map_readonly(f: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: the lab maps only files it created itself and does not modify or truncate them
    // while the mapping lives, so the slice the mapping exposes stays valid and unchanging.
    unsafe { memmap2::Mmap::map(f) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_positional() {
        let mut a = vec![0u8; 100];
        fill_pattern(&mut a, 13);
        assert!(check_pattern(&a, 13));
        assert!(!check_pattern(&a, 14));
        let mut b = vec![0u8; 87];
        fill_pattern(&mut b, 26);
        assert_eq!(&a[13..], &b[..]);
        // The aligned fast path gives the same bytes as the byte-wise one.
        let (mut fast, mut slow) = (vec![0u8; 77], vec![0u8; 77]);
        fill_pattern(&mut fast, 64);
        fill_pattern_slow(&mut slow, 64, 0);
        assert_eq!(fast, slow);
    }

    #[test]
    fn a_keyed_pattern_differs_in_every_word_and_keeps_its_positions() {
        let key = 0x0123_4567_89AB_CDEF;
        let (mut plain, mut keyed) = (vec![0u8; 4096], vec![0u8; 4096]);
        fill_pattern(&mut plain, 8192);
        fill_pattern_keyed(&mut keyed, 8192, key);
        for (p, k) in plain.chunks_exact(8).zip(keyed.chunks_exact(8)) {
            let (p, k) = (
                u64::from_le_bytes(p.try_into().unwrap()),
                u64::from_le_bytes(k.try_into().unwrap()),
            );
            assert_eq!(p ^ k, key);
        }
        // Unaligned offsets: the byte-wise path XORs the same key bytes.
        let mut part = vec![0u8; 29];
        fill_pattern_keyed(&mut part, 8192 + 3, key);
        assert_eq!(&part[..], &keyed[3..32]);
        let mut zero = vec![0u8; 64];
        fill_pattern_keyed(&mut zero, 8192, 0);
        assert_eq!(&zero[..], &plain[..64], "key 0 is the plain pattern");
    }
}
