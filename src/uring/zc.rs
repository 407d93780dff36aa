//! IORING_OP_SEND_ZC with its two-CQE protocol, from buffers the ring owns, and the pieces every
//! io_uring zero-copy sender shares: the SEND_ZC entry, the wait for a CQE, and feeding CQEs to
//! the [`Ledger`].
//!
//! A zero-copy send posts a result CQE (with IORING_CQE_F_MORE) and later a notification CQE
//! (IORING_CQE_F_NOTIF) once the kernel no longer needs the pages. With
//! IORING_SEND_ZC_REPORT_USAGE the notification's `res` has IORING_NOTIF_USAGE_ZC_COPIED set when
//! the kernel copied after all (always, on loopback). The user_data of a send is its ledger id;
//! the ledger reuses a buffer only after every notification for it has arrived.

use super::{Cqe, Fd, nonzero, read_fixed_entry};
use crate::measure::Clock;
use crate::ring::Ring;
use crate::sys::consts::{IORING_NOTIF_USAGE_ZC_COPIED, IORING_SEND_ZC_REPORT_USAGE};
use crate::sys::signal::Cancel;
use crate::zc::ledger::{Ledger, SendDone};
use io_uring::{cqueue, opcode, squeue, types};
use std::io;
use std::time::Duration;

const READ_TAG: u64 = 1 << 62;

/// An IORING_OP_SEND_ZC of `len` bytes at `ptr` on `sock` with `msg_flags`; with
/// `buf_index`, IORING_RECVSEND_FIXED_BUF from that registered buffer. `report_usage` asks for
/// IORING_SEND_ZC_REPORT_USAGE. The caller sets user_data to the send's ledger id.
pub(crate) fn send_zc_entry(
    sock: Fd,
    ptr: *const u8,
    len: usize,
    msg_flags: i32,
    report_usage: bool,
    buf_index: Option<u16>,
) -> squeue::Entry {
    match sock {
        Fd::Raw(s) => opcode::SendZc::new(types::Fd(s), ptr, len as u32),
        Fd::Fixed(i) => opcode::SendZc::new(types::Fixed(i), ptr, len as u32),
    }
    .flags(msg_flags)
    .zc_flags(zc_flags(report_usage))
    .buf_index(buf_index)
    .build()
}

/// The zc_flags (SEND_ZC) or ioprio (SENDMSG_ZC) of a zero-copy send.
pub(crate) fn zc_flags(report_usage: bool) -> u16 {
    if report_usage {
        IORING_SEND_ZC_REPORT_USAGE
    } else {
        0
    }
}

/// Submits what is queued and waits for at least one CQE, up to `timeout` when given: Ok(false)
/// when it passed (ETIME). EAGAIN and EBUSY (the kernel is short of room for completions) count
/// as a wake-up: reap and wait again. EINTR is returned as an error of kind Interrupted.
pub(crate) fn wait_cqe(ring: &mut Ring, timeout: Option<Duration>) -> io::Result<bool> {
    let r = ring.inner();
    let res = match timeout {
        None => r.submit_and_wait(1),
        Some(t) => {
            let ts = types::Timespec::from(t);
            let args = types::SubmitArgs::new().timespec(&ts);
            r.submitter().submit_with_args(1, &args)
        }
    };
    match res {
        Ok(_) => Ok(true),
        Err(e) => match e.raw_os_error() {
            Some(libc::ETIME) => Ok(false),
            Some(libc::EAGAIN | libc::EBUSY) => Ok(true),
            _ => Err(e),
        },
    }
}

/// [`Ledger::drain`] over `ring`: waits for CQEs and feeds them to the ledger (handing other
/// CQEs to `f`, as [`reap`]) until no send is live, up to `timeout` and the ledger's
/// cancellation token.
pub(crate) fn drain(
    ring: &mut Ring,
    ledger: &mut Ledger,
    timeout: Duration,
    mut f: impl FnMut(Cqe, Option<SendDone>),
) -> io::Result<()> {
    ledger.drain(timeout, |l, t| {
        wait_cqe(ring, Some(t))?;
        reap(ring, l, &mut f);
        Ok(())
    })
}

/// Processes every CQE now available: notifications (F_NOTIF) go to `ledger`, with the usage
/// bit when the ledger asked for it; every other CQE is handed to `f`, with the send it
/// completed when it was one of the ledger's. CQEs that match no send are ignored. Returns the
/// CQEs processed; allocates nothing.
pub(crate) fn reap(
    ring: &mut Ring,
    ledger: &mut Ledger,
    mut f: impl FnMut(Cqe, Option<SendDone>),
) -> usize {
    let mut cq = ring.inner().completion();
    if cq.is_empty() {
        return 0;
    }
    // Every CQE of this pass is reaped now: one clock reading for all of them.
    let now = ledger.now();
    let mut n = 0;
    for c in &mut cq {
        n += 1;
        let c = Cqe {
            user_data: c.user_data(),
            res: c.result(),
            flags: c.flags(),
        };
        if cqueue::notif(c.flags) {
            let copied =
                ledger.counts.usage_reported && (c.res as u32) & IORING_NOTIF_USAGE_ZC_COPIED != 0;
            if let Ok(id) = u32::try_from(c.user_data) {
                // Err: not a send of this ledger (cannot happen: every SQE is the sender's).
                let _ = ledger.complete(id, id, copied, now);
            }
        } else {
            let done = ledger.result(c.user_data, c.res, cqueue::more(c.flags), now);
            f(c, done);
        }
    }
    n
}

