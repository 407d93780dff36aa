//! MSG_ZEROCOPY (Documentation/networking/msg_zerocopy.rst): send(2) with `MSG_ZEROCOPY` on a
//! socket with `SO_ZEROCOPY` set, and completions read from the socket's error queue with
//! recvmsg(2) `MSG_ERRQUEUE`.
//!
//! Every successful zero-copy send(2) on a socket gets the next 32-bit id (0, 1, 2, ...; a
//! call that fails consumes none). The kernel reports completed ids as `sock_extended_err`
//! messages (`ee_origin == SO_EE_ORIGIN_ZEROCOPY`) covering the range `[ee_info ..= ee_data]`;
//! consecutive completions are merged into one message, and messages can arrive out of order,
//! so completed ids are tracked as a set of ranges ([`IdRanges`]). `ee_code` has
//! `SO_EE_CODE_ZEROCOPY_COPIED` when the kernel copied the data after all (always on loopback).
//!
//! [`ZcPool`] owns the send buffers and hands one out for writing only when every send from it
//! has completed: reusing a buffer earlier corrupts what the peer receives.

use crate::measure::{Clock, Recorder, Stamp};
use crate::results::ZcCounts;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// `SO_EE_ORIGIN_ZEROCOPY` (include/uapi/linux/errqueue.h).
pub const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel fell back to copying for this range.
pub const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

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

/// A set of u32 ids as sorted, disjoint, non-adjacent inclusive ranges. Completions mostly
/// arrive in order, so the set stays a handful of ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRanges {
    r: Vec<(u32, u32)>,
}

impl IdRanges {
    /// An empty set with room for a few out-of-order ranges (no allocation while it stays
    /// small).
    pub fn new() -> IdRanges {
        IdRanges {
            r: Vec::with_capacity(64),
        }
    }

    /// Adds `lo ..= hi`. Returns how many ids that adds, or an error naming the first id
    /// already in the set (the kernel never reports an id twice).
    pub fn insert(&mut self, lo: u32, hi: u32) -> Result<u64, u32> {
        if lo > hi {
            return Err(lo);
        }
        // The first range ending at or after lo; it overlaps unless it starts after hi.
        let p = self.r.partition_point(|&(_, e)| e < lo);
        if let Some(&(s, _)) = self.r.get(p) {
            if s <= hi {
                return Err(lo.max(s));
            }
        }
        let left = p > 0 && self.r[p - 1].1 as u64 + 1 == lo as u64;
        let right = self
            .r
            .get(p)
            .is_some_and(|&(s, _)| s as u64 == hi as u64 + 1);
        match (left, right) {
            (true, true) => {
                self.r[p - 1].1 = self.r[p].1;
                self.r.remove(p);
            }
            (true, false) => self.r[p - 1].1 = hi,
            (false, true) => self.r[p].0 = lo,
            (false, false) => self.r.insert(p, (lo, hi)),
        }
        Ok(hi as u64 - lo as u64 + 1)
    }

    /// Whether every id in `lo ..= hi` is in the set.
    pub fn covers(&self, lo: u32, hi: u32) -> bool {
        let i = self.r.partition_point(|&(_, e)| e < lo);
        self.r.get(i).is_some_and(|&(s, e)| s <= lo && hi <= e)
    }

    /// Number of ids in the set.
    pub fn count(&self) -> u64 {
        self.r.iter().map(|&(s, e)| e as u64 - s as u64 + 1).sum()
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.r
    }

    /// The ids of `0 .. n` not in the set, as ranges (for error messages).
    pub fn missing_below(&self, n: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut next = 0u64;
        for &(s, e) in &self.r {
            if s as u64 >= n {
                break;
            }
            if s as u64 > next {
                out.push((next, s as u64 - 1));
            }
            next = e as u64 + 1;
        }
        if next < n {
            out.push((next, n - 1));
        }
        out
    }
}

