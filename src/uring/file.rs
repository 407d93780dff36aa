//! io_uring patterns for files: a queue-depth pipeline of reads, a read/write copy loop, and
//! splice file -> pipe -> file.
//!
//! Each function returns only when every request it submitted has completed, so the buffers
//! the kernel reads into or writes from are borrowed for the whole call and never touched by
//! the kernel afterwards. The one exception is io_uring_enter(2) itself failing with the
//! requests still in flight: the owned buffers are then leaked, never reused or unmapped.
//!
//! No function allocates, formats or locks between its first submission and its last
//! completion; the per-slot state is allocated before the first submission.

use super::{Cqe, Fd, nonzero, splice_entry};
use crate::measure::{Recorder, Run, Stamp};
use crate::ring::Ring;
use crate::sys::uring_cq::CqRing;
use crate::sys::uring_setup::RegisteredRing;
use io_uring::{opcode, squeue, types};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

/// Spins on the completion ring this many times before falling back to a blocking wait.
const SPIN_LIMIT: u32 = 1 << 22;

/// User memory for requests that do not use registered buffers: `count` page-aligned slots of
/// `len` bytes in one anonymous mapping (mmap(2)), faulted in when created.
pub struct OwnedBuffers {
    map: Option<memmap2::MmapMut>,
    stride: usize,
    count: usize,
    len: usize,
}

impl OwnedBuffers {
    /// `count` slots of `len` bytes, each starting on a page boundary (as O_DIRECT needs).
    pub fn new(count: usize, len: usize) -> io::Result<OwnedBuffers> {
        let page = crate::sys::filemap::page_size();
        let stride = len.max(1).div_ceil(page) * page;
        let mut map = memmap2::MmapMut::map_anon(stride * count.max(1))?;
        map.fill(0);
        Ok(OwnedBuffers {
            map: Some(map),
            stride,
            count,
            len,
        })
    }

    /// Slot `i`'s bytes (empty after a failure leaked the memory).
    pub fn slot(&self, i: usize) -> &[u8] {
        match &self.map {
            Some(m) if i < self.count => &m[i * self.stride..i * self.stride + self.len],
            _ => &[],
        }
    }

    fn ptr(&mut self, i: usize) -> Option<*mut u8> {
        let (stride, count) = (self.stride, self.count);
        self.map
            .as_mut()
            .filter(|_| i < count)
            .map(|m| m[i * stride..].as_mut_ptr())
    }

    /// Gives the memory up for good: the kernel may still write to it.
    fn leak(&mut self) {
        if let Some(m) = self.map.take() {
            std::mem::forget(m);
        }
    }
}

/// Where a pattern's requests read into or write from.
pub enum Buffers<'a> {
    /// Ordinary user memory: IORING_OP_READ / IORING_OP_WRITE.
    Owned(&'a mut OwnedBuffers),
    /// The ring's registered buffers, buffer `i` for slot `i`: IORING_OP_READ_FIXED /
    /// IORING_OP_WRITE_FIXED.
    Registered,
}

impl Buffers<'_> {
    fn leak(&mut self) {
        if let Buffers::Owned(b) = self {
            b.leak();
        }
        // Registered buffers are pinned by the kernel and owned by the ring, which unmaps them
        // only after it is closed.
    }
}

/// Per-slot memory, resolved once before the first submission.
struct SlotMem {
    ptrs: Vec<*mut u8>,
    fixed: bool,
}

fn slot_mem(ring: &mut Ring, bufs: &mut Buffers, n: usize, len: usize) -> io::Result<SlotMem> {
    let bad = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    match bufs {
        Buffers::Owned(b) => {
            if b.count < n || b.len < len {
                return bad(format!(
                    "{} owned buffers of {} B cannot serve {n} slots of {len} B",
                    b.count, b.len
                ));
            }
            let ptrs = (0..n).map(|i| b.ptr(i)).collect::<Option<Vec<_>>>();
            match ptrs {
                Some(ptrs) => Ok(SlotMem { ptrs, fixed: false }),
                None => bad("owned buffers were leaked by an earlier failure".into()),
            }
        }
        Buffers::Registered => {
            if ring.buffer_count() < n || (0..n).any(|i| ring.buffer(i).len() < len) {
                return bad(format!(
                    "{} registered buffers cannot serve {n} slots of {len} B",
                    ring.buffer_count()
                ));
            }
            if n > u16::MAX as usize {
                return bad("more than 65535 registered buffers".into());
            }
            let ptrs = (0..n).map(|i| ring.buffer_ptr(i)).collect();
            Ok(SlotMem { ptrs, fixed: true })
        }
    }
}

