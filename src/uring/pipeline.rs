//! Sends with several requests in flight from the ring's registered buffers: IORING_OP_SEND,
//! IORING_OP_SEND_ZC (plain or fixed buffer) and IORING_OP_SENDMSG_ZC, one CQE loop for all.
//!
//! [`SendPipeline`] owns its [`Ring`] and the ring's buffers. A buffer is handed out for writing
//! ([`SendPipeline::buffer_mut`]) only when every completion for it has arrived: for SEND the
//! result CQE, for the zero-copy ops also the notification CQE (IORING_CQE_F_NOTIF), which
//! follows even when the send failed. The account is a [`Ledger`] (user_data is the send's
//! ledger id; F_NOTIF, never a count of F_MORE). Nothing here allocates after construction, so the
//! measured loop of an experiment can push and reap freely.
//!
//! How many sends are in flight is the caller's choice: one per TCP stream (two in flight on one
//! stream can interleave when one is short and retried), several on a datagram socket.

use super::Fd;
use super::zc::{drain, reap, send_zc_entry, wait_cqe, zc_flags};
use crate::measure::{Clock, Stamp};
use crate::ring::Ring;
use crate::sys::signal::Cancel;
use crate::zc::ledger::Ledger;
pub use crate::zc::ledger::SendDone;
use io_uring::{opcode, types};
use std::io;
use std::time::Duration;

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

/// Per-slot storage for SENDMSG_ZC: the msghdr the SQE points to and its one iovec.
struct MsgSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
}

// SAFETY: the raw pointers in a slot point only into memory the same SendPipeline owns (its
// boxed slots and its ring's registered buffers), which moves with it, so a pipeline may be
// handed to another thread (a multi-flow sending thread); it is never shared between threads.
unsafe impl Send for MsgSlot {}

/// Sends from a ring's registered buffers with several requests in flight.
pub struct SendPipeline {
    // Declared first: the ring is closed before the msghdr storage below is freed.
    ring: Ring,
    /// SENDMSG_ZC headers by ledger slot.
    msgs: Box<[MsgSlot]>,
    op: SendOp,
    ledger: Ledger,
    /// The first send not yet handed to the kernel: sends are stamped as issued when the
    /// system call that submits them is made, one clock reading for all of them.
    queued_from: u64,
    /// The stamp a send carries between its push and its submission.
    unsubmitted: Stamp,
    /// An SQPOLL ring's thread takes a send as soon as it is pushed: stamped at the push.
    stamp_at_push: bool,
}

