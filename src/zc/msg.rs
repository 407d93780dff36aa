//! MSG_ZEROCOPY sends from a pool of buffers (msg_zerocopy.rst): each send's buffer is reused
//! only once the kernel's notification for it has been read from the error queue, with the
//! accounting of [`super::ledger`].

use super::ledger::Ledger;
use crate::measure::Clock;
use crate::sys::errqueue::{ErrMsg, recv_err, send, wait_err};
use crate::sys::signal::Cancel;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

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
                    let reaped = self.ledger.now();
                    self.ledger.result(id, n as i32, true, reaped);
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
            // One error-queue read per message: each is stamped when it is read.
            ErrMsg::Zerocopy { lo, hi, copied } => {
                let now = ledger.now();
                ledger.complete(lo, hi, copied, now)?
            }
            ErrMsg::Other { .. } => *other_errors += 1,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::errqueue::enable_zerocopy;

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
        assert_eq!(c.with_copied_pct().copied_pct, 100.0, "{c:?}");
        assert_eq!(
            pool.ledger().released().ranges(),
            &[(0, c.sends as u32 - 1)]
        );
    }
}
