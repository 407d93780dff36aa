//! The loops of `packet_io`: the lab's frame format and its integrity tracker, the kernel's
//! live-frames generator, the receivers (AF_XDP, UDP recvmmsg, AF_PACKET TPACKET_V3) and the
//! senders (AF_XDP TX, AF_PACKET TX ring and sendmmsg, UDP sendmmsg).
//!
//! **Frame.** Ethernet (A's MAC -> B's MAC, IPv4), IPv4 10.203.0.1 -> 10.203.0.2 (DF, valid
//! header checksum), UDP 9000 -> 9001 (checksum 0: none), then the lab's header at byte 42:
//! u16 0, magic `ZCPK` (44), the sequence number (48, u64), the xxh3-64 of the bytes from 60 on
//! truncated to u32 (56), then the fill (60..). The generator's program writes the sequence
//! number into each frame it sends; the checksum does not cover it.
//!
//! **Integrity.** The receiver checks every frame: not one of ours (another protocol, no magic)
//! is counted as foreign and ignored; a wrong length, a wrong checksum or an impossible sequence
//! number is corrupt; a sequence number seen before is a duplicate; one below the highest seen
//! so far is reordered. Lost = offered - distinct received. A trial with a corrupt or duplicate
//! frame fails; loss is the experiment's subject and is reported.

use crate::measure::{Usage, usage};
use crate::net::pktns::{self, PktNet};
use crate::results::Integrity;
use crate::ring::{Ring, RingConfig};
use crate::sys::bpf::{self, Link, Map, Prog, XdpMode};
use crate::sys::consts::XDP_PASS;
use crate::sys::pkt::{self, MmsgBufs, PacketRing};
use crate::sys::xsk::{Xsk, XskConfig, XskStats};
use crate::uring::{self, pktio::UdpMultishot};
use std::fs::File;
use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const MAGIC_OFF: usize = 44;
pub const SEQ_OFF: usize = 48;
pub const CSUM_OFF: usize = 56;
pub const FILL_OFF: usize = 60;
/// The smallest frame that holds the lab's header.
pub const MIN_FRAME: usize = FILL_OFF;
/// Buffer size everywhere (UMEM chunks, ring slots, datagram buffers): a page.
pub const BUF: usize = 4096;
/// The largest frame the lab sends: what one page holds after the headroom and bookkeeping a
/// live-frames test run keeps in it (3408 B measured on Linux 6.18, x86-64, 4 KiB pages;
/// 3409 is EINVAL). Native XDP on veth and AF_XDP chunks of a page take a little more.
pub const MAX_FRAME: usize = 3408;
/// Bytes before the UDP payload (Ethernet 14 + IPv4 20 + UDP 8).
pub const L4_OFF: usize = 42;
const MAGIC: &[u8; 4] = b"ZCPK";
const SPORT: u16 = 9000;
const DPORT: u16 = 9001;
/// Receivers stop this long after the last frame once the sender is done.
pub const DRAIN_IDLE: Duration = Duration::from_millis(5);

