//! The zero-copy ledger: one account of sends whose memory the kernel may still read, shared by
//! every zero-copy sender of the lab (MSG_ZEROCOPY in [`crate::sys::errqueue`], SEND_ZC,
//! SENDMSG_ZC, the send pipeline and the mapped sender in [`crate::uring`]).
//!
//! Every send gets the next id (0, 1, 2, ...: the MSG_ZEROCOPY id the kernel assigns, or the
//! io_uring user_data). A send is live from [`Ledger::begin`] until both its result (the
//! syscall's return or the result CQE, [`Ledger::result`]) and its notification (an error-queue
//! range or an F_NOTIF CQE, [`Ledger::complete`]) are in; only then is its buffer free again
//! ([`Ledger::free_buffer`]), so a buffer is never rewritten while the kernel may read it, however
//! few buffers there are. Accounting is by id, never by counting F_MORE: a send cancelled inside
//! a link posts -ECANCELED without F_MORE and still gets a notification; only any other result
//! without F_MORE means that no notification will follow.
//!
//! Completions can cover a range of ids and arrive out of order (the error queue merges them into
//! `[lo ..= hi]`), so the ids no notification is awaited for any more are kept as a set of ranges
//! ([`IdRanges`]). [`Ledger::drain`] waits for the rest, up to a deadline and until a [`Cancel`]
//! token fires. Its counts are a result row's [`ZcCounts`], whose `copied_pct` formula is the one
//! the lab uses.

use crate::measure::{Clock, Recorder, Run, Stamp};
use crate::results::ZcCounts;
use crate::sys::signal::Cancel;
use hdrhistogram::Histogram;
use std::io;
use std::time::{Duration, Instant};

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

/// A send's result, as handed to the sender once it is in.
#[derive(Debug, Clone, Copy)]
pub struct SendDone {
    /// The send's id.
    pub id: u64,
    /// The buffer sent from.
    pub buf: usize,
    /// Offset within the buffer that was submitted.
    pub off: usize,
    /// Length that was submitted.
    pub len: usize,
    /// Bytes sent, or -errno.
    pub res: i32,
    /// When the send was issued.
    pub issued: Stamp,
    /// When its result was accounted.
    pub reaped: Stamp,
}

#[derive(Clone, Copy)]
struct Entry {
    id: u64,
    buf: u32,
    off: u64,
    len: u32,
    sent: u32,
    issued: Stamp,
    result_pending: bool,
    notif_pending: bool,
}

/// The account of one sender's sends: which buffer may be reused when, what the kernel
/// reported, and how long each send held its memory.
pub struct Ledger {
    /// Live sends by `id & mask`.
    table: Vec<Option<Entry>>,
    mask: usize,
    /// Live sends per buffer.
    busy: Vec<u32>,
    next_id: u64,
    max_live: usize,
    live: usize,
    results_pending: usize,
    notifs_pending: usize,
    /// Ids for which no notification is awaited any more.
    released: IdRanges,
    clock: Clock,
    cancel: Cancel,
    /// Sends, notifications, copied, ENOBUFS retries.
    /// (`copied_pct` is left at 0 here and computed by [`Ledger::report`].)
    pub counts: ZcCounts,
    /// Send issued to its notification, one sample per zero-copy send.
    pub release: Recorder,
}

impl Ledger {
    /// A ledger for `buffers` buffers (at least 1) and up to `max_live` sends live at once (at
    /// least 1). `usage_reported`: whether notifications say if the data was copied.
    pub fn new(
        buffers: usize,
        max_live: usize,
        usage_reported: bool,
        clock: Clock,
        cancel: Cancel,
    ) -> Ledger {
        let max_live = max_live.max(1);
        // Twice the live limit: a send whose notification lags keeps its entry without
        // blocking the ids after it.
        let table = (max_live * 2).next_power_of_two();
        Ledger {
            table: vec![None; table],
            mask: table - 1,
            busy: vec![0; buffers.max(1)],
            next_id: 0,
            max_live,
            live: 0,
            results_pending: 0,
            notifs_pending: 0,
            released: IdRanges::new(),
            clock,
            cancel,
            counts: ZcCounts {
                usage_reported,
                ..Default::default()
            },
            release: Recorder::new(clock),
        }
    }

