//! The sending side of a network trial: stamped messages sent over a [`Conn`] by plain
//! send(2), by send(2) with MSG_ZEROCOPY (completions from the error queue, see
//! Documentation/networking/msg_zerocopy.rst) or by an io_uring send op (IORING_OP_SEND,
//! SEND_ZC, SENDMSG_ZC; io_uring_enter(2)), inside the caller's measured part; and the check,
//! after the clock, that what arrived is what was sent.
//!
//! net_send measures these; a receive-side experiment or one that runs several flows reuses
//! them. A trial: [`connect`], [`configure`], [`Sender`]`::classic`/`msg_zerocopy`/`uring`
//! (set-up, outside the clock), [`Sender::send`] (inside it, one latency sample per message
//! into the caller's [`Recorder`]), [`Sender::zero_copy`], then [`verify`]. Nothing here reads
//! the environment or the harness: the cancellation token, the receiver's fault and the peer
//! come in as arguments, and typed results go out.
//!
//! Every message carries its sequence number in its first and last 8 bytes ([`stamp`]),
//! written just before it is sent, so a buffer reused before the kernel released it changes
//! what the receiver gets and fails the hash. Buffers are handed out for writing only after
//! their notification (`ZcPool`, `SendPipeline`). On a stream one send is in flight (two can
//! interleave when one is short and retried); on a datagram socket the io_uring sender keeps
//! up to `inflight` sends in flight and reaps completions in batches.

use super::common::remote_udp_integrity;
use crate::hash::Xxh3;
use crate::measure::{Clock, Recorder, Run, Usage};
use crate::net::netns::{ETH_IP_HEADERS, NetPath, SinkCounters, TcpLink, UDP_HEADER, VethLab};
use crate::net::remote::{self, Peer};
use crate::net::{Conn, Got, Sink};
use crate::results::{Integrity, ZcCounts};
use crate::ring::{Ring, RingConfig, RingError, RingFlags};
use crate::sys::errqueue;
use crate::sys::file::fill_pattern;
use crate::sys::signal::Cancel;
use crate::uring::Fd;
use crate::uring::pipeline::{SendOp, SendPipeline};
use crate::zc::msg::ZcPool;
use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// How long the last notification may take after the last send.
pub const NOTIF_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes message `seq`'s stamp: the sequence number in the first 8 bytes and its complement
/// in the last 8 (fewer for tiny messages). The rest of every buffer holds the base pattern.
#[inline(always)]
pub fn stamp(buf: &mut [u8], seq: u64) {
    let b = seq.to_le_bytes();
    let k = buf.len().min(8);
    buf[..k].copy_from_slice(&b[..k]);
    let l = buf.len();
    if l >= 16 {
        buf[l - 8..].copy_from_slice(&(!seq).to_le_bytes());
    }
}

/// Wrapping sum of the xxh3-64 of each of `n` stamped datagrams of `size` bytes: what the
/// remote UDP receiver computes, whatever order they arrive in.
pub fn expected_digest(size: usize, n: u64) -> u64 {
    let mut m = vec![0u8; size];
    fill_pattern(&mut m, 0);
    let mut d = 0u64;
    for seq in 0..n {
        stamp(&mut m, seq);
        d = d.wrapping_add(crate::hash::xxh3_64(&m));
    }
    d
}

/// xxh3-64 of the stream of `n` stamped messages of `size` bytes.
pub fn expected_hash(size: usize, n: u64) -> u64 {
    let mut m = vec![0u8; size];
    fill_pattern(&mut m, 0);
    let mut h = Xxh3::new();
    for seq in 0..n {
        stamp(&mut m, seq);
        h.update(&m);
    }
    h.digest()
}