fn slot_data<'b>(ring: &'b Ring, bufs: &'b Buffers, fixed: bool, s: usize, n: usize) -> &'b [u8] {
    match bufs {
        Buffers::Owned(b) if !fixed => &b.slot(s)[..n],
        _ => &ring.buffer(s)[..n],
    }
}

fn read_entry(file: Fd, ptr: *mut u8, len: u32, off: u64, fixed: Option<u16>) -> squeue::Entry {
    match fixed {
        None => with_fd!(file, Read(ptr, len)).offset(off).build(),
        Some(b) => with_fd!(file, ReadFixed(ptr, len, b)).offset(off).build(),
    }
}

fn write_entry(file: Fd, ptr: *const u8, len: u32, off: u64, fixed: Option<u16>) -> squeue::Entry {
    match fixed {
        None => with_fd!(file, Write(ptr, len)).offset(off).build(),
        Some(b) => with_fd!(file, WriteFixed(ptr, len, b)).offset(off).build(),
    }
}

/// io_uring_enter(2): submits what is queued and waits for at least `want` completions,
/// retrying when a signal interrupts the wait; through `reg` when the ring fd is registered.
fn enter(ring: &mut Ring, reg: Option<&RegisteredRing>, want: usize) -> io::Result<()> {
    loop {
        let r = match reg {
            Some(reg) => {
                // The SubmissionQueue handles published the tail when they were dropped.
                let queued = ring.inner().submission().len() as u32;
                reg.submit_and_wait(queued, want as u32).map(|_| ())
            }
            None => ring.inner().submit_and_wait(want).map(|_| ()),
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}"))),
        }
    }
}

/// For SQPOLL rings: publishes the queued entries (a system call only when the kernel thread
/// sleeps) and spins on the completion ring until a completion is there; after a long spin
/// it falls back to a blocking wait.
fn poll(ring: &mut Ring, cq: &CqRing) -> io::Result<()> {
    enter(ring, None, 0)?;
    let mut spins = 0u32;
    while cq.is_empty() {
        spins += 1;
        if spins >= SPIN_LIMIT {
            return enter(ring, None, 1);
        }
        std::hint::spin_loop();
    }
    Ok(())
}

fn bad_result(what: &str, off: u64, len: usize, res: i32) -> io::Error {
    if res < 0 {
        let e = io::Error::from_raw_os_error(-res);
        io::Error::new(e.kind(), format!("{what} of {len} B at offset {off}: {e}"))
    } else {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{what} of {len} B at offset {off} returned {res} B"),
        )
    }
}

/// What [`read_pipeline`] does.
#[derive(Debug, Clone, Copy)]
pub struct ReadLoop {
    /// The file, by descriptor or registered index.
    pub file: Fd,
    /// Reads kept in flight (slots); at most the ring's SQ size.
    pub qd: usize,
    /// The largest read `next` may ask for.
    pub len: usize,
    /// Deliver blocks in submission order (a sequential scan); otherwise as they complete.
    pub ordered: bool,
    /// Spin on the completion ring instead of waiting in io_uring_enter (SQPOLL rings).
    pub poll_cq: bool,
    /// Completions taken per wait (0: all that are there). 1 refills each read as soon as
    /// one completes, one at a time, as fio does by default (iodepth_batch_complete_max=1,
    /// iodepth_batch_submit=1); a device sees a steady stream instead of bursts.
    pub reap_max: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    InFlight,
    Done,
    Failed,
}

#[derive(Clone, Copy)]
struct ReadSlot {
    off: u64,
    len: usize,
    stamp: Stamp,
    state: State,
}

