//! File mappings beyond [`super::file::map_readonly`]: a writable shared mapping (mmap(2)
//! `PROT_WRITE`, `MAP_SHARED`; stores land in the file's page-cache pages, with no write(2)), `MAP_POPULATE`, madvise(2) advice, page-cache residency
//! (mincore(2)), and pre-sizing a file (fallocate(2), ftruncate(2)).
//!
//! Mapping a file is `unsafe` in Rust because another process could truncate or change it
//! while the mapping lives; the lab maps only files it created itself in its work directory
//! and keeps them unchanged (other than through the mapping) until the mapping is dropped.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

/// The system page size (sysconf(3) `_SC_PAGESIZE`).
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize)
}

/// `len` rounded up to whole pages: what a mapping of a `len`-byte file occupies.
pub fn page_round(len: u64) -> u64 {
    let p = page_size() as u64;
    len.div_ceil(p) * p
}

/// Maps `f` read-only and shared with `MAP_POPULATE`: the kernel reads the whole file in and
/// fills the page tables inside mmap(2), so later accesses take no faults.
pub fn map_readonly_populate(f: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: see the module comment: the file is the lab's own and is not truncated or
    // modified while the mapping lives, so the bytes the mapping exposes stay valid.
    unsafe { memmap2::MmapOptions::new().populate().map(f) }
}

/// madvise(2) `MADV_SEQUENTIAL` over the whole mapping: aggressive read-ahead, pages behind
/// the reader may be dropped early.
pub fn advise_sequential(m: &memmap2::Mmap) -> io::Result<()> {
    m.advise(memmap2::Advice::Sequential)
}

/// Maps `f` read-write and shared (`PROT_READ | PROT_WRITE`, `MAP_SHARED`): stores through the
/// mapping go to the file's page cache. `f` must be open for reading and writing and already
/// have its final length (see [`presize`]); a store past the end of the file would be SIGBUS.
pub fn map_shared_mut(f: &File) -> io::Result<memmap2::MmapMut> {
    // SAFETY: see the module comment: the lab created this file, nothing else maps or
    // truncates it while this mapping lives, and the mapping covers exactly the file's length
    // at the time of the call, so every byte of the slice is backed by the file.
    unsafe { memmap2::MmapMut::map_mut(f) }
}

/// Sets `f`'s length to `len` (ftruncate(2)) and maps it with [`map_shared_mut`]: what is
/// stored into the returned slice is the file's content; `MmapMut::flush_range` is msync(2)
/// MS_SYNC. `f` must be open for reading and writing.
pub fn map_shared_writable(f: &File, len: u64) -> io::Result<memmap2::MmapMut> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot map an empty file",
        ));
    }
    f.set_len(len)?;
    map_shared_mut(f)
}

/// How [`presize`] gave the file its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presized {
    /// fallocate(2) mode 0: blocks allocated (unwritten extents) and the size set.
    Fallocate,
    /// ftruncate(2): size set, the file is sparse (the filesystem refused fallocate).
    Ftruncate,
}

/// Gives `f` a length of `len` bytes before it is mapped: fallocate(2) where the filesystem
/// supports it, else ftruncate(2).
pub fn presize(f: &File, len: u64) -> io::Result<Presized> {
    match nix::fcntl::fallocate(
        f.as_fd(),
        nix::fcntl::FallocateFlags::empty(),
        0,
        len as libc::off_t,
    ) {
        Ok(()) => Ok(Presized::Fallocate),
        Err(nix::errno::Errno::EOPNOTSUPP) => {
            f.set_len(len)?;
            Ok(Presized::Ftruncate)
        }
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("fallocate({len}): {e}"),
        )),
    }
}

/// Fraction (0..=1) of `f`'s pages present in the page cache, by mapping it and asking
/// mincore(2). An empty file counts as fully resident.
pub fn resident_fraction(f: &File) -> io::Result<f64> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(1.0);
    }
    let m = super::file::map_readonly(f)?;
    let pages = (len as usize).div_ceil(page_size());
    let mut vec = vec![0u8; pages];
    // SAFETY: `m` is a live mapping of `m.len()` bytes starting at a page boundary, and `vec`
    // has one byte per page of that range, which is all mincore writes.
    let rc = unsafe { libc::mincore(m.as_ptr() as *mut libc::c_void, m.len(), vec.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let resident = vec.iter().filter(|&&b| b & 1 != 0).count();
    Ok(resident as f64 / pages as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn page_rounding() {
        let p = page_size() as u64;
        if p == 4096 {
            assert_eq!(page_round(5000), 8192, "the seeds' 5 KB file maps 8 KiB");
        }
        assert_eq!(page_round(p), p);
        assert_eq!(page_round(1), p);
    }

    /// A new file `m` in `dir`, open for reading and writing.
    fn read_write(dir: &tempfile::TempDir) -> (std::path::PathBuf, File) {
        let path = dir.path().join("m");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, f)
    }

    #[test]
    fn stores_reach_the_file() {
        let d = tempfile::tempdir().unwrap();
        let (p, f) = read_write(&d);
        let mut m = map_shared_writable(&f, 8192).unwrap();
        m[4096..4101].copy_from_slice(b"hello");
        m.flush().unwrap();
        drop(m);
        let s = std::fs::read(&p).unwrap();
        assert_eq!(s.len(), 8192);
        assert_eq!(&s[4096..4101], b"hello");
    }

    #[test]
    fn shared_mapping_writes_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, f) = read_write(&dir);
        presize(&f, 10000).unwrap();
        let mut m = map_shared_mut(&f).unwrap();
        m[9999] = 7;
        drop(m);
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 10000);
        assert_eq!(data[9999], 7);
        let mut g = File::create(dir.path().join("r")).unwrap();
        g.write_all(&[1; 8192]).unwrap();
        let g = File::open(dir.path().join("r")).unwrap();
        assert!(resident_fraction(&g).unwrap() > 0.99);
        let p = map_readonly_populate(&g).unwrap();
        advise_sequential(&p).unwrap();
        assert_eq!(p[8191], 1);
    }
}