    /// The clock sends are stamped with.
    pub fn now(&self) -> Stamp {
        self.clock.now()
    }

    /// Number of buffers.
    pub fn buffers(&self) -> usize {
        self.busy.len()
    }

    /// Whether buffer `buf` has no live send (the kernel no longer reads it).
    pub fn is_free(&self, buf: usize) -> bool {
        self.busy[buf] == 0
    }

    /// A buffer with no live send, if any.
    pub fn free_buffer(&self) -> Option<usize> {
        self.busy.iter().position(|&b| b == 0)
    }

    /// Sends not yet complete (result or notification outstanding).
    pub fn live(&self) -> usize {
        self.live
    }

    /// Sends whose result is not in.
    pub fn results_pending(&self) -> usize {
        self.results_pending
    }

    /// Notifications not yet in.
    pub fn notifs_pending(&self) -> usize {
        self.notifs_pending
    }

    /// The ids no notification is awaited for any more.
    pub fn released(&self) -> &IdRanges {
        &self.released
    }

    /// Length of the id table: [`Ledger::slot`] is below it.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// The table slot of send `id`, which no other send takes while `id` is live (for per-send
    /// storage such as a msghdr).
    pub fn slot(&self, id: u64) -> usize {
        id as usize & self.mask
    }

    /// Whether another send can begin now; when not, wait for completions first.
    pub fn can_begin(&self) -> bool {
        self.live < self.max_live && self.table[self.next_id as usize & self.mask].is_none()
    }

    /// The id the next send gets (its user_data), or an error when none can begin
    /// ([`Ledger::can_begin`]) or ids are exhausted.
    pub fn next_id(&self) -> io::Result<u64> {
        if self.next_id > u32::MAX as u64 {
            return Err(io::Error::other(
                "more than 2^32 zero-copy sends by one sender",
            ));
        }
        if !self.can_begin() {
            return Err(io::Error::other("too many sends in flight for the sender"));
        }
        Ok(self.next_id)
    }

    /// Records a send of `len` bytes at `off` of buffer `buf`, issued at `issued`, as id
    /// [`Ledger::next_id`]; the buffer stays busy until the send is complete. `zero_copy`: a
    /// notification will follow. Returns the id.
    pub fn begin(
        &mut self,
        buf: usize,
        off: usize,
        len: usize,
        issued: Stamp,
        zero_copy: bool,
    ) -> u64 {
        let id = self.next_id;
        let slot = self.slot(id);
        assert!(
            self.table[slot].is_none() && id <= u32::MAX as u64,
            "Ledger::begin without Ledger::next_id"
        );
        self.table[slot] = Some(Entry {
            id,
            buf: buf as u32,
            off: off as u64,
            len: len as u32,
            sent: 0,
            issued,
            result_pending: true,
            notif_pending: zero_copy,
        });
        self.next_id += 1;
        self.busy[buf] += 1;
        self.live += 1;
        self.results_pending += 1;
        if zero_copy {
            self.notifs_pending += 1;
            self.counts.sends += 1;
        } else {
            let _ = self.released.insert(id as u32, id as u32);
        }
        id
    }

    /// Sets the issue stamp of every send from id `first` on to `issued`: for sends queued
    /// together and handed to the kernel by one system call, stamped when that call is made.
    pub fn stamp_issued_from(&mut self, first: u64, issued: Stamp) {
        for id in first..self.next_id {
            if let Some(e) = self.entry(id) {
                e.issued = issued;
            }
        }
    }

    /// The id the next send will get, whether or not one can begin now.
    pub fn next_id_unchecked(&self) -> u64 {
        self.next_id
    }

    fn entry(&mut self, id: u64) -> Option<&mut Entry> {
        let slot = self.slot(id);
        self.table[slot].as_mut().filter(|e| e.id == id)
    }