fn csum32(b: &[u8]) -> u32 {
    crate::hash::xxh3_64(b) as u32
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in h.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Writes the lab's header and fill for frame `seq` into `p` (the UDP payload, `len - 42`
/// bytes). `fill_seed` varies the fill per frame (0 for the generator's template).
pub fn write_payload(p: &mut [u8], seq: u64, fill_seed: u64) {
    p[0..2].fill(0);
    p[MAGIC_OFF - L4_OFF..SEQ_OFF - L4_OFF].copy_from_slice(MAGIC);
    p[SEQ_OFF - L4_OFF..CSUM_OFF - L4_OFF].copy_from_slice(&seq.to_ne_bytes());
    let fill = &mut p[FILL_OFF - L4_OFF..];
    for (i, b) in fill.iter_mut().enumerate() {
        *b = (fill_seed as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
    let c = csum32(&p[FILL_OFF - L4_OFF..]);
    p[CSUM_OFF - L4_OFF..FILL_OFF - L4_OFF].copy_from_slice(&c.to_ne_bytes());
}

/// Writes a whole frame of `len` bytes (A -> B) into `f`; returns `len`.
pub fn write_frame(net: &PktNet, f: &mut [u8], len: usize, seq: u64, fill_seed: u64) -> usize {
    let f = &mut f[..len];
    f[0..6].copy_from_slice(&net.b.mac);
    f[6..12].copy_from_slice(&net.a.mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[4..6].fill(0);
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&net.a.addr.octets());
    ip[16..20].copy_from_slice(&net.b.addr.octets());
    let c = ip_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&SPORT.to_be_bytes());
    udp[2..4].copy_from_slice(&DPORT.to_be_bytes());
    udp[4..6].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    udp[6..8].fill(0);
    write_payload(&mut f[L4_OFF..], seq, fill_seed);
    len
}

/// What a receiver saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tracker {
    #[serde(skip)]
    seen: Vec<u64>,
    /// Frame length expected (whole frame).
    #[serde(skip)]
    len: usize,
    #[serde(skip)]
    max: Option<u64>,
    pub frames: u64,
    pub unique: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub corrupt: u64,
    pub foreign: u64,
}

/// Sequence numbers above this are impossible in a trial (a corrupt frame).
const SEQ_LIMIT: u64 = 1 << 34;

impl Tracker {
    pub fn new(frame_len: usize) -> Tracker {
        Tracker {
            len: frame_len,
            ..Default::default()
        }
    }

    /// A whole Ethernet frame.
    pub fn frame(&mut self, f: &[u8]) {
        if f.len() < MIN_FRAME || f[12..14] != [0x08, 0x00] || f[23] != 17 || &f[44..48] != MAGIC {
            self.foreign += 1;
            return;
        }
        self.payload_of(f.len(), &f[L4_OFF..]);
    }

    /// A UDP payload (the frame from byte 42).
    pub fn payload(&mut self, p: &[u8]) {
        if p.len() < MIN_FRAME - L4_OFF || &p[2..6] != MAGIC {
            self.foreign += 1;
            return;
        }
        self.payload_of(p.len() + L4_OFF, p);
    }

    fn payload_of(&mut self, frame_len: usize, p: &[u8]) {
        self.frames += 1;
        self.bytes += frame_len as u64;
        let seq = u64::from_ne_bytes(p[6..14].try_into().expect("8 bytes"));
        let c = u32::from_ne_bytes(p[14..18].try_into().expect("4 bytes"));
        if frame_len != self.len || seq >= SEQ_LIMIT || csum32(&p[18..]) != c {
            self.corrupt += 1;
            return;
        }
        let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if w >= self.seen.len() {
            self.seen.resize((w + 1).next_power_of_two(), 0);
        }
        if self.seen[w] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[w] |= bit;
        self.unique += 1;
        match self.max {
            Some(m) if seq < m => self.reordered += 1,
            _ => self.max = Some(seq),
        }
    }

    /// The integrity record: fails on corruption or duplicates (or nothing received), reports
    /// loss against `offered`.
    pub fn integrity(&self, offered: u64) -> Integrity {
        let ok =
            self.corrupt == 0 && self.duplicates == 0 && self.unique > 0 && self.unique <= offered;
        Integrity {
            ok,
            method: "per frame: sequence number and xxh3 checksum of the payload (loss reported, not failed)".into(),
            expected: format!("{offered} frames offered, none corrupt or duplicated"),
            got: format!(
                "{} distinct, {} lost, {} duplicated, {} reordered, {} corrupt, {} foreign",
                self.unique,
                offered.saturating_sub(self.unique),
                self.duplicates,
                self.reordered,
                self.corrupt,
                self.foreign
            ),
            // Loss is reported above and in the row's figures, not as an integrity failure:
            // the bytes compared are those of the frames that arrived, each checked intact.
            bytes_expected: (self.unique + self.corrupt) * self.len as u64,
            bytes_got: self.unique * self.len as u64,
        }
    }
}

/// The kernel's frame generator: an XDP_TX program run by BPF_PROG_TEST_RUN in live-frames
/// mode on A's end of the pair, stamping a sequence number into each frame.
pub struct Generator {
    prog: Prog,
    counter: Map,
    pub frame: Vec<u8>,
}

/// What a generator or sink thread reports.
pub struct SideReport {
    pub frames: u64,
    pub usage: Usage,
    pub elapsed: Duration,
}

impl Generator {
    pub fn new(net: &PktNet, frame_len: usize) -> io::Result<Generator> {
        let counter = Map::counter()?;
        let prog = bpf::load_xdp(
            "gen_tx",
            &bpf::stamp_and_tx(counter.fd.as_raw_fd(), SEQ_OFF as i16),
        )?;
        let mut frame = vec![0u8; frame_len];
        write_frame(net, &mut frame, frame_len, 0, 0);
        Ok(Generator {
            prog,
            counter,
            frame,
        })
    }

    /// Offers `frames` frames out of A's device (stops early when `stop` is set), in this
    /// thread, which must be in A's namespace. Returns the frames offered.
    pub fn run(&self, ifindex: u32, frames: u64, batch: u32, stop: &AtomicBool) -> io::Result<u64> {
        self.counter.write_u64(0)?;
        let mut left = frames;
        while left > 0 && !stop.load(Ordering::Relaxed) {
            let n = left.min(1 << 16) as u32;
            match bpf::run_live(&self.prog, &self.frame, ifindex, n, batch) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("BPF_PROG_TEST_RUN (live frames): {e}"),
                    ));
                }
            }
            left -= n as u64;
        }
        self.counter.read_u64()
    }

    /// [`Generator::run`] on a thread of its own in `ns`, as `run` says; `done` holds the
    /// frames offered (+1, so 0 means still running) when it ends.
    pub fn spawn<'s>(
        &'s self,
        s: &'s std::thread::Scope<'s, '_>,
        ns: &'s File,
        run: GenRun,
        stop: &'s AtomicBool,
        done: &'s AtomicU64,
    ) -> std::thread::ScopedJoinHandle<'s, io::Result<SideReport>> {
        s.spawn(move || {
            let r = (|| {
                pktns::enter(ns)?;
                crate::net::peers::start_peer(run.cpu)?;
                let u0 = usage::thread()?;
                let t0 = Instant::now();
                let n = self.run(run.ifindex, run.frames, run.batch, stop)?;
                Ok(SideReport {
                    frames: n,
                    usage: usage::thread()?.since(&u0),
                    elapsed: t0.elapsed(),
                })
            })();
            let n = r.as_ref().map_or(0, |r| r.frames);
            done.store(n + 1, Ordering::Release);
            r
        })
    }
}

