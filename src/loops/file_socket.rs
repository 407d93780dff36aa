//! Serving a file to a socket (file_to_socket): the connection one trial sends on — TCP to a
//! receiver thread here (loopback or the lab's veth pair), UDP to the lab's sink namespace, or
//! `zclab serve` on the peer host —, the measured loop that moves the file step by step, and
//! the receiver's account checked against the file, handed back typed for the experiment to
//! record. Also the classic steps (write(2), sendfile(2), splice(2)) with their EINTR
//! handling: a retry, or an error once the run is cancelled.

use super::common::remote_udp_integrity;
use crate::measure::{Clock, Recorder, Usage};
use crate::net::netns::{
    self, ETH_IP_HEADERS, NetPath, SinkCounters, TcpLink, UDP_HEADER, VethLab, udp_frames,
};
use crate::net::remote::{self, Peer};
use crate::net::{Conn, Got, Sink};
use crate::results::Integrity;
use crate::ring::Ring;
use crate::sys::file::map_readonly;
use crate::sys::signal::Cancel;
use crate::uring::Fd;
use crate::uring::mapped::MappedZcSender;
use crate::uring::zc::ZcSender;
use crate::zc::ledger::Ledger;
use anyhow::{Context, Result, bail};
use nix::fcntl::{SpliceFFlags, splice};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

const PAGE: u64 = 4096;

/// The file a trial sends: open, its size and the xxh3-64 of its content.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub file: &'a File,
    pub size: u64,
    pub hash: u64,
}

/// Where a trial's connection goes and how its ends are set up.
pub struct Endpoint<'a> {
    pub path: NetPath,
    /// The lab's namespaces (tcp-veth, udp-sink).
    pub net: Option<&'a VethLab>,
    /// `zclab serve` on the peer host (remote-tcp, remote-udp).
    pub remote: Option<&'a Peer>,
    /// The CPU the receiver is pinned to, here or on the peer host.
    pub peer_cpu: usize,
    /// A TCP receiver's read size.
    pub recv_buf: usize,
    /// A fault injected into a local TCP receiver: it resets the connection after this many
    /// bytes.
    pub fault_after: Option<u64>,
    /// TCP_NODELAY on the sending socket (tcp(7)).
    pub nodelay: bool,
    /// /proc/<pid>/schedstat of ksoftirqd on the sender's and the receiver's CPU.
    pub ksoftirqd: (Option<&'a Path>, Option<&'a Path>),
}

/// Whose CPU time the receiver's usage is: a thread here, or `zclab serve` on the peer host.
#[derive(Debug, Clone, Copy)]
pub enum Receiver {
    /// Nothing receives (udp-sink).
    None,
    Local(Usage),
    Remote(Usage),
}

/// What one transfer's receiving end saw, checked against the file, and the figures to record
/// beside it (`extra` of the row).
#[derive(Debug)]
pub struct Account {
    pub integrity: Integrity,
    pub receiver: Receiver,
    pub extras: Vec<(&'static str, f64)>,
}

/// One transfer of a file over one connection: [`FileSend::open`] before the clock,
/// [`FileSend::run`] inside it, [`FileSend::account`] after it.
pub struct FileSend<'a> {
    src: Source<'a>,
    chunk: usize,
    nodelay: bool,
    net: Option<&'a VethLab>,
    conn: Conn,
    received: Option<Got>,
    sndbuf: usize,
    sink0: Option<SinkCounters>,
    ksoftirqd: (Option<&'a Path>, Option<&'a Path>),
    ks0: (Option<u64>, Option<u64>),
}

