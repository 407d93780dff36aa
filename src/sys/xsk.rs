//! AF_XDP sockets (Documentation/networking/af_xdp.rst), written by the lab: the UMEM (the
//! packet memory user space shares with the kernel), its fill and completion rings, the RX and
//! TX rings, bind in copy or zero-copy mode, wake-ups and the socket's statistics.
//!
//! Each ring is a single-producer single-consumer array mmap'd from the socket: a producer and
//! a consumer index (free-running u32, masked by size - 1), a flags word (XDP_RING_NEED_WAKEUP)
//! and the descriptors. The side that produces writes descriptors, then publishes the new
//! producer index with release ordering; the consumer reads the producer index with acquire
//! ordering before it reads descriptors. Indices are cached locally and refreshed only when a
//! ring looks full or empty.
//!
//! Ownership of UMEM frames: a frame address is in exactly one place at a time — the lab's free
//! list, the fill ring, the kernel (receiving into it), the RX ring, the TX ring, the kernel
//! (sending it) or the completion ring. RX frames are lent to the caller's closure and go back
//! to the fill ring right after; TX frames come from the free list and return to it through the
//! completion ring.

use super::mmap::Mapping;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// One ring: `D` is u64 (fill, completion: frame addresses) or `xdp_desc` (RX, TX).
struct Ring<D: Copy> {
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut D,
    mask: u32,
    size: u32,
    cached_prod: u32,
    cached_cons: u32,
}

// SAFETY: the raw pointers point into `_map`, which moves with the ring.
unsafe impl<D: Copy> Send for Ring<D> {}

impl<D: Copy> Ring<D> {
    fn new(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
        what: &str,
    ) -> io::Result<Ring<D>> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<D>();
        let map = Mapping::shared(
            fd.as_fd(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_POPULATE,
            pgoff,
            what,
        )?;
        let base = map.ptr();
        // SAFETY: the offsets come from the kernel for this mapping and lie inside it; the
        // index words are u32, aligned, and only ever accessed atomically.
        let (producer, consumer, flags, descs) = unsafe {
            (
                base.add(off.producer as usize) as *const AtomicU32,
                base.add(off.consumer as usize) as *const AtomicU32,
                base.add(off.flags as usize) as *const AtomicU32,
                base.add(off.desc as usize) as *mut D,
            )
        };
        let mut r = Ring {
            _map: map,
            producer,
            consumer,
            flags,
            descs,
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
        };
        r.cached_prod = r.prod().load(Ordering::Relaxed);
        r.cached_cons = r.cons().load(Ordering::Relaxed);
        Ok(r)
    }
    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping (see new).
        unsafe { &*self.producer }
    }
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*self.consumer }
    }
    fn need_wakeup(&self) -> bool {
        // SAFETY: as above.
        unsafe { &*self.flags }.load(Ordering::Acquire) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // Producer side (fill, TX).
    fn free(&mut self) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free > 0 {
            return free;
        }
        self.cached_cons = self.cons().load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }
    fn write(&mut self, i: u32, d: D) {
        let slot = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot < size, inside the descriptor array; the slot is free (i < free()), so
        // the kernel does not read it until the producer index is published.
        unsafe { self.descs.add(slot).write_volatile(d) }
    }
    fn publish(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.prod().store(self.cached_prod, Ordering::Release);
    }

    // Consumer side (RX, completion).
    fn available(&mut self) -> u32 {
        let n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n > 0 {
            return n;
        }
        self.cached_prod = self.prod().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }
    fn read(&self, i: u32) -> D {
        let slot = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot < size; the kernel published this entry (i < available()) and does not
        // rewrite it until the consumer index moves past it.
        unsafe { self.descs.add(slot).read_volatile() }
    }
    fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.cons().store(self.cached_cons, Ordering::Release);
    }
}

