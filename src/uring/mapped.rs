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
use super::zc::{IORING_NOTIF_USAGE_ZC_COPIED, IORING_SEND_ZC_REPORT_USAGE};
use crate::measure::{Clock, Recorder, Stamp};
use crate::results::ZcCounts;
use crate::ring::Ring;
use io_uring::{cqueue, opcode, types};
use std::io;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
struct Pending {
    issued: Stamp,
    bytes: u64,
    result_pending: bool,
    notif_pending: bool,
}

/// Sends ranges of a read-only mapping with SEND_ZC (no registered buffer: the kernel gets the
/// pages of the mapping, here page-cache pages, for each send).
pub struct MappedZcSender {
    // Taken and closed in Drop before the mapping is released.
    ring: Option<Ring>,
    map: Option<memmap2::Mmap>,
    report_usage: bool,
    clock: Clock,
    slots: Vec<Option<Pending>>,
    free_slots: Vec<usize>,
    results_pending: usize,
    notifs_pending: usize,
    /// Zero-copy accounting (sends, notifications, copied).
    pub counts: ZcCounts,
    /// Send pushed to notification reaped, one sample per send.
    pub release: Recorder,
}

impl MappedZcSender {
    /// A sender of `map` over `ring`, with room for `max_sends` sends awaiting their
    /// notification (more waits for notifications first). `report_usage` asks for
    /// IORING_SEND_ZC_REPORT_USAGE (Linux 6.2); without it `counts.copied` is unknown.
    pub fn new(
        ring: Ring,
        map: memmap2::Mmap,
        max_sends: usize,
        report_usage: bool,
        clock: Clock,
    ) -> MappedZcSender {
        let cap = max_sends.max(1);
        MappedZcSender {
            ring: Some(ring),
            map: Some(map),
            report_usage,
            clock,
            slots: vec![None; cap],
            free_slots: (0..cap).rev().collect(),
            results_pending: 0,
            notifs_pending: 0,
            counts: ZcCounts {
                usage_reported: report_usage,
                ..Default::default()
            },
            release: Recorder::new(clock),
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

    /// Zero-copy notifications not yet reaped.
    pub fn outstanding(&self) -> usize {
        self.notifs_pending
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
        while self.free_slots.is_empty() {
            self.wait(None)?;
        }
        let slot = self.free_slots.pop().expect("checked above");
        let ptr = self.map.as_ref().expect("map lives until drop")[off..].as_ptr();
        let zc_flags = if self.report_usage {
            IORING_SEND_ZC_REPORT_USAGE
        } else {
            0
        };
        let entry = match sock {
            Fd::Raw(s) => opcode::SendZc::new(types::Fd(s), ptr, len as u32),
            Fd::Fixed(i) => opcode::SendZc::new(types::Fixed(i), ptr, len as u32),
        }
        .flags(msg_flags)
        .zc_flags(zc_flags)
        .build()
        .user_data(slot as u64);
        let r = self.ring.as_mut().expect("ring lives until drop").inner();
        // SAFETY: the entry reads `len` bytes of the mapping (bounds checked above), which is
        // read-only, owned by `self` and released only after the ring is closed, and only when no
        // send result is outstanding (Drop); the kernel holds its own references to the pages
        // from the send until its notification.
        if unsafe { r.submission().push(&entry) }.is_err() {
            self.free_slots.push(slot);
            return Err(io::Error::other("submission queue full"));
        }
        self.slots[slot] = Some(Pending {
            issued: self.clock.now(),
            bytes: 0,
            result_pending: true,
            notif_pending: true,
        });
        self.results_pending += 1;
        self.notifs_pending += 1;
        self.counts.sends += 1;
        let mut res = None;
        while res.is_none() {
            // An interrupted wait is retried: the result follows promptly, and returning before
            // it would leave a request the kernel may still issue.
            match self.wait(None) {
                Ok(r) => res = r.into_iter().find(|(s, _)| *s == slot).map(|(_, r)| r),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let res = res.expect("loop ends with a result");
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(res as usize)
    }

    /// Submits, waits for at least one CQE (up to `timeout` when given; Ok(empty) when it
    /// passed), and processes every CQE available. Returns the (slot, result) of send results.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Vec<(usize, i32)>> {
        let r = self.ring.as_mut().expect("ring lives until drop").inner();
        match timeout {
            None => {
                r.submit_and_wait(1)?;
            }
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                match r.submitter().submit_with_args(1, &args) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut results = Vec::new();
        for c in r.completion() {
            let slot = c.user_data() as usize;
            let Some(p) = self.slots.get_mut(slot).and_then(|s| s.as_mut()) else {
                continue;
            };
            let now = self.clock.now();
            if cqueue::notif(c.flags()) {
                if !p.notif_pending {
                    continue;
                }
                p.notif_pending = false;
                self.notifs_pending -= 1;
                self.counts.notifications += 1;
                self.counts.ids_completed += 1;
                if self.report_usage && (c.result() as u32) & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                    self.counts.copied += 1;
                    self.counts.copied_bytes += p.bytes;
                }
                self.release.record_ns(self.clock.ns_between(p.issued, now));
            } else {
                if !p.result_pending {
                    continue;
                }
                p.result_pending = false;
                self.results_pending -= 1;
                if c.result() > 0 {
                    p.bytes = c.result() as u64;
                    self.counts.bytes += p.bytes;
                }
                results.push((slot, c.result()));
            }
            if !p.result_pending && !p.notif_pending {
                self.slots[slot] = None;
                self.free_slots.push(slot);
            }
        }
        Ok(results)
    }

    /// Waits for every outstanding notification, up to `timeout`; one still missing then is an
    /// error. Finalises `counts.copied_pct`.
    pub fn drain(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.notifs_pending > 0 || self.results_pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} zero-copy notification(s) still missing {timeout:?} after the last send",
                        self.notifs_pending
                    ),
                ));
            }
            match self.wait(Some(left.min(Duration::from_millis(100)))) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if crate::harness::interrupted().is_some() {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.counts.copied_pct = if self.counts.bytes == 0 {
            0.0
        } else {
            100.0 * self.counts.copied_bytes as f64 / self.counts.bytes as f64
        };
        Ok(())
    }
}

impl Drop for MappedZcSender {
    fn drop(&mut self) {
        drop(self.ring.take());
        if self.results_pending > 0 {
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
        let mut s = MappedZcSender::new(ring, map, 4, false, clock);
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
        assert_eq!(s.counts.sends, s.counts.ids_completed);
        assert_eq!(s.counts.bytes, data.len() as u64);
        drop(tx);
        assert_eq!(peer.join().unwrap(), data);
    }
}
