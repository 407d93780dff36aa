//! Raw io_uring_setup(2) and io_uring_register(2) calls that the io-uring crate does not offer
//! for probing: a ring set up with arbitrary `IORING_SETUP_*` bits (including the ones whose
//! rings live in user memory or come back as a registered index), and buffer registration.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// `IORING_SETUP_NO_MMAP` (6.5): the rings live in memory the caller provides.
pub const IORING_SETUP_NO_MMAP: u32 = 1 << 14;
/// `IORING_SETUP_REGISTERED_FD_ONLY` (6.5): setup returns a registered-ring index, not an fd.
pub const IORING_SETUP_REGISTERED_FD_ONLY: u32 = 1 << 15;
/// `IORING_UNREGISTER_RING_FDS` (io_uring_register(2) opcode).
const IORING_UNREGISTER_RING_FDS: u32 = 21;
/// `IORING_REGISTER_USE_REGISTERED_RING`: the fd argument is a registered-ring index.
const IORING_REGISTER_USE_REGISTERED_RING: u32 = 1 << 31;
/// `IORING_REGISTER_RING_FDS` (io_uring_register(2) opcode, Linux 5.18).
const IORING_REGISTER_RING_FDS: u32 = 20;
/// `IORING_ENTER_GETEVENTS`: wait for `min_complete` completions.
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
/// `IORING_ENTER_REGISTERED_RING`: the fd argument of io_uring_enter(2) is a registered-ring
/// index (Linux 5.18).
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;

/// The fields of `struct io_uring_params` a probe chooses (`<linux/io_uring.h>`). Addresses of
/// user memory are not among them: [`try_setup`] provides that memory itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SetupParams {
    /// `IORING_SETUP_*` bits.
    pub flags: u32,
    /// Completion queue size, read with `IORING_SETUP_CQSIZE`.
    pub cq_entries: u32,
    /// SQPOLL thread CPU, read with `IORING_SETUP_SQ_AFF`.
    pub sq_thread_cpu: u32,
    /// SQPOLL idle time in ms, read with `IORING_SETUP_SQPOLL`.
    pub sq_thread_idle: u32,
    /// Ring whose async workers to share, read with `IORING_SETUP_ATTACH_WQ`.
    pub wq_fd: u32,
}

/// `struct io_sqring_offsets` / `struct io_cqring_offsets` (same layout) from
/// `<linux/io_uring.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RingOffsets {
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) ring_mask: u32,
    pub(super) ring_entries: u32,
    /// `flags` (sq) / `overflow` (cq).
    pub(super) a: u32,
    /// `dropped` (sq) / `cqes` (cq).
    pub(super) b: u32,
    /// `array` (sq) / `flags` (cq).
    pub(super) c: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_uring_params` from `<linux/io_uring.h>` (120 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct UringParams {
    sq_entries: u32,
    pub(super) cq_entries: u32,
    pub(super) flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: RingOffsets,
    pub(super) cq_off: RingOffsets,
}

const _: () = assert!(std::mem::size_of::<UringParams>() == 120);

impl UringParams {
    fn from(p: &SetupParams) -> UringParams {
        UringParams {
            flags: p.flags,
            cq_entries: p.cq_entries,
            sq_thread_cpu: p.sq_thread_cpu,
            sq_thread_idle: p.sq_thread_idle,
            wq_fd: p.wq_fd,
            ..UringParams::default()
        }
    }
}

/// `struct io_uring_rsrc_update` from `<linux/io_uring.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// io_uring_setup(2) with `params` as given. The result is a ring fd, or with
/// `IORING_SETUP_REGISTERED_FD_ONLY` a registered-ring index.
///
/// # Safety
/// With `IORING_SETUP_NO_MMAP`, `params.sq_off.user_addr` and `params.cq_off.user_addr` must
/// point to writable memory that outlives the ring (or nothing else uses afterwards): the
/// kernel puts the rings there.
unsafe fn raw_setup(entries: u32, params: &mut UringParams) -> io::Result<i32> {
    // SAFETY: `params` is a valid, writable io_uring_params of the size the kernel expects;
    // the user memory it may name is the caller's contract (above).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            entries as libc::c_uint,
            params as *mut UringParams,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        i32::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
    }
}

