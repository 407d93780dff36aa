//! IORING_OP_SEND_ZC with its two-CQE protocol, from buffers the ring owns.
//!
//! A zero-copy send posts a result CQE (with IORING_CQE_F_MORE) and later a notification CQE
//! (IORING_CQE_F_NOTIF) once the kernel no longer needs the pages. With
//! IORING_SEND_ZC_REPORT_USAGE the notification's `res` has IORING_NOTIF_USAGE_ZC_COPIED set when
//! the kernel copied after all (always, on loopback). A buffer is reused only after every
//! notification for it has arrived; accounting is by user_data and F_NOTIF, never by counting
//! F_MORE (a send cancelled inside a link posts no F_MORE, yet its notification follows).

use super::{Cqe, Fd};
use crate::measure::{Clock, Recorder, Stamp};
use crate::results::ZcCounts;
use crate::ring::Ring;
use io_uring::{cqueue, opcode, squeue, types};
use std::io;
use std::time::{Duration, Instant};

/// `IORING_SEND_ZC_REPORT_USAGE` (not exported by the io-uring crate).
pub const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`, set in a notification's `res` when the data was copied.
pub const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

const READ_TAG: u64 = 1 << 62;

#[derive(Clone, Copy)]
struct Pending {
    buf: usize,
    issued: Stamp,
    bytes: u64,
}

/// Sends from the ring's registered buffers with SEND_ZC, tracking notifications.
pub struct ZcSender {
    /// Outstanding notifications per registered buffer.
    busy: Vec<u32>,
    /// In-flight sends by slot (user_data = slot index).
    slots: Vec<Option<Pending>>,
    free_slots: Vec<usize>,
    /// Use the registered buffer (IORING_RECVSEND_FIXED_BUF) or let the kernel pin the pages.
    fixed: bool,
    report_usage: bool,
    clock: Clock,
    /// Send issued to notification received, per send.
    pub release: Recorder,
    pub counts: ZcCounts,
}

impl ZcSender {
    /// A sender over all of `ring`'s registered buffers. `fixed` picks SEND_ZC with
    /// IORING_RECVSEND_FIXED_BUF; otherwise the same memory is passed as a plain address.
    /// `report_usage` asks for IORING_SEND_ZC_REPORT_USAGE (Linux 6.2; backported to 6.1).
    pub fn new(ring: &Ring, fixed: bool, report_usage: bool, clock: Clock) -> ZcSender {
        let n = ring.buffer_count();
        let cap = n * 4 + 4;
        ZcSender {
            busy: vec![0; n],
            slots: vec![None; cap],
            free_slots: (0..cap).rev().collect(),
            fixed,
            report_usage,
            clock,
            release: Recorder::new(clock),
            counts: ZcCounts {
                usage_reported: report_usage,
                ..Default::default()
            },
        }
    }

    /// A registered buffer with no notification outstanding, waiting for notifications if all
    /// are busy.
    pub fn acquire(&mut self, ring: &mut Ring) -> io::Result<usize> {
        loop {
            if let Some(i) = self.busy.iter().position(|&b| b == 0) {
                return Ok(i);
            }
            self.wait_one(ring, None)?;
        }
    }

    fn on_cqe(&mut self, c: Cqe) -> Option<Cqe> {
        if cqueue::notif(c.flags) {
            let slot = c.user_data as usize;
            if let Some(p) = self.slots.get_mut(slot).and_then(Option::take) {
                self.busy[p.buf] -= 1;
                self.free_slots.push(slot);
                self.counts.notifications += 1;
                self.counts.ids_completed += 1;
                if self.report_usage && (c.res as u32) & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                    self.counts.copied += 1;
                    self.counts.copied_bytes += p.bytes;
                }
                let now = self.clock.now();
                self.release.record_ns(self.clock.ns_between(p.issued, now));
            }
            None
        } else {
            Some(c)
        }
    }

    /// Waits for at least one CQE; returns the non-notification ones.
    fn wait_one(&mut self, ring: &mut Ring, timeout: Option<Duration>) -> io::Result<Vec<Cqe>> {
        let r = ring.inner();
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
        let cqes: Vec<Cqe> = r
            .completion()
            .map(|c| Cqe {
                user_data: c.user_data(),
                res: c.result(),
                flags: c.flags(),
            })
            .collect();
        Ok(cqes.into_iter().filter_map(|c| self.on_cqe(c)).collect())
    }

    fn push_send(
        &mut self,
        ring: &mut Ring,
        buf: usize,
        from: usize,
        len: usize,
        sock: Fd,
        link_after: Option<squeue::Entry>,
    ) -> io::Result<u64> {
        let slot = self
            .free_slots
            .pop()
            .ok_or_else(|| io::Error::other("too many zero-copy sends in flight"))?;
        let ptr = ring.buffer_ptr(buf).wrapping_add(from);
        let zc_flags = if self.report_usage {
            IORING_SEND_ZC_REPORT_USAGE
        } else {
            0
        };
        let mut op = match sock {
            Fd::Raw(s) => opcode::SendZc::new(types::Fd(s), ptr, len as u32),
            Fd::Fixed(i) => opcode::SendZc::new(types::Fixed(i), ptr, len as u32),
        }
        .zc_flags(zc_flags)
        .flags(libc::MSG_WAITALL);
        if self.fixed {
            op = op.buf_index(Some(buf as u16));
        }
        let send = op.build().user_data(slot as u64);
        let r = ring.inner();
        {
            let mut sq = r.submission();
            if let Some(read) = link_after {
                // SAFETY: the read targets a registered buffer owned by the ring, marked busy
                // below until its notification arrives.
                unsafe { sq.push(&read.flags(squeue::Flags::IO_LINK)) }
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
            // SAFETY: the send reads a registered buffer owned by the ring; `busy` keeps it from
            // being handed out again until the notification for this slot arrives.
            unsafe { sq.push(&send) }.map_err(|_| io::Error::other("submission queue full"))?;
        }
        self.busy[buf] += 1;
        self.slots[slot] = Some(Pending {
            buf,
            issued: self.clock.now(),
            bytes: len as u64,
        });
        self.counts.sends += 1;
        self.counts.bytes += len as u64;
        Ok(slot as u64)
    }

    /// Sends `buf[from..from+len]` with SEND_ZC and waits for the send's result CQE (not its
    /// notification); a short send is finished with further sends. Returns bytes sent.
    pub fn send(
        &mut self,
        ring: &mut Ring,
        buf: usize,
        from: usize,
        len: usize,
        sock: Fd,
    ) -> io::Result<usize> {
        let mut done = 0;
        while done < len {
            let ud = self.push_send(ring, buf, from + done, len - done, sock, None)?;
            let c = self.wait_for(ring, &[ud])?;
            match c[0].result()? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "send_zc returned 0: peer closed",
                    ));
                }
                n => done += n,
            }
        }
        Ok(done)
    }

    /// Reads `len` bytes of `file` at `off` into a free registered buffer (IORING_OP_READ_FIXED)
    /// linked to a SEND_ZC of it, in one submission. Returns bytes moved (0 at end of file).
    pub fn read_fixed_send(
        &mut self,
        ring: &mut Ring,
        file: Fd,
        off: u64,
        len: usize,
        sock: Fd,
    ) -> io::Result<usize> {
        let buf = self.acquire(ring)?;
        assert!(
            len <= ring.buffer(buf).len(),
            "read_fixed_send: len exceeds registered buffer"
        );
        let ptr = ring.buffer_ptr(buf);
        let read = match file {
            Fd::Raw(f) => opcode::ReadFixed::new(types::Fd(f), ptr, len as u32, buf as u16),
            Fd::Fixed(i) => opcode::ReadFixed::new(types::Fixed(i), ptr, len as u32, buf as u16),
        }
        .offset(off)
        .build()
        .user_data(READ_TAG);
        let ud = self.push_send(ring, buf, 0, len, sock, Some(read))?;
        let c = self.wait_for(ring, &[READ_TAG, ud])?;
        let (r, s) = (c[0], c[1]);
        let n = r.result()?;
        let sent = if s.res == -libc::ECANCELED {
            0
        } else {
            s.result()?
        };
        if sent < n {
            self.send(ring, buf, sent, n - sent, sock)?;
        }
        Ok(n)
    }

    /// Waits until CQEs for all `uds` (non-notification) have arrived, processing notifications
    /// meanwhile; returns them in the order of `uds`.
    fn wait_for(&mut self, ring: &mut Ring, uds: &[u64]) -> io::Result<Vec<Cqe>> {
        let mut got: Vec<Option<Cqe>> = vec![None; uds.len()];
        while got.iter().any(Option::is_none) {
            for c in self.wait_one(ring, None)? {
                if let Some(i) = uds.iter().position(|&u| u == c.user_data) {
                    got[i] = Some(c);
                }
            }
        }
        Ok(got.into_iter().map(|c| c.expect("filled above")).collect())
    }

    /// Notifications still outstanding.
    pub fn outstanding(&self) -> u64 {
        self.busy.iter().map(|&b| b as u64).sum()
    }

    /// Waits for every outstanding notification, up to `timeout`; a notification still missing
    /// then is an error. Finalises `counts.copied_pct`.
    pub fn drain(&mut self, ring: &mut Ring, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.outstanding() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} zero-copy notification(s) still missing {timeout:?} after the last send",
                        self.outstanding()
                    ),
                ));
            }
            self.wait_one(ring, Some(left.min(Duration::from_millis(100))))?;
        }
        self.counts.copied_pct = if self.counts.bytes == 0 {
            0.0
        } else {
            100.0 * self.counts.copied_bytes as f64 / self.counts.bytes as f64
        };
        Ok(())
    }
}