/// Keeps `cfg.qd` reads in flight until `next` returns None, then waits for the rest.
///
/// The ring should have at least twice `qd` SQ entries: an SQPOLL thread can post a read's
/// completion before it releases the read's SQ entry.
///
/// `next()` gives each read's `(offset, length)`. Submissions are batched: every slot freed by
/// the last completions is refilled before one io_uring_enter (or, with `poll_cq`, none).
/// After each wait, the completions available (at most `cfg.reap_max`) are reaped and stamped
/// with one clock read; each read gives `rec` one sample, from its submission (the clock read just before the
/// batch it went in was handed to the kernel) to that reap. Only then is `done(data, offset)`
/// called for each block, outside every sample. A failed or short read stops new submissions;
/// the error is returned after the reads in flight complete. Returns the reads completed.
pub fn read_pipeline(
    ring: &mut Ring,
    mut bufs: Buffers<'_>,
    cfg: &ReadLoop,
    rec: &mut Recorder,
    mut next: impl FnMut() -> Option<(u64, usize)>,
    mut done: impl FnMut(&[u8], u64),
) -> io::Result<u64> {
    let qd = cfg.qd;
    if qd == 0 || qd > ring.flags().sq_entries as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "queue depth {qd} must be between 1 and the ring's {} SQ entries",
                ring.flags().sq_entries
            ),
        ));
    }
    let mem = slot_mem(ring, &mut bufs, qd, cfg.len)?;
    // Completions are read in place: the crate's per-completion copy is a call per read.
    let mut cq = ring.cq_in_place()?;
    // The ring fd registered for this thread, as t/io_uring does by default (Linux 5.18; the
    // plain fd where the kernel refuses). SQPOLL rings enter only to wake their thread.
    let reg = (!cfg.poll_cq)
        .then(|| RegisteredRing::register(ring.inner()).ok())
        .flatten();
    let t0 = rec.now();
    let mut slots = vec![
        ReadSlot {
            off: 0,
            len: 0,
            stamp: t0,
            state: State::Free,
        };
        qd
    ];
    let mut free: VecDeque<usize> = (0..qd).collect();
    let mut batch: Vec<usize> = Vec::with_capacity(qd);
    let mut reaped: Vec<usize> = Vec::with_capacity(qd);
    let (mut del, mut inflight, mut ios) = (0usize, 0usize, 0u64);
    let mut stop = false;
    let mut sq_full = false;
    let mut err: Option<io::Error> = None;
    loop {
        if !stop && err.is_none() {
            batch.clear();
            {
                let mut sq = ring.inner().submission();
                while let Some(&s) = free.front() {
                    if sq.is_full() {
                        if cfg.poll_cq {
                            // An SQPOLL thread may post completions before it releases their
                            // SQ entries: submit the rest once it has.
                            sq_full = true;
                            break;
                        }
                        err = Some(io::Error::other(
                            "submission queue full (it needs more entries than the queue depth)",
                        ));
                        break;
                    }
                    let Some((off, len)) = next() else {
                        stop = true;
                        break;
                    };
                    if len == 0 || len > cfg.len {
                        err = Some(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("read of {len} B asked of a pipeline of {} B slots", cfg.len),
                        ));
                        break;
                    }
                    let fixed = mem.fixed.then_some(s as u16);
                    let e = read_entry(cfg.file, mem.ptrs[s], len as u32, off, fixed)
                        .user_data(s as u64);
                    // SAFETY: slot `s` is free, so no request in flight uses its memory; the
                    // memory is borrowed (owned buffers) or owned by `ring` (registered) for the
                    // whole call, and the call returns only after this read completes (or leaks
                    // the owned memory if it cannot wait for it).
                    if unsafe { sq.push(&e) }.is_err() {
                        err = Some(io::Error::other("submission queue full"));
                        break;
                    }
                    free.pop_front();
                    slots[s] = ReadSlot {
                        off,
                        len,
                        stamp: t0,
                        state: State::InFlight,
                    };
                    batch.push(s);
                    inflight += 1;
                }
            }
            let t = rec.now();
            for &s in &batch {
                slots[s].stamp = t;
            }
        }
        if sq_full {
            sq_full = false;
            if inflight == 0 {
                let mut spins = 0u32;
                while ring.inner().submission().is_full() {
                    spins += 1;
                    if spins >= SPIN_LIMIT {
                        bufs.leak();
                        return Err(io::Error::other(
                            "the SQPOLL thread does not release submission queue entries",
                        ));
                    }
                    std::hint::spin_loop();
                }
                continue;
            }
        }
        if inflight == 0 {
            break;
        }
        let waited = if cfg.poll_cq {
            poll(ring, &cq)
        } else {
            enter(ring, reg.as_ref(), 1)
        };
        if let Err(e) = waited {
            bufs.leak();
            return Err(e);
        }
        let t = rec.now();
        reaped.clear();
        let take = if cfg.reap_max == 0 { qd } else { cfg.reap_max };
        // Reads submitted together and reaped together have one latency: one record per run.
        let mut run = Run::default();
        inflight -= cq.reap(take, |c| {
            let s = c.user_data as usize;
            let sl = &mut slots[s];
            run.add(rec.clock().ns_between(sl.stamp, t), rec);
            if c.res < 0 || c.res as usize != sl.len {
                sl.state = State::Failed;
                if err.is_none() {
                    err = Some(bad_result("read", sl.off, sl.len, c.res));
                }
            } else {
                sl.state = State::Done;
                reaped.push(s);
                ios += 1;
            }
        });
        run.flush(rec);
        if err.is_some() {
            continue; // drain what is in flight, deliver nothing more
        }
        if cfg.ordered {
            while slots[del].state == State::Done {
                let sl = slots[del];
                done(slot_data(ring, &bufs, mem.fixed, del, sl.len), sl.off);
                slots[del].state = State::Free;
                free.push_back(del);
                del = (del + 1) % qd;
            }
        } else {
            for &s in &reaped {
                let sl = slots[s];
                done(slot_data(ring, &bufs, mem.fixed, s, sl.len), sl.off);
                slots[s].state = State::Free;
                free.push_back(s);
            }
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(ios),
    }
}

