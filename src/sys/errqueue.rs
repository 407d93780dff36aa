//! MSG_ZEROCOPY (Documentation/networking/msg_zerocopy.rst): send(2) with `MSG_ZEROCOPY` on a
//! socket with `SO_ZEROCOPY` set, and completions read from the socket's error queue with
//! recvmsg(2) `MSG_ERRQUEUE`.
//!
//! Every successful zero-copy send(2) on a socket gets the next 32-bit id (0, 1, 2, ...; a
//! call that fails consumes none). The kernel reports completed ids as `sock_extended_err`
//! messages (`ee_origin == SO_EE_ORIGIN_ZEROCOPY`) covering the range `[ee_info ..= ee_data]`;
//! consecutive completions are merged into one message, and messages can arrive out of order.
//! `ee_code` has `SO_EE_CODE_ZEROCOPY_COPIED` when the kernel copied the data after all (always
//! on loopback).
//!
//! [`ZcPool`] owns the send buffers and keeps its account in a [`Ledger`], which hands a buffer
//! out for writing only when every send from it has completed: reusing a buffer earlier corrupts
//! what the peer receives.

use crate::measure::Clock;
use crate::sys::consts::{SO_EE_CODE_ZEROCOPY_COPIED, SO_EE_ORIGIN_ZEROCOPY};
use crate::sys::signal::Cancel;
use crate::sys::zc_ledger::Ledger;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Sets `SO_ZEROCOPY` on a socket (socket(7)); MSG_ZEROCOPY is ignored without it.
pub fn enable_zerocopy(fd: BorrowedFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// send(2) of `buf` with `flags`; returns the bytes the kernel accepted.
///
/// With `MSG_ZEROCOPY` the kernel may still read `buf` after this returns, until the send's
/// completion arrives on the error queue: use [`ZcPool`], which keeps buffers from being
/// rewritten before then.
pub fn send(fd: BorrowedFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable slice for the duration of the call.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// poll(2) for `POLLERR` (a non-empty error queue), up to `timeout`. Returns whether the error
/// queue is readable.
pub fn wait_err(fd: BorrowedFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0, // POLLERR is always reported
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `p` is one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n > 0 && p.revents & libc::POLLERR != 0)
}

/// One message read from the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrMsg {
    /// Zero-copy sends `lo ..= hi` completed; `copied` when the kernel copied them.
    Zerocopy {
        /// First id (`ee_info`).
        lo: u32,
        /// Last id (`ee_data`).
        hi: u32,
        /// `ee_code` has SO_EE_CODE_ZEROCOPY_COPIED.
        copied: bool,
    },
    /// Any other extended error (e.g. an ICMP error when IP_RECVERR is set).
    Other {
        /// `ee_errno`.
        errno: u32,
        /// `ee_origin`.
        origin: u8,
    },
}

/// Reads one message from the error queue without blocking (recvmsg(2) with
/// `MSG_ERRQUEUE | MSG_DONTWAIT`); None when the queue is empty.
pub fn recv_err(fd: BorrowedFd) -> io::Result<Option<ErrMsg>> {
    // Room for one cmsghdr with a sock_extended_err and the offender's address; u64 for the
    // alignment cmsghdr needs.
    let mut ctrl = [0u64; 32];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
    // SAFETY: `msg` points to `ctrl`, which lives across the call; no data iovec is needed.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "error queue message truncated (MSG_CTRUNC)",
        ));
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a valid cmsghdr inside `ctrl` (checked non-null above).
        let (level, ty, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len) };
        let want = (level == libc::SOL_IP && ty == libc::IP_RECVERR)
            || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR);
        // SAFETY: CMSG_LEN is a pure computation.
        let need = unsafe { libc::CMSG_LEN(std::mem::size_of::<libc::sock_extended_err>() as u32) };
        #[allow(clippy::unnecessary_cast)] // cmsg_len is socklen_t on musl, size_t on glibc
        let enough = len as usize >= need as usize;
        if want && enough {
            // SAFETY: the cmsg holds at least a sock_extended_err (length checked); it may be
            // unaligned, hence read_unaligned.
            let ee: libc::sock_extended_err = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::sock_extended_err)
            };
            return Ok(Some(
                if ee.ee_errno == 0 && ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                    ErrMsg::Zerocopy {
                        lo: ee.ee_info,
                        hi: ee.ee_data,
                        copied: ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                    }
                } else {
                    ErrMsg::Other {
                        errno: ee.ee_errno,
                        origin: ee.ee_origin,
                    }
                },
            ));
        }
        // SAFETY: as above; returns null after the last header.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Err(io::Error::other(
        "error queue message without a sock_extended_err",
    ))
}

/// Send buffers for MSG_ZEROCOPY and the accounting of their completions.
///
/// A buffer is handed out for writing ([`ZcPool::buffer_mut`]) only when every zero-copy send
/// from it has completed. Sends are [`ZcPool::send`]; completions are read with
/// [`ZcPool::reap`] (non-blocking) and [`ZcPool::wait`] (blocking).
pub struct ZcPool {
    mem: memmap2::MmapMut,
    size: usize,
    stride: usize,
    ledger: Ledger,
    /// Error-queue messages that were not zero-copy completions.
    pub other_errors: u64,
}

impl ZcPool {
    /// `count` page-aligned buffers of `size` bytes, zero-filled and faulted in. [`ZcPool::drain`]
    /// stops waiting when `cancel` fires.
    pub fn new(count: usize, size: usize, clock: Clock, cancel: Cancel) -> io::Result<ZcPool> {
        let stride = size.max(1).div_ceil(4096) * 4096;
        let mut mem = memmap2::MmapMut::map_anon(stride * count.max(1))?;
        mem.fill(0);
        let max_live = (count * 8).next_power_of_two().max(64);
        Ok(ZcPool {
            mem,
            size,
            stride,
            ledger: Ledger::new(count, max_live, true, clock, cancel),
            other_errors: 0,
        })
    }