fn own(fd: i32) -> OwnedFd {
    // SAFETY: only called on an fd io_uring_setup just returned, which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sets up a ring of `entries` with `params` (io_uring_setup(2)) and returns its fd and the
/// `IORING_FEAT_*` bits the kernel reported. Flags whose ring is not an ordinary fd backed by
/// kernel memory (`NO_MMAP`, `REGISTERED_FD_ONLY`) are refused with EINVAL: use [`try_setup`].
pub fn setup(entries: u32, params: &SetupParams) -> io::Result<(OwnedFd, u32)> {
    if params.flags & (IORING_SETUP_NO_MMAP | IORING_SETUP_REGISTERED_FD_ONLY) != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut p = UringParams::from(params);
    // SAFETY: without NO_MMAP the kernel allocates the rings itself; no user memory is named.
    let fd = unsafe { raw_setup(entries, &mut p) }?;
    Ok((own(fd), p.features))
}

/// Whether io_uring_setup(2) accepts `params` for a 1-entry ring: sets one up and tears it down
/// at once. With `IORING_SETUP_NO_MMAP` the rings go into two anonymous pages allocated here;
/// with `IORING_SETUP_REGISTERED_FD_ONLY` the registered ring is unregistered again.
pub fn try_setup(params: &SetupParams) -> io::Result<()> {
    let mut p = UringParams::from(params);
    // With NO_MMAP the rings live in memory we provide; one page each is plenty for a 1-entry
    // ring (and older kernels need them single-page).
    let mem = if p.flags & IORING_SETUP_NO_MMAP != 0 {
        let page = super::filemap::page_size();
        let rings = memmap2::MmapMut::map_anon(page)?;
        let sqes = memmap2::MmapMut::map_anon(page)?;
        p.cq_off.user_addr = rings.as_ptr() as u64;
        p.sq_off.user_addr = sqes.as_ptr() as u64;
        Some((rings, sqes))
    } else {
        None
    };
    // SAFETY: any user memory named is the two private anonymous mappings above, which nothing
    // else references; they are unmapped only after the ring is torn down below, and the kernel
    // pins the pages it uses, so unmapping is safe even while the ring is still being freed.
    let rc = unsafe { raw_setup(1, &mut p) }?;
    if p.flags & IORING_SETUP_REGISTERED_FD_ONLY != 0 {
        // `rc` is an index into this thread's registered rings, not an fd.
        unregister_ring_index(rc);
    } else {
        drop(own(rc));
    }
    drop(mem);
    Ok(())
}

/// Drops registered-ring `index` of this thread (io_uring_register(2)
/// `IORING_UNREGISTER_RING_FDS` through `IORING_REGISTER_USE_REGISTERED_RING`).
fn unregister_ring_index(index: i32) {
    let Ok(offset) = u32::try_from(index) else {
        return;
    };
    let up = RsrcUpdate {
        offset,
        ..RsrcUpdate::default()
    };
    // SAFETY: io_uring_register(2) reads one io_uring_rsrc_update from `up`, which lives across
    // the call; a wrong index only makes the kernel return an error.
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            index as libc::c_uint,
            IORING_UNREGISTER_RING_FDS | IORING_REGISTER_USE_REGISTERED_RING,
            &up as *const RsrcUpdate,
            1 as libc::c_uint,
        );
    }
}

