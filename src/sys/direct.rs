//! O_DIRECT (open(2) with `O_DIRECT`): whether a directory's filesystem really does direct I/O,
//! the alignment it demands (statx(2) `STATX_DIOALIGN`, read by the kernel probe), and
//! page-aligned buffers for it.
//!
//! tmpfs accepts `O_DIRECT` but has no block device under it, so nothing bypasses a cache there
//! (see NOTES.md): the lab refuses to call that direct I/O.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Alignment used when a block filesystem does direct I/O but the kernel predates
/// `STATX_DIOALIGN` (6.1): the logical block size of almost every device.
pub const FALLBACK_ALIGN: u32 = 4096;

/// What direct I/O on a directory's filesystem requires.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DirectIo {
    /// The directory probed.
    pub dir: String,
    /// Filesystem type, as the probe names it (`ext4/ext3/ext2`, `tmpfs`, ...).
    pub fs_type: String,
    /// Buffer address alignment in bytes (`stx_dio_mem_align`).
    pub mem_align: u32,
    /// File offset and length alignment in bytes (`stx_dio_offset_align`).
    pub offset_align: u32,
    /// How the alignment was learned: `"statx"` or the fallback.
    pub source: &'static str,
}

impl DirectIo {
    /// Why a direct read of `len` bytes at multiples of `len` breaks the alignment, if it does.
    pub fn misaligned(&self, len: u64) -> Option<String> {
        let a = self.offset_align as u64;
        (len % a != 0).then(|| {
            format!(
                "block size {len} B is not a multiple of the {a}-byte O_DIRECT alignment of {} ({} per {})",
                self.dir, self.fs_type, self.source
            )
        })
    }
}

/// Opens `path` read-only, with `O_DIRECT` when `direct`, and with `O_NOATIME` where the
/// caller may set it (open(2): the file's owner or CAP_FOWNER), as t/io_uring opens the files
/// it reads: no read then looks at the inode's access time (relatime's check costs ~10 ns per
/// 4 KiB page-cache read here). Returns the file and whether `O_NOATIME` took; without the
/// permission it opens without it, as fio does (EPERM).
pub fn open_read(path: &Path, direct: bool) -> io::Result<(File, bool)> {
    let open = |flags: i32| {
        OpenOptions::new()
            .read(true)
            .custom_flags(flags | if direct { libc::O_DIRECT } else { 0 })
            .open(path)
    };
    let what = if direct {
        "cannot open with O_DIRECT"
    } else {
        "cannot open"
    };
    match open(libc::O_NOATIME) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0)
            .map(|f| (f, false))
            .map_err(|e| super::named(e, what, path)),
        Err(e) => Err(super::named(e, what, path)),
    }
}

/// Page-aligned anonymous memory (mmap(2) `MAP_ANONYMOUS`), faulted in when created; page
/// alignment satisfies every `stx_dio_mem_align` a filesystem reports.
pub struct AlignedBuf(memmap2::MmapMut);

impl AlignedBuf {
    /// `len` bytes (at least one), zeroed and faulted in.
    pub fn new(len: usize) -> io::Result<AlignedBuf> {
        let mut m = memmap2::MmapMut::map_anon(len.max(1))?;
        m.fill(0);
        Ok(AlignedBuf(m))
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

#[cfg(test)]
impl DirectIo {
    /// For tests: ext4 at `/x` with the 512-byte alignments statx reports here.
    pub(crate) fn ext4_512() -> DirectIo {
        DirectIo {
            dir: "/x".into(),
            fs_type: "ext4".into(),
            mem_align: 512,
            offset_align: 512,
            source: "statx",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_is_page_aligned() {
        let b = AlignedBuf::new(5000).unwrap();
        assert_eq!(b.as_ptr() as usize % 4096, 0);
        assert_eq!(b.len(), 5000);
    }

    #[test]
    fn misalignment_is_named() {
        let d = DirectIo::ext4_512();
        assert!(d.misaligned(4096).is_none());
        assert!(d.misaligned(1000).unwrap().contains("512-byte"));
    }
}