/// The sysctls that shape a sender's network paths (optmem_max, wmem, tcp_wmem, ...), as
/// `{"net.core.optmem_max": "..."}` ("unknown" when unreadable): recorded with a run.
pub fn sysctls() -> Value {
    let mut m = serde_json::Map::new();
    for k in [
        "net/core/optmem_max",
        "net/core/wmem_default",
        "net/core/wmem_max",
        "net/ipv4/tcp_wmem",
        "net/ipv4/tcp_rmem",
        "net/ipv4/tcp_autocorking",
    ] {
        let v = std::fs::read_to_string(format!("/proc/sys/{k}"))
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into());
        m.insert(k.replace('/', "."), json!(v));
    }
    Value::Object(m)
}

/// Opens one trial's connection on `path`: a receiver thread here pinned to `peer_cpu`
/// (loopback, or in the lab's namespace B over `net`'s veth pair) that hashes or discards
/// (`sink`) and resets the connection after `fault_after` bytes when given; the lab's UDP
/// sink; or a receiver in `zclab serve` on `peer`'s host, pinned to `peer_cpu` there.
/// `recv_buf` is the receiver's read size. Errors when the path needs `net` or `peer` and
/// it is None.
pub fn connect(
    path: NetPath,
    net: Option<&VethLab>,
    peer: Option<&Peer>,
    peer_cpu: usize,
    recv_buf: usize,
    sink: Sink,
    fault_after: Option<u64>,
) -> Result<Conn> {
    let net = || net.context("the lab's network namespaces are not available");
    let peer = || peer.context("remote paths run with --peer");
    Ok(match path {
        NetPath::TcpLoopback => {
            Conn::Tcp(TcpLink::loopback(peer_cpu, recv_buf, sink, fault_after)?)
        }
        NetPath::TcpVeth => Conn::Tcp(TcpLink::veth(
            net()?,
            peer_cpu,
            recv_buf,
            sink,
            fault_after,
        )?),
        NetPath::UdpSink => Conn::Udp(net()?.sink_socket()?),
        NetPath::RemoteTcp => Conn::Remote(peer()?.tcp_sink(
            Some(peer_cpu as u32),
            recv_buf as u64,
            sink == Sink::Hash,
        )?),
        NetPath::RemoteUdp => Conn::RemoteUdp(peer()?.udp_sink(Some(peer_cpu as u32))?),
    })
}

/// Sets TCP_NODELAY on a stream (tcp(7)), SO_ZEROCOPY when `zerocopy` (for MSG_ZEROCOPY) and
/// SO_SNDBUF when given (socket(7)) on the sending socket; returns the SO_SNDBUF in force.
pub fn configure(conn: &Conn, nodelay: bool, zerocopy: bool, sndbuf: Option<u64>) -> Result<usize> {
    match conn {
        Conn::Tcp(l) => l.sender.set_nodelay(nodelay)?,
        Conn::Remote(r) => r.stream.set_nodelay(nodelay)?,
        _ => {}
    }
    if zerocopy {
        errqueue::enable_zerocopy(conn.fd()).context("setsockopt(SO_ZEROCOPY)")?;
    }
    if let Some(n) = sndbuf {
        nix::sys::socket::setsockopt(
            &conn.fd(),
            nix::sys::socket::sockopt::SndBuf,
            &(n.min(i32::MAX as u64) as usize),
        )
        .context("setsockopt(SO_SNDBUF)")?;
    }
    Ok(
        nix::sys::socket::getsockopt(&conn.fd(), nix::sys::socket::sockopt::SndBuf)
            .map_err(std::io::Error::from)?,
    )
}

/// How one trial's messages are sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SendKind {
    /// send(2) from a user buffer.
    Classic,
    /// send(2) with MSG_ZEROCOPY on an SO_ZEROCOPY socket.
    MsgZerocopy,
    /// An io_uring send op.
    Uring(SendOp),
}

