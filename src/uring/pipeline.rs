//! Sends with several requests in flight from the ring's registered buffers: IORING_OP_SEND,
//! IORING_OP_SEND_ZC (plain or fixed buffer) and IORING_OP_SENDMSG_ZC, one CQE loop for all.
//!
//! [`SendPipeline`] owns its [`Ring`] and the ring's buffers. A buffer is handed out for writing
//! ([`SendPipeline::buffer_mut`]) only when every completion for it has arrived: for SEND the
//! result CQE, for the zero-copy ops also the notification CQE (IORING_CQE_F_NOTIF), which
//! follows even when the send failed. Accounting is by user_data (one slot per send) and
//! F_NOTIF, never by counting F_MORE. Nothing here allocates after construction, so the
//! measured loop of an experiment can push and reap freely.
//!
//! How many sends are in flight is the caller's choice: one per TCP stream (two in flight on one
//! stream can interleave when one is short and retried), several on a datagram socket.

use super::Fd;
use super::zc::{IORING_NOTIF_USAGE_ZC_COPIED, IORING_SEND_ZC_REPORT_USAGE};
use crate::measure::{Clock, Recorder, Stamp};
use crate::results::ZcCounts;
use crate::ring::Ring;
use io_uring::{cqueue, opcode, types};
use std::io;
use std::time::{Duration, Instant};

/// Which io_uring send operation a pipeline issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOp {
    /// IORING_OP_SEND: the kernel copies; the buffer is free at the result CQE.
    Send,
    /// IORING_OP_SEND_ZC with the buffer's address (the kernel pins the pages per send).
    SendZc,
    /// IORING_OP_SEND_ZC with IORING_RECVSEND_FIXED_BUF (registered buffer, no pinning).
    SendZcFixed,
    /// IORING_OP_SENDMSG_ZC with a one-element iovec on a connected socket.
    SendMsgZc,
}

impl SendOp {
    /// Whether a notification CQE follows each send.
    pub fn zero_copy(self) -> bool {
        self != SendOp::Send
    }
}

/// A send's result CQE, as handed to the caller's callback.
#[derive(Debug, Clone, Copy)]
pub struct SendDone {
    /// The registered buffer sent from.
    pub buf: usize,
    /// Offset within the buffer that was submitted.
    pub off: usize,
    /// Length that was submitted.
    pub len: usize,
    /// Bytes sent, or -errno.
    pub res: i32,
    /// When the send was pushed.
    pub issued: Stamp,
    /// When its result was reaped.
    pub reaped: Stamp,
}

#[derive(Clone, Copy)]
struct Slot {
    buf: u32,
    off: u32,
    len: u32,
    sent: u32,
    issued: Stamp,
    result_pending: bool,
    notif_pending: bool,
}

/// Per-slot storage for SENDMSG_ZC: the msghdr the SQE points to and its one iovec.
struct MsgSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
}

/// Sends from a ring's registered buffers with several requests in flight.
pub struct SendPipeline {
    // Declared first: the ring is closed before the msghdr storage below is freed.
    ring: Ring,
    msgs: Box<[MsgSlot]>,
    op: SendOp,
    report_usage: bool,
    clock: Clock,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    /// CQEs still expected per buffer (result, plus notification for zero-copy ops).
    busy: Vec<u32>,
    results_pending: usize,
    notifs_pending: usize,
    /// Zero-copy accounting (sends, notifications, copied); meaningful for zero-copy ops.
    pub counts: ZcCounts,
    /// Send pushed to notification reaped, one sample per zero-copy send.
    pub release: Recorder,
}