/// One generator run: out of `ifindex`, from a thread pinned to `cpu`, `frames` frames in
/// batches of `batch`.
#[derive(Debug, Clone, Copy)]
pub struct GenRun {
    pub ifindex: u32,
    pub cpu: usize,
    pub frames: u64,
    pub batch: u32,
}

/// How an AF_XDP consumer waits for frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// poll(2) when the RX ring is empty.
    Poll,
    /// Spin on the ring, with recvfrom(MSG_DONTWAIT) driving the device's NAPI (SO_BUSY_POLL).
    BusyPoll,
}

/// An AF_XDP receiver on B: socket, XSKMAP and the redirect program attached by link.
pub struct XskRx {
    pub xsk: Xsk,
    _map: Map,
    _prog: Prog,
    _link: Link,
}

/// Binds an AF_XDP socket on B's device queue 0 and attaches the redirect program
/// (`mode`). Must run in B's namespace. In generic mode GRO is turned on so the veth peer's
/// NAPI runs (frames sent by XDP_TX from A need it).
pub fn xsk_rx(
    net: &PktNet,
    mode: XdpMode,
    zerocopy: bool,
    need_wakeup: bool,
    ring: u32,
) -> io::Result<XskRx> {
    let cfg = XskConfig {
        ifindex: net.b.ifindex,
        queue: 0,
        frame_size: BUF as u32,
        frames: (ring * 2).max(2048),
        rx_ring: ring,
        tx_ring: 0,
        zerocopy,
        need_wakeup,
    };
    let ifname = net.b.ifname.clone();
    net.in_b(move || {
        if mode == XdpMode::Generic {
            pkt::set_gro(&ifname, true)?;
        }
        let mut xsk = Xsk::bind(cfg)?;
        xsk.fill_all();
        let map = Map::xskmap(1)?;
        map.set_xsk(0, xsk.raw_fd())?;
        let prog = bpf::load_xdp("xsk_redirect", &bpf::redirect_to_xsk(map.fd.as_raw_fd()))?;
        let link = bpf::attach_xdp(&prog, cfg.ifindex, mode)?;
        Ok(XskRx {
            xsk,
            _map: map,
            _prog: prog,
            _link: link,
        })
    })
}

