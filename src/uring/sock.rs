//! io_uring patterns for the socket experiments: moving a byte stream off a socket into a file
//! or another socket (recv + write, READ_FIXED + WRITE_FIXED, splice through a pipe), moving
//! exactly N bytes between two sockets (a relay's request or reply), gathered writes
//! (IORING_OP_WRITEV, IORING_OP_SENDMSG_ZC with its notifications), and a loop of NOPs that
//! measures the bare cost of a submission.
//!
//! Like the rest of [`crate::uring`], every pattern waits for the completions of what it
//! submitted before it returns, or owns the memory the kernel may still read; none allocates in
//! its per-step path.

use super::zc::{drain, reap, wait_cqe, zc_flags};
use super::{Cqe, Fd, splice_entry};
use crate::measure::{Clock, Recorder};
use crate::ring::Ring;
use crate::sys::signal::Cancel;
use crate::sys::uring_cq::CqRing;
use crate::zc::ledger::Ledger;
use io_uring::{cqueue, opcode, squeue, types};
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::Duration;

/// The most entries one call of [`submit_wait_n`] handles.
const MAX_BATCH: usize = 4;

fn busy(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

/// Pushes `entries` (at most [`MAX_BATCH`], user_data = their index), submits them in one
/// io_uring_enter, and waits for one CQE each; returns the CQEs by index. Notification CQEs
/// (IORING_CQE_F_NOTIF) go to `other`. Allocates nothing. An interrupted wait is resumed, so
/// nothing submitted is still in flight when this returns Ok; on Err the ring's state is
/// unknown and the caller must treat the memory the entries named as possibly still in use.
/// (io_uring_enter returns an error only when it submitted nothing, and with a ring the lab
/// owns only EINTR/EAGAIN/EBUSY are expected, which are retried; the patterns that own their
/// buffers leak them on error all the same.)
///
/// # Safety
/// Every buffer an entry points to must stay valid and unaliased until this returns.
unsafe fn submit_wait_n(
    ring: &mut Ring,
    entries: &[squeue::Entry],
    mut other: impl FnMut(Cqe),
) -> io::Result<[Cqe; MAX_BATCH]> {
    assert!(
        entries.len() <= MAX_BATCH,
        "submit_wait_n: too many entries"
    );
    let none = Cqe {
        user_data: u64::MAX,
        res: 0,
        flags: 0,
    };
    let mut out = [none; MAX_BATCH];
    let r = ring.inner();
    {
        let mut sq = r.submission();
        for (i, e) in entries.iter().enumerate() {
            // SAFETY: forwarded from the caller's contract: the buffers outlive this call.
            unsafe { sq.push(&e.clone().user_data(i as u64)) }
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
    }
    let mut got = 0;
    while got < entries.len() {
        match r.submit_and_wait(entries.len() - got) {
            Ok(_) => {}
            Err(e) if busy(&e) => {}
            Err(e) => return Err(e),
        }
        for c in r.completion() {
            let c = Cqe {
                user_data: c.user_data(),
                res: c.result(),
                flags: c.flags(),
            };
            if cqueue::notif(c.flags) {
                other(c);
            } else if let Some(slot) = out.get_mut(c.user_data as usize) {
                if slot.user_data == u64::MAX && (c.user_data as usize) < entries.len() {
                    *slot = c;
                    got += 1;
                }
            }
        }
    }
    Ok(out)
}

/// Submits one entry and waits for it (see [`submit_wait_n`]).
///
/// # Safety
/// As for [`submit_wait_n`].
unsafe fn submit_wait_one(ring: &mut Ring, e: squeue::Entry) -> io::Result<Cqe> {
    // SAFETY: forwarded from the caller.
    Ok(unsafe { submit_wait_n(ring, &[e], |_| {}) }?[0])
}

fn closed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("{what}: peer closed the connection"),
    )
}

/// How a [`Mover`] takes bytes off its source socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// IORING_OP_RECV into one of two buffers the mover owns.
    Recv,
    /// IORING_OP_READ_FIXED on the socket (sock_read_iter, i.e. a recv) into registered buffer
    /// 0 or 1 of the ring, then IORING_OP_WRITE_FIXED / SEND from it.
    Fixed,
    /// IORING_OP_SPLICE socket -> pipe, then IORING_OP_SPLICE pipe -> destination.
    Splice { pipe_r: RawFd, pipe_w: RawFd },
}