    /// The account of sends and completions.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.ledger.buffers()
    }

    /// Always false: a pool has at least one buffer.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A buffer with no send outstanding, if any.
    pub fn free_buffer(&self) -> Option<usize> {
        self.ledger.free_buffer()
    }

    /// Buffer `i` for writing, or None while a send from it is outstanding.
    pub fn buffer_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if !self.ledger.is_free(i) {
            return None;
        }
        let s = i * self.stride;
        Some(&mut self.mem[s..s + self.size])
    }

    /// send(2) with `MSG_ZEROCOPY | flags` of buffer `buf`, bytes `from .. from + len`. Each
    /// call that the kernel accepts takes the next id. ENOBUFS (too much pending for
    /// `net.core.optmem_max`) is answered by waiting for completions and retrying; it is
    /// counted in `counts.enobufs_retries`. EINTR is returned to the caller.
    pub fn send(
        &mut self,
        fd: BorrowedFd,
        buf: usize,
        from: usize,
        len: usize,
        flags: libc::c_int,
    ) -> io::Result<usize> {
        assert!(from + len <= self.size, "ZcPool::send beyond the buffer");
        loop {
            if !self.ledger.can_begin() {
                // Too many sends outstanding for the id table: wait for completions.
                self.wait(fd, Duration::from_secs(5))?;
                continue;
            }
            let id = self.ledger.next_id()?;
            let s = buf * self.stride + from;
            let issued = self.ledger.now();
            match send(fd, &self.mem[s..s + len], libc::MSG_ZEROCOPY | flags) {
                Ok(n) => {
                    self.ledger.begin(buf, from, len, issued, true);
                    self.ledger.result(id, n as i32, true);
                    return Ok(n);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if self.ledger.live() == 0 {
                        return Err(io::Error::new(
                            e.kind(),
                            "MSG_ZEROCOPY send: ENOBUFS with no send outstanding (net.core.optmem_max too small?)",
                        ));
                    }
                    self.ledger.counts.enobufs_retries += 1;
                    self.wait(fd, Duration::from_secs(5))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads every completion now on the error queue without blocking; returns how many
    /// messages were read.
    pub fn reap(&mut self, fd: BorrowedFd) -> io::Result<u64> {
        reap(fd, &mut self.ledger, &mut self.other_errors)
    }

    /// Waits up to `timeout` for the error queue to become readable, then reaps it. Returns
    /// the messages read (0 on timeout).
    pub fn wait(&mut self, fd: BorrowedFd, timeout: Duration) -> io::Result<u64> {
        if wait_err(fd, timeout)? {
            self.reap(fd)
        } else {
            Ok(0)
        }
    }

    /// Waits until every send has completed, up to `timeout` in all and while the pool's
    /// cancellation token has not fired ([`Ledger::drain`]). A completion still missing is an
    /// error.
    pub fn drain(&mut self, fd: BorrowedFd, timeout: Duration) -> io::Result<()> {
        let other = &mut self.other_errors;
        self.ledger.drain(timeout, |l, t| {
            if wait_err(fd, t)? {
                reap(fd, l, other)?;
            }
            Ok(())
        })
    }
}

/// Reads every message now on the error queue into `ledger`; counts the others.
fn reap(fd: BorrowedFd, ledger: &mut Ledger, other_errors: &mut u64) -> io::Result<u64> {
    let mut n = 0;
    while let Some(m) = recv_err(fd)? {
        n += 1;
        match m {
            ErrMsg::Zerocopy { lo, hi, copied } => ledger.complete(lo, hi, copied)?,
            ErrMsg::Other { .. } => *other_errors += 1,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_tcp_zerocopy_completes_and_reports_copied() {
        use std::io::Read;
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let rx = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut v = Vec::new();
            s.read_to_end(&mut v).unwrap();
            v
        });
        let s = std::net::TcpStream::connect(addr).unwrap();
        if enable_zerocopy(s.as_fd()).is_err() {
            return; // kernel without SO_ZEROCOPY: covered by the experiment's skip
        }
        let clock = Clock::new();
        let mut pool = ZcPool::new(2, 8192, clock, Cancel::never()).unwrap();
        let mut expect = Vec::new();
        for i in 0..20u8 {
            let b = loop {
                if let Some(b) = pool.free_buffer() {
                    break b;
                }
                pool.wait(s.as_fd(), Duration::from_secs(5)).unwrap();
            };
            let buf = pool.buffer_mut(b).unwrap();
            buf.fill(i);
            expect.extend_from_slice(buf);
            assert!(pool.buffer_mut(b).is_some());
            let mut off = 0;
            while off < 8192 {
                off += pool.send(s.as_fd(), b, off, 8192 - off, 0).unwrap();
            }
            assert!(pool.buffer_mut(b).is_none() || pool.ledger().live() == 0);
        }
        pool.drain(s.as_fd(), Duration::from_secs(5)).unwrap();
        drop(s);
        assert_eq!(rx.join().unwrap(), expect);
        let c = pool.ledger().counts;
        assert_eq!(c.ids_completed, c.sends);
        assert_eq!(c.bytes, 20 * 8192);
        assert_eq!(c.copied_pct(), 100.0, "{c:?}");
        assert_eq!(
            pool.ledger().released().ranges(),
            &[(0, c.sends as u32 - 1)]
        );
    }
}
