//! The io_uring side of a request/response server (the `rr` experiment): one connection served
//! until its peer closes, with the receive done one of three ways: IORING_OP_RECV into a user
//! buffer (one-shot, re-armed after every chunk), IORING_OP_READ_FIXED into a registered buffer
//! (responses then go out with IORING_OP_WRITE_FIXED), or one multishot IORING_OP_RECV that
//! picks buffers from a provided-buffer ring (IORING_REGISTER_PBUF_RING). Responses go out with
//! IORING_OP_SEND (MSG_WAITALL); one send is in flight per connection, and the buffer it reads is
//! not handed back to the caller before its completion. Accepts (connect-per-transaction) are
//! IORING_OP_ACCEPT.
//!
//! A send and the next receive are submitted in one io_uring_enter, which then waits for both
//! completions: in ping-pong, one system call per transaction.

use super::Cqe;
use crate::ring::Ring;
use io_uring::{cqueue, opcode, squeue, types};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

/// How the server receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvStyle {
    /// IORING_OP_RECV into a user buffer, one request per chunk received.
    OneShot,
    /// IORING_OP_READ_FIXED / IORING_OP_WRITE_FIXED on registered buffers 0 (in) and 1 (out).
    Fixed,
    /// One multishot IORING_OP_RECV over a provided-buffer ring of this many buffers.
    Multishot { buffers: u16 },
}

const UD_RECV: u64 = 1;
const UD_SEND: u64 = 2;
const UD_ACCEPT: u64 = 3;
/// Buffer group of the provided-buffer ring.
const BGID: u16 = 7;

/// How long the server waits for a second completion (the next request, beside the send it
/// just completed) before it handles the one already there: past this the pair is not
/// coming (a client that waits for the rest of an answer sends nothing), and waiting on would
/// leave both sides waiting for each other.
const PAIR_WAIT_NS: u32 = 10_000_000;
/// How long the server waits with nothing completing before it gives up with an error
/// (a client that stopped, or a wait neither side can end) rather than hang.
const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// A provided-buffer ring: `count` (a power of two) buffers of `size` bytes that the kernel
/// picks from for multishot receives, each handed back with [`BufRing::recycle`].
struct BufRing {
    /// The ring of `io_uring_buf` entries (page-aligned, as the kernel requires).
    entries: memmap2::MmapMut,
    bufs: memmap2::MmapMut,
    count: u16,
    size: usize,
    tail: u16,
}

impl BufRing {
    fn register(ring: &mut Ring, count: u16, size: usize) -> io::Result<BufRing> {
        let entries = memmap2::MmapMut::map_anon(count as usize * 16)?;
        let bufs = memmap2::MmapMut::map_anon(count as usize * size)?;
        let mut br = BufRing {
            entries,
            bufs,
            count,
            size,
            tail: 0,
        };
        // SAFETY: `entries` is a page-aligned mapping of `count` entries that lives in the
        // returned BufRing, which the caller keeps beside (and drops after) the ring.
        unsafe {
            ring.inner().submitter().register_buf_ring_with_flags(
                br.entries.as_ptr() as u64,
                count,
                BGID,
                0,
            )
        }
        .map_err(|e| io::Error::new(e.kind(), format!("IORING_REGISTER_PBUF_RING: {e}")))?;
        for bid in 0..count {
            br.recycle(bid);
        }
        Ok(br)
    }

    /// Buffer `bid`'s first `len` bytes.
    fn buf(&self, bid: u16, len: usize) -> &[u8] {
        &self.bufs[bid as usize * self.size..][..len]
    }