impl SendKind {
    /// What one latency sample is, on a datagram socket or a stream.
    pub fn step(self, datagram: bool) -> &'static str {
        match (self, datagram) {
            (SendKind::Uring(_), true) => {
                "one datagram: submitted (io_uring_enter) to its result CQE reaped (up to --inflight in flight)"
            }
            (SendKind::Uring(_), false) => {
                "one message: its first send submitted (io_uring_enter) to its last send's result CQE reaped (short sends resubmitted), one in flight"
            }
            (_, true) => "one datagram: send(2) call",
            (_, false) => "one message: send(2) calls until the kernel accepted all of it",
        }
    }
}

/// What one trial sends: `msgs` messages of `size` bytes from `pool` buffers; up to
/// `inflight` io_uring sends at once on a datagram socket; the error queue read every `reap`
/// MSG_ZEROCOPY sends.
#[derive(Clone, Copy, Debug)]
pub struct SendJob {
    pub size: usize,
    pub msgs: u64,
    pub pool: usize,
    pub inflight: usize,
    pub reap: u64,
}

impl SendJob {
    /// Bytes the job sends.
    pub fn bytes(&self) -> u64 {
        self.msgs * self.size as u64
    }
}

// One sender per trial, built once outside the clock: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum How {
    Classic(Vec<u8>),
    MsgZerocopy(ZcPool),
    Uring(SendPipeline),
}

/// A sender set up before the clock starts (buffers filled with the base pattern, the ring
/// created and its buffers registered), run inside it by [`Sender::send`], or one message at a
/// time by [`Sender::send_one`] and [`Sender::end`] (a thread that sends over several flows).
pub struct Sender {
    job: SendJob,
    how: How,
    cancel: Cancel,
    /// MSG_ZEROCOPY sends since the error queue was last read.
    since_reap: u64,
}

impl Sender {
    fn with(job: SendJob, how: How, cancel: Cancel) -> Sender {
        Sender {
            job,
            how,
            cancel,
            since_reap: 0,
        }
    }

    /// send(2) from one user buffer.
    pub fn classic(job: SendJob, cancel: Cancel) -> Sender {
        let mut buf = vec![0u8; job.size];
        fill_pattern(&mut buf, 0);
        Sender::with(job, How::Classic(buf), cancel)
    }

    /// send(2) with MSG_ZEROCOPY from a pool of `job.pool` buffers (the socket needs
    /// SO_ZEROCOPY: [`configure`]).
    pub fn msg_zerocopy(job: SendJob, clock: Clock, cancel: Cancel) -> std::io::Result<Sender> {
        let mut pool = ZcPool::new(job.pool, job.size, clock, cancel)?;
        for i in 0..job.pool {
            fill_pattern(pool.buffer_mut(i).expect("a new pool is free"), 0);
        }
        Ok(Sender::with(job, How::MsgZerocopy(pool), cancel))
    }

    /// io_uring `op` from `job.pool` registered buffers on the lab's tuned ring;
    /// `report_usage` asks zero-copy ops for IORING_SEND_ZC_REPORT_USAGE (Linux 6.2).
    pub fn uring(
        job: SendJob,
        op: SendOp,
        report_usage: bool,
        clock: Clock,
        cancel: Cancel,
    ) -> Result<Sender, RingError> {
        // Slots for sends not fully completed: up to one per buffer in flight, plus retried
        // short sends on TCP; each send posts at most two CQEs, and the CQ holds twice the SQ
        // entries.
        let max_sends = job.pool * 2 + 2;
        let entries = (max_sends as u32).next_power_of_two().max(8);
        let mut ring = Ring::new(&RingConfig::tuned(entries))?;
        ring.register_buffers(job.pool, job.size)?;
        let report = op.zero_copy() && report_usage;
        let mut p = SendPipeline::new(ring, op, max_sends, report, clock, cancel);
        for i in 0..job.pool {
            fill_pattern(p.buffer_mut(i).expect("a new pipeline is free"), 0);
        }
        Ok(Sender::with(job, How::Uring(p), cancel))
    }

    /// The ring's flags, for an io_uring sender.
    pub fn ring_flags(&self) -> Option<&RingFlags> {
        match &self.how {
            How::Uring(p) => Some(p.ring().flags()),
            _ => None,
        }
    }

