//! io_uring receive loops on a stream socket (io_uring_enter(2), io_uring_register(2)):
//! one IORING_OP_RECV per user buffer; multishot RECV into a provided buffer ring
//! (IORING_RECV_MULTISHOT, IORING_REGISTER_PBUF_RING: Linux 6.0); the same with bundles
//! (IORING_RECVSEND_BUNDLE: 6.10), where one completion covers several buffers; and the
//! zero-copy receive's interface-queue registration (IORING_REGISTER_ZCRX_IFQ: 6.15).
//!
//! Every loop hands the received bytes, in stream order, to the caller's `sink` and returns
//! what it counted: completions, io_uring_enter calls, multishot re-arms and how often the
//! buffer ring ran dry (-ENOBUFS ends a multishot receive; it is re-armed once the buffers are
//! back).

use crate::measure::Recorder;
use crate::ring::Ring;
use crate::sys::signal::Cancel;
use io_uring::types::BufRingEntry;
use io_uring::{cqueue, opcode, types};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

/// What a receive loop counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvCounts {
    /// Bytes received.
    pub bytes: u64,
    /// Completions carrying data or an end (every CQE reaped).
    pub completions: u64,
    /// io_uring_enter calls (submit and wait).
    pub enters: u64,
    /// Requests submitted (the first arming included).
    pub submissions: u64,
    /// Multishot receives armed again after the kernel ended one (F_MORE clear) before the
    /// end of the stream.
    pub rearms: u64,
    /// Completions with -ENOBUFS: the provided buffer ring was empty when data came.
    pub enobufs: u64,
    /// Times the ring ran dry: a completion that ended the multishot receive with no buffer
    /// left in the ring for the kernel (what it consumed took the last one), or -ENOBUFS.
    pub dry: u64,
    /// Completions that carried data.
    pub with_data: u64,
    /// Provided buffers consumed.
    pub buffers: u64,
}

/// One IORING_OP_RECV of up to `buf.len()` bytes at a time, one in flight, until end of
/// stream. One latency sample per receive: SQE pushed to its CQE reaped.
pub fn recv_single(
    ring: &mut Ring,
    sock: RawFd,
    buf: &mut [u8],
    rec: &mut Recorder,
    cancel: Cancel,
    mut sink: impl FnMut(&[u8]),
) -> io::Result<RecvCounts> {
    let mut c = RecvCounts::default();
    loop {
        let e = opcode::Recv::new(types::Fd(sock), buf.as_mut_ptr(), buf.len() as u32)
            .build()
            .user_data(1);
        let t0 = rec.now();
        let r = ring.inner();
        // SAFETY: `buf` is borrowed mutably for this whole function and the loop below waits
        // for this request's completion before the buffer is read or the next one is pushed.
        unsafe { r.submission().push(&e) }.map_err(|_| io::Error::other("SQ full"))?;
        c.submissions += 1;
        let res = loop {
            c.enters += 1;
            if let Err(e) = r.submit_and_wait(1) {
                cancel.intr(e)?;
            }
            if let Some(cqe) = r.completion().next() {
                break cqe.result();
            }
        };
        rec.record_since(t0);
        c.completions += 1;
        match res {
            0 => return Ok(c),
            n if n > 0 => {
                sink(&buf[..n as usize]);
                c.bytes += n as u64;
            }
            e if e == -libc::EINTR || e == -libc::EAGAIN => {}
            e => return Err(io::Error::from_raw_os_error(-e)),
        }
    }
}

/// A provided buffer ring (IORING_REGISTER_PBUF_RING): `count` buffers of `size` bytes,
/// group `bgid`. Buffer `i` sits at ring index `i` initially and every consumed buffer goes
/// back to the tail in the order the kernel consumed it, so ring index `k` always holds
/// buffer `k % count`: a bundle's buffers are consecutive ids.
pub struct BufRing {
    entries: memmap2::MmapMut,
    bufs: memmap2::MmapMut,
    count: u16,
    size: usize,
    bgid: u16,
    tail: u16,
    /// The next ring index the kernel will consume.
    head: u16,
}