#[derive(Clone, Copy)]
struct IdSlot {
    id: u32,
    buf: u32,
    bytes: u32,
    issued: Stamp,
    live: bool,
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
    /// Zero-copy sends outstanding per buffer.
    busy: Vec<u32>,
    /// Outstanding sends by `id % len`.
    ids: Vec<IdSlot>,
    next_id: u64,
    clock: Clock,
    /// Completed ids.
    pub done: IdRanges,
    /// Send issued to its completion read from the error queue, one sample per send.
    pub release: Recorder,
    /// Sends, completions (error-queue messages), ids covered, copied, ENOBUFS retries.
    pub counts: ZcCounts,
    /// Error-queue messages that were not zero-copy completions.
    pub other_errors: u64,
}

impl ZcPool {
    /// `count` page-aligned buffers of `size` bytes, zero-filled and faulted in.
    pub fn new(count: usize, size: usize, clock: Clock) -> io::Result<ZcPool> {
        let stride = size.max(1).div_ceil(4096) * 4096;
        let mut mem = memmap2::MmapMut::map_anon(stride * count.max(1))?;
        mem.fill(0);
        let slots = (count * 8).next_power_of_two().max(64);
        Ok(ZcPool {
            mem,
            size,
            stride,
            busy: vec![0; count.max(1)],
            ids: vec![
                IdSlot {
                    id: 0,
                    buf: 0,
                    bytes: 0,
                    issued: clock.now(),
                    live: false,
                };
                slots
            ],
            next_id: 0,
            clock,
            done: IdRanges::new(),
            release: Recorder::new(clock),
            counts: ZcCounts {
                usage_reported: true,
                ..Default::default()
            },
            other_errors: 0,
        })
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.busy.len()
    }

    /// Always false: a pool has at least one buffer.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A buffer with no send outstanding, if any.
    pub fn free_buffer(&self) -> Option<usize> {
        self.busy.iter().position(|&b| b == 0)
    }