    /// Frees the entry of `id` once nothing is pending for it.
    fn settle(&mut self, id: u64) {
        let slot = self.slot(id);
        if let Some(e) = self.table[slot] {
            if !e.result_pending && !e.notif_pending {
                self.table[slot] = None;
                self.busy[e.buf as usize] -= 1;
                self.live -= 1;
            }
        }
    }

    /// Records the result of send `id`, reaped at `reaped`: bytes sent or -errno, and whether
    /// the kernel said more completions follow (IORING_CQE_F_MORE; true for MSG_ZEROCOPY).
    /// Returns the send, or None when `id` has no result outstanding (not this ledger's). The
    /// completions reaped in one pass share one stamp: one clock reading per pass, not per CQE.
    pub fn result(&mut self, id: u64, res: i32, more: bool, reaped: Stamp) -> Option<SendDone> {
        let e = self.entry(id).filter(|e| e.result_pending)?;
        e.result_pending = false;
        if res > 0 {
            e.sent = res as u32;
        }
        // Without F_MORE no notification follows, except after a cancellation inside a link.
        let no_notif = e.notif_pending && !more && res != -libc::ECANCELED;
        if no_notif {
            e.notif_pending = false;
        }
        let done = SendDone {
            id,
            buf: e.buf as usize,
            off: e.off as usize,
            len: e.len as usize,
            res,
            issued: e.issued,
            reaped,
        };
        self.results_pending -= 1;
        if res > 0 {
            self.counts.bytes += res as u64;
        }
        if no_notif {
            self.notifs_pending -= 1;
            let _ = self.released.insert(id as u32, id as u32);
        }
        self.settle(id);
        Some(done)
    }

    /// Records one notification covering ids `lo ..= hi`, reaped at `now`, `copied` when the
    /// kernel copied them. An id not sent, or one no notification is awaited for (already
    /// notified, or a copying send), is an error and changes nothing.
    pub fn complete(&mut self, lo: u32, hi: u32, copied: bool, now: Stamp) -> io::Result<()> {
        if hi as u64 >= self.next_id {
            return Err(io::Error::other(format!(
                "completion for ids {lo}..={hi}, but only {} sent",
                self.next_id
            )));
        }
        // Every id below next_id is either in `released` or live awaiting its notification, so
        // once the range is inserted each of its ids has a live entry.
        let added = self
            .released
            .insert(lo, hi)
            .map_err(|id| io::Error::other(format!("zero-copy id {id} completed twice")))?;
        self.counts.notifications += 1;
        self.counts.ids_completed += added;
        let mut run = Run::default();
        for id in lo..=hi {
            let e = self.entry(id as u64).expect("an id not released is live");
            e.notif_pending = false;
            let (sent, issued) = (e.sent, e.issued);
            self.notifs_pending -= 1;
            if copied {
                self.counts.copied += 1;
                self.counts.copied_bytes += sent as u64;
            }
            run.add(self.clock.ns_between(issued, now), &mut self.release);
            self.settle(id as u64);
        }
        run.flush(&mut self.release);
        Ok(())
    }