impl<'a> FileSend<'a> {
    /// Connects to the receiving end on `to.path` and reads the counters the account compares
    /// against (the sink's rx counters, ksoftirqd's CPU time). `chunk` bytes move per step;
    /// on UDP one step is one datagram.
    pub fn open(src: Source<'a>, chunk: usize, to: &Endpoint<'a>) -> Result<FileSend<'a>> {
        let (cpu, buf) = (to.peer_cpu, to.recv_buf);
        let conn = match (to.path, to.net, to.remote) {
            (NetPath::TcpLoopback, _, _) => {
                Conn::Tcp(TcpLink::loopback(cpu, buf, Sink::Hash, to.fault_after)?)
            }
            (NetPath::TcpVeth, Some(n), _) => {
                Conn::Tcp(TcpLink::veth(n, cpu, buf, Sink::Hash, to.fault_after)?)
            }
            (NetPath::UdpSink, Some(n), _) => Conn::Udp(n.sink_socket()?),
            (NetPath::RemoteTcp, _, Some(p)) => {
                Conn::Remote(p.tcp_sink(Some(cpu as u32), buf as u64, true)?)
            }
            (NetPath::RemoteUdp, _, Some(p)) => Conn::RemoteUdp(p.udp_sink(Some(cpu as u32))?),
            (p, _, _) if p.is_remote() => bail!("path {} needs --peer", p.name()),
            (p, _, _) => bail!(
                "path {} needs the lab's namespaces, which were not created",
                p.name()
            ),
        };
        match &conn {
            Conn::Tcp(l) => l.sender.set_nodelay(to.nodelay)?,
            Conn::Remote(r) => r.stream.set_nodelay(to.nodelay)?,
            _ => {}
        }
        let sndbuf = nix::sys::socket::getsockopt(&conn.fd(), nix::sys::socket::sockopt::SndBuf)
            .map_err(std::io::Error::from)?;
        let sink0 = match (to.net, to.path) {
            (Some(n), NetPath::UdpSink) => Some(n.sink_counters()?),
            _ => None,
        };
        let ks0 = (
            netns::schedstat_ns(to.ksoftirqd.0),
            netns::schedstat_ns(to.ksoftirqd.1),
        );
        Ok(FileSend {
            src,
            chunk,
            nodelay: to.nodelay,
            net: to.net,
            conn,
            received: None,
            sndbuf,
            sink0,
            ksoftirqd: to.ksoftirqd,
            ks0,
        })
    }

    /// The measured part: `step(file, sock, off, len)` moves up to `len` bytes at `off` and
    /// returns how many (on UDP exactly one datagram of `len`), one latency sample per step;
    /// then a TCP receiver is waited for until it has the last byte. Returns the steps.
    pub fn run(
        &mut self,
        rec: &mut Recorder,
        mut step: impl FnMut(&File, BorrowedFd<'_>, u64, usize) -> Result<usize>,
    ) -> Result<u64> {
        let (size, chunk) = (self.src.size, self.chunk);
        let dgram = self.conn.is_datagram();
        let (mut off, mut steps) = (0u64, 0u64);
        {
            let fd = self.conn.fd();
            let mut s = rec.now();
            while off < size {
                let len = chunk.min((size - off) as usize);
                let n = checked(step(self.src.file, fd, off, len), off, size, len, dgram)?;
                off += n as u64;
                steps += 1;
                s = rec.record_since(s);
            }
        }
        match &mut self.conn {
            Conn::Tcp(l) => self.received = Some(Got::Local(l.finish().context("peer failed")?)),
            Conn::Remote(r) => {
                self.received = Some(Got::Remote(Box::new(
                    r.finish().context("the peer host's receiver")?,
                )))
            }
            _ => {}
        }
        Ok(steps)
    }

    /// Whether this transfer's receiver gave its account (its stream ended in the measured
    /// part); a transfer that failed mid-way has none.
    pub fn delivered(&self) -> bool {
        self.received.is_some() || self.conn.is_datagram()
    }

    /// After the clock: the receiver's account checked against the file (the stream's hash
    /// on TCP; on remote UDP the peer's count and digest; on udp-sink the sink device's rx
    /// counters), the receiver's usage, and the figures for the row.
    pub fn account(mut self) -> Result<Account> {
        let ks1 = (
            netns::schedstat_ns(self.ksoftirqd.0),
            netns::schedstat_ns(self.ksoftirqd.1),
        );
        let Source { file, size, hash } = self.src;
        let (chunk, nodelay) = (self.chunk, self.nodelay);
        let steps = size.div_ceil(chunk as u64);
        let mut extras = Vec::new();
        let (integrity, receiver) = match (&mut self.conn, self.received.take()) {
            (Conn::Remote(_), Some(Got::Remote(r))) => {
                let got = r.hash.clone().unwrap_or_default();
                extras.extend(r.peer_extras());
                extras.push(("tcp_nodelay", nodelay as u8 as f64));
                let i = Integrity {
                    ok: r.bytes == size && remote::parse_hex64(&got) == Some(hash),
                    method: "xxh3-64 of the stream received on the peer host".into(),
                    expected: format!("{hash:016x}"),
                    got,
                    bytes_expected: size,
                    bytes_got: r.bytes,
                };
                (i, Receiver::Remote(r.usage))
            }
            (Conn::RemoteUdp(u), _) => {
                // After the clock: the receiver counts what arrived once told how much was sent.
                let r = u.finish(steps).context("the peer host's UDP receiver")?;
                let want = file_digest(file, size, chunk)?;
                extras.extend(r.peer_extras());
                extras.push(("peer_datagrams", r.datagrams.unwrap_or(0) as f64));
                extras.push(("datagrams", steps as f64));
                extras.push(("datagram_bytes", chunk as f64));
                let i = remote_udp_integrity(
                    &r,
                    steps,
                    size,
                    want,
                    "every datagram accepted whole, and the peer host received each exactly once intact (count, bytes, and the sum of each datagram's xxh3-64)",
                    None,
                );
                (i, Receiver::Remote(r.usage))
            }
            (Conn::Tcp(_), Some(Got::Local(r))) => {
                extras.push(("tcp_nodelay", nodelay as u8 as f64));
                let i = Integrity {
                    ok: r.bytes == size && r.hash == Some(hash),
                    method: "xxh3-64 of the received stream".into(),
                    expected: format!("{hash:016x}"),
                    got: r.hash.map_or("none".into(), |h| format!("{h:016x}")),
                    bytes_expected: size,
                    bytes_got: r.bytes,
                };
                extras.extend(r.peer_extras());
                (i, Receiver::Local(r.usage))
            }
            (Conn::Udp(_), _) => {
                let net = self.net.context("udp-sink has the lab's namespaces")?;
                let s0 = self.sink0.context("sink counters read before the trial")?;
                (
                    sink_account(net, s0, size, chunk, &mut extras)?,
                    Receiver::None,
                )
            }
            (Conn::Tcp(_) | Conn::Remote(_), _) => bail!("the receiver's account is missing"),
        };
        extras.push(("so_sndbuf", self.sndbuf as f64));
        if let (Some(a), Some(b)) = (self.ks0.0, ks1.0) {
            extras.push(("ksoftirqd_sender_cpu_ns", b.saturating_sub(a) as f64));
        }
        if let (Some(a), Some(b)) = (self.ks0.1, ks1.1) {
            extras.push(("ksoftirqd_peer_cpu_ns", b.saturating_sub(a) as f64));
        }
        Ok(Account {
            integrity,
            receiver,
            extras,
        })
    }
}