impl BufRing {
    /// Registers a ring of `count` (a power of two, at most 32768) buffers of `size` bytes
    /// with `ring`, all of them provided. The ring must outlive the registration: keep this
    /// value after the [`Ring`] in the owner's fields (dropped after it).
    pub fn register(ring: &mut Ring, count: u16, size: usize, bgid: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a provided buffer ring holds a power of two of buffers, not {count}"),
            ));
        }
        let entry = std::mem::size_of::<BufRingEntry>();
        let mut entries = memmap2::MmapMut::map_anon(entry * count as usize)?;
        let mut bufs = memmap2::MmapMut::map_anon(size * count as usize)?;
        bufs.fill(0);
        entries.fill(0);
        // SAFETY: `entries` is a page-aligned mapping of `count` entries that this value
        // keeps (and its owner drops only after the ring is closed).
        unsafe {
            ring.inner().submitter().register_buf_ring_with_flags(
                entries.as_mut_ptr() as u64,
                count,
                bgid,
                0,
            )
        }
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring_register(PBUF_RING): {e}")))?;
        let mut b = BufRing {
            entries,
            bufs,
            count,
            size,
            bgid,
            tail: 0,
            head: 0,
        };
        for i in 0..count {
            b.push(i);
        }
        b.publish();
        Ok(b)
    }

    /// The buffer group id.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Writes buffer `bid` into the entry at the tail (not yet visible to the kernel).
    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.count - 1)) as usize;
        let addr = self.bufs[bid as usize * self.size..].as_ptr() as u64;
        let base = self.entries.as_mut_ptr() as *mut BufRingEntry;
        // SAFETY: `idx < count`, so the entry lies inside the mapping; the kernel reads only
        // entries before the published tail, and this one is past it.
        let e = unsafe { &mut *base.add(idx) };
        e.set_addr(addr);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries pushed so far visible to the kernel (release store of the tail).
    fn publish(&mut self) {
        let base = self.entries.as_ptr() as *const BufRingEntry;
        // SAFETY: the tail field is the `resv` of entry 0 inside our mapping, a naturally
        // aligned u16 that the kernel only reads; an atomic store orders the entries'
        // contents before it.
        let tail = unsafe { &*(BufRingEntry::tail(base) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Takes the `n` buffers the kernel filled with `len` bytes from the ring's head (the
    /// first being `bid`), hands their bytes in order to `sink`, and provides them again.
    /// An error when `bid` is not the buffer at the head.
    fn consume(&mut self, bid: u16, len: usize, sink: &mut impl FnMut(&[u8])) -> io::Result<u64> {
        let want = self.head & (self.count - 1);
        if bid != want {
            return Err(io::Error::other(format!(
                "provided buffer {bid} completed where buffer {want} was next: buffers out of ring order"
            )));
        }
        let n = len.div_ceil(self.size).max(1);
        if n > self.count as usize {
            return Err(io::Error::other(format!(
                "a completion of {len} B spans more than the ring's {} buffers",
                self.count
            )));
        }
        let mut left = len;
        for k in 0..n {
            let b = (bid as usize + k) % self.count as usize;
            let take = left.min(self.size);
            sink(&self.bufs[b * self.size..b * self.size + take]);
            left -= take;
        }
        for k in 0..n {
            self.push(((bid as usize + k) % self.count as usize) as u16);
        }
        self.head = self.head.wrapping_add(n as u16);
        self.publish();
        Ok(n as u64)
    }
}

/// How a multishot receive is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multishot {
    /// One buffer per completion (IORING_RECV_MULTISHOT).
    Plain,
    /// Several buffers per completion (IORING_RECV_MULTISHOT | IORING_RECVSEND_BUNDLE).
    Bundle,
}

/// A multishot receive into `bufs` until end of stream: armed once, armed again whenever a
/// completion comes without F_MORE before the end (after -ENOBUFS, counted, or when the
/// kernel ends it for its own reasons). One latency sample per completion: the wait that
/// returned it, shared among the completions it returned.
fn recv_multishot(
    ring: &mut Ring,
    bufs: &mut BufRing,
    sock: RawFd,
    how: Multishot,
    rec: &mut Recorder,
    cancel: Cancel,
    mut sink: impl FnMut(&[u8]),
) -> io::Result<RecvCounts> {
    let mut c = RecvCounts::default();
    let bgid = bufs.bgid();
    let arm = |ring: &mut Ring, c: &mut RecvCounts| -> io::Result<()> {
        let e = match how {
            Multishot::Plain => opcode::RecvMulti::new(types::Fd(sock), bgid).build(),
            Multishot::Bundle => opcode::RecvMultiBundle::new(types::Fd(sock), bgid).build(),
        }
        .user_data(2);
        // SAFETY: the request names no user memory directly; it takes buffers from the
        // registered ring, whose memory `bufs` keeps alive for the ring's whole life.
        unsafe { ring.inner().submission().push(&e) }.map_err(|_| io::Error::other("SQ full"))?;
        c.submissions += 1;
        Ok(())
    };
    arm(ring, &mut c)?;
    let mut cqes = Vec::with_capacity(64);
    loop {
        let t0 = rec.now();
        c.enters += 1;
        if let Err(e) = ring.inner().submit_and_wait(1) {
            cancel.intr(e)?;
        }
        cqes.clear();
        cqes.extend(ring.inner().completion().map(|e| (e.result(), e.flags())));
        if cqes.is_empty() {
            continue;
        }
        rec.record_batch_since(t0, cqes.len() as u64);
        let mut ended = false;
        let mut rearm = false;
        // The kernel runs this ring's receives only inside our io_uring_enter
        // (DEFER_TASKRUN): while these completions are handled, it saw this tail.
        let seen_tail = bufs.tail;
        for &(res, flags) in &cqes {
            c.completions += 1;
            if res > 0 {
                let bid = cqueue::buffer_select(flags).ok_or_else(|| {
                    io::Error::other("a multishot receive completed without a buffer id")
                })?;
                c.buffers += bufs.consume(bid, res as usize, &mut sink)?;
                c.bytes += res as u64;
                c.with_data += 1;
            } else if res == 0 {
                ended = true;
            } else if res == -libc::ENOBUFS {
                c.enobufs += 1;
            } else if res != -libc::EINTR && res != -libc::EAGAIN {
                return Err(io::Error::from_raw_os_error(-res));
            }
            if !cqueue::more(flags) && res != 0 {
                rearm = true;
                if res == -libc::ENOBUFS || bufs.head == seen_tail {
                    c.dry += 1;
                }
            }
        }
        if ended {
            return Ok(c);
        }
        if rearm {
            c.rearms += 1;
            arm(ring, &mut c)?;
        }
    }
}

/// The zero-copy receive's registration (IORING_REGISTER_ZCRX_IFQ) of receive queue `rxq` of
/// interface `ifindex`, in the calling thread's network namespace, on a ring of its own
/// (DEFER_TASKRUN and 32-byte CQEs, as the kernel requires): a 256 KiB area and a 64-entry
/// refill queue. Ok(()) when the kernel accepted it; its errno otherwise (EOPNOTSUPP: the
/// device has no header split or queue management, as lo and veth; ENODEV: no such
/// interface; EPERM: CAP_NET_ADMIN missing; EINVAL: the kernel has no zcrx).
pub fn zcrx_register(ifindex: u32, rxq: u32) -> io::Result<()> {
    use io_uring::types::{
        IORING_MEM_REGION_TYPE_USER, io_uring_region_desc, io_uring_zcrx_area_reg,
        io_uring_zcrx_ifq_reg,
    };
    let ring: io_uring::IoUring<io_uring::squeue::Entry, cqueue::Entry32> =
        io_uring::IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(8)?;
    let page = crate::sys::tcp_zc::page_size();
    let mut area = memmap2::MmapMut::map_anon(64 * page)?;
    let mut refill = memmap2::MmapMut::map_anon(4 * page)?;
    area.fill(0);
    refill.fill(0);
    let mut area_reg = io_uring_zcrx_area_reg {
        addr: area.as_mut_ptr() as u64,
        len: area.len() as u64,
        ..Default::default()
    };
    let mut region = io_uring_region_desc {
        user_addr: refill.as_mut_ptr() as u64,
        size: refill.len() as u64,
        flags: IORING_MEM_REGION_TYPE_USER,
        ..Default::default()
    };
    let reg = io_uring_zcrx_ifq_reg {
        if_idx: ifindex,
        if_rxq: rxq,
        rq_entries: 64,
        area_ptr: &mut area_reg as *mut _ as u64,
        region_ptr: &mut region as *mut _ as u64,
        ..Default::default()
    };
    // Closing the ring ends the registration; only then may the memory go.
    let r = ring.submitter().register_ifq(&reg);
    drop(ring);
    drop((area, refill));
    r
}

/// A ring and its provided buffer ring, owned together so that the ring is closed (its
/// requests ended) before the buffers' memory is released (fields drop in order).
pub struct ProvidedRecv {
    ring: Ring,
    bufs: BufRing,
}

impl ProvidedRecv {
    /// Registers `count` buffers of `size` bytes (group 0) with `ring`.
    pub fn new(mut ring: Ring, count: u16, size: usize) -> io::Result<ProvidedRecv> {
        let bufs = BufRing::register(&mut ring, count, size, 0)?;
        Ok(ProvidedRecv { ring, bufs })
    }

    /// The ring, for its flags.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Whether the kernel supports receive bundles (IORING_FEAT_RECVSEND_BUNDLE, 6.10).
    pub fn bundles_supported(ring: &mut Ring) -> bool {
        ring.inner().params().is_feature_recvsend_bundle()
    }

    /// [`recv_multishot`] on this ring and buffers.
    pub fn run(
        &mut self,
        sock: RawFd,
        how: Multishot,
        rec: &mut Recorder,
        cancel: Cancel,
        sink: impl FnMut(&[u8]),
    ) -> io::Result<RecvCounts> {
        recv_multishot(&mut self.ring, &mut self.bufs, sock, how, rec, cancel, sink)
    }
}