/// Where a [`Mover`] puts the bytes.
#[derive(Debug, Clone, Copy)]
pub enum Put {
    /// A file, written sequentially from offset 0 (IORING_OP_WRITE, WRITE_FIXED or SPLICE).
    File(Fd),
    /// A socket (IORING_OP_SEND with MSG_WAITALL, or SPLICE).
    Socket(Fd),
}

/// Moves a byte stream from a socket to a file or another socket, one io_uring_enter per step:
/// each step submits the output of what the previous step received together with the next
/// receive, and waits for both (double buffering; with splice, the pipe keeps the order).
/// Optionally links an IORING_OP_FSYNC after a file write every `sync_every` bytes.
pub struct Mover {
    from: Fd,
    put: Put,
    take: Take,
    chunk: usize,
    bufs: [Vec<u8>; 2],
    /// Bytes received by the last step and not yet written out: (buffer, length).
    pending: Option<(usize, usize)>,
    next: usize,
    eof: bool,
    /// Output offset in the file.
    off: u64,
    sync_every: Option<u64>,
    unsynced: u64,
    /// The kernel may still use the buffers (an io_uring_enter failed): leak them on drop.
    poisoned: bool,
    /// Bytes received, bytes put, io_uring_enter round trips, fsyncs issued.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub enters: u64,
    pub syncs: u64,
}

