//! Frame-level classic paths for `packet_io`: AF_PACKET sockets (sendmmsg, the TPACKET_V3
//! receive ring, the TX ring with or without PACKET_QDISC_BYPASS), batched UDP
//! sendmmsg/recvmmsg, and the ethtool call that turns GRO on (packet(7), tpacket docs in
//! Documentation/networking/packet_mmap.rst).

use super::consts::*;
use super::mmap::Mapping;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

fn check(r: i64, what: &str) -> io::Result<i64> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(r)
}

fn setopt<T>(fd: RawFd, level: i32, name: i32, v: &T, what: &str) -> io::Result<()> {
    // SAFETY: `v` is a live value of the type the option expects; the size is its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(r as i64, what).map(|_| ())
}

/// An AF_PACKET raw socket bound to `ifindex` (all protocols), in the calling thread's
/// namespace.
pub fn packet_socket() -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2).
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    check(raw as i64, "socket(AF_PACKET)")?;
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok(fd)
}

/// Binds an AF_PACKET socket to `ifindex`.
pub fn packet_bind(fd: &OwnedFd, ifindex: u32) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sa.sll_ifindex = ifindex as i32;
    // SAFETY: a live sockaddr_ll and its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check(r as i64, "bind(AF_PACKET)").map(|_| ())
}

/// PACKET_QDISC_BYPASS: frames go straight to the driver's xmit, skipping the qdisc layer.
pub fn qdisc_bypass(fd: &OwnedFd) -> io::Result<()> {
    let one = 1i32;
    setopt(
        fd.as_raw_fd(),
        libc::SOL_PACKET,
        libc::PACKET_QDISC_BYPASS,
        &one,
        "PACKET_QDISC_BYPASS",
    )
}

/// SO_RCVBUF (SO_RCVBUFFORCE as root, past rmem_max).
pub fn rcvbuf(fd: RawFd, bytes: i32) -> io::Result<()> {
    setopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &bytes,
        "SO_RCVBUFFORCE",
    )
    .or_else(|_| setopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes, "SO_RCVBUF"))
}

/// One mmsghdr per iovec, for sendmmsg(2) and recvmmsg(2): message i is `iovs[i]` alone.
fn mmsghdrs(iovs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovs.iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid msghdr (no name, no control).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

/// sendmmsg(2) of `bufs`, one message each, on a connected or bound socket. Returns how many
/// the kernel took (EAGAIN/ENOBUFS: 0).
pub fn sendmmsg(fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    let mut msgs = mmsghdrs(&mut iovs);
    // SAFETY: msgs and the iovecs/buffers they point to live across the call; the kernel only
    // reads the buffers and writes msg_len.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::ENOBUFS) => Ok(0),
            _ => Err(io::Error::new(e.kind(), format!("sendmmsg: {e}"))),
        };
    }
    Ok(r as usize)
}

/// Buffers for recvmmsg(2), reused across calls.
pub struct MmsgBufs {
    data: Vec<u8>,
    size: usize,
    lens: Vec<usize>,
}

impl MmsgBufs {
    pub fn new(batch: usize, size: usize) -> MmsgBufs {
        MmsgBufs {
            data: vec![0; batch * size],
            size,
            lens: vec![0; batch],
        }
    }
    /// Message `i` of the last receive.
    pub fn msg(&self, i: usize) -> &[u8] {
        &self.data[i * self.size..i * self.size + self.lens[i].min(self.size)]
    }
}

/// recvmmsg(2) into `bufs`, MSG_DONTWAIT when `nonblock`. Returns the count (0 on EAGAIN).
pub fn recvmmsg(fd: RawFd, bufs: &mut MmsgBufs, nonblock: bool) -> io::Result<usize> {
    let size = bufs.size;
    let n = bufs.lens.len();
    let base = bufs.data.as_mut_ptr();
    let mut iovs: Vec<libc::iovec> = (0..n)
        .map(|i| libc::iovec {
            // SAFETY: i * size is inside `data` (batch * size bytes).
            iov_base: unsafe { base.add(i * size) }.cast(),
            iov_len: size,
        })
        .collect();
    let mut msgs = mmsghdrs(&mut iovs);
    let flags = if nonblock { libc::MSG_DONTWAIT } else { 0 };
    // SAFETY: every iovec points to a distinct `size`-byte slice of `data`, alive and not
    // otherwise borrowed during the call.
    let r = unsafe { libc::recvmmsg(fd, msgs.as_mut_ptr(), n as u32, flags, std::ptr::null_mut()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(0),
            _ => Err(io::Error::new(e.kind(), format!("recvmmsg: {e}"))),
        };
    }
    for (i, m) in msgs.iter().take(r as usize).enumerate() {
        bufs.lens[i] = m.msg_len as usize;
    }
    Ok(r as usize)
}