    /// Buffer `i` for writing, or None while a send from it is outstanding.
    pub fn buffer_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if self.busy[i] != 0 {
            return None;
        }
        let s = i * self.stride;
        Some(&mut self.mem[s..s + self.size])
    }

    /// Zero-copy sends not yet completed.
    pub fn outstanding(&self) -> u64 {
        self.busy.iter().map(|&b| b as u64).sum()
    }

    /// Ids handed out so far (the next send gets this id).
    pub fn ids_issued(&self) -> u64 {
        self.next_id
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
            let slot = (self.next_id as usize) & (self.ids.len() - 1);
            if self.ids[slot].live {
                // Too many sends outstanding for the id table: wait for completions.
                self.wait(fd, Duration::from_secs(5))?;
                continue;
            }
            let s = buf * self.stride + from;
            let issued = self.clock.now();
            match send(fd, &self.mem[s..s + len], libc::MSG_ZEROCOPY | flags) {
                Ok(n) => {
                    if self.next_id > u32::MAX as u64 {
                        return Err(io::Error::other(
                            "more than 2^32 zero-copy sends on one socket",
                        ));
                    }
                    self.ids[slot] = IdSlot {
                        id: self.next_id as u32,
                        buf: buf as u32,
                        bytes: n as u32,
                        issued,
                        live: true,
                    };
                    self.next_id += 1;
                    self.busy[buf] += 1;
                    self.counts.sends += 1;
                    self.counts.bytes += n as u64;
                    return Ok(n);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if self.outstanding() == 0 {
                        return Err(io::Error::new(
                            e.kind(),
                            "MSG_ZEROCOPY send: ENOBUFS with no send outstanding (net.core.optmem_max too small?)",
                        ));
                    }
                    self.counts.enobufs_retries += 1;
                    self.wait(fd, Duration::from_secs(5))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads every completion now on the error queue without blocking; returns how many
    /// messages were read.
    pub fn reap(&mut self, fd: BorrowedFd) -> io::Result<u64> {
        let mut n = 0;
        while let Some(m) = recv_err(fd)? {
            n += 1;
            match m {
                ErrMsg::Zerocopy { lo, hi, copied } => self.complete(lo, hi, copied)?,
                ErrMsg::Other { .. } => self.other_errors += 1,
            }
        }
        Ok(n)
    }

    fn complete(&mut self, lo: u32, hi: u32, copied: bool) -> io::Result<()> {
        if hi as u64 >= self.next_id {
            return Err(io::Error::other(format!(
                "completion for ids {lo}..={hi}, but only {} sent",
                self.next_id
            )));
        }
        let added = self
            .done
            .insert(lo, hi)
            .map_err(|id| io::Error::other(format!("zero-copy id {id} completed twice")))?;
        self.counts.notifications += 1;
        self.counts.ids_completed += added;
        let now = self.clock.now();
        let mask = self.ids.len() - 1;
        for id in lo..=hi {
            let s = &mut self.ids[id as usize & mask];
            if !s.live || s.id != id {
                return Err(io::Error::other(format!(
                    "completion for zero-copy id {id}, which is not outstanding"
                )));
            }
            s.live = false;
            self.busy[s.buf as usize] -= 1;
            if copied {
                self.counts.copied += 1;
                self.counts.copied_bytes += s.bytes as u64;
            }
            self.release.record_ns(self.clock.ns_between(s.issued, now));
        }
        Ok(())
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

    /// Waits until every send has completed, up to `timeout` in all; then checks that the
    /// completed ids are exactly `0 .. ids_issued()` and finalises `counts.copied_pct`. A
    /// completion still missing is an error.
    pub fn drain(&mut self, fd: BorrowedFd, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.outstanding() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} MSG_ZEROCOPY completion(s) still missing {timeout:?} after the last send (ids missing: {:?})",
                        self.outstanding(),
                        self.done.missing_below(self.next_id)
                    ),
                ));
            }
            match self.wait(fd, left.min(Duration::from_millis(100))) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if crate::harness::interrupted().is_some() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let missing = self.done.missing_below(self.next_id);
        if !missing.is_empty() || self.done.count() != self.next_id {
            return Err(io::Error::other(format!(
                "completed ids do not match the {} sent: missing {missing:?}, ranges {:?}",
                self.next_id,
                self.done.ranges()
            )));
        }
        self.counts.copied_pct = if self.counts.bytes == 0 {
            0.0
        } else {
            100.0 * self.counts.copied_bytes as f64 / self.counts.bytes as f64
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_out_of_order_and_reject_duplicates() {
        let mut r = IdRanges::new();
        assert_eq!(r.insert(5, 9), Ok(5));
        assert_eq!(r.insert(0, 2), Ok(3));
        assert_eq!(r.ranges(), &[(0, 2), (5, 9)]);
        assert_eq!(r.insert(3, 6), Err(5), "overlap with the range after a gap");
        assert!(!r.covers(0, 5));
        assert_eq!(r.missing_below(12), vec![(3, 4), (10, 11)]);
        assert_eq!(r.insert(3, 4), Ok(2));
        assert_eq!(r.ranges(), &[(0, 9)]);
        assert!(r.covers(0, 9) && r.covers(4, 4) && !r.covers(9, 10));
        assert_eq!(r.insert(9, 12), Err(9));
        assert_eq!(r.insert(12, 11), Err(12));
        assert_eq!(r.insert(20, 20), Ok(1));
        assert_eq!(r.insert(10, 10), Ok(1));
        assert_eq!(r.ranges(), &[(0, 10), (20, 20)]);
        assert_eq!(r.insert(11, 19), Ok(9));
        assert_eq!(r.ranges(), &[(0, 20)]);
        assert_eq!(r.count(), 21);
        assert_eq!(r.insert(u32::MAX, u32::MAX), Ok(1));
        assert_eq!(r.missing_below(21), vec![]);
    }

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
        let mut pool = ZcPool::new(2, 8192, clock).unwrap();
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
            assert!(pool.buffer_mut(b).is_none() || pool.outstanding() == 0);
        }
        pool.drain(s.as_fd(), Duration::from_secs(5)).unwrap();
        drop(s);
        assert_eq!(rx.join().unwrap(), expect);
        assert_eq!(pool.counts.ids_completed, pool.counts.sends);
        assert_eq!(pool.counts.copied_pct, 100.0, "{:?}", pool.counts);
    }
}
