//! io_uring op patterns that own their buffers' lifetimes, so experiments need no `unsafe`.
//!
//! Every function here either waits for all completions of what it submitted before it
//! returns (so borrowed buffers outlive the kernel's use of them), or uses buffers the
//! [`Ring`](crate::ring::Ring) itself owns and tracks (zero-copy sends, whose buffers stay busy
//! until the kernel's notification).

/// An opcode's builder for a file named by descriptor or by registered index:
/// `with_fd!(fd, Read(ptr, len))` is `opcode::Read::new(types::Fd(..) or types::Fixed(..), ptr, len)`.
macro_rules! with_fd {
    ($fd:expr, $op:ident ( $($args:expr),* )) => {
        match $fd {
            Fd::Raw(f) => opcode::$op::new(types::Fd(f), $($args),*),
            Fd::Fixed(i) => opcode::$op::new(types::Fixed(i), $($args),*),
        }
    };
}

pub mod file;
pub mod mapped;
pub mod pipeline;
pub mod pktio;
pub mod recv;
pub mod rr;
pub mod sock;
pub mod zc;

use crate::ring::Ring;
use crate::sys::consts::SPLICE_F_FD_IN_FIXED;
use io_uring::{cqueue, opcode, squeue, types};
use std::io;
use std::os::fd::RawFd;

/// One completion: the request's tag, result (bytes or -errno) and CQE flags.
#[derive(Debug, Clone, Copy)]
pub struct Cqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

impl Cqe {
    /// The result as `io::Result<usize>`.
    pub fn result(&self) -> io::Result<usize> {
        if self.res < 0 {
            Err(io::Error::from_raw_os_error(-self.res))
        } else {
            Ok(self.res as usize)
        }
    }

    /// The result of the second request of a linked pair: 0 when the link was broken before
    /// it ran (-ECANCELED: the first came up short), else as [`Cqe::result`].
    pub fn linked_result(&self) -> io::Result<usize> {
        if self.res == -libc::ECANCELED {
            Ok(0)
        } else {
            self.result()
        }
    }
}

/// IORING_OP_SPLICE of `len` bytes from `fd_in` to `fd_out` (offsets -1 for a pipe); a
/// registered `fd_in` is flagged SPLICE_F_FD_IN_FIXED.
pub(crate) fn splice_entry(
    fd_in: Fd,
    off_in: i64,
    fd_out: Fd,
    off_out: i64,
    len: u32,
) -> squeue::Entry {
    let (raw_in, flags) = match fd_in {
        Fd::Raw(f) => (f, 0),
        Fd::Fixed(i) => (i as RawFd, SPLICE_F_FD_IN_FIXED),
    };
    match fd_out {
        Fd::Raw(o) => opcode::Splice::new(types::Fd(raw_in), off_in, types::Fd(o), off_out, len),
        Fd::Fixed(o) => {
            opcode::Splice::new(types::Fd(raw_in), off_in, types::Fixed(o), off_out, len)
        }
    }
    .flags(flags)
    .build()
}

/// `n` bytes moved, where 0 means the other end is gone or nothing can move: an error
/// (`WriteZero`) saying `what`.
pub(crate) fn nonzero(n: usize, what: &str) -> io::Result<usize> {
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::WriteZero, what.to_string()));
    }
    Ok(n)
}

/// A file named by descriptor or by its index among the ring's registered files.
#[derive(Debug, Clone, Copy)]
pub enum Fd {
    Raw(RawFd),
    Fixed(u32),
}

