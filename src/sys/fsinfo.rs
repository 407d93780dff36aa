//! What a directory's filesystem is and what direct I/O there demands: statfs(2) `f_type`,
//! a scratch file opened with `O_DIRECT` (open(2)), statx(2) `STATX_DIOALIGN`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The filesystem magic number of `dir` (statfs(2) `f_type`, as in `<linux/magic.h>`).
pub fn fs_magic(dir: &Path) -> io::Result<u32> {
    let st = nix::sys::statfs::statfs(dir)?;
    // f_type is a signed word; magic numbers are 32-bit.
    Ok((st.filesystem_type().0 as u64 & 0xffff_ffff) as u32)
}

static SCRATCH_SEQ: AtomicU32 = AtomicU32::new(0);

/// Creates a fresh file in `dir` with `O_DIRECT` (open(2), `O_CREAT | O_EXCL`) and unlinks it at
/// once, so nothing is left behind; the open fd is what remains. EINVAL means the filesystem
/// refuses `O_DIRECT`.
pub fn open_direct_scratch(dir: &Path) -> io::Result<OwnedFd> {
    let name = format!(
        ".zclab-odirect-{}-{}",
        std::process::id(),
        SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is NUL-terminated; O_CREAT takes the mode argument given.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_DIRECT | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = fs::remove_file(&path);
    Ok(fd)
}

/// statx(2) `STATX_DIOALIGN` of an open file: (buffer alignment, file offset alignment), or
/// None when the kernel (before 6.1) or filesystem does not report it.
pub fn dio_align(fd: BorrowedFd<'_>) -> io::Result<Option<(u32, u32)>> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: empty path with AT_EMPTY_PATH refers to `fd` itself; `stx` is writable and of the
    // kernel's layout.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_mem_align == 0 {
        return Ok(None);
    }
    Ok(Some((stx.stx_dio_mem_align, stx.stx_dio_offset_align)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn scratch_file_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert!(fs_magic(d.path()).unwrap() != 0);
        // tmpfs or a block filesystem: either accepts O_DIRECT here.
        let fd = open_direct_scratch(d.path()).unwrap();
        let _ = dio_align(fd.as_fd()).unwrap();
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