impl Mover {
    /// A mover of up to `chunk` bytes per step from socket `from` to `put`. With
    /// [`Take::Fixed`] the ring must have at least two registered buffers of `chunk` bytes;
    /// with [`Take::Splice`] the pipe should hold at least `chunk` bytes.
    pub fn new(
        ring: &Ring,
        from: Fd,
        put: Put,
        take: Take,
        chunk: usize,
        sync_every: Option<u64>,
    ) -> io::Result<Mover> {
        if chunk == 0 || chunk > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "chunk must be 1 B to 4 GiB",
            ));
        }
        if take == Take::Fixed
            && (ring.buffer_count() < 2
                || ring.buffer(0).len() < chunk
                || ring.buffer(1).len() < chunk)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Take::Fixed needs two registered buffers of at least the chunk size",
            ));
        }
        let bufs = if take == Take::Recv {
            [vec![0u8; chunk], vec![0u8; chunk]]
        } else {
            [Vec::new(), Vec::new()]
        };
        Ok(Mover {
            from,
            put,
            take,
            chunk,
            bufs,
            pending: None,
            next: 0,
            eof: false,
            off: 0,
            sync_every: sync_every.filter(|&s| s > 0),
            unsynced: 0,
            poisoned: false,
            bytes_in: 0,
            bytes_out: 0,
            enters: 0,
            syncs: 0,
        })
    }

    fn buf_ptr(&mut self, ring: &mut Ring, i: usize) -> *mut u8 {
        match self.take {
            Take::Fixed => ring.buffer_ptr(i),
            _ => self.bufs[i].as_mut_ptr(),
        }
    }

    /// The output op for `len` bytes of buffer `i` starting `from` bytes in.
    fn out_entry(&mut self, ring: &mut Ring, i: usize, from: usize, len: usize) -> squeue::Entry {
        let len32 = len as u32;
        match (self.take, self.put) {
            (Take::Splice { pipe_r, .. }, Put::File(f)) => {
                let off = self.off as i64;
                match f {
                    Fd::Raw(f) => {
                        opcode::Splice::new(types::Fd(pipe_r), -1, types::Fd(f), off, len32)
                    }
                    Fd::Fixed(f) => {
                        opcode::Splice::new(types::Fd(pipe_r), -1, types::Fixed(f), off, len32)
                    }
                }
                .build()
            }
            (Take::Splice { pipe_r, .. }, Put::Socket(s)) => match s {
                Fd::Raw(s) => opcode::Splice::new(types::Fd(pipe_r), -1, types::Fd(s), -1, len32),
                Fd::Fixed(s) => {
                    opcode::Splice::new(types::Fd(pipe_r), -1, types::Fixed(s), -1, len32)
                }
            }
            .build(),
            (Take::Fixed, Put::File(f)) => {
                let p = ring.buffer_ptr(i).wrapping_add(from);
                with_fd!(f, WriteFixed(p, len32, i as u16))
                    .offset(self.off)
                    .build()
            }
            (_, Put::File(f)) => {
                let p = self.buf_ptr(ring, i).wrapping_add(from);
                with_fd!(f, Write(p, len32)).offset(self.off).build()
            }
            (_, Put::Socket(s)) => {
                let p = self.buf_ptr(ring, i).wrapping_add(from);
                with_fd!(s, Send(p, len32)).flags(libc::MSG_WAITALL).build()
            }
        }
    }

    fn in_entry(&mut self, ring: &mut Ring) -> squeue::Entry {
        let (i, len) = (self.next, self.chunk as u32);
        match self.take {
            Take::Splice { pipe_w, .. } => match self.from {
                Fd::Raw(s) => opcode::Splice::new(types::Fd(s), -1, types::Fd(pipe_w), -1, len),
                Fd::Fixed(s) => {
                    opcode::Splice::new(types::Fixed(s), -1, types::Fd(pipe_w), -1, len)
                }
            }
            .build(),
            Take::Fixed => {
                let p = ring.buffer_ptr(i);
                // Offset -1: "the file position", which a socket ignores.
                with_fd!(self.from, ReadFixed(p, len, i as u16))
                    .offset(u64::MAX)
                    .build()
            }
            Take::Recv => {
                let p = self.bufs[i].as_mut_ptr();
                with_fd!(self.from, Recv(p, len)).build()
            }
        }
    }

    fn fsync_entry(&self) -> Option<squeue::Entry> {
        match self.put {
            Put::File(f) => Some(with_fd!(f, Fsync()).build()),
            Put::Socket(_) => None,
        }
    }

    /// Submits `entries`, waits, and marks the mover poisoned if the wait failed.
    fn run(&mut self, ring: &mut Ring, entries: &[squeue::Entry]) -> io::Result<[Cqe; MAX_BATCH]> {
        self.enters += 1;
        // SAFETY: the entries name only this mover's own buffers (heap memory that moves never),
        // the ring's registered buffers, or no memory at all (splice, fsync); the call waits for
        // every completion, and if it fails the mover is poisoned so the buffers are leaked
        // rather than freed while the kernel may still use them.
        let r = unsafe { submit_wait_n(ring, entries, |_| {}) };
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }

    /// Finishes writing `len` bytes of buffer `i` from `done` on, one op at a time (rare: a
    /// short write or send).
    fn put_rest(
        &mut self,
        ring: &mut Ring,
        i: usize,
        mut done: usize,
        len: usize,
    ) -> io::Result<()> {
        while done < len {
            let e = self.out_entry(ring, i, done, len - done);
            let c = self.run(ring, &[e])?[0];
            match c.result()? {
                0 => return Err(closed("write")),
                n => {
                    done += n;
                    self.off += n as u64;
                }
            }
        }
        Ok(())
    }

    /// One step: puts out what the previous step received (and an fsync if one is due) and
    /// receives the next chunk, in one io_uring_enter. Returns the bytes received (0 once the
    /// source has ended; then call [`Mover::finish`]).
    pub fn step(&mut self, ring: &mut Ring) -> io::Result<usize> {
        let none = opcode::Nop::new().build();
        let mut entries = [none.clone(), none.clone(), none];
        let mut n_entries = 0;
        let mut out_idx = None;
        let mut sync_idx = None;
        let pending = self.pending.take();
        if let Some((i, len)) = pending {
            let mut e = self.out_entry(ring, i, 0, len);
            let due = self
                .sync_every
                .is_some_and(|every| self.unsynced + len as u64 >= every);
            if due && let Some(fs) = self.fsync_entry() {
                e = e.flags(squeue::Flags::IO_LINK);
                entries[n_entries] = e;
                out_idx = Some(n_entries);
                n_entries += 1;
                entries[n_entries] = fs;
                sync_idx = Some(n_entries);
                n_entries += 1;
            } else {
                entries[n_entries] = e;
                out_idx = Some(n_entries);
                n_entries += 1;
            }
        }
        let in_idx = if self.eof {
            None
        } else {
            entries[n_entries] = self.in_entry(ring);
            n_entries += 1;
            Some(n_entries - 1)
        };
        if n_entries == 0 {
            return Ok(0);
        }
        let c = self.run(ring, &entries[..n_entries])?;
        if let (Some(k), Some((i, len))) = (out_idx, pending) {
            let o = c[k];
            let wrote = o.linked_result()?;
            if wrote == 0 && len > 0 && o.res != -libc::ECANCELED {
                return Err(closed("write"));
            }
            self.off += wrote as u64;
            if wrote < len {
                self.put_rest(ring, i, wrote, len)?;
            }
            self.bytes_out += len as u64;
            self.unsynced += len as u64;
            if let Some(k) = sync_idx {
                if c[k].res == -libc::ECANCELED {
                    // The write was short and broke the link: sync now, after the rest.
                    self.sync(ring)?;
                } else {
                    c[k].result()?;
                    self.syncs += 1;
                    self.unsynced = 0;
                }
            }
        }
        let mut got = 0;
        if let Some(k) = in_idx {
            got = c[k].result()?;
            if got == 0 {
                self.eof = true;
            } else {
                self.pending = Some((self.next, got));
                self.next ^= 1;
                self.bytes_in += got as u64;
            }
        }
        Ok(got)
    }

    /// Issues IORING_OP_FSYNC on the output file and waits for it.
    pub fn sync(&mut self, ring: &mut Ring) -> io::Result<()> {
        if let Some(fs) = self.fsync_entry() {
            self.run(ring, &[fs])?[0].result()?;
            self.syncs += 1;
            self.unsynced = 0;
        }
        Ok(())
    }

    /// Puts out what is still pending (after [`Mover::step`] returned 0), then fsyncs the file
    /// when `sync_at_end` (or when bytes are unsynced under a `sync_every` policy).
    pub fn finish(&mut self, ring: &mut Ring, sync_at_end: bool) -> io::Result<()> {
        while self.pending.is_some() || !self.eof {
            self.step(ring)?;
        }
        if sync_at_end || (self.sync_every.is_some() && self.unsynced > 0) {
            self.sync(ring)?;
        }
        Ok(())
    }
}