/// How to bind.
#[derive(Debug, Clone, Copy)]
pub struct XskConfig {
    pub ifindex: u32,
    pub queue: u32,
    /// UMEM chunk size (2048 or 4096).
    pub frame_size: u32,
    /// UMEM frames (a power of two; also the fill and completion ring size).
    pub frames: u32,
    /// RX and TX ring entries (power of two); 0 leaves the ring out.
    pub rx_ring: u32,
    pub tx_ring: u32,
    /// XDP_ZEROCOPY (else XDP_COPY).
    pub zerocopy: bool,
    /// XDP_USE_NEED_WAKEUP: the kernel says when it needs a syscall to make progress.
    pub need_wakeup: bool,
}

/// The socket's drop counters (getsockopt XDP_STATISTICS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct XskStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// An AF_XDP socket with its own UMEM.
pub struct Xsk {
    // Field order is drop order: rings unmapped, then the socket closed, then the UMEM freed.
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Option<Ring<libc::xdp_desc>>,
    tx: Option<Ring<libc::xdp_desc>>,
    fd: OwnedFd,
    umem: Mapping,
    cfg: XskConfig,
    /// Frames owned by user space and not lent out (TX use).
    free: Vec<u64>,
    /// TX frames handed to the kernel and not yet completed.
    pub tx_outstanding: u32,
}

pub(crate) fn setsockopt<T>(
    fd: &impl AsRawFd,
    level: i32,
    name: i32,
    v: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: `v` is a live value of the type this option expects; the size passed is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setsockopt({what}): {e}")));
    }
    Ok(())
}

/// getsockopt for the plain-data uapi structs used here (all-zero is a valid value of each).
pub(crate) fn getsockopt<T: Copy>(
    fd: &impl AsRawFd,
    level: i32,
    name: i32,
    what: &str,
) -> io::Result<T> {
    // SAFETY: only called with C structs of integers, for which all-zero bytes are valid.
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, a live value of that size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("getsockopt({what}): {e}")));
    }
    Ok(v)
}