    /// The measured part: sends every message over `conn` (one latency sample per message
    /// into `rec`), waits for every zero-copy notification, then ends a TCP stream and returns
    /// its receiver's account (None on UDP, checked by [`verify`] after the clock).
    pub fn send(&mut self, conn: &mut Conn, rec: &mut Recorder) -> Result<Option<Got>> {
        if let (How::Uring(p), true) = (&mut self.how, conn.is_datagram()) {
            send_uring_datagrams(conn, p, &self.job, rec, self.cancel)?;
        } else {
            for seq in 0..self.job.msgs {
                self.send_one(conn, seq, rec)?;
            }
        }
        self.end(conn)
    }

    /// Sends message `seq` over the stream `conn` until the kernel accepted all of it, one
    /// latency sample into `rec`. The io_uring sender's datagram pipeline (many sends in
    /// flight) has no single-message form: it runs only through [`Sender::send`].
    pub fn send_one(&mut self, conn: &mut Conn, seq: u64, rec: &mut Recorder) -> Result<()> {
        let (job, cancel) = (&self.job, self.cancel);
        match &mut self.how {
            How::Classic(buf) => classic_one(conn, buf, seq, rec, cancel),
            How::MsgZerocopy(pool) => {
                msg_zerocopy_one(conn, pool, job.size, seq, rec, cancel)?;
                self.since_reap += 1;
                if self.since_reap >= job.reap {
                    self.since_reap = 0;
                    pool.reap(conn.fd())?;
                }
                Ok(())
            }
            How::Uring(_) if conn.is_datagram() => {
                bail!("the io_uring datagram sender runs only as a whole (Sender::send)")
            }
            How::Uring(p) => uring_stream_one(conn, p, job.size, seq, rec, cancel),
        }
    }

    /// After the last message: waits for every zero-copy notification, then ends a TCP stream
    /// and returns its receiver's account (None on UDP).
    pub fn end(&mut self, conn: &mut Conn) -> Result<Option<Got>> {
        match &mut self.how {
            How::Classic(_) => {}
            How::MsgZerocopy(pool) => pool.drain(conn.fd(), NOTIF_TIMEOUT)?,
            How::Uring(p) => p.drain(NOTIF_TIMEOUT, |_| {})?,
        }
        finish(conn)
    }

    /// After [`Sender::send`]: the zero-copy account and the release latencies (send issued
    /// to its notification); None for a copying sender. An error when the error queue held
    /// messages that were not zero-copy completions.
    pub fn zero_copy(&self) -> Result<Option<(ZcCounts, Histogram<u64>)>> {
        match &self.how {
            How::Classic(_) => Ok(None),
            How::MsgZerocopy(pool) => {
                if pool.other_errors > 0 {
                    bail!(
                        "{} unexpected non-zero-copy message(s) on the error queue",
                        pool.other_errors
                    );
                }
                Ok(Some(pool.ledger().report()))
            }
            How::Uring(p) => Ok(p.op().zero_copy().then(|| p.ledger().report())),
        }
    }
}

/// Ends a TCP stream and collects the receiver's account, inside the measured part.
fn finish(conn: &mut Conn) -> Result<Option<Got>> {
    match conn {
        Conn::Tcp(l) => Ok(Some(Got::Local(l.finish().context("receiver failed")?))),
        Conn::Remote(r) => Ok(Some(Got::Remote(Box::new(
            r.finish().context("receiver failed")?,
        )))),
        Conn::Udp(_) | Conn::RemoteUdp(_) => Ok(None),
    }
}

