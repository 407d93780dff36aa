//! io_uring on a UDP socket, frame by frame, for `packet_io`: multishot receive into a provided
//! buffer ring (IORING_OP_RECV with IORING_RECV_MULTISHOT and IOSQE_BUFFER_SELECT, buffers from
//! IORING_REGISTER_PBUF_RING), and batches of IORING_OP_SEND.
//!
//! The buffer ring is an array of `io_uring_buf` entries the kernel consumes from; user space
//! adds a buffer by writing the entry at `tail & mask` and then publishing the new tail (the
//! `resv` field of entry 0) with release ordering. A multishot receive posts one CQE per
//! datagram, naming the buffer it used, with IORING_CQE_F_MORE while it stays armed; it ends
//! (no F_MORE) when the ring runs out of buffers, and is re-armed once they are given back.

use crate::ring::{Ring, RingConfig};
use io_uring::{cqueue, opcode, types};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

const BGID: u16 = 7;
const RECV_TAG: u64 = 1;

/// A provided buffer ring with its buffers.
struct BufRing {
    entries_map: memmap2::MmapMut,
    bufs: Vec<u8>,
    size: usize,
    mask: u16,
    tail: u16,
}

impl BufRing {
    fn new(entries: u16, size: usize) -> io::Result<BufRing> {
        let map = memmap2::MmapMut::map_anon(entries as usize * 16)?;
        Ok(BufRing {
            entries_map: map,
            bufs: vec![0; entries as usize * size],
            size,
            mask: entries - 1,
            tail: 0,
        })
    }

    fn base(&self) -> *mut types::BufRingEntry {
        self.entries_map.as_ptr() as *mut types::BufRingEntry
    }

    /// Puts buffer `bid` at the tail (not yet published).
    fn add(&mut self, bid: u16) {
        let slot = (self.tail & self.mask) as usize;
        let addr = self.bufs[bid as usize * self.size..].as_ptr() as u64;
        // SAFETY: slot <= mask, inside the entries mapping (entries x 16 bytes); the kernel
        // only reads entries between its head and the published tail, and this one is past it.
        let e = unsafe { &mut *self.base().add(slot) };
        e.set_addr(addr);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lies in entry 0 of the live mapping, u16-aligned; the kernel
        // reads it concurrently, so it is written atomically with release ordering.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.base()) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// A UDP socket read by one multishot receive.
pub struct UdpMultishot {
    // The ring first: it is closed (and the buffer ring unregistered) before the memory goes.
    ring: Ring,
    br: BufRing,
    fd: RawFd,
    _sock: std::net::UdpSocket,
    armed: bool,
    started: bool,
    /// Times the receive ended for lack of buffers and was re-armed.
    pub rearms: u64,
}

impl UdpMultishot {
    /// `entries` buffers (a power of two) of `size` bytes.
    pub fn new(sock: std::net::UdpSocket, entries: u16, size: usize) -> io::Result<UdpMultishot> {
        let mut ring =
            Ring::new(&RingConfig::tuned(256)).map_err(|e| io::Error::other(e.to_string()))?;
        let mut br = BufRing::new(entries, size)?;
        // SAFETY: the entries mapping is page-aligned, `entries` long, and lives in `br`, which
        // the struct drops after the ring (the ring's close unregisters it).
        unsafe {
            ring.inner().submitter().register_buf_ring_with_flags(
                br.base() as u64,
                entries,
                BGID,
                0,
            )?;
        }
        for bid in 0..entries {
            br.add(bid);
        }
        br.publish();
        Ok(UdpMultishot {
            fd: sock.as_raw_fd(),
            _sock: sock,
            ring,
            br,
            armed: false,
            started: false,
            rearms: 0,
        })
    }

    fn arm(&mut self) -> io::Result<()> {
        let sqe = opcode::RecvMulti::new(types::Fd(self.fd), BGID)
            .build()
            .user_data(RECV_TAG);
        // SAFETY: the receive reads into buffers of the registered ring, which outlive the ring.
        unsafe {
            self.ring
                .inner()
                .submission()
                .push(&sqe)
                .map_err(|_| io::Error::other("submission queue full"))?;
        }
        self.armed = true;
        Ok(())
    }

    /// Arms the receive if needed and submits; with `wait_ms` > 0 and no CQE pending, waits up
    /// to that long for one (the CQEs are taken by [`UdpMultishot::receive`]).
    pub fn wait(&mut self, wait_ms: u32) -> io::Result<()> {
        if !self.armed {
            if self.started {
                self.rearms += 1;
            }
            self.started = true;
            self.arm()?;
        }
        let inner = self.ring.inner();
        if wait_ms > 0 && inner.completion().is_empty() {
            let ts = types::Timespec::new().nsec(wait_ms * 1_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            match inner.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
        } else {
            inner.submit()?;
        }
        Ok(())
    }

    /// Hands each datagram received so far to `f` and gives its buffer back (arming and
    /// submitting first, without waiting).
    pub fn receive(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<u64> {
        self.wait(0)?;
        let inner = self.ring.inner();
        let mut n = 0;
        let cqes: Vec<(i32, u32)> = inner
            .completion()
            .map(|c| (c.result(), c.flags()))
            .collect();
        for (res, flags) in cqes {
            if !cqueue::more(flags) {
                self.armed = false;
            }
            if res < 0 {
                if res == -libc::ENOBUFS {
                    continue; // out of buffers: re-armed on the next call
                }
                return Err(io::Error::from_raw_os_error(-res));
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                continue;
            };
            let start = bid as usize * self.br.size;
            f(&self.br.bufs[start..start + (res as usize).min(self.br.size)]);
            self.br.add(bid);
            n += 1;
        }
        if n > 0 {
            self.br.publish();
        }
        Ok(n)
    }
}

/// IORING_OP_SEND of each buffer on the connected socket `fd`, one SQE per buffer, one
/// submit-and-wait per batch. Returns when every send completed; a short or failed send is an
/// error (EAGAIN is retried).
pub fn send_batch(ring: &mut Ring, fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
    let inner = ring.inner();
    let mut pending: Vec<usize> = (0..bufs.len()).collect();
    while !pending.is_empty() {
        for &i in &pending {
            let sqe = opcode::Send::new(types::Fd(fd), bufs[i].as_ptr(), bufs[i].len() as u32)
                .build()
                .user_data(i as u64);
            // SAFETY: the buffer outlives the send: this function waits for every CQE.
            unsafe {
                inner
                    .submission()
                    .push(&sqe)
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        inner.submit_and_wait(pending.len())?;
        let mut again = Vec::new();
        let mut seen = 0;
        while seen < pending.len() {
            let cqes: Vec<(u64, i32)> = inner
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            if cqes.is_empty() {
                inner.submit_and_wait(1)?;
                continue;
            }
            for (i, res) in cqes {
                seen += 1;
                let i = i as usize;
                if res == -libc::EAGAIN || res == -libc::ENOBUFS {
                    again.push(i);
                } else if res < 0 {
                    return Err(io::Error::from_raw_os_error(-res));
                } else if res as usize != bufs[i].len() {
                    return Err(io::Error::other(format!(
                        "short UDP send: {res} of {} B",
                        bufs[i].len()
                    )));
                }
            }
        }
        again.sort_unstable();
        pending = again;
    }
    Ok(bufs.len())
}