/// What [`copy_read_write`] does.
#[derive(Debug, Clone, Copy)]
pub struct CopyLoop {
    pub src: Fd,
    pub dst: Fd,
    /// Bytes to copy, from offset 0 of `src` to offset 0 of `dst`.
    pub size: u64,
    /// Bytes per chunk (one read and one write).
    pub chunk: usize,
    /// Chunks in flight.
    pub depth: usize,
}

#[derive(Clone, Copy)]
struct CopySlot {
    off: u64,
    /// Bytes of the chunk still to copy from `off`.
    len: usize,
    /// Bytes read into the slot's buffer / written from it.
    got: usize,
    put: usize,
    inflight: u8,
    active: bool,
    stamp: Stamp,
}

const READ: u64 = 0;
const WRITE: u64 = 1;

/// Copies `cfg.size` bytes with `cfg.depth` chunks in flight, each an IORING_OP_READ linked
/// (IOSQE_IO_LINK) to an IORING_OP_WRITE of the same buffer at the same offset (the `_FIXED`
/// forms with registered buffers). A short read cancels its write; the bytes read are then
/// written on their own and the rest of the chunk is read again; a short write is finished by
/// another write. `rec` gets one sample per chunk, from its first submission to the completion
/// of its last write. Returns the number of chunks.
pub fn copy_read_write(
    ring: &mut Ring,
    mut bufs: Buffers<'_>,
    cfg: &CopyLoop,
    rec: &mut Recorder,
) -> io::Result<u64> {
    let depth = cfg.depth;
    if depth == 0 || 2 * depth > ring.flags().sq_entries as usize || cfg.chunk == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{depth} chunks in flight need {} SQ entries; the ring has {}",
                2 * depth,
                ring.flags().sq_entries
            ),
        ));
    }
    let mem = slot_mem(ring, &mut bufs, depth, cfg.chunk)?;
    let t0 = rec.now();
    let mut slots = vec![
        CopySlot {
            off: 0,
            len: 0,
            got: 0,
            put: 0,
            inflight: 0,
            active: false,
            stamp: t0,
        };
        depth
    ];
    let mut todo: Vec<usize> = (0..depth).collect();
    let mut fresh: Vec<usize> = Vec::with_capacity(depth);
    let (mut cursor, mut chunks, mut inflight) = (0u64, 0u64, 0usize);
    let mut err: Option<io::Error> = None;
    loop {
        if err.is_none() {
            fresh.clear();
            let mut sq = ring.inner().submission();
            for &s in &todo {
                let sl = &mut slots[s];
                let fixed = mem.fixed.then_some(s as u16);
                let p = mem.ptrs[s];
                if !sl.active {
                    if cursor >= cfg.size {
                        continue;
                    }
                    let len = (cfg.size - cursor).min(cfg.chunk as u64) as usize;
                    *sl = CopySlot {
                        off: cursor,
                        len,
                        got: 0,
                        put: 0,
                        inflight: 0,
                        active: true,
                        stamp: t0,
                    };
                    cursor += len as u64;
                    fresh.push(s);
                }
                let ud = (s as u64) << 1;
                if sl.got > sl.put {
                    // Finish writing what was read.
                    // SAFETY: `put < got <= chunk`, inside slot `s`'s buffer.
                    let from = unsafe { p.add(sl.put) };
                    let w = write_entry(
                        cfg.dst,
                        from,
                        (sl.got - sl.put) as u32,
                        sl.off + sl.put as u64,
                        fixed,
                    )
                    .user_data(ud | WRITE);
                    // SAFETY: the slot's buffer is borrowed (or ring-owned) for the whole call,
                    // no other request uses it now, and the call waits for this write.
                    if unsafe { sq.push(&w) }.is_err() {
                        err = Some(io::Error::other("submission queue full"));
                        break;
                    }
                    sl.inflight = 1;
                    inflight += 1;
                } else {
                    let r = read_entry(cfg.src, p, sl.len as u32, sl.off, fixed)
                        .flags(squeue::Flags::IO_LINK)
                        .user_data(ud | READ);
                    let w =
                        write_entry(cfg.dst, p, sl.len as u32, sl.off, fixed).user_data(ud | WRITE);
                    // SAFETY: as above; the pair reads into and writes from the slot's buffer,
                    // and the link orders the write after the read.
                    if unsafe { sq.push_multiple(&[r, w]) }.is_err() {
                        err = Some(io::Error::other("submission queue full"));
                        break;
                    }
                    sl.inflight = 2;
                    inflight += 2;
                }
            }
            drop(sq);
            todo.clear();
            let t = rec.now();
            for &s in &fresh {
                slots[s].stamp = t;
            }
        }
        if inflight == 0 {
            break;
        }
        if let Err(e) = enter(ring, None, 1) {
            bufs.leak();
            return Err(e);
        }
        let t = rec.now();
        for c in ring.inner().completion() {
            let (s, kind, res) = ((c.user_data() >> 1) as usize, c.user_data() & 1, c.result());
            inflight -= 1;
            let sl = &mut slots[s];
            sl.inflight -= 1;
            if kind == READ {
                if res <= 0 {
                    err.get_or_insert_with(|| bad_result("read", sl.off, sl.len, res));
                } else {
                    sl.got = res as usize;
                }
            } else if res == -libc::ECANCELED {
                // The linked read was short: the bytes it got are written next.
            } else if res < 0 {
                err.get_or_insert_with(|| {
                    bad_result("write", sl.off + sl.put as u64, sl.got - sl.put, res)
                });
            } else {
                sl.put += res as usize;
            }
            if sl.inflight > 0 || err.is_some() {
                continue;
            }
            if sl.put < sl.got {
                todo.push(s);
            } else if sl.got < sl.len {
                // Short read, all of it written: read the rest of the chunk.
                sl.off += sl.got as u64;
                sl.len -= sl.got;
                sl.got = 0;
                sl.put = 0;
                todo.push(s);
            } else {
                let ns = rec.clock().ns_between(sl.stamp, t);
                rec.record_ns(ns);
                chunks += 1;
                sl.active = false;
                todo.push(s);
            }
        }
    }
    match err {
        Some(e) => Err(e),
        None if cursor < cfg.size => Err(io::Error::other("copy loop ended early")),
        None => Ok(chunks),
    }
}