/// One message by send(2) calls until the kernel accepted all of it.
#[inline(always)]
fn classic_one(
    conn: &mut Conn,
    buf: &mut [u8],
    seq: u64,
    rec: &mut Recorder,
    cancel: Cancel,
) -> Result<()> {
    let fd = conn.fd();
    stamp(buf, seq);
    let t0 = rec.now();
    let mut off = 0;
    while off < buf.len() {
        match errqueue::send(fd, &buf[off..], 0) {
            Ok(n) => off += n,
            Err(e) => cancel.intr(e)?,
        }
    }
    rec.record_since(t0);
    Ok(())
}

/// Waits for a notification when only notifications are outstanding: a bounded wait, since
/// a notification the kernel never posts must fail the trial, not hang it.
fn wait_notif(p: &mut SendPipeline, cancel: Cancel) -> Result<()> {
    match p.wait_timeout(NOTIF_TIMEOUT) {
        Ok(true) => Ok(()),
        Ok(false) => bail!(
            "no completion within {NOTIF_TIMEOUT:?} while {} notification(s) were outstanding",
            p.notifs_pending()
        ),
        Err(e) => Ok(cancel.intr(e)?),
    }
}

/// One message with MSG_ZEROCOPY from a buffer the kernel has released (waiting on the error
/// queue for one when none is free).
#[inline(always)]
fn msg_zerocopy_one(
    conn: &mut Conn,
    pool: &mut ZcPool,
    size: usize,
    seq: u64,
    rec: &mut Recorder,
    cancel: Cancel,
) -> Result<()> {
    let fd = conn.fd();
    let b = loop {
        if let Some(b) = pool.free_buffer() {
            break b;
        }
        match pool.wait(fd, NOTIF_TIMEOUT) {
            Ok(0) => bail!(
                "no MSG_ZEROCOPY completion within {NOTIF_TIMEOUT:?} while all {} buffers were busy",
                pool.len()
            ),
            Ok(_) => {}
            Err(e) => cancel.intr(e)?,
        }
    };
    stamp(pool.buffer_mut(b).expect("free buffer"), seq);
    let t0 = rec.now();
    let mut off = 0;
    while off < size {
        match pool.send(fd, b, off, size - off, 0) {
            Ok(n) => off += n,
            Err(e) => cancel.intr(e)?,
        }
    }
    rec.record_since(t0);
    Ok(())
}

/// Datagrams: keeps every free buffer in flight (up to `job.inflight` results pending) and
/// reaps completions in batches; one latency sample per datagram, from the io_uring_enter that
/// submitted it to the pass that reaped its result.
fn send_uring_datagrams(
    conn: &mut Conn,
    p: &mut SendPipeline,
    job: &SendJob,
    rec: &mut Recorder,
    cancel: Cancel,
) -> Result<()> {
    let (size, msgs, inflight) = (job.size, job.msgs, job.inflight);
    let sock = Fd::Raw(conn.fd().as_raw_fd());
    let clock = *rec.clock();
    let (mut next, mut done) = (0u64, 0u64);
    let mut bad = None;
    while done < msgs {
        while next < msgs && p.can_push() && p.results_pending() < inflight {
            let Some(b) = p.free_buffer() else { break };
            stamp(p.buffer_mut(b).expect("free buffer"), next);
            p.push(b, 0, size, sock, 0)?;
            next += 1;
        }
        if p.results_pending() > 0 {
            if let Err(e) = p.submit_and_wait(1) {
                cancel.intr(e)?;
            }
        } else {
            wait_notif(p, cancel)?;
        }
        let mut run = Run::default();
        p.reap(|d| {
            if d.res != d.len as i32 && bad.is_none() {
                bad = Some((d.res, d.len));
            }
            run.add(clock.ns_between(d.issued, d.reaped), rec);
            done += 1;
        });
        run.flush(rec);
        if let Some((res, len)) = bad {
            bail!("a {len}-byte datagram send completed with {res}");
        }
    }
    Ok(())
}