    /// Hands buffer `bid` back to the kernel: writes its entry at the tail, then publishes the
    /// new tail with a release store (the kernel reads the tail with acquire).
    fn recycle(&mut self, bid: u16) {
        let base = self.entries.as_mut_ptr() as *mut types::BufRingEntry;
        let addr = self.bufs.as_ptr() as u64 + (bid as usize * self.size) as u64;
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `slot < count`, so the entry lies inside the mapping; the kernel reads only
        // entries below the published tail, and this one is not published yet.
        let e = unsafe { &mut *base.add(slot) };
        e.set_addr(addr);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays entry 0's `resv`, inside the mapping, and is only
        // ever written here; an AtomicU16 has the layout of a u16.
        let tail = unsafe { &*(types::BufRingEntry::tail(base) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// What one connection gave: bytes received and the system calls of the loop.
#[derive(Debug, Clone, Copy, Default)]
pub struct Served {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// io_uring_enter calls made (with SQPOLL, the calls that waited for completions).
    pub enters: u64,
}

/// A ring and the buffers of one request/response server. The ring is declared first, so it is
/// closed before the memory its requests name is freed.
pub struct RrUring {
    ring: Ring,
    style: RecvStyle,
    /// Receive buffer (OneShot); Fixed uses registered buffer 0, Multishot the buffer ring.
    inbuf: Vec<u8>,
    /// Response buffer (OneShot, Multishot); Fixed uses registered buffer 1.
    out: Vec<u8>,
    bufring: Option<BufRing>,
    in_cap: usize,
}

impl RrUring {
    /// A server on `ring` receiving up to `in_cap` bytes per chunk, with a response buffer
    /// holding `out` (its contents are the caller's template; responses are written into it by
    /// the callback of [`RrUring::serve`]). Fixed needs the ring's registered buffers 0 (at least
    /// `in_cap`) and 1 (at least `out.len()`); their contents are set here.
    pub fn new(mut ring: Ring, style: RecvStyle, in_cap: usize, out: Vec<u8>) -> io::Result<Self> {
        let mut bufring = None;
        match style {
            RecvStyle::Fixed => {
                if ring.buffer_count() < 2
                    || ring.buffer(0).len() < in_cap
                    || ring.buffer(1).len() < out.len()
                {
                    return Err(io::Error::other("RrUring: registered buffers too small"));
                }
                ring.buffer_mut(1)[..out.len()].copy_from_slice(&out);
            }
            RecvStyle::Multishot { buffers } => {
                if !buffers.is_power_of_two() {
                    return Err(io::Error::other("RrUring: buffer count not a power of two"));
                }
                bufring = Some(BufRing::register(&mut ring, buffers, in_cap)?);
            }
            RecvStyle::OneShot => {}
        }
        Ok(RrUring {
            ring,
            style,
            inbuf: vec![0; in_cap],
            out,
            bufring,
            in_cap,
        })
    }

    /// The ring (its flags, for the trial's record).
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Pushes one entry.
    ///
    /// # Safety
    /// The memory the entry names must stay valid until its completion is reaped.
    unsafe fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        let r = self.ring.inner();
        // SAFETY: forwarded from the caller.
        unsafe { r.submission().push(&e) }.map_err(|_| io::Error::other("submission queue full"))
    }

    /// Submits what was pushed and waits until at least `want` completions are in the queue,
    /// or (where the kernel takes a timeout on the wait, IORING_FEAT_EXT_ARG, 5.11) until one
    /// is there and a second has not followed within [`PAIR_WAIT_NS`]. Fails after [`STALL`]
    /// without a completion.
    fn enter(&mut self, want: usize, n: &mut u64) -> io::Result<()> {
        let timed = self.ring.inner().params().is_feature_ext_arg();
        let start = std::time::Instant::now();
        loop {
            *n += 1;
            let r = if timed {
                let ts = if want > 1 {
                    types::Timespec::new().nsec(PAIR_WAIT_NS)
                } else {
                    types::Timespec::new().sec(1)
                };
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.inner().submitter().submit_with_args(want, &args)
            } else {
                self.ring.inner().submit_and_wait(want)
            };
            match r {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                    if !self.ring.inner().completion().is_empty() {
                        return Ok(());
                    }
                    if start.elapsed() >= STALL {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the server waited {STALL:?} without a completion: the client stopped, or each side waits for the other"
                            ),
                        ));
                    }
                    if crate::sys::signal::Cancel::process().is_cancelled() {
                        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
                    }
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) =>
                {
                    // Completions already queued satisfy the wait.
                    if self.ring.inner().completion().len() >= want {
                        return Ok(());
                    }
                    if crate::sys::signal::Cancel::process().is_cancelled() {
                        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn reap(&mut self, out: &mut Vec<Cqe>) {
        for c in self.ring.inner().completion() {
            out.push(Cqe {
                user_data: c.user_data(),
                res: c.result(),
                flags: c.flags(),
            });
        }
    }

    /// Accepts one connection on `listener` with IORING_OP_ACCEPT.
    pub fn accept(&mut self, listener: RawFd, enters: &mut u64) -> io::Result<OwnedFd> {
        let e = opcode::Accept::new(
            types::Fd(listener),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build()
        .user_data(UD_ACCEPT);
        // SAFETY: no user memory (null address arguments).
        unsafe { self.push(e)? };
        let mut got = Vec::new();
        loop {
            self.enter(1, enters)?;
            self.reap(&mut got);
            if let Some(c) = got.iter().find(|c| c.user_data == UD_ACCEPT) {
                let fd = c.result()? as RawFd;
                // SAFETY: a successful accept's result is a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            got.clear();
        }
    }

    fn recv_entry(&mut self, fd: RawFd) -> squeue::Entry {
        let cap = self.in_cap as u32;
        match self.style {
            RecvStyle::OneShot => opcode::Recv::new(types::Fd(fd), self.inbuf.as_mut_ptr(), cap)
                .build()
                .user_data(UD_RECV),
            RecvStyle::Fixed => {
                opcode::ReadFixed::new(types::Fd(fd), self.ring.buffer_ptr(0), cap, 0)
                    .build()
                    .user_data(UD_RECV)
            }
            RecvStyle::Multishot { .. } => opcode::RecvMulti::new(types::Fd(fd), BGID)
                .build()
                .user_data(UD_RECV),
        }
    }

    fn send_entry(&mut self, fd: RawFd, off: usize, len: usize) -> squeue::Entry {
        match self.style {
            RecvStyle::Fixed => {
                // SAFETY of the pointer arithmetic: off + len <= out.len() <= buffer 1's size.
                let p = self.ring.buffer_ptr(1).wrapping_add(off);
                opcode::WriteFixed::new(types::Fd(fd), p, len as u32, 1)
                    .build()
                    .user_data(UD_SEND)
            }
            _ => opcode::Send::new(types::Fd(fd), self.out[off..].as_ptr(), len as u32)
                .flags(libc::MSG_WAITALL)
                .build()
                .user_data(UD_SEND),
        }
    }

    /// Serves `fd` until its peer closes (end of stream, or a reset between requests, which
    /// `on_data` decides by its return of Err). For every chunk received, `on_data(chunk, out)`
    /// writes the responses it completes into `out` and returns how many bytes of `out` to send
    /// (from its start); they are sent in full before `on_data` runs again.
    pub fn serve(
        &mut self,
        fd: &impl AsRawFd,
        mut on_data: impl FnMut(&[u8], &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<Served> {
        let fd = fd.as_raw_fd();
        let mut s = Served::default();
        // A send in flight: (offset sent so far, end).
        let mut sending: Option<(usize, usize)> = None;
        let mut armed = false;
        let mut eof = false;
        // Chunks received but not yet handed to on_data: (buffer id, length); one-shot and
        // fixed receives hold at most one (id 0, their own buffer).
        let mut stash: VecDeque<(u16, usize)> = VecDeque::new();
        let mut cqes = Vec::with_capacity(16);
        let mut just_sent = false;
        loop {
            if !armed && !eof && stash.is_empty() {
                let e = self.recv_entry(fd);
                // SAFETY: the receive buffer (inbuf, registered buffer 0, or the buffer ring)
                // lives in self, and is not touched again before this receive's completion.
                unsafe { self.push(e)? };
                armed = true;
            }
            if sending.is_none() && !stash.is_empty() {
                // Hand the next chunk to the caller.
                let (bid, len) = stash.pop_front().expect("not empty");
                let n = match self.style {
                    RecvStyle::OneShot => {
                        let (inbuf, out) = (&self.inbuf, &mut self.out);
                        on_data(&inbuf[..len], out)?
                    }
                    RecvStyle::Fixed => {
                        let outlen = self.out.len();
                        let (ip, op) = (self.ring.buffer_ptr(0), self.ring.buffer_ptr(1));
                        // SAFETY: registered buffers 0 and 1 are distinct mappings the ring owns,
                        // at least in_cap and outlen long (checked in new); no request in flight
                        // names either now (no receive armed while a chunk waits, no send in
                        // flight).
                        let (chunk, out) = unsafe {
                            (
                                std::slice::from_raw_parts(ip as *const u8, len),
                                std::slice::from_raw_parts_mut(op, outlen),
                            )
                        };
                        on_data(chunk, out)?
                    }
                    RecvStyle::Multishot { .. } => {
                        let br = self.bufring.as_mut().expect("multishot has a buffer ring");
                        let n = on_data(br.buf(bid, len), &mut self.out)?;
                        br.recycle(bid);
                        n
                    }
                };
                if n > self.out.len() {
                    return Err(io::Error::other("RrUring: response longer than the buffer"));
                }
                if n > 0 {
                    let e = self.send_entry(fd, 0, n);
                    // SAFETY: `out` (or registered buffer 1) is not written again before this
                    // send's completion: on_data runs only while no send is in flight.
                    unsafe { self.push(e)? };
                    sending = Some((0, n));
                    s.bytes_out += n as u64;
                    just_sent = true;
                }
                continue;
            }
            if eof && stash.is_empty() && sending.is_none() && !armed {
                return Ok(s);
            }
            // A send just pushed completes at once or soon; wait for it and for the next chunk
            // in one call when a receive is armed and nothing received waits for an answer
            // (the client may be waiting for exactly those answers).
            let want = if just_sent && armed && stash.is_empty() {
                2
            } else {
                1
            };
            just_sent = false;
            let had = self.ring.inner().completion().len();
            if had < want {
                self.enter(want, &mut s.enters)?;
            }
            cqes.clear();
            self.reap(&mut cqes);
            for c in &cqes {
                match c.user_data {
                    UD_SEND => {
                        let (off, end) = sending.take().expect("a send was in flight");
                        let n = c.result()?;
                        if n == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::WriteZero,
                                "send returned 0: peer closed",
                            ));
                        }
                        if off + n < end {
                            let e = self.send_entry(fd, off + n, end - off - n);
                            // SAFETY: as for the first send of these bytes.
                            unsafe { self.push(e)? };
                            sending = Some((off + n, end));
                        }
                    }
                    UD_RECV => {
                        let more = matches!(self.style, RecvStyle::Multishot { .. })
                            && cqueue::more(c.flags);
                        if !more {
                            armed = false;
                        }
                        match c.res {
                            0 => eof = true,
                            r if r == -libc::ENOBUFS => {} // re-armed once buffers are back
                            r if r < 0 => {
                                let e = io::Error::from_raw_os_error(-r);
                                if e.kind() == io::ErrorKind::ConnectionReset {
                                    eof = true;
                                } else {
                                    return Err(e);
                                }
                            }
                            r => {
                                s.bytes_in += r as u64;
                                let bid = cqueue::buffer_select(c.flags).unwrap_or(0);
                                stash.push_back((bid, r as usize));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

impl Drop for RrUring {
    fn drop(&mut self) {
        if self.bufring.is_some() {
            let _ = self.ring.inner().submitter().unregister_buf_ring(BGID);
        }
    }
}