/// Sends from the ring's registered buffers with SEND_ZC, tracking notifications.
pub struct ZcSender {
    ledger: Ledger,
    /// Use the registered buffer (IORING_RECVSEND_FIXED_BUF) or let the kernel pin the pages.
    fixed: bool,
}

impl ZcSender {
    /// A sender over all of `ring`'s registered buffers. `fixed` picks SEND_ZC with
    /// IORING_RECVSEND_FIXED_BUF; otherwise the same memory is passed as a plain address.
    /// `report_usage` asks for IORING_SEND_ZC_REPORT_USAGE (Linux 6.2; backported to 6.1).
    /// [`ZcSender::drain`] stops waiting when `cancel` fires.
    pub fn new(
        ring: &Ring,
        fixed: bool,
        report_usage: bool,
        clock: Clock,
        cancel: Cancel,
    ) -> ZcSender {
        let n = ring.buffer_count();
        ZcSender {
            ledger: Ledger::new(n, n * 4 + 4, report_usage, clock, cancel),
            fixed,
        }
    }

    /// The account of sends and notifications.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// A registered buffer with no notification outstanding, waiting for notifications if all
    /// are busy.
    pub fn acquire(&mut self, ring: &mut Ring) -> io::Result<usize> {
        loop {
            if let Some(i) = self.ledger.free_buffer() {
                return Ok(i);
            }
            self.wait_for(ring, &[])?;
        }
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
        while !self.ledger.can_begin() {
            self.wait_for(ring, &[])?;
        }
        let id = self.ledger.next_id()?;
        let ptr = ring.buffer_ptr(buf).wrapping_add(from);
        let fixed = self.fixed.then_some(buf as u16);
        let report = self.ledger.counts.usage_reported;
        let send = send_zc_entry(sock, ptr, len, libc::MSG_WAITALL, report, fixed).user_data(id);
        let r = ring.inner();
        {
            let mut sq = r.submission();
            if let Some(read) = link_after {
                // SAFETY: the read targets a registered buffer owned by the ring, which the
                // ledger keeps busy below until the send's notification arrives.
                unsafe { sq.push(&read.flags(squeue::Flags::IO_LINK)) }
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
            // SAFETY: the send reads a registered buffer owned by the ring; the ledger keeps it
            // from being handed out again until the notification for this id arrives.
            unsafe { sq.push(&send) }.map_err(|_| io::Error::other("submission queue full"))?;
        }
        let now = self.ledger.now();
        Ok(self.ledger.begin(buf, from, len, now, true))
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
            done += nonzero(c[0].result()?, "send_zc returned 0: peer closed")?;
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
        let read = read_fixed_entry(ring, file, off, buf, len).user_data(READ_TAG);
        let ud = self.push_send(ring, buf, 0, len, sock, Some(read))?;
        let c = self.wait_for(ring, &[READ_TAG, ud])?;
        let (r, s) = (c[0], c[1]);
        let n = r.result()?;
        let sent = s.linked_result()?;
        if sent < n {
            self.send(ring, buf, sent, n - sent, sock)?;
        }
        Ok(n)
    }

    /// Waits until CQEs for all `uds` (non-notification) have arrived, processing notifications
    /// meanwhile (with no `uds`: until at least one CQE arrived); returns them in the order of
    /// `uds`.
    fn wait_for(&mut self, ring: &mut Ring, uds: &[u64]) -> io::Result<Vec<Cqe>> {
        let mut got: Vec<Option<Cqe>> = vec![None; uds.len()];
        loop {
            wait_cqe(ring, None)?;
            reap(ring, &mut self.ledger, |c, _| {
                if let Some(i) = uds.iter().position(|&u| u == c.user_data) {
                    got[i] = Some(c);
                }
            });
            if got.iter().all(Option::is_some) {
                return Ok(got.into_iter().flatten().collect());
            }
        }
    }

    /// Waits for every outstanding notification, up to `timeout` ([`Ledger::drain`]); a
    /// notification still missing then is an error.
    pub fn drain(&mut self, ring: &mut Ring, timeout: Duration) -> io::Result<()> {
        drain(ring, &mut self.ledger, timeout, |_, _| {})
    }
}