impl SendPipeline {
    /// A pipeline over every buffer registered with `ring`, with room for `max_sends` sends
    /// not yet fully completed (results and notifications). `report_usage` asks for
    /// IORING_SEND_ZC_REPORT_USAGE on zero-copy ops (Linux 6.2); without it `copied` is unknown
    /// (`usage_reported` false). [`SendPipeline::drain`] stops waiting when `cancel` fires.
    pub fn new(
        ring: Ring,
        op: SendOp,
        max_sends: usize,
        report_usage: bool,
        clock: Clock,
        cancel: Cancel,
    ) -> SendPipeline {
        let report = report_usage && op.zero_copy();
        let ledger = Ledger::new(ring.buffer_count(), max_sends, report, clock, cancel);
        let msgs = (0..ledger.table_len())
            .map(|_| MsgSlot {
                // SAFETY: msghdr and iovec are plain data; all-zero is a valid empty value.
                hdr: unsafe { std::mem::zeroed() },
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            })
            .collect();
        let unsubmitted = clock.now();
        let ring_is_sqpoll = ring.is_sqpoll();
        SendPipeline {
            ring,
            msgs,
            op,
            ledger,
            queued_from: 0,
            unsubmitted,
            stamp_at_push: ring_is_sqpoll,
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

    /// The account of sends, results and notifications.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Number of buffers.
    pub fn buffers(&self) -> usize {
        self.ledger.buffers()
    }

    /// A buffer with no completion outstanding, if any.
    pub fn free_buffer(&self) -> Option<usize> {
        self.ledger.free_buffer()
    }

    /// Buffer `i` for writing, or None while the kernel may still read it.
    pub fn buffer_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if !self.ledger.is_free(i) {
            return None;
        }
        Some(self.ring.buffer_mut(i))
    }

    /// Whether another send can be pushed now.
    pub fn can_push(&self) -> bool {
        self.ledger.can_begin()
    }

    /// Sends whose result CQE has not been reaped.
    pub fn results_pending(&self) -> usize {
        self.ledger.results_pending()
    }

    /// Zero-copy notifications not yet reaped.
    pub fn notifs_pending(&self) -> usize {
        self.ledger.notifs_pending()
    }

    /// Queues a send of buffer `buf`, bytes `off .. off + len`, on `sock` with `msg_flags`
    /// (e.g. MSG_WAITALL). It is submitted by the next [`SendPipeline::submit_and_wait`].
    /// Fails when no send can begin ([`SendPipeline::can_push`]).
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
        let id = self.ledger.next_id()?;
        let ptr = self.ring.buffer_ptr(buf).wrapping_add(off);
        let report = self.ledger.counts.usage_reported;
        let entry = match self.op {
            SendOp::Send => match sock {
                Fd::Raw(s) => opcode::Send::new(types::Fd(s), ptr, len as u32),
                Fd::Fixed(i) => opcode::Send::new(types::Fixed(i), ptr, len as u32),
            }
            .flags(msg_flags)
            .build(),
            SendOp::SendZc => send_zc_entry(sock, ptr, len, msg_flags, report, None),
            SendOp::SendZcFixed => {
                send_zc_entry(sock, ptr, len, msg_flags, report, Some(buf as u16))
            }
            SendOp::SendMsgZc => {
                let m = &mut self.msgs[self.ledger.slot(id)];
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
                .ioprio(zc_flags(report))
                .flags(msg_flags as u32)
                .build()
            }
        }
        .user_data(id);
        let r = self.ring.inner();
        // SAFETY: the entry reads `len` bytes of registered buffer `buf` (bounds checked above),
        // which the ring owns and keeps mapped until after it is closed; the ledger keeps the
        // buffer from being handed out for writing until every CQE of this send has been
        // reaped. A SENDMSG_ZC's msghdr and iovec live in `self.msgs` at the send's ledger slot,
        // which no other send takes before then either, and outlive the ring (field order).
        if unsafe { r.submission().push(&entry) }.is_err() {
            // The SQ is full: hand what is queued to the kernel first.
            self.stamp_queued();
            self.ring.inner().submit()?;
            // SAFETY: as above.
            unsafe { self.ring.inner().submission().push(&entry) }
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        let issued = if self.stamp_at_push {
            self.ledger.now()
        } else {
            self.unsubmitted
        };
        self.ledger
            .begin(buf, off, len, issued, self.op.zero_copy());
        Ok(())
    }

    /// Stamps the sends queued since the last submission as issued now, just before the
    /// system call that hands them to the kernel (no clock reading when none is queued).
    fn stamp_queued(&mut self) {
        let next = self.ledger.next_id_unchecked();
        if self.queued_from < next && !self.stamp_at_push {
            let now = self.ledger.now();
            self.ledger.stamp_issued_from(self.queued_from, now);
            self.queued_from = next;
        }
    }

    /// Submits what is queued and waits until at least `want` CQEs are available (0: do not
    /// wait). EINTR is returned as an error of kind Interrupted.
    pub fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        self.stamp_queued();
        self.ring.inner().submit_and_wait(want)
    }

    /// Like [`SendPipeline::submit_and_wait`] for one CQE, giving up after `timeout` (Ok(false)).
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<bool> {
        self.stamp_queued();
        wait_cqe(&mut self.ring, Some(timeout))
    }

    /// Processes every CQE now available: notifications are accounted here, each send's result
    /// is handed to `on_result`. Returns the number of CQEs processed.
    pub fn reap(&mut self, mut on_result: impl FnMut(SendDone)) -> usize {
        reap(&mut self.ring, &mut self.ledger, |_, d| {
            if let Some(d) = d {
                on_result(d);
            }
        })
    }

    /// Waits until every result and notification has arrived, handing results to `on_result`,
    /// up to `timeout` and while the cancellation token has not fired ([`Ledger::drain`]); a
    /// completion still missing then is an error.
    pub fn drain(
        &mut self,
        timeout: Duration,
        mut on_result: impl FnMut(SendDone),
    ) -> io::Result<()> {
        self.stamp_queued();
        drain(&mut self.ring, &mut self.ledger, timeout, |_, d| {
            if let Some(d) = d {
                on_result(d);
            }
        })
    }
}