/// An XDP_PASS program on B's device (native), so frames sent by XDP_TX reach the stack.
pub struct PassProg {
    _prog: Prog,
    _link: Link,
}

pub fn pass_on_b(net: &PktNet) -> io::Result<PassProg> {
    let idx = net.b.ifindex;
    net.in_b(move || {
        let prog = bpf::load_xdp("pass", &bpf::return_action(XDP_PASS))?;
        let link = bpf::attach_xdp(&prog, idx, XdpMode::Native)?;
        Ok(PassProg {
            _prog: prog,
            _link: link,
        })
    })
}

/// A receiver the measured thread drives.
pub enum Receiver {
    Xsk(XskRx, Wait),
    Udp(UdpSocket, MmsgBufs),
    Ring(PacketRing),
    Uring(UdpMultishot),
}

impl Receiver {
    /// Takes what is ready into `t`; returns the frame count (0: nothing ready).
    fn take(&mut self, t: &mut Tracker, batch: u32) -> io::Result<u64> {
        Ok(match self {
            Receiver::Xsk(r, _) => r.xsk.receive(batch, |f| t.frame(f)) as u64,
            Receiver::Udp(s, bufs) => {
                let n = pkt::recvmmsg(s.as_raw_fd(), bufs, true)?;
                for i in 0..n {
                    t.payload(bufs.msg(i));
                }
                n as u64
            }
            Receiver::Ring(r) => r.rx_block(|f| t.frame(f)) as u64,
            Receiver::Uring(u) => u.receive(|p| t.payload(p))?,
        })
    }

    /// Waits a little for more (or spins, for busy polling).
    fn idle(&mut self) -> io::Result<()> {
        match self {
            Receiver::Xsk(r, Wait::Poll) => {
                r.xsk.wait_rx(1)?;
            }
            Receiver::Xsk(r, Wait::BusyPoll) => r.xsk.kick_rx(),
            Receiver::Udp(s, _) => {
                pkt::poll_one(s.as_raw_fd(), libc::POLLIN, 1)?;
            }
            Receiver::Ring(r) => {
                pkt::poll_one(r.fd.as_raw_fd(), libc::POLLIN, 1)?;
            }
            // Waits in io_uring_enter for a CQE; what arrives is taken on the next call.
            Receiver::Uring(u) => {
                u.wait(1)?;
            }
        }
        Ok(())
    }

