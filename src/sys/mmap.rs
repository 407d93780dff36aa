//! mmap(2) regions the lab owns: the AF_XDP UMEM and rings, the AF_PACKET ring and the TCP
//! receive zero-copy window. Each is unmapped when its owner drops it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// One mmap'd region, unmapped on drop.
pub(super) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// `len` bytes of private anonymous memory, read-write, populated up front. The error
    /// names the mapping (`what`).
    pub(super) fn anon(len: usize, what: &str) -> io::Result<Mapping> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::checked(p, len, what)
    }

    /// `len` bytes of what `fd` exposes at `offset` (a socket's ring or receive window),
    /// MAP_SHARED with `flags` added (MAP_POPULATE), protection `prot`. The error names the
    /// mapping (`what`).
    pub(super) fn shared(
        fd: BorrowedFd,
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
        offset: u64,
        what: &str,
    ) -> io::Result<Mapping> {
        // SAFETY: a new mapping chosen by the kernel of the region `fd` defines at `offset`;
        // the kernel checks the length against it. Nothing aliases it yet.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED | flags,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        Self::checked(p, len, what)
    }

    fn checked(p: *mut libc::c_void, len: usize, what: &str) -> io::Result<Mapping> {
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?,
            len,
        })
    }

    /// The first byte of the mapping.
    #[inline]
    pub(super) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapping's length in bytes.
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the mapping any more
        // (whatever points into it borrows or is owned by the mapping's owner, being dropped).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

// SAFETY: the mapping is plain memory; its owners order access to it (ring protocols, atomics).
unsafe impl Send for Mapping {}