impl Drop for Mover {
    fn drop(&mut self) {
        if self.poisoned {
            // The kernel may still write into these: never free them.
            for b in std::mem::take(&mut self.bufs) {
                std::mem::forget(b);
            }
        }
    }
}

/// How [`move_exact`] relays bytes.
pub enum Via<'a> {
    /// IORING_OP_RECV (MSG_WAITALL) into this buffer linked to IORING_OP_SEND (MSG_WAITALL).
    Buffer(&'a mut [u8]),
    /// IORING_OP_SPLICE from -> pipe linked to IORING_OP_SPLICE pipe -> to.
    Pipe { pipe_r: RawFd, pipe_w: RawFd },
}

/// Relays exactly `len` bytes from socket `from` to socket `to` (a request or reply of known
/// size), as one linked pair per io_uring_enter; a short first half (the data arrived in
/// pieces) breaks the link and the rest is moved by further pairs. End of stream before `len`
/// bytes is an error. Returns the io_uring_enter round trips it took.
pub fn move_exact(
    ring: &mut Ring,
    from: Fd,
    to: Fd,
    mut via: Via<'_>,
    len: usize,
) -> io::Result<u64> {
    if let Via::Buffer(buf) = &via {
        assert!(len <= buf.len(), "move_exact: buffer shorter than len");
    }
    let [first, second] = via.names();
    let mut moved = 0;
    let mut enters = 0;
    while moved < len {
        let [a, b] = via.pair(from, to, (len - moved) as u32);
        // SAFETY: a buffer `via` names is borrowed for the call, which waits for both
        // completions; splice entries name no user memory.
        let c = unsafe { submit_wait_n(ring, &[a.flags(squeue::Flags::IO_LINK), b], |_| {})? };
        enters += 1;
        let n = c[0].result()?;
        if n == 0 {
            return Err(closed(first));
        }
        let mut out = c[1].linked_result()?;
        while out < n {
            let e = via.rest(to, out, (n - out) as u32);
            // SAFETY: as above.
            let c = unsafe { submit_wait_one(ring, e)? };
            enters += 1;
            match c.result()? {
                0 => return Err(closed(second)),
                m => out += m,
            }
        }
        moved += n;
    }
    Ok(enters)
}

impl Via<'_> {
    /// The two halves' names, for errors.
    fn names(&self) -> [&'static str; 2] {
        match self {
            Via::Buffer(_) => ["recv", "send"],
            Via::Pipe { .. } => ["splice from socket", "splice to socket"],
        }
    }

    /// The pair (to be linked) that moves up to `n` bytes from `from` to `to`.
    fn pair(&mut self, from: Fd, to: Fd, n: u32) -> [squeue::Entry; 2] {
        match self {
            Via::Buffer(buf) => {
                let p = buf.as_mut_ptr();
                let recv = with_fd!(from, Recv(p, n)).flags(libc::MSG_WAITALL).build();
                [recv, self.rest(to, 0, n)]
            }
            Via::Pipe { pipe_r, pipe_w } => [
                splice_entry(from, -1, Fd::Raw(*pipe_w), -1, n),
                splice_entry(Fd::Raw(*pipe_r), -1, to, -1, n),
            ],
        }
    }

    /// The second half alone: `n` more bytes of what the first half took, `done` bytes in.
    fn rest(&mut self, to: Fd, done: usize, n: u32) -> squeue::Entry {
        match self {
            Via::Buffer(buf) => with_fd!(to, Send(buf.as_mut_ptr().wrapping_add(done), n))
                .flags(libc::MSG_WAITALL)
                .build(),
            Via::Pipe { pipe_r, .. } => splice_entry(Fd::Raw(*pipe_r), -1, to, -1, n),
        }
    }
}