    /// Calls `wait` (which waits up to the time it is given for completions and feeds them to
    /// the ledger) until no send is live. Fails when `timeout` passes first (naming the ids still
    /// missing) or when the cancellation token fires; an interrupted wait is retried otherwise.
    /// Then checks that every id issued was released exactly once.
    pub fn drain(
        &mut self,
        timeout: Duration,
        mut wait: impl FnMut(&mut Ledger, Duration) -> io::Result<()>,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        while self.live > 0 {
            if let Some(sig) = self.cancel.signal() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    format!("signal {sig} while {} send(s) were incomplete", self.live),
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let mut missing = self.released.missing_below(self.next_id);
                missing.truncate(8);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} send result(s) and {} zero-copy notification(s) still missing {timeout:?} after the last send (ids missing: {missing:?})",
                        self.results_pending, self.notifs_pending
                    ),
                ));
            }
            match wait(self, left.min(Duration::from_millis(100))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted && !self.cancel.is_cancelled() => {
                }
                Err(e) => return Err(e),
            }
        }
        if self.released.count() != self.next_id {
            return Err(io::Error::other(format!(
                "completed ids do not match the {} sent: missing {:?}, ranges {:?}",
                self.next_id,
                self.released.missing_below(self.next_id),
                self.released.ranges()
            )));
        }
        Ok(())
    }

    /// The counts and the release-time histogram, for the trial's row.
    pub fn report(&self) -> (ZcCounts, Histogram<u64>) {
        (
            self.counts.with_copied_pct(),
            self.release.histogram().clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(buffers: usize, max_live: usize) -> Ledger {
        Ledger::new(buffers, max_live, true, Clock::new(), Cancel::never())
    }

    /// Begins a zero-copy send from `buf` of `len` bytes whose result is `len`.
    fn sent(l: &mut Ledger, buf: usize, len: usize) -> u64 {
        let id = l.next_id().unwrap();
        let t = l.now();
        assert_eq!(l.begin(buf, 0, len, t, true), id);
        let d = l.result(id, len as i32, true, l.now()).unwrap();
        assert_eq!((d.id, d.buf, d.len, d.res), (id, buf, len, len as i32));
        id
    }

    #[test]
    fn sends_submitted_together_carry_the_submission_stamp() {
        let mut l = ledger(4, 4);
        let pushed = l.now();
        let first = sent(&mut l, 0, 10);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let submitted = l.now();
        // The first send was submitted earlier; the next two are queued together.
        let a = l.next_id().unwrap();
        l.begin(1, 0, 10, pushed, true);
        let b = l.next_id().unwrap();
        l.begin(2, 0, 10, pushed, true);
        l.stamp_issued_from(a, submitted);
        let da = l.result(a, 10, true, l.now()).unwrap();
        let db = l.result(b, 10, true, l.now()).unwrap();
        assert_eq!((da.issued, db.issued), (submitted, submitted));
        assert!(submitted > pushed);
        // The send submitted before keeps its own stamp.
        l.complete(first as u32, b as u32, false, l.now()).unwrap();
        assert_eq!(l.live(), 0);
    }

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
    fn a_buffer_is_reused_only_after_its_notification() {
        let mut l = ledger(1, 4);
        let a = sent(&mut l, 0, 100);
        assert_eq!(l.free_buffer(), None, "result in, notification not");
        assert!(!l.is_free(0));
        let b = sent(&mut l, 0, 50); // a second send from the same buffer (a short-send retry)
        l.complete(a as u32, a as u32, false, l.now()).unwrap();
        assert!(!l.is_free(0), "send {b} still holds the buffer");
        l.complete(b as u32, b as u32, true, l.now()).unwrap();
        assert_eq!(l.free_buffer(), Some(0));
        assert_eq!(l.live(), 0);
        assert_eq!(
            l.counts,
            ZcCounts {
                sends: 2,
                bytes: 150,
                notifications: 2,
                ids_completed: 2,
                copied: 1,
                copied_bytes: 50,
                enobufs_retries: 0,
                copied_pct: 0.0,
                usage_reported: true,
            }
        );
        assert!((l.report().0.copied_pct - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(ZcCounts::default().with_copied_pct().copied_pct, 0.0);
    }

    #[test]
    fn a_notification_before_the_result_keeps_the_buffer_busy() {
        let mut l = ledger(2, 4);
        let id = l.next_id().unwrap();
        let t = l.now();
        l.begin(1, 0, 10, t, true);
        l.complete(0, 0, false, l.now()).unwrap();
        assert!(!l.is_free(1), "the result is still outstanding");
        assert_eq!(l.free_buffer(), Some(0));
        l.result(id, 10, true, l.now()).unwrap();
        assert!(l.is_free(1));
        assert!(
            l.result(id, 10, true, l.now()).is_none(),
            "a second result is not ours"
        );
    }

    #[test]
    fn merged_and_out_of_order_ranges_release_every_id_once() {
        let mut l = ledger(3, 64);
        for i in 0..10 {
            sent(&mut l, i % 3, 1000);
        }
        l.complete(4, 8, true, l.now()).unwrap();
        assert_eq!(l.released().ranges(), &[(4, 8)]);
        let e = l.complete(8, 9, false, l.now()).unwrap_err();
        assert!(e.to_string().contains("id 8 completed twice"), "{e}");
        assert!(l.complete(10, 10, false, l.now()).is_err(), "never sent");
        assert_eq!(l.notifs_pending(), 5, "a failed completion changes nothing");
        l.complete(0, 3, false, l.now()).unwrap();
        l.complete(9, 9, false, l.now()).unwrap();
        assert_eq!(l.released().ranges(), &[(0, 9)]);
        assert_eq!(l.live(), 0);
        assert_eq!(l.counts.notifications, 3);
        assert_eq!(l.counts.ids_completed, 10);
        assert_eq!((l.counts.copied, l.counts.copied_bytes), (5, 5000));
        assert_eq!(l.report().0.copied_pct, 50.0);
        l.drain(Duration::from_millis(10), |_, _| unreachable!())
            .unwrap();
    }

    #[test]
    fn results_without_more_release_unless_cancelled_in_a_link() {
        let mut l = ledger(1, 4);
        let t = l.now();
        let a = l.begin(0, 0, 10, t, true);
        l.result(a, -libc::EINVAL, false, l.now()).unwrap();
        assert!(l.is_free(0), "no F_MORE: no notification follows");
        let b = l.begin(0, 0, 10, t, true);
        l.result(b, -libc::ECANCELED, false, l.now()).unwrap();
        assert!(
            !l.is_free(0),
            "cancelled in a link: a notification still follows"
        );
        l.complete(b as u32, b as u32, false, l.now()).unwrap();
        assert!(l.is_free(0));
        let c = l.begin(0, 0, 10, t, false);
        l.result(c, 10, false, l.now()).unwrap();
        assert!(l.is_free(0), "a copying send is done at its result");
        assert_eq!(l.released().ranges(), &[(0, 2)]);
        assert_eq!(l.counts.sends, 2);
        assert_eq!(l.counts.notifications, 1);
    }

    #[test]
    fn the_id_table_bounds_the_sends_in_flight() {
        let mut l = ledger(1, 2);
        sent(&mut l, 0, 1);
        sent(&mut l, 0, 1);
        assert!(!l.can_begin());
        assert!(l.next_id().is_err());
        l.complete(1, 1, false, l.now()).unwrap();
        assert!(l.can_begin());
        // Id 0 lags: its slot comes round again after table_len() ids.
        for _ in 2..l.table_len() {
            let id = sent(&mut l, 0, 1);
            l.complete(id as u32, id as u32, false, l.now()).unwrap();
        }
        assert!(!l.can_begin(), "the lagging id's slot is still taken");
        l.complete(0, 0, false, l.now()).unwrap();
        assert!(l.can_begin());
    }

    #[test]
    fn drain_gives_up_at_the_deadline_and_names_the_missing_ids() {
        let mut l = ledger(1, 8);
        for _ in 0..3 {
            sent(&mut l, 0, 1);
        }
        l.complete(1, 1, false, l.now()).unwrap();
        let mut waits = 0;
        let e = l
            .drain(Duration::from_millis(30), |_, t| {
                waits += 1;
                std::thread::sleep(t.min(Duration::from_millis(5)));
                Ok(())
            })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("[(0, 0), (2, 2)]"), "{e}");
        assert!(waits >= 2);
        // A wait that brings the completions ends the drain.
        l.drain(Duration::from_secs(1), |l, _| {
            l.complete(2, 2, true, l.now())?;
            l.complete(0, 0, true, l.now())
        })
        .unwrap();
    }

    #[test]
    fn drain_retries_interrupted_waits_unless_cancelled() {
        let mut l = ledger(1, 8);
        sent(&mut l, 0, 1);
        let mut n = 0;
        l.drain(Duration::from_secs(1), |l, _| {
            n += 1;
            if n < 3 {
                return Err(io::Error::from_raw_os_error(libc::EINTR));
            }
            l.complete(0, 0, false, l.now())
        })
        .unwrap();
        assert_eq!(n, 3);
    }
}