/// Pushes `entries`, submits, and waits until one CQE per entry has been reaped, returned in
/// completion order. Extra CQEs (zero-copy notifications) are handed to `other`.
///
/// # Safety
/// Every buffer an entry points to must stay valid and unaliased until this returns; the
/// callers in this module guarantee it by borrowing the buffers for the call.
pub(crate) unsafe fn submit_wait(
    ring: &mut Ring,
    entries: &[squeue::Entry],
    mut other: impl FnMut(Cqe),
) -> io::Result<Vec<Cqe>> {
    let r = ring.inner();
    {
        let mut sq = r.submission();
        for e in entries {
            // SAFETY: forwarded from the caller's contract: the buffers outlive this call.
            unsafe { sq.push(e) }.map_err(|_| io::Error::other("submission queue full"))?;
        }
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut want = entries.len();
    while out.len() < entries.len() {
        r.submit_and_wait(want)?;
        for c in r.completion() {
            let c = Cqe {
                user_data: c.user_data(),
                res: c.result(),
                flags: c.flags(),
            };
            if cqueue::notif(c.flags) || c.user_data == u64::MAX {
                other(c);
            } else {
                out.push(c);
            }
        }
        want = entries.len() - out.len();
    }
    Ok(out)
}

fn find(c: &[Cqe], ud: u64) -> Cqe {
    *c.iter()
        .find(|c| c.user_data == ud)
        .expect("every submitted entry completes once")
}

/// Sends all of `buf` on `sock` with IORING_OP_SEND, one request at a time (one in flight per
/// stream, so bytes cannot be reordered). Returns the number of SQE round trips.
pub fn send_all(ring: &mut Ring, sock: Fd, buf: &[u8]) -> io::Result<u64> {
    let mut sent = 0;
    let mut trips = 0;
    while sent < buf.len() {
        let rest = &buf[sent..];
        let e = with_fd!(sock, Send(rest.as_ptr(), rest.len() as u32))
            .flags(libc::MSG_WAITALL)
            .build()
            .user_data(1);
        // SAFETY: `rest` is borrowed for the whole call, which waits for the completion.
        let c = unsafe { submit_wait(ring, &[e], |_| {})? };
        trips += 1;
        sent += nonzero(c[0].result()?, "send returned 0: peer closed")?;
    }
    Ok(trips)
}

/// One step of a file-to-socket copy through a user buffer: IORING_OP_READ of `buf.len()` bytes
/// at `off`, linked to IORING_OP_SEND of the same buffer; both in one submission. A short read
/// (end of file) breaks the link, and the bytes read are then sent on their own. Returns the
/// bytes moved (0 at end of file).
pub fn read_send(
    ring: &mut Ring,
    file: Fd,
    off: u64,
    buf: &mut [u8],
    sock: Fd,
) -> io::Result<usize> {
    let len = buf.len() as u32;
    let read = with_fd!(file, Read(buf.as_mut_ptr(), len))
        .offset(off)
        .build()
        .flags(squeue::Flags::IO_LINK)
        .user_data(1);
    let send = with_fd!(sock, Send(buf.as_ptr(), len))
        .flags(libc::MSG_WAITALL)
        .build()
        .user_data(2);
    // SAFETY: `buf` is borrowed mutably for the whole call, which waits for both completions.
    let c = unsafe { submit_wait(ring, &[read, send], |_| {})? };
    finish_pair(ring, find(&c, 1), find(&c, 2), sock, buf)
}

/// Like [`read_send`] with registered buffer `idx`: IORING_OP_READ_FIXED linked to
/// IORING_OP_SEND. `len` must not exceed the buffer's size.
pub fn read_fixed_send(
    ring: &mut Ring,
    file: Fd,
    off: u64,
    idx: usize,
    len: usize,
    sock: Fd,
) -> io::Result<usize> {
    let read = read_fixed_entry(ring, file, off, idx, len)
        .flags(squeue::Flags::IO_LINK)
        .user_data(1);
    let send = with_fd!(sock, Send(ring.buffer_ptr(idx), len as u32))
        .flags(libc::MSG_WAITALL)
        .build()
        .user_data(2);
    // SAFETY: the registered buffer is owned by `ring` and lives until the ring is closed; the
    // call waits for both completions before the buffer can be reused.
    let c = unsafe { submit_wait(ring, &[read, send], |_| {})? };
    let (r, s) = (find(&c, 1), find(&c, 2));
    if r.res >= 0 && s.res == r.res {
        return Ok(r.res as usize); // the usual case: no copy, no allocation
    }
    let data = ring.buffer(idx)[..len].to_vec(); // rare: end of file or a short send
    finish_pair(ring, r, s, sock, &data)
}

/// IORING_OP_READ_FIXED of `len` bytes of `file` at `off` into registered buffer `idx`, which
/// must hold them.
pub(crate) fn read_fixed_entry(
    ring: &mut Ring,
    file: Fd,
    off: u64,
    idx: usize,
    len: usize,
) -> squeue::Entry {
    assert!(
        len <= ring.buffer(idx).len(),
        "read_fixed_send: len exceeds registered buffer"
    );
    let ptr = ring.buffer_ptr(idx);
    with_fd!(file, ReadFixed(ptr, len as u32, idx as u16))
        .offset(off)
        .build()
}

/// Completes a linked read+send pair: propagates a read error, sends what a short read got, and
/// finishes a short send.
fn finish_pair(ring: &mut Ring, read: Cqe, send: Cqe, sock: Fd, buf: &[u8]) -> io::Result<usize> {
    let n = read.result()?;
    if send.res == -libc::ECANCELED {
        if n > 0 {
            send_all(ring, sock, &buf[..n])?;
        }
        return Ok(n);
    }
    let s = send.result()?;
    if s < n {
        nonzero(s, "send returned 0: peer closed")?;
        send_all(ring, sock, &buf[s..n])?;
    }
    Ok(n)
}

/// One step of a file-to-socket splice: IORING_OP_SPLICE file -> pipe linked to
/// IORING_OP_SPLICE pipe -> socket, `len` bytes, in one submission. A short first splice
/// breaks the link; what it moved is drained from the pipe before returning. Returns bytes
/// moved (0 at end of file).
pub fn splice_pair(
    ring: &mut Ring,
    file: Fd,
    off: u64,
    pipe_r: RawFd,
    pipe_w: RawFd,
    sock: Fd,
    len: u32,
) -> io::Result<usize> {
    let a = splice_entry(file, off as i64, Fd::Raw(pipe_w), -1, len)
        .flags(squeue::Flags::IO_LINK)
        .user_data(1);
    let b = splice_entry(Fd::Raw(pipe_r), -1, sock, -1, len).user_data(2);
    // SAFETY: splice entries carry no user memory.
    let c = unsafe { submit_wait(ring, &[a, b], |_| {})? };
    let n = find(&c, 1).result()?;
    let out = find(&c, 2);
    let mut moved = out.linked_result()?;
    while moved < n {
        let e = splice_entry(Fd::Raw(pipe_r), -1, sock, -1, (n - moved) as u32).user_data(3);
        // SAFETY: no user memory.
        let c = unsafe { submit_wait(ring, &[e], |_| {})? };
        moved += nonzero(
            c[0].result()?,
            "splice to socket moved 0 bytes: peer closed",
        )?;
    }
    Ok(n)
}

/// Submits `n` IORING_OP_NOPs in one io_uring_enter and waits for them all.
pub fn nop_batch(ring: &mut Ring, n: usize) -> io::Result<()> {
    let entries: Vec<squeue::Entry> = (0..n)
        .map(|i| opcode::Nop::new().build().user_data(i as u64))
        .collect();
    // SAFETY: NOPs carry no user memory.
    let c = unsafe { submit_wait(ring, &entries, |_| {})? };
    for x in c {
        x.result()?;
    }
    Ok(())
}