/// A ring fd registered in this thread's table of rings (io_uring_register(2)
/// `IORING_REGISTER_RING_FDS`, Linux 5.18): io_uring_enter(2) through its index skips looking
/// the fd up on every call, as liburing's `io_uring_register_ring_fd` and fio's t/io_uring (by
/// default) do. The table is per thread: enter only from the thread that registered it, which
/// is also where dropping it unregisters the index.
pub struct RegisteredRing {
    index: u32,
    /// Not Send: the index means nothing in another thread.
    _thread: std::marker::PhantomData<*const ()>,
}

impl RegisteredRing {
    /// Registers `ring`'s fd for the calling thread.
    pub fn register(ring: &io_uring::IoUring) -> io::Result<RegisteredRing> {
        use std::os::fd::AsRawFd;
        let mut up = RsrcUpdate {
            // Any free slot.
            offset: u32::MAX,
            resv: 0,
            data: ring.as_raw_fd() as u64,
        };
        // SAFETY: io_uring_register(2) reads and writes one io_uring_rsrc_update in `up`, which
        // lives across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                ring.as_raw_fd() as libc::c_uint,
                IORING_REGISTER_RING_FDS,
                &mut up as *mut RsrcUpdate,
                1 as libc::c_uint,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RegisteredRing {
            index: up.offset,
            _thread: std::marker::PhantomData,
        })
    }

    /// io_uring_enter(2) through the index: submits `to_submit` entries and waits for at least
    /// `min_complete` completions; returns the number submitted.
    pub fn submit_and_wait(&self, to_submit: u32, min_complete: u32) -> io::Result<u32> {
        let flags = if min_complete > 0 {
            IORING_ENTER_GETEVENTS | IORING_ENTER_REGISTERED_RING
        } else {
            IORING_ENTER_REGISTERED_RING
        };
        // SAFETY: no signal mask or extended argument is passed (null, size 0); the entries
        // submitted are the caller's, pushed through the io-uring crate's SubmissionQueue.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.index as libc::c_uint,
                to_submit as libc::c_uint,
                min_complete as libc::c_uint,
                flags as libc::c_uint,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc as u32)
        }
    }
}

impl Drop for RegisteredRing {
    fn drop(&mut self) {
        unregister_ring_index(self.index as i32);
    }
}

/// Registers `maps` as the fixed buffers of `ring` (io_uring_register(2)
/// `IORING_REGISTER_BUFFERS`); buffer `i` is `maps[i]`.
///
/// Keep the mappings for as long as the ring lives (as [`crate::ring::Ring`] does, dropping the
/// ring first): `*_FIXED` operations read and write them.
pub fn register_buffers(ring: &io_uring::IoUring, maps: &mut [memmap2::MmapMut]) -> io::Result<()> {
    let iov: Vec<libc::iovec> = maps
        .iter_mut()
        .map(|m| libc::iovec {
            iov_base: m.as_mut_ptr().cast(),
            iov_len: m.len(),
        })
        .collect();
    // SAFETY: every iovec describes a live, writable anonymous mapping borrowed mutably for the
    // call. Registration pins those pages in the kernel until the buffers are unregistered or
    // the ring is closed, so even a mapping unmapped early never lets the kernel write into
    // memory reused by something else; what `*_FIXED` operations later do with the buffers is
    // covered by the (unsafe) submission of those operations.
    unsafe { ring.submitter().register_buffers(&iov) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_setup_reports_features() {
        let (_fd, features) = setup(8, &SetupParams::default()).unwrap();
        assert_ne!(features & 1, 0, "IORING_FEAT_SINGLE_MMAP since 5.4");
    }

    #[test]
    fn user_memory_flags_only_through_try_setup() {
        let p = SetupParams {
            flags: IORING_SETUP_NO_MMAP,
            ..SetupParams::default()
        };
        assert_eq!(setup(1, &p).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        try_setup(&p).unwrap();
        try_setup(&SetupParams {
            flags: IORING_SETUP_NO_MMAP | IORING_SETUP_REGISTERED_FD_ONLY,
            ..SetupParams::default()
        })
        .unwrap();
    }
}