/// Pushes two linked-or-not entries tagged 1 and 2, submits, and waits for both completions,
/// without allocating.
///
/// # Safety
/// Any memory the entries point to must stay valid until this returns.
unsafe fn submit_two(ring: &mut Ring, a: squeue::Entry, b: squeue::Entry) -> io::Result<[Cqe; 2]> {
    {
        let mut sq = ring.inner().submission();
        // SAFETY: forwarded from the caller's contract.
        unsafe { sq.push_multiple(&[a.user_data(1), b.user_data(2)]) }
            .map_err(|_| io::Error::other("submission queue full"))?;
    }
    let mut out = [Cqe {
        user_data: 0,
        res: 0,
        flags: 0,
    }; 2];
    let mut got = 0;
    while got < 2 {
        enter(ring, None, 2 - got)?;
        for c in ring.inner().completion() {
            let i = match c.user_data() {
                1 => 0,
                2 => 1,
                _ => continue,
            };
            out[i] = Cqe {
                user_data: c.user_data(),
                res: c.result(),
                flags: c.flags(),
            };
            got += 1;
        }
    }
    Ok(out)
}

/// One step of a file-to-file splice: IORING_OP_SPLICE `src`@`off` -> pipe linked to
/// IORING_OP_SPLICE pipe -> `dst`@`off`, `len` bytes, in one submission. A short first splice
/// breaks the link; what it moved is then drained from the pipe into `dst` at the right
/// offset. Returns the bytes moved (0 at end of file).
pub fn splice_file(
    ring: &mut Ring,
    src: Fd,
    off: u64,
    pipe_r: RawFd,
    pipe_w: RawFd,
    dst: Fd,
    len: u32,
) -> io::Result<usize> {
    let a = splice_entry(src, off as i64, Fd::Raw(pipe_w), -1, len).flags(squeue::Flags::IO_LINK);
    let b = splice_entry(Fd::Raw(pipe_r), -1, dst, off as i64, len);
    // SAFETY: splice entries carry no user memory.
    let [ca, cb] = unsafe { submit_two(ring, a, b)? };
    let n = ca.result()?;
    let mut moved = cb.linked_result()?;
    while moved < n {
        let e = splice_entry(
            Fd::Raw(pipe_r),
            -1,
            dst,
            (off + moved as u64) as i64,
            (n - moved) as u32,
        );
        // SAFETY: no user memory; the second entry is a NOP so submit_two has two to wait for.
        let [c, _] = unsafe { submit_two(ring, e, opcode::Nop::new().build())? };
        moved += nonzero(
            c.result()?,
            "splice from the pipe to the destination moved 0 bytes",
        )?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Clock;
    use crate::ring::RingConfig;
    use crate::sys::file::{PatternFile, check_pattern};
    use std::os::fd::AsRawFd;

    fn file(dir: &std::path::Path, size: u64) -> PatternFile {
        PatternFile::create(&dir.join("src"), size).unwrap()
    }

    #[test]
    fn pipeline_reads_every_block_in_order_and_out() {
        let dir = tempfile::tempdir().unwrap();
        let pf = file(dir.path(), 1 << 20);
        let f = std::fs::File::open(&pf.path).unwrap();
        // reap_max 1 and 3 leave completions in the ring between waits: every block must
        // still arrive exactly once.
        for (ordered, fixed, reap_max) in [
            (true, false, 0),
            (false, false, 0),
            (false, true, 0),
            (false, false, 1),
            (true, false, 3),
        ] {
            let mut ring = Ring::new(&RingConfig::tuned(8)).unwrap();
            let mut owned = OwnedBuffers::new(8, 4096).unwrap();
            let bufs = if fixed {
                ring.register_buffers(8, 4096).unwrap();
                Buffers::Registered
            } else {
                Buffers::Owned(&mut owned)
            };
            let mut rec = Recorder::new(Clock::new());
            let mut off = 0u64;
            let mut expect = 0u64;
            let mut bad = 0;
            let cfg = ReadLoop {
                file: Fd::Raw(f.as_raw_fd()),
                qd: 8,
                len: 4096,
                ordered,
                poll_cq: false,
                reap_max,
            };
            let mut seen = std::collections::HashSet::new();
            let n = read_pipeline(
                &mut ring,
                bufs,
                &cfg,
                &mut rec,
                || {
                    (off < 1 << 20).then(|| {
                        off += 4096;
                        (off - 4096, 4096)
                    })
                },
                |b, o| {
                    if ordered && o != expect || !seen.insert(o) {
                        bad += 1;
                    }
                    expect = o + 4096;
                    if !check_pattern(b, o) {
                        bad += 1;
                    }
                },
            )
            .unwrap();
            assert_eq!(n, 256);
            assert_eq!(bad, 0);
            assert_eq!(rec.histogram().len(), 256);
        }
    }

    #[test]
    fn pipeline_reports_a_read_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let pf = file(dir.path(), 8192);
        let f = std::fs::File::open(&pf.path).unwrap();
        let mut ring = Ring::new(&RingConfig::tuned(4)).unwrap();
        let mut owned = OwnedBuffers::new(4, 4096).unwrap();
        let mut rec = Recorder::new(Clock::new());
        let mut k = 0u64;
        let cfg = ReadLoop {
            file: Fd::Raw(f.as_raw_fd()),
            qd: 4,
            len: 4096,
            ordered: false,
            poll_cq: false,
            reap_max: 0,
        };
        let e = read_pipeline(
            &mut ring,
            Buffers::Owned(&mut owned),
            &cfg,
            &mut rec,
            || {
                k += 1;
                (k <= 4).then_some(((k - 1) * 4096, 4096))
            },
            |_, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("returned 0 B"), "{e}");
    }

    #[test]
    fn copy_and_splice_copy_files() {
        let dir = tempfile::tempdir().unwrap();
        let size = 300_001;
        let pf = file(dir.path(), size);
        let src = std::fs::File::open(&pf.path).unwrap();
        for fixed in [false, true] {
            let dpath = dir.path().join("dst");
            let dst = std::fs::File::create(&dpath).unwrap();
            let mut ring = Ring::new(&RingConfig::tuned(8)).unwrap();
            let mut owned = OwnedBuffers::new(4, 65536).unwrap();
            let bufs = if fixed {
                ring.register_buffers(4, 65536).unwrap();
                Buffers::Registered
            } else {
                Buffers::Owned(&mut owned)
            };
            let mut rec = Recorder::new(Clock::new());
            let cfg = CopyLoop {
                src: Fd::Raw(src.as_raw_fd()),
                dst: Fd::Raw(dst.as_raw_fd()),
                size,
                chunk: 65536,
                depth: 4,
            };
            let n = copy_read_write(&mut ring, bufs, &cfg, &mut rec).unwrap();
            assert_eq!(n, 5);
            drop(dst);
            assert_eq!(crate::sys::file::hash_file(&dpath).unwrap(), pf.hash);
        }
        let dpath = dir.path().join("dst2");
        let dst = std::fs::File::create(&dpath).unwrap();
        let mut ring = Ring::new(&RingConfig::tuned(8)).unwrap();
        let (pr, pw, cap) = crate::sys::pipe::pipe_with_size(65536).unwrap();
        let mut off = 0;
        while off < size {
            let len = (size - off).min(cap as u64) as u32;
            let n = splice_file(
                &mut ring,
                Fd::Raw(src.as_raw_fd()),
                off,
                pr.as_raw_fd(),
                pw.as_raw_fd(),
                Fd::Raw(dst.as_raw_fd()),
                len,
            )
            .unwrap();
            assert!(n > 0);
            off += n as u64;
        }
        drop(dst);
        assert_eq!(crate::sys::file::hash_file(&dpath).unwrap(), pf.hash);
    }
}