    /// The receiver's own loss counters, by name.
    pub fn losses(&self, extra: &mut Vec<(&'static str, f64)>) {
        match self {
            Receiver::Xsk(r, _) => {
                if let Ok(s) = r.xsk.stats() {
                    xsk_losses(&s, extra);
                }
            }
            Receiver::Udp(..) => {}
            Receiver::Uring(u) => extra.push(("uring_rearms", u.rearms as f64)),
            Receiver::Ring(r) => {
                if let Ok((_, drops)) = pkt::packet_stats(&r.fd) {
                    extra.push(("tp_drops", drops as f64));
                }
            }
        }
    }
}

pub fn xsk_losses(s: &XskStats, extra: &mut Vec<(&'static str, f64)>) {
    extra.push(("xdp_rx_dropped", s.rx_dropped as f64));
    extra.push(("xdp_rx_ring_full", s.rx_ring_full as f64));
    extra.push((
        "xdp_rx_fill_ring_empty_descs",
        s.rx_fill_ring_empty_descs as f64,
    ));
    extra.push(("xdp_tx_ring_empty_descs", s.tx_ring_empty_descs as f64));
    extra.push(("xdp_rx_invalid_descs", s.rx_invalid_descs as f64));
    extra.push(("xdp_tx_invalid_descs", s.tx_invalid_descs as f64));
}

/// A UDP socket in B bound to the lab's port, with a large receive buffer.
pub fn udp_rx(net: &PktNet, batch: usize) -> io::Result<Receiver> {
    let addr = net.b.addr;
    let s = net.in_b(move || {
        let s = UdpSocket::bind(SocketAddrV4::new(addr, DPORT))?;
        pkt::rcvbuf(s.as_raw_fd(), 8 << 20)?;
        Ok(s)
    })?;
    Ok(Receiver::Udp(s, MmsgBufs::new(batch, BUF)))
}

/// A TPACKET_V3 receive ring on B's device.
pub fn ring_rx(net: &PktNet) -> io::Result<Receiver> {
    let idx = net.b.ifindex;
    Ok(Receiver::Ring(
        net.in_b(move || PacketRing::rx(idx, 1 << 20, 8, 2))?,
    ))
}

/// Drains `rx` into `t` until the sender is done (`done` non-zero: frames offered + 1) and
/// either every offered frame arrived or nothing came for [`DRAIN_IDLE`]. `on_batch` is called
/// with each non-empty batch's size (the latency histogram).
pub fn drain(
    rx: &mut Receiver,
    t: &mut Tracker,
    batch: u32,
    done: &AtomicU64,
    mut on_batch: impl FnMut(u64),
) -> io::Result<()> {
    let mut last = Instant::now();
    loop {
        let n = rx.take(t, batch)?;
        if n > 0 {
            on_batch(n);
            last = Instant::now();
            continue;
        }
        let d = done.load(Ordering::Acquire);
        if d > 0 && (t.unique >= d - 1 || last.elapsed() >= DRAIN_IDLE) {
            return Ok(());
        }
        if crate::sys::signal::Cancel::process().is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        rx.idle()?;
    }
}

/// How the measured side transmits.
pub enum Sender {
    /// AF_XDP socket on A (copy mode), `need_wakeup`.
    Xsk(Xsk, bool),
    /// AF_PACKET TX ring on A.
    Ring(PacketRing),
    /// AF_PACKET socket on A, sendmmsg of whole frames.
    Packet(std::os::fd::OwnedFd),
    /// UDP socket in A connected to B, sendmmsg of payloads.
    Udp(UdpSocket),
    /// The same socket, IORING_OP_SEND per payload, a batch per submit.
    Uring(UdpSocket, Ring),
}

pub fn xsk_tx(net: &PktNet, need_wakeup: bool, zerocopy: bool, ring: u32) -> io::Result<Sender> {
    let cfg = XskConfig {
        ifindex: net.a.ifindex,
        queue: 0,
        frame_size: BUF as u32,
        frames: (ring * 2).max(2048),
        rx_ring: 0,
        tx_ring: ring,
        zerocopy,
        need_wakeup,
    };
    Ok(Sender::Xsk(net.in_a(move || Xsk::bind(cfg))?, need_wakeup))
}

pub fn ring_tx(net: &PktNet, bypass: bool, ring: u32) -> io::Result<Sender> {
    let idx = net.a.ifindex;
    Ok(Sender::Ring(net.in_a(move || {
        PacketRing::tx(idx, BUF as u32, ring, bypass)
    })?))
}

pub fn packet_tx(net: &PktNet) -> io::Result<Sender> {
    let idx = net.a.ifindex;
    Ok(Sender::Packet(net.in_a(move || {
        let fd = pkt::packet_socket()?;
        pkt::packet_bind(&fd, idx)?;
        Ok(fd)
    })?))
}

pub fn udp_tx(net: &PktNet) -> io::Result<Sender> {
    let (a, b) = (net.a.addr, net.b.addr);
    Ok(Sender::Udp(net.in_a(move || {
        let s = UdpSocket::bind(SocketAddrV4::new(a, SPORT))?;
        s.connect(SocketAddrV4::new(b, DPORT))?;
        Ok(s)
    })?))
}

impl Sender {
    /// Sends frames 0..`frames` of `len` bytes in batches of `batch`; returns when the kernel
    /// has taken (and, for the rings, transmitted) all of them. `on_batch(n)` per batch.
    pub fn send(
        &mut self,
        net: &PktNet,
        len: usize,
        frames: u64,
        batch: u32,
        mut on_batch: impl FnMut(u64),
    ) -> io::Result<()> {
        let mut seq = 0u64;
        let mut bufs: Vec<Vec<u8>> = Vec::new();
        let cancel = crate::sys::signal::Cancel::process();
        while seq < frames {
            if cancel.is_cancelled() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
            }
            let want = (frames - seq).min(batch as u64) as u32;
            let n = match self {
                Sender::Xsk(x, wake) => {
                    x.complete();
                    let n = x.queue_tx(want, |i, f| {
                        write_frame(net, f, len, seq + i as u64, seq + i as u64)
                    });
                    if !*wake || x.tx_needs_wakeup() || n == 0 {
                        x.kick_tx()?;
                    }
                    n as u64
                }
                Sender::Ring(r) => {
                    let n = r.tx_queue(want as usize, |i, f| {
                        write_frame(net, f, len, seq + i as u64, seq + i as u64)
                    })?;
                    r.tx_kick()?;
                    n as u64
                }
                Sender::Packet(fd) => {
                    fill_bufs(&mut bufs, want, len, |i, f| {
                        write_frame(net, f, len, seq + i as u64, seq + i as u64);
                    });
                    let v: Vec<&[u8]> = bufs.iter().map(|b| &b[..len]).collect();
                    pkt::sendmmsg(fd.as_raw_fd(), &v)? as u64
                }
                Sender::Udp(s) => {
                    let pl = len - L4_OFF;
                    fill_bufs(&mut bufs, want, pl, |i, f| {
                        write_payload(f, seq + i as u64, seq + i as u64)
                    });
                    let v: Vec<&[u8]> = bufs.iter().map(|b| &b[..pl]).collect();
                    pkt::sendmmsg(s.as_raw_fd(), &v)? as u64
                }
                Sender::Uring(s, ring) => {
                    let pl = len - L4_OFF;
                    fill_bufs(&mut bufs, want, pl, |i, f| {
                        write_payload(f, seq + i as u64, seq + i as u64)
                    });
                    let v: Vec<&[u8]> = bufs.iter().map(|b| &b[..pl]).collect();
                    uring::pktio::send_batch(ring, s.as_raw_fd(), &v)? as u64
                }
            };
            if n > 0 {
                on_batch(n);
            } else {
                std::thread::yield_now();
            }
            seq += n;
        }
        // Wait for the kernel to finish with every frame.
        let t0 = Instant::now();
        loop {
            let pending = match self {
                Sender::Xsk(x, _) => {
                    x.complete();
                    if x.tx_outstanding > 0 {
                        x.kick_tx()?;
                    }
                    x.tx_outstanding as usize
                }
                Sender::Ring(r) => {
                    let p = r.tx_pending();
                    if p > 0 {
                        r.tx_kick()?;
                    }
                    p
                }
                _ => 0,
            };
            if pending == 0 {
                return Ok(());
            }
            if t0.elapsed() > Duration::from_secs(5) {
                return Err(io::Error::other(format!(
                    "{pending} frames still not transmitted after 5 s"
                )));
            }
            std::thread::yield_now();
        }
    }

    /// The sender's loss counters (AF_XDP's statistics).
    pub fn losses(&self, extra: &mut Vec<(&'static str, f64)>) {
        if let Sender::Xsk(x, _) = self {
            if let Ok(s) = x.stats() {
                xsk_losses(&s, extra);
            }
        }
    }
}

fn fill_bufs(bufs: &mut Vec<Vec<u8>>, n: u32, len: usize, mut f: impl FnMut(usize, &mut [u8])) {
    bufs.resize_with(n as usize, || vec![0u8; BUF]);
    bufs.truncate(n as usize);
    for (i, b) in bufs.iter_mut().enumerate() {
        f(i, &mut b[..len]);
    }
}

/// The lab's own sender as a receive load: `tx` sends `frames` frames of `len` bytes from a
/// thread pinned to `cpu`; `done` holds the frames sent + 1 when it ends.
pub fn spawn_load<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    tx: &'s mut Sender,
    net: &'s PktNet,
    len: usize,
    frames: u64,
    cpu: usize,
    done: &'s AtomicU64,
) -> std::thread::ScopedJoinHandle<'s, io::Result<SideReport>> {
    s.spawn(move || {
        let r = (|| {
            crate::net::peers::start_peer(cpu)?;
            let u0 = usage::thread()?;
            let t0 = Instant::now();
            tx.send(net, len, frames, 64, |_| {})?;
            Ok(SideReport {
                frames,
                usage: usage::thread()?.since(&u0),
                elapsed: t0.elapsed(),
            })
        })();
        done.store(r.as_ref().map_or(0, |r| r.frames) + 1, Ordering::Release);
        r
    })
}