/// A stream: one message, one send in flight (short sends resubmitted); notifications of
/// earlier sends arrive meanwhile.
#[inline(always)]
fn uring_stream_one(
    conn: &mut Conn,
    p: &mut SendPipeline,
    size: usize,
    seq: u64,
    rec: &mut Recorder,
    cancel: Cancel,
) -> Result<()> {
    let sock = Fd::Raw(conn.fd().as_raw_fd());
    let b = loop {
        if let Some(b) = p.free_buffer() {
            break b;
        }
        wait_notif(p, cancel)?;
        p.reap(|_| {});
    };
    stamp(p.buffer_mut(b).expect("free buffer"), seq);
    // The sample runs from the submission of the message's first send to the pass that reaped
    // its last result: the pipeline's own stamps, no reading of the clock of its own.
    let (mut first, mut last) = (None, None);
    let mut off = 0;
    while off < size {
        while !p.can_push() {
            wait_notif(p, cancel)?;
            p.reap(|_| {});
        }
        p.push(b, off, size - off, sock, libc::MSG_WAITALL)?;
        let mut res = None;
        while res.is_none() {
            if let Err(e) = p.submit_and_wait(1) {
                cancel.intr(e)?;
            }
            p.reap(|d| {
                res = Some(d.res);
                first.get_or_insert(d.issued);
                last = Some(d.reaped);
            });
        }
        match res.expect("loop ends with a result") {
            r if r > 0 => off += r as usize,
            0 => bail!("send returned 0: the receiver closed"),
            r => {
                return Err(anyhow::Error::new(std::io::Error::from_raw_os_error(-r))
                    .context("io_uring send"));
            }
        }
    }
    if let (Some(a), Some(z)) = (first, last) {
        rec.record_ns(rec.clock().ns_between(a, z));
    }
    Ok(())
}

/// The receiving side's CPU time: a thread of this process (to subtract from the sender's),
/// or a thread on the peer host (recorded beside it).
#[derive(Debug, Clone, Copy)]
pub enum PeerUsage {
    Local(Usage),
    Remote(Usage),
}