impl SendPipeline {
    /// A pipeline over every buffer registered with `ring`, with room for `max_sends` sends
    /// not yet fully completed (results and notifications). `report_usage` asks for
    /// IORING_SEND_ZC_REPORT_USAGE on zero-copy ops (Linux 6.2); without it `counts.copied` is
    /// unknown (`usage_reported` false).
    pub fn new(
        ring: Ring,
        op: SendOp,
        max_sends: usize,
        report_usage: bool,
        clock: Clock,
    ) -> SendPipeline {
        let n = ring.buffer_count();
        let cap = max_sends.max(1);
        let msgs = (0..cap)
            .map(|_| MsgSlot {
                // SAFETY: msghdr and iovec are plain data; all-zero is a valid empty value.
                hdr: unsafe { std::mem::zeroed() },
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            })
            .collect();
        SendPipeline {
            ring,
            msgs,
            op,
            report_usage: report_usage && op.zero_copy(),
            clock,
            slots: vec![None; cap],
            free_slots: (0..cap as u32).rev().collect(),
            busy: vec![0; n],
            results_pending: 0,
            notifs_pending: 0,
            counts: ZcCounts {
                usage_reported: report_usage && op.zero_copy(),
                ..Default::default()
            },
            release: Recorder::new(clock),
        }
    }

    /// The ring (for its recorded flags).
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The operation this pipeline issues.
    pub fn op(&self) -> SendOp {
        self.op
    }

    /// Number of buffers.
    pub fn buffers(&self) -> usize {
        self.busy.len()
    }

    /// A buffer with no completion outstanding, if any.
    pub fn free_buffer(&self) -> Option<usize> {
        self.busy.iter().position(|&b| b == 0)
    }