impl Xsk {
    /// Creates the socket, registers a UMEM, sets up the rings, maps them and binds to
    /// `cfg.ifindex`/`cfg.queue` (in the namespace the calling thread is in when the socket is
    /// created). The error names the step and the kernel's errno (EOPNOTSUPP for zero-copy on a
    /// driver without it).
    pub fn bind(cfg: XskConfig) -> io::Result<Xsk> {
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("socket(AF_XDP): {e}")));
        }
        // SAFETY: a descriptor socket(2) just returned; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = cfg.frame_size as usize * cfg.frames as usize;
        let umem = Mapping::anon(len, "mmap UMEM")?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr() as u64,
            len: len as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
        let n = cfg.frames;
        setsockopt(
            &fd,
            libc::SOL_XDP,
            libc::XDP_UMEM_FILL_RING,
            &n,
            "XDP_UMEM_FILL_RING",
        )?;
        setsockopt(
            &fd,
            libc::SOL_XDP,
            libc::XDP_UMEM_COMPLETION_RING,
            &n,
            "XDP_UMEM_COMPLETION_RING",
        )?;
        if cfg.rx_ring > 0 {
            setsockopt(
                &fd,
                libc::SOL_XDP,
                libc::XDP_RX_RING,
                &cfg.rx_ring,
                "XDP_RX_RING",
            )?;
        }
        if cfg.tx_ring > 0 {
            setsockopt(
                &fd,
                libc::SOL_XDP,
                libc::XDP_TX_RING,
                &cfg.tx_ring,
                "XDP_TX_RING",
            )?;
        }
        let off: libc::xdp_mmap_offsets = getsockopt(
            &fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            "XDP_MMAP_OFFSETS",
        )?;
        let fill = Ring::new(
            &fd,
            &off.fr,
            n,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            "mmap fill ring",
        )?;
        let comp = Ring::new(
            &fd,
            &off.cr,
            n,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "mmap completion ring",
        )?;
        let rx = (cfg.rx_ring > 0)
            .then(|| {
                Ring::new(
                    &fd,
                    &off.rx,
                    cfg.rx_ring,
                    libc::XDP_PGOFF_RX_RING as u64,
                    "mmap RX ring",
                )
            })
            .transpose()?;
        let tx = (cfg.tx_ring > 0)
            .then(|| {
                Ring::new(
                    &fd,
                    &off.tx,
                    cfg.tx_ring,
                    libc::XDP_PGOFF_TX_RING as u64,
                    "mmap TX ring",
                )
            })
            .transpose()?;
        let mut flags = if cfg.zerocopy {
            libc::XDP_ZEROCOPY
        } else {
            libc::XDP_COPY
        };
        if cfg.need_wakeup {
            flags |= libc::XDP_USE_NEED_WAKEUP;
        }
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: cfg.ifindex,
            sxdp_queue_id: cfg.queue,
            sxdp_shared_umem_fd: 0,
        };
        // A queue stays taken (EBUSY) until the previous socket on it is destroyed, which the
        // kernel defers past an RCU grace period and a work item after close(2): a socket
        // closed just before (the previous trial's) can hold it for a few hundred ms on a busy
        // machine. Retry for a while before calling the queue busy.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let r = loop {
            // SAFETY: `sa` is a live sockaddr_xdp and the length is its size.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            let busy = r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY);
            if !busy || std::time::Instant::now() >= deadline {
                break r;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "bind AF_XDP socket to ifindex {} queue {} ({} mode): {e}",
                    cfg.ifindex,
                    cfg.queue,
                    if cfg.zerocopy { "zero-copy" } else { "copy" }
                ),
            ));
        }
        let free = (0..n as u64).map(|i| i * cfg.frame_size as u64).collect();
        Ok(Xsk {
            fill,
            comp,
            rx,
            tx,
            fd,
            umem,
            cfg,
            free,
            tx_outstanding: 0,
        })
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Hands every free frame to the fill ring (receive side); loops because the ring may
    /// take fewer entries than asked. Returns how many were given.
    pub fn fill_all(&mut self) -> usize {
        let mut given = 0;
        while !self.free.is_empty() {
            let n = self.fill.free().min(self.free.len() as u32);
            if n == 0 {
                break;
            }
            for i in 0..n {
                let a = self.free.pop().expect("n <= free.len()");
                self.fill.write(i, a);
            }
            self.fill.publish(n);
            given += n as usize;
        }
        given
    }

    /// Takes up to `max` received frames off the RX ring, calls `f` with each frame's bytes,
    /// and gives the frames straight back to the fill ring. Returns how many were taken.
    pub fn receive(&mut self, max: u32, mut f: impl FnMut(&[u8])) -> u32 {
        let rx = self.rx.as_mut().expect("socket bound with an RX ring");
        let n = rx.available().min(max);
        if n == 0 {
            return 0;
        }
        let base = self.umem.ptr();
        let frames_len = self.umem.len();
        for i in 0..n {
            let d = rx.read(i);
            let (a, l) = (d.addr as usize, d.len as usize);
            if a + l <= frames_len {
                // SAFETY: the descriptor lies inside the UMEM (checked) and the frame is ours
                // until it goes back to the fill ring below; the kernel does not write it.
                let bytes = unsafe { std::slice::from_raw_parts(base.add(a), l) };
                f(bytes);
            }
            // Chunk-aligned mode: the chunk's start is the address rounded down.
            self.free.push(d.addr & !(self.cfg.frame_size as u64 - 1));
        }
        rx.release(n);
        self.fill_all();
        n
    }

    /// Whether the kernel asked for a wake-up on the fill ring (receive with NEED_WAKEUP).
    pub fn fill_needs_wakeup(&self) -> bool {
        self.fill.need_wakeup()
    }

    /// Whether the kernel asked for a wake-up on the TX ring.
    pub fn tx_needs_wakeup(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.need_wakeup())
    }

    /// Frames the RX ring holds now.
    pub fn rx_pending(&mut self) -> u32 {
        self.rx.as_mut().map_or(0, |r| r.available())
    }

    /// Reclaims completed TX frames into the free list; returns how many.
    pub fn complete(&mut self) -> u32 {
        let n = self.comp.available();
        for i in 0..n {
            let a = self.comp.read(i);
            self.free.push(a);
        }
        self.comp.release(n);
        self.tx_outstanding -= n.min(self.tx_outstanding);
        n
    }

    /// Queues up to `max` frames on the TX ring; `fill(i, frame)` writes frame `i` of this
    /// batch into a UMEM chunk and returns its length. Returns how many were queued (fewer when
    /// the ring or the free list runs out). Does not kick the kernel: see [`Xsk::kick_tx`].
    pub fn queue_tx(&mut self, max: u32, mut fill: impl FnMut(u32, &mut [u8]) -> usize) -> u32 {
        let tx = self.tx.as_mut().expect("socket bound with a TX ring");
        let n = tx.free().min(max).min(self.free.len() as u32);
        let base = self.umem.ptr();
        let fs = self.cfg.frame_size as usize;
        for i in 0..n {
            let a = self.free.pop().expect("n <= free.len()");
            // SAFETY: `a` is a chunk start inside the UMEM from the free list: user space owns
            // it (not in any ring), so nothing else reads or writes it now.
            let chunk = unsafe { std::slice::from_raw_parts_mut(base.add(a as usize), fs) };
            let len = fill(i, chunk).min(fs);
            tx.write(
                i,
                libc::xdp_desc {
                    addr: a,
                    len: len as u32,
                    options: 0,
                },
            );
        }
        tx.publish(n);
        self.tx_outstanding += n;
        n
    }

    /// sendto(fd, NULL, 0, MSG_DONTWAIT): makes the kernel process the TX ring (copy mode
    /// always needs it; with NEED_WAKEUP only when [`Xsk::tx_needs_wakeup`]). EAGAIN/EBUSY/
    /// ENOBUFS mean "try again" and are not errors.
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a send of zero bytes with no buffer; the kernel reads the TX ring instead.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => {}
                _ => return Err(io::Error::new(e.kind(), format!("AF_XDP TX kick: {e}"))),
            }
        }
        Ok(())
    }

    /// recvfrom(fd, NULL, 0, MSG_DONTWAIT): the receive-side wake-up; with SO_BUSY_POLL it
    /// also polls the device's NAPI from this thread.
    pub fn kick_rx(&self) {
        // SAFETY: a receive of zero bytes into no buffer; only side effects in the kernel.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits up to `timeout_ms` for frames (poll POLLIN). Returns whether any are ready.
    pub fn wait_rx(&self, timeout_ms: i32) -> io::Result<bool> {
        super::pkt::poll_one(self.fd.as_raw_fd(), libc::POLLIN, timeout_ms)
    }

    /// Busy polling on this socket: SO_PREFER_BUSY_POLL, SO_BUSY_POLL (µs) and
    /// SO_BUSY_POLL_BUDGET (frames per poll).
    pub fn busy_poll(&self, usecs: i32, budget: i32) -> io::Result<()> {
        let one = 1i32;
        setsockopt(
            &self.fd,
            libc::SOL_SOCKET,
            libc::SO_PREFER_BUSY_POLL,
            &one,
            "SO_PREFER_BUSY_POLL",
        )?;
        setsockopt(
            &self.fd,
            libc::SOL_SOCKET,
            libc::SO_BUSY_POLL,
            &usecs,
            "SO_BUSY_POLL",
        )?;
        setsockopt(
            &self.fd,
            libc::SOL_SOCKET,
            libc::SO_BUSY_POLL_BUDGET,
            &budget,
            "SO_BUSY_POLL_BUDGET",
        )
    }

    /// The socket's counters (XDP_STATISTICS).
    pub fn stats(&self) -> io::Result<XskStats> {
        let s: libc::xdp_statistics = getsockopt(
            &self.fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            "XDP_STATISTICS",
        )?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}