/// A step's result at byte `off` of `size`: the bytes it moved, or why the transfer failed
/// (an early end of the file, a datagram that went out split); a step that could not be set
/// up ([`NotSent`]) comes back as it is.
fn checked(r: Result<usize>, off: u64, size: u64, len: usize, dgram: bool) -> Result<usize> {
    let n = match r {
        Ok(n) => n,
        // Setting the step up failed, not the sending: its message says which.
        Err(e) if e.downcast_ref::<NotSent>().is_some() => return Err(e),
        Err(e) => return Err(e.context(format!("sending to the peer at byte {off} of {size}"))),
    };
    if n == 0 {
        bail!("source file ended early at {off} of {size} bytes");
    }
    if dgram && n != len {
        bail!("a {len}-byte datagram at offset {off} went out as {n} bytes");
    }
    Ok(n)
}

/// How one of several transfers ([`run_flows`]) ended inside the measured part.
pub struct FlowRun {
    /// Bytes the steps moved.
    pub bytes: u64,
    /// Steps taken.
    pub steps: u64,
    /// Nanoseconds from the start until the receiver had everything, or the transfer failed.
    pub ns: u64,
    /// Why the transfer failed; None when its receiver has it all.
    pub error: Option<anyhow::Error>,
}

/// Several transfers of the same file, served by one thread as a broker serves its consumers:
/// chunk k to each live connection in turn through the same `step` (one latency sample per
/// step), then each TCP receiver waited for. A transfer whose step fails to send leaves the
/// rotation with its error and the others go on; a step that could not be set up
/// ([`NotSent`]) or a cancelled run fails the whole trial.
pub fn run_flows(
    sends: &mut [FileSend<'_>],
    rec: &mut Recorder,
    mut step: impl FnMut(&File, BorrowedFd<'_>, u64, usize) -> Result<usize>,
) -> Result<Vec<FlowRun>> {
    let cancel = Cancel::process();
    let clock = *rec.clock();
    let start = rec.now();
    let since = || clock.ns_between(start, clock.now());
    let mut runs: Vec<FlowRun> = sends
        .iter()
        .map(|_| FlowRun {
            bytes: 0,
            steps: 0,
            ns: 0,
            error: None,
        })
        .collect();
    loop {
        let mut live = 0;
        for (f, r) in sends.iter_mut().zip(runs.iter_mut()) {
            let size = f.src.size;
            if r.error.is_some() || r.bytes >= size {
                continue;
            }
            live += 1;
            let len = f.chunk.min((size - r.bytes) as usize);
            let dgram = f.conn.is_datagram();
            let s = rec.now();
            let res = step(f.src.file, f.conn.fd(), r.bytes, len);
            match checked(res, r.bytes, size, len, dgram) {
                Err(e) if e.downcast_ref::<NotSent>().is_some() || cancel.is_cancelled() => {
                    return Err(e);
                }
                Err(e) => {
                    r.error = Some(e);
                    r.ns = since();
                }
                Ok(n) => {
                    r.bytes += n as u64;
                    r.steps += 1;
                    rec.record_since(s);
                }
            }
        }
        if live == 0 {
            break;
        }
    }
    for (f, r) in sends.iter_mut().zip(runs.iter_mut()) {
        if r.error.is_some() {
            continue;
        }
        let got = match &mut f.conn {
            Conn::Tcp(l) => l
                .finish()
                .map(|g| Some(Got::Local(g)))
                .context("peer failed"),
            Conn::Remote(rm) => rm
                .finish()
                .map(|g| Some(Got::Remote(Box::new(g))))
                .context("the peer host's receiver"),
            _ => Ok(None),
        };
        match got {
            Ok(g) => f.received = g,
            Err(e) if cancel.is_cancelled() => return Err(e),
            Err(e) => r.error = Some(e),
        }
        r.ns = since();
    }
    Ok(runs)
}

/// udp-sink: the sink device's rx counters must have grown by exactly the frames (and their
/// bytes) of the datagrams sent; the sink's IpInAddrErrors are recorded beside.
fn sink_account(
    net: &VethLab,
    s0: SinkCounters,
    size: u64,
    chunk: usize,
    extras: &mut Vec<(&'static str, f64)>,
) -> Result<Integrity> {
    let mtu = net.mtu as u64;
    let (full, rest) = (size / chunk as u64, size % chunk as u64);
    let datagrams = full + (rest > 0) as u64;
    let (f_full, b_full) = udp_frames(chunk as u64, mtu);
    let (f_rest, b_rest) = if rest > 0 {
        udp_frames(rest, mtu)
    } else {
        (0, 0)
    };
    let (frames, frame_bytes) = (full * f_full + f_rest, full * b_full + b_rest);
    // Frames still in the receive backlog when the last send returned count once processed:
    // wait (outside the clock) until the expected number arrived.
    let s1 = net.wait_sink(s0.rx_packets + frames, Duration::from_secs(2))?;
    let pk = s1.rx_packets.wrapping_sub(s0.rx_packets);
    let by = s1.rx_bytes.wrapping_sub(s0.rx_bytes);
    let payload = by.saturating_sub(pk * ETH_IP_HEADERS + datagrams * UDP_HEADER);
    extras.push(("sink_rx_packets", pk as f64));
    extras.push(("sink_rx_bytes", by as f64));
    if let (Some(a), Some(b)) = (s0.in_addr_errors, s1.in_addr_errors) {
        extras.push(("sink_ip_in_addr_errors", b.wrapping_sub(a) as f64));
    }
    extras.push(("datagrams", datagrams as f64));
    extras.push(("datagram_bytes", chunk as f64));
    extras.push(("frames_per_datagram", f_full as f64));
    extras.push(("veth_mtu", mtu as f64));
    Ok(Integrity {
        ok: pk == frames && by == frame_bytes,
        method: format!(
            "every datagram accepted whole by the kernel, and {}'s rx counters grew by the frames of the datagrams sent ({f_full} frame(s) per {chunk}-byte datagram, MTU {mtu})",
            net.sink_s_if
        ),
        expected: format!("{frames} frames, {frame_bytes} bytes"),
        got: format!("{pk} frames, {by} bytes"),
        bytes_expected: size,
        bytes_got: payload,
    })
}

/// The pipe capacity a splice step wants for `chunk`-byte steps: the chunk (at least a page)
/// on a stream; on UDP a chunk plus a page, so that a whole datagram fits at any file offset.
pub fn splice_pipe_size(chunk: u64, dgram: bool) -> u64 {
    if dgram {
        chunk.div_ceil(PAGE) * PAGE + PAGE
    } else {
        chunk.max(PAGE)
    }
}

/// The pipe capacity a `chunk`-byte datagram needs at any file offset: one pipe buffer per
/// page it touches, up to chunk/4096 + 1.
pub fn datagram_pipe_need(chunk: u64) -> u64 {
    (chunk.div_ceil(PAGE) + 1) * PAGE
}

/// Wrapping sum of the xxh3-64 of each `chunk`-byte datagram of the file (the last one
/// shorter): what the remote UDP receiver computes, whatever order they arrive in.
pub fn file_digest(file: &File, size: u64, chunk: usize) -> Result<u64> {
    let mut buf = vec![0u8; chunk];
    let (mut off, mut d) = (0u64, 0u64);
    while off < size {
        let len = chunk.min((size - off) as usize);
        file.read_exact_at(&mut buf[..len], off)?;
        d = d.wrapping_add(crate::hash::xxh3_64(&buf[..len]));
        off += len as u64;
    }
    Ok(d)
}

/// After EINTR: an error once the run is cancelled (SIGINT/SIGTERM), a retry otherwise.
fn retry(cancel: Cancel) -> Result<()> {
    match cancel.signal() {
        Some(sig) => bail!("interrupted by signal {sig}"),
        None => Ok(()),
    }
}

/// write(2)s all of `buf` to a stream, or exactly one datagram of it.
pub fn put(s: BorrowedFd, buf: &[u8], dgram: bool, cancel: Cancel) -> Result<()> {
    let mut off = 0;
    while off < buf.len() {
        match nix::unistd::write(s, &buf[off..]) {
            Ok(n) if dgram && n != buf.len() => {
                bail!("a {}-byte datagram went out as {n} bytes", buf.len())
            }
            Ok(0) => bail!("write returned 0: the receiver closed"),
            Ok(n) => off += n,
            Err(nix::errno::Errno::EINTR) => retry(cancel)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// sendfile(2)s `len` bytes of `f` at `off` to socket `s` (calls repeated until all moved or
/// the file ends); on UDP one call is one datagram, and a short one is returned as is for
/// [`FileSend::run`] to report. Returns the bytes moved.
pub fn sendfile_step(
    s: BorrowedFd,
    f: &File,
    off: u64,
    len: usize,
    dgram: bool,
    cancel: Cancel,
) -> Result<usize> {
    let mut o = off as i64;
    let mut moved = 0;
    while moved < len {
        match nix::sys::sendfile::sendfile64(s, f.as_fd(), Some(&mut o), len - moved) {
            Ok(0) => break,
            Ok(n) if dgram => return Ok(n),
            Ok(n) => moved += n,
            Err(nix::errno::Errno::EINTR) => retry(cancel)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(moved)
}

/// A pipe between file and socket for [`splice_step`]: its ends and its capacity.
#[derive(Clone, Copy)]
pub struct SplicePipe<'a> {
    pub read: BorrowedFd<'a>,
    pub write: BorrowedFd<'a>,
    pub cap: usize,
}

/// splice(2)s up to `len` bytes (at most the pipe's capacity) of `f` at `off` into the pipe,
/// then from the pipe to socket `s`. A datagram goes to the socket whole: the pipe is filled
/// with all of it first, and SPLICE_F_MORE (which would cork a UDP socket and merge
/// datagrams) is set on streams only. Returns the bytes moved.
pub fn splice_step(
    f: &File,
    s: BorrowedFd,
    off: u64,
    len: usize,
    pipe: SplicePipe,
    dgram: bool,
    cancel: Cancel,
) -> Result<usize> {
    let flags = if dgram {
        SpliceFFlags::SPLICE_F_MOVE
    } else {
        SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE
    };
    let mut o = off as i64;
    let want = len.min(pipe.cap);
    let mut n = 0;
    loop {
        match splice(f.as_fd(), Some(&mut o), pipe.write, None, want - n, flags) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(nix::errno::Errno::EINTR) => retry(cancel)?,
            Err(e) => return Err(e.into()),
        }
        if !dgram || n == want {
            break;
        }
    }
    let mut out = 0;
    while out < n {
        match splice(pipe.read, None, s, None, n - out, flags) {
            Ok(0) => bail!("splice to socket moved 0 bytes: peer closed"),
            // A datagram of more than 16 pipe buffers goes out in parts, corked with MSG_MORE
            // between them (splice_to_socket); when a later part cannot be sent at once the
            // call returns the parts sent, the datagram still corked, and the next call
            // completes it. The sink's counters check that every datagram arrived whole.
            Ok(m) => out += m,
            Err(nix::errno::Errno::EINTR) => retry(cancel)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// A file or socket as io_uring takes it: a plain descriptor.
pub fn raw(fd: impl AsFd) -> Fd {
    Fd::Raw(fd.as_fd().as_raw_fd())
}

/// IORING_OP_READ_FIXED linked to IORING_OP_SEND_ZC from the ring's registered buffers, one
/// submission per step; after the step that sends the last byte the ledger is drained, since
/// the transfer is complete only when the kernel has released every buffer.
pub struct FixedZcSteps {
    ring: Ring,
    zc: ZcSender,
    size: u64,
    sent: u64,
    notif_timeout: Duration,
}

impl FixedZcSteps {
    /// Steps over a file of `size` bytes on `ring`, whose buffers are registered (a buffer is
    /// reused only after its notification); the other arguments as for [`MappedZcSteps::new`].
    pub fn new(
        ring: Ring,
        size: u64,
        report_usage: bool,
        clock: Clock,
        cancel: Cancel,
        notif_timeout: Duration,
    ) -> FixedZcSteps {
        let zc = ZcSender::new(&ring, true, report_usage, clock, cancel);
        FixedZcSteps {
            ring,
            zc,
            size,
            sent: 0,
            notif_timeout,
        }
    }

    /// One step: `len` bytes of `f` at `off` read into a free buffer and sent on `s`; returns
    /// the bytes sent.
    pub fn step(&mut self, f: &File, s: BorrowedFd, off: u64, len: usize) -> Result<usize> {
        let n = self
            .zc
            .read_fixed_send(&mut self.ring, raw(f), off, len, raw(s))?;
        self.sent += n as u64;
        if self.sent >= self.size {
            self.zc.drain(&mut self.ring, self.notif_timeout)?;
        }
        Ok(n)
    }

    /// The account of sends and notifications.
    pub fn ledger(&self) -> &Ledger {
        self.zc.ledger()
    }
}

/// IORING_OP_SEND_ZC straight from a mapping of the file, one send per step (a stream's
/// repeated until all of `len` went; a datagram's once): the sender and the mapping are made
/// at the first step, inside the clock, as a server maps its file once; after the step that
/// sends the last byte the ledger is drained, since the transfer is complete only when the
/// kernel has released every page.
pub struct MappedZcSteps {
    ring: Option<Ring>,
    zc: Option<MappedZcSender>,
    size: u64,
    sent: u64,
    dgram: bool,
    report_usage: bool,
    clock: Clock,
    cancel: Cancel,
    notif_timeout: Duration,
}

impl MappedZcSteps {
    /// Steps over a file of `size` bytes on `ring`; `report_usage` asks for
    /// IORING_SEND_ZC_REPORT_USAGE; the last notification may take `notif_timeout`.
    pub fn new(
        ring: Ring,
        size: u64,
        dgram: bool,
        report_usage: bool,
        clock: Clock,
        cancel: Cancel,
        notif_timeout: Duration,
    ) -> MappedZcSteps {
        MappedZcSteps {
            ring: Some(ring),
            zc: None,
            size,
            sent: 0,
            dgram,
            report_usage,
            clock,
            cancel,
            notif_timeout,
        }
    }

    /// One step: `len` bytes of the mapping of `f` at `off` to socket `s`; returns the bytes sent.
    pub fn step(&mut self, f: &File, s: BorrowedFd, off: u64, len: usize) -> Result<usize> {
        if self.zc.is_none() {
            let ring = self.ring.take().context("the ring is handed over once")?;
            let (report, clock, cancel) = (self.report_usage, self.clock, self.cancel);
            let map = map_source(f)?;
            self.zc = Some(MappedZcSender::new(ring, map, 32, report, clock, cancel));
        }
        let (z, dgram) = (self.zc.as_mut().expect("just set"), self.dgram);
        let flags = if dgram { 0 } else { libc::MSG_WAITALL };
        let mut n = z.send(off as usize, len, raw(s), flags)?;
        while !dgram && n < len {
            n += match z.send(off as usize + n, len - n, raw(s), flags)? {
                0 => bail!("SEND_ZC returned 0: the receiver closed"),
                m => m,
            };
        }
        self.sent += n as u64;
        if self.sent >= self.size {
            z.drain(self.notif_timeout)?;
        }
        Ok(n)
    }

    /// The account of sends and notifications; None when nothing was sent.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.zc.as_ref().map(MappedZcSender::ledger)
    }
}

/// The failure of an operation a step does before it sends (mapping the source file), named
/// by the operation instead of by the byte being sent.
#[derive(Debug)]
pub struct NotSent(pub String);

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotSent {}

/// Maps the source file read-only (mmap(2)); a failure says so: "mmap of the 64 MiB source
/// file: Cannot allocate memory (os error 12)".
pub fn map_source(f: &File) -> Result<memmap2::Mmap> {
    map_readonly(f).map_err(|e| {
        let size = f
            .metadata()
            .map_or_else(|_| "?".to_string(), |m| crate::units::fmt_size(m.len()));
        anyhow::Error::new(NotSent(format!("mmap of the {size} source file: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern_file(size: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        (f, data)
    }

    /// The digest sums the datagrams' hashes, the last one short.
    #[test]
    fn file_digest_sums_each_datagram() {
        let (f, data) = pattern_file(10_000);
        let want = data
            .chunks(4096)
            .fold(0u64, |d, c| d.wrapping_add(crate::hash::xxh3_64(c)));
        assert_eq!(file_digest(f.as_file(), 10_000, 4096).unwrap(), want);
    }

    /// sendfile and splice steps move the file to a TCP stream byte for byte.
    #[test]
    fn sendfile_and_splice_steps_move_the_file() {
        let (f, data) = pattern_file(300_000);
        let (pr, pw, cap) = crate::sys::pipe::pipe_with_size(64 << 10).unwrap();
        let pipe = SplicePipe {
            read: pr.as_fd(),
            write: pw.as_fd(),
            cap,
        };
        for splice in [false, true] {
            let (a, b) = crate::net::peers::tcp_pair().unwrap();
            let rx = std::thread::spawn(move || crate::net::receive(b, 1 << 16, Sink::Hash));
            let mut off = 0u64;
            while off < data.len() as u64 {
                let len = (data.len() as u64 - off).min(50_000) as usize;
                off += if splice {
                    splice_step(
                        f.as_file(),
                        a.as_fd(),
                        off,
                        len,
                        pipe,
                        false,
                        Cancel::never(),
                    )
                } else {
                    sendfile_step(a.as_fd(), f.as_file(), off, len, false, Cancel::never())
                }
                .unwrap() as u64;
            }
            drop(a);
            let r = rx.join().unwrap().unwrap();
            assert_eq!(r.bytes, data.len() as u64);
            assert_eq!(r.hash, Some(crate::hash::xxh3_64(&data)), "splice {splice}");
        }
    }
}
