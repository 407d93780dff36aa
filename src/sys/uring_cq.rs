//! An io_uring completion queue read in place (io_uring_setup(2), "the CQ ring").
//!
//! The io-uring crate hands out each completion as a copy made by `cqueue::Entry::clone`, a
//! function it does not mark `#[inline]`: one call per completion, which a hot loop pays in
//! user time (about 1.5 ns per NOP at batch 32 here, a twentieth of the whole NOP). This is a
//! second mapping of the same ring memory, through which a loop reads each completion's fields
//! where the kernel wrote them and then releases them all with one store of the head, as
//! liburing's `io_uring_for_each_cqe` and `io_uring_cq_advance` do.
//!
//! Only one consumer may take completions at a time: while a [`CqRing`] is in use, no
//! `io_uring::CompletionQueue` of the same ring may be held (the crate's caches its own head and
//! writes it back when dropped).

use super::mmap::Mapping;
use super::uring_setup::UringParams;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `IORING_OFF_CQ_RING` (`<linux/io_uring.h>`): the mmap offset of the ring memory holding the
/// completion queue (the same memory as the SQ ring's where the kernel has FEAT_SINGLE_MMAP).
const IORING_OFF_CQ_RING: u64 = 0x800_0000;
/// `IORING_SETUP_CQE32`: 32-byte completions, which this view does not read.
const IORING_SETUP_CQE32: u32 = 1 << 11;

/// `struct io_uring_cqe` (16 bytes, without the CQE32 extension).
#[repr(C)]
struct RawCqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

/// One completion as the kernel posted it: the request's tag, its result (bytes or -errno) and
/// the CQE flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

/// The completion queue of one ring, mapped a second time and read in place.
pub struct CqRing {
    // Keeps the pointers below valid: the mapping holds its own reference to the ring's
    // memory, so it outlives even the ring's fd.
    _map: Mapping,
    head: NonNull<AtomicU32>,
    tail: NonNull<AtomicU32>,
    mask: u32,
    cqes: NonNull<RawCqe>,
}

impl CqRing {
    /// Maps the completion queue of `ring` (its fd and the parameters the kernel filled in at
    /// setup). Rings with 32-byte completions are refused.
    pub fn new(ring: &io_uring::IoUring) -> io::Result<CqRing> {
        const _: () = assert!(
            std::mem::size_of::<io_uring::Parameters>() == std::mem::size_of::<UringParams>()
        );
        // SAFETY: `io_uring::Parameters` is `#[repr(transparent)]` over the kernel's
        // `struct io_uring_params`, documented as creatable from any properly laid-out value of
        // it; `UringParams` is the same `#[repr(C)]` struct (the sizes are checked above), so
        // reading it through this reference reads the fields the kernel filled in.
        let p: &UringParams =
            unsafe { &*(ring.params() as *const io_uring::Parameters).cast::<UringParams>() };
        if p.flags & IORING_SETUP_CQE32 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the CQ ring is read in place only with 16-byte completions (no IORING_SETUP_CQE32)",
            ));
        }
        let off = p.cq_off;
        let len = off.b as usize + p.cq_entries as usize * std::mem::size_of::<RawCqe>();
        // SAFETY: the fd is the ring's own, open for the duration of this call.
        let fd = unsafe { BorrowedFd::borrow_raw(ring.as_raw_fd()) };
        let map = Mapping::shared(
            fd,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_POPULATE,
            IORING_OFF_CQ_RING,
            "mmap of the io_uring CQ ring",
        )?;
        let at = |o: u32| -> io::Result<NonNull<u8>> {
            if o as usize + 4 > map.len() {
                return Err(io::Error::other(format!(
                    "CQ ring offset {o} beyond its {} B",
                    map.len()
                )));
            }
            // SAFETY: `o` is inside the mapping (checked above).
            NonNull::new(unsafe { map.ptr().add(o as usize) })
                .ok_or_else(|| io::Error::other("null CQ ring"))
        };
        let (head, tail, cqes) = (at(off.head)?, at(off.tail)?, at(off.b)?);
        // SAFETY: ring_mask is a u32 inside the mapping, written by the kernel at setup.
        let mask = unsafe { at(off.ring_mask)?.cast::<u32>().read() };
        Ok(CqRing {
            head: head.cast(),
            tail: tail.cast(),
            mask,
            cqes: cqes.cast(),
            _map: map,
        })
    }

    /// Completions posted and not yet taken.
    #[inline]
    pub fn len(&self) -> usize {
        // SAFETY: head and tail are the ring's u32 counters, aligned, inside the mapping; the
        // kernel writes the tail and this consumer the head, both as atomics.
        let (head, tail) = unsafe {
            (
                self.head.as_ref().load(Ordering::Relaxed),
                self.tail.as_ref().load(Ordering::Acquire),
            )
        };
        tail.wrapping_sub(head) as usize
    }

    /// Whether no completion is waiting.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each completion posted (at most `max`), oldest first, then releases them
    /// to the kernel with one store of the head. Returns how many were taken.
    #[inline]
    pub fn reap(&mut self, max: usize, mut f: impl FnMut(Completion)) -> usize {
        // SAFETY: as in `len`. The kernel publishes a completion by storing the tail with
        // release after writing the entry; the acquire load of the tail makes every entry
        // before it visible. Entries between head and tail stay untouched by the kernel until
        // the head moves past them, which happens only after they are read below.
        unsafe {
            let head = self.head.as_ref().load(Ordering::Relaxed);
            let tail = self.tail.as_ref().load(Ordering::Acquire);
            let n = (tail.wrapping_sub(head) as usize).min(max);
            for i in 0..n as u32 {
                let c = &*self
                    .cqes
                    .as_ptr()
                    .add((head.wrapping_add(i) & self.mask) as usize);
                f(Completion {
                    user_data: c.user_data,
                    res: c.res,
                    flags: c.flags,
                });
            }
            self.head
                .as_ref()
                .store(head.wrapping_add(n as u32), Ordering::Release);
            n
        }
    }
}

// SAFETY: the view is plain shared memory ordered by the ring protocol's atomics; moving it to
// another thread moves the only consumer with it.
unsafe impl Send for CqRing {}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{IoUring, opcode};

    #[test]
    fn reads_what_the_kernel_posted_in_order() {
        let mut ring = IoUring::new(8).unwrap();
        let mut cq = CqRing::new(&ring).unwrap();
        assert!(cq.is_empty());
        for round in 0..5u64 {
            // Five rounds of 6 on a ring of 16 CQEs: the head wraps.
            for i in 0..6u64 {
                let e = opcode::Nop::new().build().user_data(round * 10 + i);
                // SAFETY: a NOP names no memory.
                unsafe { ring.submission().push(&e).unwrap() };
            }
            ring.submit_and_wait(6).unwrap();
            assert_eq!(cq.len(), 6);
            let mut got = Vec::new();
            assert_eq!(cq.reap(4, |c| got.push((c.user_data, c.res))), 4);
            assert_eq!(cq.reap(usize::MAX, |c| got.push((c.user_data, c.res))), 2);
            let want: Vec<(u64, i32)> = (0..6).map(|i| (round * 10 + i, 0)).collect();
            assert_eq!(got, want);
            assert!(cq.is_empty());
            // The crate's own view sees the same (empty) queue: the head was released.
            assert_eq!(ring.completion().len(), 0);
        }
    }
}