/// poll(2) one descriptor for `events`; false on timeout or EINTR.
pub fn poll_one(fd: RawFd, events: i16, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

/// `tp_packets` and `tp_drops` since the last read (PACKET_STATISTICS resets them).
pub fn packet_stats(fd: &OwnedFd) -> io::Result<(u32, u32)> {
    // SAFETY: all-zero is a valid tpacket_stats_v3.
    let mut s: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `s`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut s as *mut libc::tpacket_stats_v3).cast(),
            &mut len,
        )
    };
    check(r as i64, "PACKET_STATISTICS")?;
    Ok((s.tp_packets, s.tp_drops))
}

/// A mmap'd TPACKET_V3 ring (RX: blocks of frames the kernel fills; TX: fixed frame slots).
pub struct PacketRing {
    // Field order is drop order: the ring unmapped, then the socket closed.
    map: Mapping,
    pub fd: OwnedFd,
    block_size: usize,
    blocks: usize,
    frame_size: usize,
    frames: usize,
    next: usize,
}

fn version_v3(fd: &OwnedFd) -> io::Result<()> {
    let v = libc::tpacket_versions::TPACKET_V3 as i32;
    setopt(
        fd.as_raw_fd(),
        libc::SOL_PACKET,
        libc::PACKET_VERSION,
        &v,
        "PACKET_VERSION TPACKET_V3",
    )
}

/// Offset of a TX frame's data from its slot: the header, aligned (tp_hdrlen less the
/// sockaddr_ll the kernel reserves on receive).
pub const TX_DATA_OFF: usize = libc::TPACKET3_HDRLEN - std::mem::size_of::<libc::sockaddr_ll>();

impl PacketRing {
    /// Asks for the ring `req` (`opt`: PACKET_RX_RING or PACKET_TX_RING), maps it and binds the
    /// socket to `ifindex`: what both directions share once their geometry is chosen.
    fn set_up(
        fd: OwnedFd,
        ifindex: u32,
        opt: libc::c_int,
        name: &str,
        req: &libc::tpacket_req3,
    ) -> io::Result<PacketRing> {
        setopt(fd.as_raw_fd(), libc::SOL_PACKET, opt, req, name)?;
        let (block_size, blocks) = (req.tp_block_size as usize, req.tp_block_nr as usize);
        let map = Mapping::shared(
            fd.as_fd(),
            block_size * blocks,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_POPULATE,
            0,
            "mmap AF_PACKET ring",
        )?;
        packet_bind(&fd, ifindex)?;
        Ok(PacketRing {
            map,
            fd,
            block_size,
            blocks,
            frame_size: req.tp_frame_size as usize,
            frames: req.tp_frame_nr as usize,
            next: 0,
        })
    }

    /// A TPACKET_V3 receive ring of `blocks` x `block_size` on a socket bound to `ifindex`;
    /// blocks are retired after `retire_ms` even when not full.
    pub fn rx(
        ifindex: u32,
        block_size: u32,
        blocks: u32,
        retire_ms: u32,
    ) -> io::Result<PacketRing> {
        let fd = packet_socket()?;
        version_v3(&fd)?;
        let frame = 4096u32; // a page: frames up to the lab's largest (3840 B) fit whole
        let req = libc::tpacket_req3 {
            tp_block_size: block_size,
            tp_block_nr: blocks,
            tp_frame_size: frame,
            tp_frame_nr: block_size / frame * blocks,
            tp_retire_blk_tov: retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        Self::set_up(fd, ifindex, libc::PACKET_RX_RING, "PACKET_RX_RING", &req)
    }

    fn status_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: `off` is the offset of a u32 status word inside the mapping (callers pass
        // block_status or tp_status offsets of slots < len); 4-byte aligned.
        unsafe { &*(self.map.ptr().add(off) as *const AtomicU32) }
    }

    /// Hands the frames of the next retired block to `f` and returns the block to the kernel.
    /// Returns the frame count (0: the block is still the kernel's).
    pub fn rx_block(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let off = self.next * self.block_size;
        // struct tpacket_block_desc: version u32, offset_to_priv u32, then tpacket_hdr_v1:
        // block_status u32 @8, num_pkts u32 @12, offset_to_first_pkt u32 @16.
        if self.status_at(off + 8).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return 0;
        }
        // SAFETY: the block is ours (TP_STATUS_USER, acquired above); the header fields and
        // the frames the kernel wrote lie inside this block.
        let (n, mut p) = unsafe {
            let b = self.map.ptr().add(off);
            (
                (b.add(12) as *const u32).read() as usize,
                (b.add(16) as *const u32).read() as usize,
            )
        };
        for _ in 0..n {
            if p + 48 > self.block_size {
                break;
            }
            // SAFETY: a tpacket3_hdr at block offset p (inside the block, checked); its data
            // at tp_mac for tp_snaplen bytes, checked against the block's end.
            unsafe {
                let h = &*(self.map.ptr().add(off + p) as *const libc::tpacket3_hdr);
                let (mac, snap) = (h.tp_mac as usize, h.tp_snaplen as usize);
                if p + mac + snap <= self.block_size {
                    f(std::slice::from_raw_parts(
                        self.map.ptr().add(off + p + mac),
                        snap,
                    ));
                }
                if h.tp_next_offset == 0 {
                    break;
                }
                p += h.tp_next_offset as usize;
            }
        }
        self.status_at(off + 8)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % self.blocks;
        n
    }