/// What [`verify`] found: whether what arrived is what was sent, the receiver's CPU time, and
/// figures to record with the trial (sink counters, the peer host's counters).
#[derive(Debug)]
pub struct Delivery {
    pub integrity: Integrity,
    pub peer: Option<PeerUsage>,
    pub extras: Vec<(&'static str, f64)>,
}

/// After the clock: checks what arrived against what `job` sent. A TCP receiver's account
/// comes from [`Sender::send`] (`received`); the peer host's UDP receiver is asked here; the
/// lab's UDP sink is checked by its device counters (`sink`: the lab and its counters read
/// before the trial). `zc` (the zero-copy account) must cover every send on UDP.
pub fn verify(
    conn: &mut Conn,
    received: Option<Got>,
    job: &SendJob,
    zc: Option<&ZcCounts>,
    sink: Option<(&VethLab, SinkCounters)>,
) -> Result<Delivery> {
    let (size, msgs, total) = (job.size, job.msgs, job.bytes());
    let zc_ok = zc.is_none_or(|c| c.ids_completed == c.sends && c.bytes == total);
    let mut extras = Vec::new();
    let (integrity, peer) = match (conn, received) {
        (Conn::Remote(_), Some(Got::Remote(r))) => {
            let want = expected_hash(size, msgs);
            let (ok, method, expected, got) = match r.hash.as_deref() {
                Some(h) => (
                    r.bytes == total && remote::parse_hex64(h) == Some(want),
                    "xxh3-64 of the stream received on the peer host (messages stamped with their sequence number)",
                    format!("{want:016x}"),
                    h.to_string(),
                ),
                None => (
                    r.bytes == total,
                    "byte count only (--sink discard: the peer host did not hash)",
                    format!("{total} bytes"),
                    format!("{} bytes", r.bytes),
                ),
            };
            extras.extend(r.peer_extras());
            let i = Integrity {
                ok,
                method: method.into(),
                expected,
                got,
                bytes_expected: total,
                bytes_got: r.bytes,
            };
            (i, Some(PeerUsage::Remote(r.usage)))
        }
        (Conn::RemoteUdp(u), _) => {
            // After the clock: the receiver counts what arrived once told how much was sent.
            let r = u.finish(msgs).context("the peer's UDP receiver")?;
            let want = expected_digest(size, msgs);
            let i = remote_udp_integrity(
                &r,
                msgs,
                total,
                want,
                "every send accepted in full, every notification received, and the peer host received every datagram intact exactly once (count, bytes, and the sum of each datagram's xxh3-64)",
                (!zc_ok).then_some("notifications missing"),
            );
            extras.extend(r.peer_extras());
            extras.push(("peer_datagrams", r.datagrams.unwrap_or(0) as f64));
            (i, Some(PeerUsage::Remote(r.usage)))
        }
        (Conn::Tcp(_), Some(Got::Local(r))) => {
            let i = match r.hash {
                Some(h) => {
                    let want = expected_hash(size, msgs);
                    Integrity {
                        ok: r.bytes == total && h == want,
                        method: "xxh3-64 of the received stream (messages stamped with their \
                                 sequence number)"
                            .into(),
                        expected: format!("{want:016x}"),
                        got: format!("{h:016x}"),
                        bytes_expected: total,
                        bytes_got: r.bytes,
                    }
                }
                None => Integrity {
                    ok: r.bytes == total,
                    method: "byte count only (--sink discard: the receiver dropped the bytes \
                             with MSG_TRUNC)"
                        .into(),
                    expected: format!("{total} bytes"),
                    got: format!("{} bytes", r.bytes),
                    bytes_expected: total,
                    bytes_got: r.bytes,
                },
            };
            extras.extend(r.peer_extras());
            (i, Some(PeerUsage::Local(r.usage)))
        }
        (Conn::Udp(_), _) => {
            let (net, s0) = sink.context("udp-sink has the lab and its counters")?;
            let s1 = net.sink_counters()?;
            let pk = s1.rx_packets.wrapping_sub(s0.rx_packets);
            let by = s1.rx_bytes.wrapping_sub(s0.rx_bytes);
            let (frames, frame_bytes) = crate::net::netns::udp_frames(size as u64, net.mtu as u64);
            let payload = by.saturating_sub(pk * ETH_IP_HEADERS + msgs * UDP_HEADER);
            let i = Integrity {
                ok: pk == msgs * frames && by == msgs * frame_bytes && zc_ok,
                method: format!(
                    "every send accepted in full, every notification received, and {}'s rx counters grew by the frames of the datagrams sent ({frames} frame(s) of <= {} B each)",
                    net.sink_s_if,
                    net.mtu as u64 + 14
                ),
                expected: format!("{} frames, {} bytes", msgs * frames, msgs * frame_bytes),
                got: format!(
                    "{pk} frames, {by} bytes{}",
                    if zc_ok { "" } else { ", notifications missing" }
                ),
                bytes_expected: total,
                bytes_got: payload,
            };
            extras.push(("sink_rx_packets", pk as f64));
            extras.push(("sink_rx_bytes", by as f64));
            if let (Some(a), Some(b)) = (s0.in_addr_errors, s1.in_addr_errors) {
                extras.push(("sink_ip_in_addr_errors", b.wrapping_sub(a) as f64));
            }
            (i, None)
        }
        (Conn::Tcp(_) | Conn::Remote(_), _) => bail!("the receiver's account is missing"),
    };
    Ok(Delivery {
        integrity,
        peer,
        extras,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_differ_per_message() {
        let mut a = vec![0u8; 64];
        stamp(&mut a, 1);
        let mut b = a.clone();
        stamp(&mut b, 2);
        assert_ne!(a, b);
        assert_ne!(expected_hash(64, 2), expected_hash(64, 3));
        let mut tiny = vec![0u8; 3];
        stamp(&mut tiny, 0x0102_0304);
        assert_eq!(tiny, [4, 3, 2]);
    }
}