/// The sink of the transmit variants: an AF_XDP receiver on B (native, busy polling) on a
/// thread pinned to `cpu`, tracking every frame until `done` says how many were sent.
pub fn spawn_sink<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    rx: &'s mut Receiver,
    len: usize,
    cpu: usize,
    done: &'s AtomicU64,
) -> std::thread::ScopedJoinHandle<'s, io::Result<(Tracker, Usage)>> {
    s.spawn(move || {
        crate::net::peers::start_peer(cpu)?;
        let u0 = usage::thread()?;
        let mut t = Tracker::new(len);
        drain(rx, &mut t, 64, done, |_| {})?;
        Ok((t, usage::thread()?.since(&u0)))
    })
}

/// io_uring multishot receive on a UDP socket in B, `entries` provided buffers.
pub fn uring_rx(net: &PktNet, entries: u32) -> io::Result<Receiver> {
    let Receiver::Udp(s, _) = udp_rx(net, 1)? else {
        unreachable!("udp_rx gives a UDP receiver")
    };
    Ok(Receiver::Uring(UdpMultishot::new(
        s,
        entries.min(32768) as u16,
        BUF,
    )?))
}

/// io_uring sends on a connected UDP socket in A.
pub fn uring_tx(net: &PktNet, batch: u32) -> io::Result<Sender> {
    let Sender::Udp(s) = udp_tx(net)? else {
        unreachable!("udp_tx gives a UDP sender")
    };
    let ring = Ring::new(&RingConfig::tuned(batch.next_power_of_two().max(64)))
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Sender::Uring(s, ring))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(len: usize, seq: u64) -> Vec<u8> {
        let mut p = vec![0u8; len - L4_OFF];
        write_payload(&mut p, seq, seq);
        p
    }

    #[test]
    fn tracker_counts_loss_duplicates_reordering_and_corruption() {
        let mut t = Tracker::new(64);
        for s in [0u64, 1, 3, 2, 3] {
            t.payload(&payload(64, s));
        }
        assert_eq!(
            (t.unique, t.duplicates, t.reordered, t.corrupt),
            (4, 1, 1, 0)
        );
        let i = t.integrity(6);
        assert!(!i.ok, "a duplicate fails the trial");
        assert!(i.got.contains("2 lost"), "{}", i.got);

        let mut t = Tracker::new(64);
        t.payload(&payload(64, 0));
        let mut bad = payload(64, 1);
        *bad.last_mut().unwrap() ^= 1;
        t.payload(&bad);
        t.payload(&payload(128, 2)); // wrong length
        t.payload(b"not one of ours at all, no magic");
        assert_eq!((t.unique, t.corrupt, t.foreign), (1, 2, 1));
        assert!(!t.integrity(3).ok);

        let mut t = Tracker::new(64);
        for s in 0..10 {
            t.payload(&payload(64, s));
        }
        let i = t.integrity(12);
        assert!(i.ok, "loss alone is reported, not failed: {i:?}");
        assert!(i.got.contains("2 lost"));
    }

    #[test]
    fn frame_headers_are_valid_ipv4_udp() {
        let mut f = vec![0u8; 64];
        let mut p = payload(64, 5);
        f[L4_OFF..].copy_from_slice(&p);
        f[12] = 0x08;
        f[23] = 17;
        let mut t = Tracker::new(64);
        t.frame(&f);
        assert_eq!(t.unique, 1);
        // The IPv4 header checksum of a header with its checksum in place folds to zero.
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&50u16.to_be_bytes());
        h[8] = 64;
        h[9] = 17;
        let c = ip_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(ip_checksum(&h), 0);
        p[0] = 1; // the reserved u16 is not checked; the magic is
        p[2] = b'X';
        let mut t = Tracker::new(64);
        t.payload(&p);
        assert_eq!(t.foreign, 1);
    }
}