    /// Buffer `i` for writing, or None while the kernel may still read it.
    pub fn buffer_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if self.busy[i] != 0 {
            return None;
        }
        Some(self.ring.buffer_mut(i))
    }

    /// Whether another send can be pushed (a slot is free).
    pub fn can_push(&self) -> bool {
        !self.free_slots.is_empty()
    }

    /// Sends whose result CQE has not been reaped.
    pub fn results_pending(&self) -> usize {
        self.results_pending
    }

    /// Zero-copy notifications not yet reaped.
    pub fn notifs_pending(&self) -> usize {
        self.notifs_pending
    }

    /// Queues a send of buffer `buf`, bytes `off .. off + len`, on `sock` with `msg_flags`
    /// (e.g. MSG_WAITALL). It is submitted by the next [`SendPipeline::submit_and_wait`].
    /// Fails when no slot is free ([`SendPipeline::can_push`]).
    pub fn push(
        &mut self,
        buf: usize,
        off: usize,
        len: usize,
        sock: Fd,
        msg_flags: i32,
    ) -> io::Result<()> {
        assert!(
            off + len <= self.ring.buffer(buf).len(),
            "SendPipeline::push beyond registered buffer {buf}"
        );
        let slot = self
            .free_slots
            .pop()
            .ok_or_else(|| io::Error::other("too many sends in flight for the pipeline"))?;
        let ptr = self.ring.buffer_ptr(buf).wrapping_add(off);
        let zc_flags = if self.report_usage {
            IORING_SEND_ZC_REPORT_USAGE
        } else {
            0
        };
        let entry = match self.op {
            SendOp::Send => match sock {
                Fd::Raw(s) => opcode::Send::new(types::Fd(s), ptr, len as u32),
                Fd::Fixed(i) => opcode::Send::new(types::Fixed(i), ptr, len as u32),
            }
            .flags(msg_flags)
            .build(),
            SendOp::SendZc | SendOp::SendZcFixed => {
                let mut o = match sock {
                    Fd::Raw(s) => opcode::SendZc::new(types::Fd(s), ptr, len as u32),
                    Fd::Fixed(i) => opcode::SendZc::new(types::Fixed(i), ptr, len as u32),
                }
                .flags(msg_flags)
                .zc_flags(zc_flags);
                if self.op == SendOp::SendZcFixed {
                    o = o.buf_index(Some(buf as u16));
                }
                o.build()
            }
            SendOp::SendMsgZc => {
                let m = &mut self.msgs[slot as usize];
                m.iov = libc::iovec {
                    iov_base: ptr.cast(),
                    iov_len: len,
                };
                m.hdr.msg_name = std::ptr::null_mut();
                m.hdr.msg_namelen = 0;
                m.hdr.msg_iov = &mut m.iov;
                m.hdr.msg_iovlen = 1;
                m.hdr.msg_control = std::ptr::null_mut();
                m.hdr.msg_controllen = 0;
                m.hdr.msg_flags = 0;
                let hdr: *const libc::msghdr = &m.hdr;
                match sock {
                    Fd::Raw(s) => opcode::SendMsgZc::new(types::Fd(s), hdr),
                    Fd::Fixed(i) => opcode::SendMsgZc::new(types::Fixed(i), hdr),
                }
                .ioprio(zc_flags)
                .flags(msg_flags as u32)
                .build()
            }
        }
        .user_data(slot as u64);
        let r = self.ring.inner();
        // SAFETY: the entry reads `len` bytes of registered buffer `buf` (bounds checked above),
        // which the ring owns and keeps mapped until after it is closed; `busy` keeps the buffer
        // from being handed out for writing until every CQE of this send has been reaped. A
        // SENDMSG_ZC's msghdr and iovec live in `self.msgs[slot]`, which is not reused before
        // then either, and outlives the ring (field order).
        if unsafe { r.submission().push(&entry) }.is_err() {
            r.submit()?; // the SQ is full: hand what is queued to the kernel first
            // SAFETY: as above.
            unsafe { r.submission().push(&entry) }
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        self.slots[slot as usize] = Some(Slot {
            buf: buf as u32,
            off: off as u32,
            len: len as u32,
            sent: 0,
            issued: self.clock.now(),
            result_pending: true,
            notif_pending: self.op.zero_copy(),
        });
        self.busy[buf] += 1 + self.op.zero_copy() as u32;
        self.results_pending += 1;
        if self.op.zero_copy() {
            self.notifs_pending += 1;
            self.counts.sends += 1;
        }
        Ok(())
    }

    /// Submits what is queued and waits until at least `want` CQEs are available (0: do not
    /// wait). EINTR is returned as an error of kind Interrupted.
    pub fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        self.ring.inner().submit_and_wait(want)
    }

    /// Like [`SendPipeline::submit_and_wait`] for one CQE, giving up after `timeout` (Ok(false)).
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<bool> {
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.inner().submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Processes every CQE now available: notifications are accounted here, each send's result
    /// is handed to `on_result`. Returns the number of CQEs processed.
    pub fn reap(&mut self, mut on_result: impl FnMut(SendDone)) -> usize {
        let mut n = 0;
        let Self {
            ring,
            slots,
            free_slots,
            busy,
            results_pending,
            notifs_pending,
            counts,
            release,
            clock,
            report_usage,
            ..
        } = self;
        for c in ring.inner().completion() {
            n += 1;
            let ud = c.user_data() as usize;
            let Some(s) = slots.get_mut(ud).and_then(|s| s.as_mut()) else {
                continue; // not ours (cannot happen: every SQE is pushed by `push`)
            };
            let now = clock.now();
            if cqueue::notif(c.flags()) {
                if !s.notif_pending {
                    continue;
                }
                s.notif_pending = false;
                *notifs_pending -= 1;
                busy[s.buf as usize] -= 1;
                counts.notifications += 1;
                counts.ids_completed += 1;
                if *report_usage && (c.result() as u32) & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                    counts.copied += 1;
                    counts.copied_bytes += s.sent as u64;
                }
                release.record_ns(clock.ns_between(s.issued, now));
            } else {
                if !s.result_pending {
                    continue;
                }
                s.result_pending = false;
                *results_pending -= 1;
                busy[s.buf as usize] -= 1;
                let res = c.result();
                if res > 0 {
                    s.sent = res as u32;
                    counts.bytes += res as u64;
                }
                on_result(SendDone {
                    buf: s.buf as usize,
                    off: s.off as usize,
                    len: s.len as usize,
                    res,
                    issued: s.issued,
                    reaped: now,
                });
            }
            if !s.result_pending && !s.notif_pending {
                slots[ud] = None;
                free_slots.push(ud as u32);
            }
        }
        n
    }

    /// Waits until every result and notification has arrived, handing results to `on_result`,
    /// up to `timeout`; a completion still missing then is an error. Finalises
    /// `counts.copied_pct`.
    pub fn drain(
        &mut self,
        timeout: Duration,
        mut on_result: impl FnMut(SendDone),
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap(&mut on_result);
            if self.results_pending == 0 && self.notifs_pending == 0 {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} send result(s) and {} zero-copy notification(s) still missing {timeout:?} after the last send",
                        self.results_pending, self.notifs_pending
                    ),
                ));
            }
            match self.wait_timeout(left.min(Duration::from_millis(100))) {
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
