//! Writable shared file mappings (mmap(2) with PROT_READ | PROT_WRITE, MAP_SHARED): bytes
//! stored into the mapping land in the file's page cache pages, with no write(2).

use std::fs::File;
use std::io;

/// Sets `f`'s length to `len` (ftruncate(2)) and maps it shared and writable. What is stored
/// into the returned slice is the file's content; `MmapMut::flush_range` is msync(2) MS_SYNC.
///
/// The file must have been opened for reading and writing.
pub fn map_shared_writable(f: &File, len: u64) -> io::Result<memmap2::MmapMut> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot map an empty file",
        ));
    }
    f.set_len(len)?;
    // SAFETY: the lab maps only files it created itself for this purpose and neither truncates
    // them nor writes them through another descriptor while the mapping lives, so the memory
    // behind the slice stays valid (no SIGBUS from a shrunk file) and is not aliased by other
    // Rust references.
    unsafe { memmap2::MmapOptions::new().len(len as usize).map_mut(f) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stores_reach_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let mut m = map_shared_writable(&f, 8192).unwrap();
        m[4096..4101].copy_from_slice(b"hello");
        m.flush().unwrap();
        drop(m);
        let mut s = Vec::new();
        File::open(&p).unwrap().read_to_end(&mut s).unwrap();
        assert_eq!(s.len(), 8192);
        assert_eq!(&s[4096..4101], b"hello");
    }
}
