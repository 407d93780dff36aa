//! TCP receive zero copy (tcp(7) TCP_ZEROCOPY_RECEIVE, Linux 4.18; the copy buffer 5.11): a
//! read-only mapping of a TCP socket into which the kernel moves whole pages of received data
//! with getsockopt, and what it could not map, copied into a small buffer or left to recv(2).
//! Also the TCP_MAXSEG and poll helpers the receive loops need.

use super::mmap::Mapping;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// `TCP_ZEROCOPY_RECEIVE` (include/uapi/linux/tcp.h).
pub const TCP_ZEROCOPY_RECEIVE: libc::c_int = 35;

/// `TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT` (include/uapi/linux/tcp.h): the mapping holds no
/// pages from an earlier call, so the kernel need not zap it first (Linux 5.11).
pub const TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT: u32 = 0x1;

/// `struct tcp_zerocopy_receive` (include/uapi/linux/tcp.h), the full 6.x layout.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct ZcReceive {
    address: u64,
    length: u32,
    recv_skip_hint: u32,
    inq: u32,
    err: i32,
    copybuf_address: u64,
    copybuf_len: i32,
    flags: u32,
    msg_control: u64,
    msg_controllen: u64,
    msg_flags: u32,
    reserved: u32,
}

/// What one TCP_ZEROCOPY_RECEIVE call did, from the kernel's own fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZcStep {
    /// Bytes mapped at the start of the mapping (`length`, whole pages).
    pub mapped: usize,
    /// Bytes copied into the copy buffer after them (`copybuf_len`).
    pub copied: usize,
    /// Bytes that follow and could be neither mapped nor copied: read them with recv(2)
    /// (`recv_skip_hint`).
    pub skip: usize,
    /// Bytes still queued on the socket after the call (`inq`).
    pub inq: usize,
}

/// Whether an error from [`ZcMap::receive`] means "no data and the socket is done": the
/// kernel answers EIO then (end of stream, or a reset: recv(2) tells which).
pub fn is_done(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EIO)
}

/// A read-only shared mapping of a TCP socket of `len` bytes (a multiple of the page size),
/// the target of [`ZcMap::receive`]. Pages mapped there are the socket's received data.
pub struct ZcMap {
    map: Mapping,
    /// Bytes at the start of the mapping that still hold pages from the last call.
    dirty: usize,
}

impl ZcMap {
    /// mmap(2) of `sock` (PROT_READ, MAP_SHARED), `len` rounded up to whole pages.
    pub fn new(sock: BorrowedFd, len: usize) -> io::Result<ZcMap> {
        let page = page_size();
        let len = len.max(1).div_ceil(page) * page;
        let map = Mapping::shared(sock, len, libc::PROT_READ, 0, 0, "mmap of the TCP socket")?;
        Ok(ZcMap { map, dirty: 0 })
    }

    /// The mapping's length.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// One getsockopt(TCP_ZEROCOPY_RECEIVE): maps up to the mapping's length of whole pages
    /// of `sock`'s received data, and copies into `copybuf` (when not empty) what follows
    /// that cannot be mapped. Pages mapped by the previous call and not [`ZcMap::release`]d
    /// are replaced (the kernel zaps them first); once released, the call says so
    /// (TLB_CLEAN_HINT) and the kernel skips that. Errors: EIO when nothing is queued and the
    /// socket is done ([`is_done`]).
    pub fn receive(&mut self, sock: BorrowedFd, copybuf: &mut [u8]) -> io::Result<ZcStep> {
        let mut zc = ZcReceive {
            address: self.map.ptr() as u64,
            length: self.map.len() as u32,
            copybuf_address: if copybuf.is_empty() {
                0
            } else {
                copybuf.as_mut_ptr() as u64
            },
            copybuf_len: copybuf.len().min(i32::MAX as usize) as i32,
            flags: if self.dirty == 0 {
                TCP_RECEIVE_ZEROCOPY_FLAG_TLB_CLEAN_HINT
            } else {
                0
            },
            ..Default::default()
        };
        let mut optlen = std::mem::size_of::<ZcReceive>() as libc::socklen_t;
        // SAFETY: `zc` and `optlen` are live locals of the sizes given; the kernel writes
        // received pages only into our own mapping (`self.map`) and copied bytes
        // only into `copybuf`, which is borrowed mutably for the call.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                TCP_ZEROCOPY_RECEIVE,
                (&mut zc as *mut ZcReceive).cast(),
                &mut optlen,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        if zc.err != 0 {
            return Err(io::Error::from_raw_os_error(zc.err.abs()));
        }
        let mapped = (zc.length as usize).min(self.map.len());
        if mapped > 0 {
            self.dirty = self.dirty.max(mapped);
        }
        Ok(ZcStep {
            mapped,
            copied: zc.copybuf_len.max(0) as usize,
            skip: zc.recv_skip_hint as usize,
            inq: zc.inq as usize,
        })
    }

    /// The first `n` bytes of the mapping, as the last [`ZcMap::receive`] mapped them.
    pub fn bytes(&self, n: usize) -> &[u8] {
        let n = n.min(self.map.len());
        // SAFETY: the mapping lives as long as `self`; callers read only the bytes the last
        // `receive` reported mapped (pages the kernel put there), so no unpopulated page of
        // the socket mapping is touched.
        unsafe { std::slice::from_raw_parts(self.map.ptr(), n) }
    }

    /// Gives the first `n` bytes' pages back to the kernel now (madvise MADV_DONTNEED), as
    /// the kernel's own selftest does once it has read them, rather than at the next call.
    pub fn release(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let page = page_size();
        let n = n.div_ceil(page).min(self.map.len() / page) * page;
        // SAFETY: the range lies inside our own mapping; no slice into it is alive (`bytes`
        // borrows `self`, and this takes `&mut self`).
        let r = unsafe { libc::madvise(self.map.ptr().cast(), n, libc::MADV_DONTNEED) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        if n >= self.dirty {
            self.dirty = 0;
        }
        Ok(())
    }
}

/// The system page size.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize)
}

/// Waits up to `timeout` for `sock` to be readable (data, end of stream or an error).
/// Returns false on timeout.
pub fn wait_readable(sock: BorrowedFd, timeout: Duration) -> io::Result<bool> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd, count 1.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n > 0)
}

/// recv(2) into `buf` with `flags` (MSG_DONTWAIT to not block).
pub fn recv(sock: BorrowedFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is borrowed mutably for the call and its length is passed.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// TCP_MAXSEG on a socket (before listen or connect: the MSS it announces).
pub fn set_maxseg(sock: BorrowedFd, mss: u32) -> io::Result<()> {
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::TcpMaxSeg, &mss).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("setsockopt(TCP_MAXSEG, {mss}): {e}"),
        )
    })
}

/// The MSS of a connected socket (TCP_MAXSEG).
pub fn maxseg(sock: BorrowedFd) -> io::Result<u32> {
    nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::TcpMaxSeg).map_err(Into::into)
}