/// Writes all of the gathered `parts` to `sock` with IORING_OP_WRITEV, one request in flight;
/// a short write is finished with further WRITEVs over the rest. Returns the round trips.
/// `parts` is consumed (advanced) as it is written.
pub fn writev_all(ring: &mut Ring, sock: Fd, mut parts: &mut [IoSlice<'_>]) -> io::Result<u64> {
    let mut enters = 0;
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = parts.len().min(libc::UIO_MAXIOV as usize);
        // IoSlice is ABI-compatible with struct iovec on Unix (std documents it).
        let e = with_fd!(sock, Writev(parts.as_ptr().cast::<libc::iovec>(), n as u32))
            .offset(u64::MAX)
            .build();
        // SAFETY: the iovec array and the memory it points to are borrowed for the call, which
        // waits for the completion.
        let c = unsafe { submit_wait_one(ring, e)? };
        enters += 1;
        match c.result()? {
            0 => return Err(closed("writev")),
            w => IoSlice::advance_slices(&mut parts, w),
        }
    }
    Ok(enters)
}

/// IORING_OP_SENDMSG_ZC of gathered parts of a memory pool it owns, with
/// IORING_SEND_ZC_REPORT_USAGE when asked, tracking every notification in a [`Ledger`]: the pool
/// is freed only once the kernel has released every page of it (else it is leaked, never freed
/// under the kernel). One send is in flight at a time, so a stream's bytes cannot be reordered.
pub struct ZcMsgSender {
    pool: Vec<u8>,
    iov: Vec<libc::iovec>,
    /// The header of the send in flight; kept here, not on the stack, so that it outlives any
    /// request the kernel has not consumed yet.
    msg: Box<libc::msghdr>,
    ledger: Ledger,
    /// A wait failed: the kernel may still read `msg`, `iov` and the pool; refuse further sends
    /// and leak them on drop.
    poisoned: bool,
}

const ZC_SLOTS: usize = 256;

impl ZcMsgSender {
    /// A sender of slices of `pool`; `max_parts` bounds the parts of one message.
    /// [`ZcMsgSender::drain`] stops waiting when `cancel` fires.
    pub fn new(
        pool: Vec<u8>,
        max_parts: usize,
        report_usage: bool,
        clock: Clock,
        cancel: Cancel,
    ) -> ZcMsgSender {
        ZcMsgSender {
            pool,
            iov: Vec::with_capacity(max_parts),
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            msg: Box::new(unsafe { std::mem::zeroed() }),
            ledger: Ledger::new(1, ZC_SLOTS, report_usage, clock, cancel),
            poisoned: false,
        }
    }

    /// The pool the parts are taken from (read-only: the kernel may be reading it).
    pub fn pool(&self) -> &[u8] {
        &self.pool
    }