    /// A TPACKET_V3 transmit ring of `frames` slots of `frame_size` on a socket bound to
    /// `ifindex`, with PACKET_QDISC_BYPASS when `bypass`.
    pub fn tx(ifindex: u32, frame_size: u32, frames: u32, bypass: bool) -> io::Result<PacketRing> {
        let fd = packet_socket()?;
        version_v3(&fd)?;
        if bypass {
            qdisc_bypass(&fd)?;
        }
        let per_block = 4096 / frame_size.min(4096);
        let blocks = frames.div_ceil(per_block.max(1));
        let block_size = if frame_size > 4096 { frame_size } else { 4096 };
        let frames = blocks * (block_size / frame_size);
        let req = libc::tpacket_req3 {
            tp_block_size: block_size,
            tp_block_nr: blocks,
            tp_frame_size: frame_size,
            tp_frame_nr: frames,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        Self::set_up(fd, ifindex, libc::PACKET_TX_RING, "PACKET_TX_RING", &req)
    }

    fn slot(&self, i: usize) -> usize {
        let per_block = self.block_size / self.frame_size;
        (i / per_block) * self.block_size + (i % per_block) * self.frame_size
    }

    /// Queues up to `max` frames in free TX slots (`fill(i, data)` writes frame i, returns its
    /// length), marking each TP_STATUS_SEND_REQUEST. Returns the count. A slot whose status
    /// says WRONG_FORMAT is an error (the kernel refused the frame).
    pub fn tx_queue(
        &mut self,
        max: usize,
        mut fill: impl FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        let room = self.frame_size - TX_DATA_OFF;
        let mut n = 0;
        while n < max {
            let off = self.slot(self.next);
            // tpacket3_hdr.tp_status at 20
            let st = self.status_at(off + 20).load(Ordering::Acquire);
            if st & TP_STATUS_WRONG_FORMAT != 0 {
                return Err(io::Error::other("AF_PACKET TX ring: frame in wrong format"));
            }
            if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
                break; // the kernel still has it
            }
            // SAFETY: the slot is free (status available, acquired above): user space owns
            // it until the status store below. Header and data lie inside the slot.
            let len = unsafe {
                let data =
                    std::slice::from_raw_parts_mut(self.map.ptr().add(off + TX_DATA_OFF), room);
                let len = fill(n, data).min(room);
                let h = &mut *(self.map.ptr().add(off) as *mut libc::tpacket3_hdr);
                h.tp_next_offset = 0;
                h.tp_len = len as u32;
                h.tp_snaplen = len as u32;
                len
            };
            let _ = len;
            self.status_at(off + 20)
                .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.next = (self.next + 1) % self.frames;
            n += 1;
        }
        Ok(n)
    }

    /// send(fd, NULL, 0): the kernel transmits every slot marked SEND_REQUEST. With
    /// MSG_DONTWAIT it returns once queued.
    pub fn tx_kick(&self) -> io::Result<()> {
        // SAFETY: a send with no buffer; the kernel reads the TX ring.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOBUFS) => {}
                _ => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("AF_PACKET TX ring send: {e}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Frames still owned by the kernel (SEND_REQUEST or SENDING).
    pub fn tx_pending(&self) -> usize {
        (0..self.frames)
            .filter(|&i| {
                self.status_at(self.slot(i) + 20).load(Ordering::Acquire)
                    & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING)
                    != 0
            })
            .count()
    }
}

/// Turns GRO on or off on `ifname` (SIOCETHTOOL ETHTOOL_SGRO), in the calling thread's
/// namespace.
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut v = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: on as u32,
    };
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    // SAFETY: plain socket(2) for the ioctl.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(s as i64, "socket for SIOCETHTOOL")?;
    // SAFETY: we own the descriptor just created.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: `ifr` names the device and points to `v`, both alive across the call.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    check(r as i64, &format!("SIOCETHTOOL ETHTOOL_SGRO {ifname}")).map(|_| ())
}
