//! IORING_OP_SEND_ZC straight from a read-only file mapping: the kernel takes references to the
//! page-cache pages behind the mapping, so on a path that does not copy (the lab's UDP sink) no
//! byte of the file is touched by the CPU on its way out, as with sendfile(2) — but from user
//! space, with the completion protocol of a zero-copy send.
//!
//! [`MappedZcSender`] owns the ring and the mapping. Each [`MappedZcSender::send`] pushes one
//! SEND_ZC of a range of the mapping and waits for its result CQE (not its notification), so no
//! request is still being issued when the call returns; notifications are reaped as they come
//! and by [`MappedZcSender::drain`]. Accounting is by user_data and F_NOTIF, never by counting
//! F_MORE (a failed send still posts a notification).

use super::Fd;
use super::zc::{drain, reap, send_zc_entry, wait_cqe};
use crate::measure::Clock;
use crate::ring::Ring;
use crate::sys::signal::Cancel;
use crate::zc::ledger::Ledger;
use std::io;
use std::time::Duration;

/// Sends ranges of a read-only mapping with SEND_ZC (no registered buffer: the kernel gets the
/// pages of the mapping, here page-cache pages, for each send).
pub struct MappedZcSender {
    // Taken and closed in Drop before the mapping is released.
    ring: Option<Ring>,
    map: Option<memmap2::Mmap>,
    ledger: Ledger,
}

impl MappedZcSender {
    /// A sender of `map` over `ring`, with room for `max_sends` sends awaiting their
    /// notification (more waits for notifications first). `report_usage` asks for
    /// IORING_SEND_ZC_REPORT_USAGE (Linux 6.2); without it `copied` is unknown.
    /// [`MappedZcSender::drain`] stops waiting when `cancel` fires.
    pub fn new(
        ring: Ring,
        map: memmap2::Mmap,
        max_sends: usize,
        report_usage: bool,
        clock: Clock,
        cancel: Cancel,
    ) -> MappedZcSender {
        MappedZcSender {
            ring: Some(ring),
            map: Some(map),
            ledger: Ledger::new(1, max_sends, report_usage, clock, cancel),
        }
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring (for its recorded flags).
    pub fn ring(&self) -> &Ring {
        self.ring.as_ref().expect("ring lives until drop")
    }

    /// The account of sends and notifications.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sends `map[off..off + len]` on `sock` with one SEND_ZC (`msg_flags`, e.g. MSG_WAITALL on a
    /// stream) and waits for its result CQE, reaping notifications meanwhile. Returns the bytes
    /// the kernel accepted (a stream may accept fewer; a datagram socket all or an error).
    pub fn send(&mut self, off: usize, len: usize, sock: Fd, msg_flags: i32) -> io::Result<usize> {
        let map_len = self.len();
        if off.checked_add(len).is_none_or(|end| end > map_len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("send of {len} bytes at {off} is beyond the {map_len}-byte mapping"),
            ));
        }
        while !self.ledger.can_begin() {
            self.wait(None, None)?;
        }
        let id = self.ledger.next_id()?;
        let ptr = self.map.as_ref().expect("map lives until drop")[off..].as_ptr();
        let report = self.ledger.counts.usage_reported;
        let entry = send_zc_entry(sock, ptr, len, msg_flags, report, None).user_data(id);
        let r = self.ring.as_mut().expect("ring lives until drop").inner();
        // SAFETY: the entry reads `len` bytes of the mapping (bounds checked above), which is
        // read-only, owned by `self` and released only after the ring is closed, and only when no
        // send result is outstanding (Drop); the kernel holds its own references to the pages
        // from the send until its notification.
        if unsafe { r.submission().push(&entry) }.is_err() {
            return Err(io::Error::other("submission queue full"));
        }
        let now = self.ledger.now();
        self.ledger.begin(0, off, len, now, true);
        loop {
            // An interrupted wait is retried: the result follows promptly, and returning before
            // it would leave a request the kernel may still issue.
            match self.wait(None, Some(id)) {
                Ok(Some(res)) if res < 0 => return Err(io::Error::from_raw_os_error(-res)),
                Ok(Some(res)) => return Ok(res as usize),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Submits, waits for at least one CQE (up to `timeout` when given), and processes every CQE
    /// available. Returns the result of send `want` if it came.
    fn wait(&mut self, timeout: Option<Duration>, want: Option<u64>) -> io::Result<Option<i32>> {
        let ring = self.ring.as_mut().expect("ring lives until drop");
        wait_cqe(ring, timeout)?;
        let mut res = None;
        reap(ring, &mut self.ledger, |_, d| {
            if let Some(d) = d.filter(|d| Some(d.id) == want) {
                res = Some(d.res);
            }
        });
        Ok(res)
    }

    /// Waits for every outstanding notification, up to `timeout` and while the cancellation
    /// token has not fired ([`Ledger::drain`]); one still missing then is an error.
    pub fn drain(&mut self, timeout: Duration) -> io::Result<()> {
        let ring = self.ring.as_mut().expect("ring lives until drop");
        drain(ring, &mut self.ledger, timeout, |_, _| {})
    }
}

impl Drop for MappedZcSender {
    fn drop(&mut self) {
        drop(self.ring.take());
        if self.ledger.results_pending() > 0 {
            // A send may not have been issued yet when its ring was closed: never unmap what the
            // kernel might still read through our address space.
            std::mem::forget(self.map.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::RingConfig;
    use std::io::{Read, Write};

    /// Sends a mapped file over a loopback TCP connection and checks what arrives.
    #[test]
    fn sends_the_mapping_intact_and_accounts_every_notification() {
        let Ok(ring) = Ring::new(&RingConfig::tuned(8)) else {
            eprintln!("io_uring unavailable: skipped");
            return;
        };
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        f.write_all(&data).unwrap();
        // SAFETY: the temporary file is ours alone and is not modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let peer = std::thread::spawn(move || {
            let mut v = Vec::new();
            rx.read_to_end(&mut v).unwrap();
            v
        });
        let clock = Clock::new();
        let mut s = MappedZcSender::new(ring, map, 4, false, clock, Cancel::never());
        assert_eq!(s.len(), data.len());
        let sock = Fd::Raw(std::os::fd::AsRawFd::as_raw_fd(&tx));
        let mut off = 0;
        while off < data.len() {
            let len = 16384.min(data.len() - off);
            let mut done = 0;
            while done < len {
                done += s
                    .send(off + done, len - done, sock, libc::MSG_WAITALL)
                    .unwrap();
            }
            off += len;
        }
        assert!(
            s.send(data.len() - 1, 2, sock, 0).is_err(),
            "beyond the end"
        );
        s.drain(Duration::from_secs(5)).unwrap();
        let c = s.ledger().counts;
        assert_eq!(c.sends, c.ids_completed);
        assert_eq!(c.bytes, data.len() as u64);
        drop(tx);
        assert_eq!(peer.join().unwrap(), data);
    }
}