    /// The account of sends and notifications.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Waits for at least one CQE (up to `timeout`), handling notifications; returns the
    /// result of send `want` if it arrived.
    fn wait(
        &mut self,
        ring: &mut Ring,
        want: Option<u64>,
        timeout: Option<Duration>,
    ) -> io::Result<Option<i32>> {
        match wait_cqe(ring, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut found = None;
        reap(ring, &mut self.ledger, |_, d| {
            if let Some(d) = d.filter(|d| Some(d.id) == want) {
                found = Some(d.res);
            }
        });
        Ok(found)
    }

    /// Sends the concatenation of `parts` (ranges `start..start+len` of the pool) with
    /// SENDMSG_ZC and MSG_WAITALL, and waits for the send's result (not its notification); a
    /// short send is finished with further sends. Returns the round trips.
    pub fn send(&mut self, ring: &mut Ring, sock: Fd, parts: &[(usize, usize)]) -> io::Result<u64> {
        if self.poisoned {
            return Err(io::Error::other(
                "zero-copy sender unusable after a failed io_uring_enter",
            ));
        }
        let total: usize = parts.iter().map(|p| p.1).sum();
        assert!(
            parts.iter().all(|&(s, l)| s + l <= self.pool.len()),
            "ZcMsgSender::send: part outside the pool"
        );
        let mut done = 0usize;
        let mut enters = 0;
        while done < total {
            // The iovecs of what is left, skipping `done` bytes.
            self.iov.clear();
            let mut skip = done;
            let base = self.pool.as_ptr();
            for &(s, l) in parts {
                if skip >= l {
                    skip -= l;
                    continue;
                }
                self.iov.push(libc::iovec {
                    iov_base: base.wrapping_add(s + skip) as *mut libc::c_void,
                    iov_len: l - skip,
                });
                skip = 0;
            }
            while !self.ledger.can_begin() {
                self.wait(ring, None, None)?;
            }
            let id = self.ledger.next_id()?;
            self.msg.msg_iov = self.iov.as_mut_ptr();
            self.msg.msg_iovlen = self.iov.len() as _;
            let e = with_fd!(sock, SendMsgZc(&*self.msg as *const libc::msghdr))
                .ioprio(zc_flags(self.ledger.counts.usage_reported))
                .flags(libc::MSG_WAITALL as u32)
                .build()
                .user_data(id);
            {
                let mut sq = ring.inner().submission();
                // SAFETY: `self.msg` and `self.iov` are not touched again until the result CQE
                // is reaped below (the kernel copies them when it issues the request), and are
                // leaked if that wait fails; the pool's pages are read until the notification,
                // and the pool is never freed while any send is live in the ledger (see Drop).
                unsafe { sq.push(&e) }.map_err(|_| io::Error::other("submission queue full"))?;
            }
            let now = self.ledger.now();
            self.ledger.begin(0, done, total - done, now, true);
            let res = loop {
                match self.wait(ring, Some(id), None) {
                    Ok(Some(res)) => break res,
                    Ok(None) => {}
                    Err(e) => {
                        self.poisoned = true;
                        return Err(e);
                    }
                }
            };
            enters += 1;
            match res {
                r if r < 0 => return Err(io::Error::from_raw_os_error(-r)),
                0 => return Err(closed("sendmsg_zc")),
                n => done += n as usize,
            }
        }
        Ok(enters)
    }

    /// Waits for every outstanding notification, up to `timeout` and while the cancellation
    /// token has not fired ([`Ledger::drain`]; then an error).
    pub fn drain(&mut self, ring: &mut Ring, timeout: Duration) -> io::Result<()> {
        drain(ring, &mut self.ledger, timeout, |_, _| {})
    }
}

impl Drop for ZcMsgSender {
    fn drop(&mut self) {
        if self.ledger.live() > 0 || self.poisoned {
            // The kernel may still read these: never free them.
            std::mem::forget(std::mem::take(&mut self.pool));
            std::mem::forget(std::mem::take(&mut self.iov));
            // SAFETY: msghdr is plain data; the replaced box is leaked, never freed.
            std::mem::forget(std::mem::replace(
                &mut self.msg,
                Box::new(unsafe { std::mem::zeroed() }),
            ));
        }
    }
}

/// What a NOP loop observed: requests submitted, completions reaped, completions whose result
/// was not 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NopCounts {
    pub submitted: u64,
    pub completed: u64,
    pub bad: u64,
}

/// Runs IORING_OP_NOP in batches on a ring, optionally through a registered ring fd
/// (IORING_REGISTER_RING_FDS: io_uring_enter then skips the fd table lookup). On an SQPOLL ring
/// the loop never enters the kernel to submit or wait (unless the SQ thread went to sleep): it
/// publishes the batch and spins on the completion queue.
pub struct NopRunner<'a> {
    sub: io_uring::Submitter<'a>,
    sq: io_uring::SubmissionQueue<'a>,
    // Read in place: the crate's per-completion copy was a twentieth of a NOP at batch 32.
    cq: CqRing,
    sqpoll: bool,
    registered: bool,
    pub counts: NopCounts,
}

impl<'a> NopRunner<'a> {
    /// Takes `ring` for the runner's lifetime; registers its fd when `register_ring_fd`.
    pub fn new(ring: &'a mut Ring, register_ring_fd: bool) -> io::Result<NopRunner<'a>> {
        let sqpoll = ring.is_sqpoll();
        let cq = ring.cq_in_place()?;
        // The crate's completion queue is dropped at once, so that only `cq` takes completions.
        let (mut sub, sq, _) = ring.inner().split();
        if register_ring_fd {
            sub.register_ring_fd().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("io_uring_register(IORING_REGISTER_RING_FDS): {e}"),
                )
            })?;
        }
        Ok(NopRunner {
            sub,
            sq,
            cq,
            sqpoll,
            registered: register_ring_fd,
            counts: NopCounts::default(),
        })
    }

    /// Whether the ring fd is registered.
    pub fn registered_ring_fd(&self) -> bool {
        self.registered
    }

    /// NOPs timed together in one clock reading: a NOP takes ~150 ns here, and a clock read
    /// plus a histogram record ~20 ns, so the clock is read once per this many NOPs (rounded
    /// up to whole batches) to keep its cost under 1%.
    pub const OPS_PER_SAMPLE: u64 = 64;

    /// Batches timed together: [`Self::OPS_PER_SAMPLE`] NOPs rounded up to whole batches.
    pub fn batches_per_sample(batch: usize) -> u64 {
        Self::OPS_PER_SAMPLE.div_ceil(batch.max(1) as u64)
    }

    /// Runs `batches` batches of `batch` NOPs, recording the time of each group of
    /// [`Self::batches_per_sample`] batches as one sample per NOP of the group's per-NOP
    /// mean ([`Recorder::record_batch_since`]). `batch` must not exceed the submission queue.
    pub fn run(&mut self, batch: usize, batches: u64, rec: &mut Recorder) -> io::Result<()> {
        if batch == 0 || batch > self.sq.capacity() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "NOP batch {batch} does not fit the submission queue ({})",
                    self.sq.capacity()
                ),
            ));
        }
        // One batch, built once: the loop only copies it into the ring.
        let nops = vec![opcode::Nop::new().build().user_data(0x4e4f50); batch];
        let group = Self::batches_per_sample(batch);
        let mut in_group = 0u64;
        let mut s = rec.now();
        for _ in 0..batches {
            // The head the kernel (or the SQPOLL thread, which can post completions before it
            // releases their entries) has reached since the last batch.
            self.sq.sync();
            let mut spins = 0u32;
            while self.sqpoll && self.sq.capacity() - self.sq.len() < batch {
                spins += 1;
                if spins >= 100_000_000 {
                    return Err(io::Error::other(
                        "the SQPOLL thread does not release submission queue entries",
                    ));
                }
                std::hint::spin_loop();
                self.sq.sync();
            }
            // SAFETY: a NOP names no memory.
            unsafe { self.sq.push_multiple(&nops) }
                .map_err(|_| io::Error::other("submission queue full"))?;
            self.sq.sync();
            self.counts.submitted += batch as u64;
            let mut got = 0;
            if self.sqpoll {
                // Wakes the SQ thread only if it went to sleep; otherwise no system call.
                match self.sub.submit() {
                    Ok(_) => {}
                    Err(e) if busy(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            while got < batch {
                if !self.sqpoll {
                    match self.sub.submit_and_wait(batch - got) {
                        Ok(_) => {}
                        Err(e) if busy(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                let bad = &mut self.counts.bad;
                got += self.cq.reap(usize::MAX, |c| *bad += u64::from(c.res != 0));
                if got < batch && self.sqpoll {
                    std::hint::spin_loop();
                }
            }
            self.counts.completed += got as u64;
            in_group += 1;
            if in_group == group {
                s = rec.record_batch_since(s, group * batch as u64);
                in_group = 0;
            }
        }
        if in_group > 0 {
            rec.record_batch_since(s, in_group * batch as u64);
        }
        Ok(())
    }
}

impl Drop for NopRunner<'_> {
    fn drop(&mut self) {
        if self.registered {
            let _ = self.sub.unregister_ring_fd();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::peers::{PatternStream, Streamer, tcp_pair};
    use crate::ring::RingConfig;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn stream_to_file(take: Take, chunk: usize, sync: Option<u64>) {
        let ps = PatternStream::new(1_000_003);
        let (a, b) = tcp_pair().unwrap();
        let st = Streamer::spawn(a, 0, ps.data.clone(), 65536, None).unwrap();
        let mut r = crate::ring::Ring::new(&RingConfig::tuned(8)).unwrap();
        if take == Take::Fixed {
            r.register_buffers(2, chunk).unwrap();
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out");
        let f = std::fs::File::create(&p).unwrap();
        let mut m = Mover::new(
            &r,
            Fd::Raw(b.as_raw_fd()),
            Put::File(Fd::Raw(f.as_raw_fd())),
            take,
            chunk,
            sync,
        )
        .unwrap();
        while m.step(&mut r).unwrap() > 0 {}
        m.finish(&mut r, true).unwrap();
        assert_eq!(m.bytes_in, 1_000_003);
        assert_eq!(m.bytes_out, 1_000_003);
        assert!(m.syncs >= 1);
        drop(b);
        st.join().unwrap();
        let mut got = Vec::new();
        std::fs::File::open(&p)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == *ps.data, "file differs from the stream");
    }

    #[test]
    fn mover_recv_write() {
        stream_to_file(Take::Recv, 4096, None);
    }

    #[test]
    fn mover_fixed() {
        stream_to_file(Take::Fixed, 65536, Some(256 << 10));
    }

    #[test]
    fn mover_splice() {
        let (pr, pw, _) = crate::sys::pipe::pipe_with_size(1 << 17).unwrap();
        stream_to_file(
            Take::Splice {
                pipe_r: pr.as_raw_fd(),
                pipe_w: pw.as_raw_fd(),
            },
            65536,
            Some(100_000),
        );
    }

    #[test]
    fn move_exact_both_ways() {
        use std::io::Write;
        let mut r = crate::ring::Ring::new(&RingConfig::tuned(8)).unwrap();
        let (mut x, a) = tcp_pair().unwrap();
        let (b, mut y) = tcp_pair().unwrap();
        let (pr, pw, _) = crate::sys::pipe::pipe_with_size(1 << 16).unwrap();
        let mut buf = vec![0u8; 5000];
        let msg: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        for pipe in [false, true] {
            x.write_all(&msg).unwrap();
            let via = if pipe {
                Via::Pipe {
                    pipe_r: pr.as_raw_fd(),
                    pipe_w: pw.as_raw_fd(),
                }
            } else {
                Via::Buffer(&mut buf)
            };
            move_exact(
                &mut r,
                Fd::Raw(a.as_raw_fd()),
                Fd::Raw(b.as_raw_fd()),
                via,
                5000,
            )
            .unwrap();
            let mut got = vec![0u8; 5000];
            y.read_exact(&mut got).unwrap();
            assert_eq!(got, msg, "pipe={pipe}");
        }
        drop(x);
        let e = move_exact(
            &mut r,
            Fd::Raw(a.as_raw_fd()),
            Fd::Raw(b.as_raw_fd()),
            Via::Buffer(&mut buf),
            10,
        );
        assert!(e.is_err(), "end of stream before the message is an error");
    }

    #[test]
    fn writev_all_sends_every_part() {
        let mut r = crate::ring::Ring::new(&RingConfig::tuned(8)).unwrap();
        let (x, mut y) = tcp_pair().unwrap();
        let parts: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; 1000 + i]).collect();
        let want: Vec<u8> = parts.concat();
        let h = std::thread::spawn(move || {
            let mut got = vec![0u8; want.len()];
            y.read_exact(&mut got).unwrap();
            got == want
        });
        let mut iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        writev_all(&mut r, Fd::Raw(x.as_raw_fd()), &mut iov[..]).unwrap();
        assert!(h.join().unwrap());
    }

    #[test]
    fn sendmsg_zc_is_notified() {
        let mut r = crate::ring::Ring::new(&RingConfig::tuned(64)).unwrap();
        let (x, y) = tcp_pair().unwrap();
        let mut pool = vec![0u8; 10_000];
        crate::sys::file::fill_pattern(&mut pool, 0);
        let want: Vec<u8> = [&pool[5000..8000], &pool[0..1000]].concat().repeat(50);
        let sink = crate::net::peers::HashSink::spawn(y, 0, 4096, None).unwrap();
        let mut zc = ZcMsgSender::new(pool, 2, true, Clock::new(), Cancel::never());
        for _ in 0..50 {
            zc.send(&mut r, Fd::Raw(x.as_raw_fd()), &[(5000, 3000), (0, 1000)])
                .unwrap();
        }
        zc.drain(&mut r, Duration::from_secs(5)).unwrap();
        drop(x);
        let got = sink.join().unwrap();
        assert_eq!(got.hash, Some(crate::hash::xxh3_64(&want)));
        let c = zc.ledger().counts;
        assert_eq!(c.sends, c.notifications);
        assert_eq!(c.bytes, want.len() as u64);
        assert_eq!(zc.ledger().release.histogram().len(), c.sends);
    }

    #[test]
    fn nops_complete() {
        let mut r = crate::ring::Ring::new(&RingConfig::tuned(64)).unwrap();
        let mut rec = Recorder::new(Clock::new());
        let mut n = NopRunner::new(&mut r, true).unwrap();
        n.run(32, 10, &mut rec).unwrap();
        assert_eq!(
            n.counts,
            NopCounts {
                submitted: 320,
                completed: 320,
                bad: 0
            }
        );
        drop(n);
        // The registration was undone: registering again works.
        let mut n = NopRunner::new(&mut r, true).unwrap();
        n.run(1, 5, &mut rec).unwrap();
        assert_eq!(rec.histogram().len(), 325);
    }
}
