//! Request/response transactions (the `rr` experiment): the wire format and its checks, the
//! client peer thread (closed-loop ping-pong, open loop at a fixed rate, connect per
//! transaction), and the measured server loops: blocking recv/send, epoll, and the io_uring
//! servers of [`crate::uring::rr`].
//!
//! **Wire format.** A request is `R` bytes: its sequence number (u64 little-endian), then one of
//! 16 distinct pattern bodies (by sequence number modulo 16). A response is `S` bytes: the
//! request's sequence number, the xxh3-64 of the request's body as the server received it, then
//! a fixed pattern. The client checks every response: the sequence number it expects next, the
//! checksum of the body it sent, and the pattern; so a lost, stale, reordered, truncated or
//! corrupted request or response fails the trial. Both sizes are at least 16 bytes.
//!
//! **Open loop.** Request `i` is due at `start + i / rate`; latency is taken from that intended
//! time to the response's arrival, so a server (or client) that falls behind shows in the tail
//! instead of slowing the schedule (coordinated omission). The client never waits for a response
//! before sending the next request (its socket is non-blocking; requests queue in TCP), and it
//! reports the rate it achieved: completed transactions over the time from the first intended
//! send to the last response.

use crate::hash::{Xxh3, xxh3_64};
use crate::measure::{Clock, Recorder, Usage, usage};
use crate::net::peers::{PeerThread, reset, spawn};
use crate::ring::{RingConfig, Want};
use crate::sys::file::fill_pattern;
use crate::uring::rr::{RecvStyle, RrUring};
use hdrhistogram::Histogram;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

/// The smallest request or response: sequence number and checksum.
pub const MIN_SIZE: usize = 16;
/// Distinct request bodies the client cycles through.
const DISTINCT: usize = 16;
/// Requests one receive may complete at most, in the servers' buffer sizes: a receive buffer of
/// this many requests, a response buffer of one more.
pub const MAX_BATCH: usize = 16;
/// Offset of the response pattern in the lab's pattern stream (any fixed value).
const RESP_PATTERN_OFF: u64 = 1 << 40;
/// An open-loop target counts as achieved at this share of it or more (the span includes the
/// last response's latency, so a short pass on a noisy machine falls short by its tail).
pub const ACHIEVED_SHARE: f64 = 0.9;

/// Connection per transaction or one connection for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection, transactions one after another (or pipelined in open loop).
    Rr,
    /// connect, request, response, close for every transaction (closed loop only).
    Crr,
}

/// Request and response sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub req: usize,
    pub resp: usize,
}

/// The client's 16 requests and the checksum of each body.
pub(crate) struct Requests {
    bufs: Vec<Vec<u8>>,
    hashes: Vec<u64>,
}

impl Requests {
    pub(crate) fn new(req: usize) -> Requests {
        let mut bufs = Vec::with_capacity(DISTINCT);
        let mut hashes = Vec::with_capacity(DISTINCT);
        for k in 0..DISTINCT {
            let mut b = vec![0u8; req];
            fill_pattern(&mut b, (k * req) as u64);
            hashes.push(xxh3_64(&b[8..]));
            bufs.push(b);
        }
        Requests { bufs, hashes }
    }

    /// Request `seq`, its sequence number written in.
    pub(crate) fn get(&mut self, seq: u64) -> &[u8] {
        let b = &mut self.bufs[seq as usize % DISTINCT];
        b[..8].copy_from_slice(&seq.to_le_bytes());
        b
    }
}

/// One response of `resp` bytes with a zero header: the template servers and clients share.
pub fn response_template(resp: usize) -> Vec<u8> {
    let mut v = vec![0u8; resp];
    fill_pattern(&mut v[MIN_SIZE..], RESP_PATTERN_OFF);
    v
}

/// What is wrong with response `got` to request `seq`, if anything.
pub(crate) fn check_response(
    got: &[u8],
    seq: u64,
    reqs: &Requests,
    template: &[u8],
) -> Option<String> {
    let s = u64::from_le_bytes(got[..8].try_into().expect("8 bytes"));
    let h = u64::from_le_bytes(got[8..16].try_into().expect("8 bytes"));
    if s != seq {
        return Some(format!("response {seq} carries sequence number {s}"));
    }
    if h != reqs.hashes[seq as usize % DISTINCT] {
        return Some(format!(
            "response {seq}: the server's checksum {h:016x} of the request differs from the body sent"
        ));
    }
    (got[MIN_SIZE..] != template[MIN_SIZE..]).then(|| format!("response {seq}: body differs"))
}

/// Splits the server's byte stream into requests and writes a response for each.
pub struct ServerFramer {
    shape: Shape,
    got: usize,
    head: [u8; 8],
    hasher: Xxh3,
    /// Requests answered so far.
    pub served: u64,
}

impl ServerFramer {
    pub fn new(shape: Shape) -> ServerFramer {
        ServerFramer {
            shape,
            got: 0,
            head: [0; 8],
            hasher: Xxh3::new(),
            served: 0,
        }
    }

    /// Whether the stream stopped inside a request.
    pub fn mid_request(&self) -> bool {
        self.got > 0
    }

    /// Takes `chunk` off the stream; for every request it completes, writes the response's
    /// header into the next slot of `out` (a [`out_template`]). Returns the bytes of `out` to
    /// send.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut [u8]) -> io::Result<usize> {
        let (req, resp) = (self.shape.req, self.shape.resp);
        let mut k = 0;
        let mut emit = |seq: u64, h: u64, served: &mut u64| -> io::Result<()> {
            let slot = out
                .get_mut(k * resp..(k + 1) * resp)
                .ok_or_else(|| io::Error::other("more requests in one receive than expected"))?;
            slot[..8].copy_from_slice(&seq.to_le_bytes());
            slot[8..16].copy_from_slice(&h.to_le_bytes());
            k += 1;
            *served += 1;
            Ok(())
        };
        while !chunk.is_empty() {
            if self.got == 0 && chunk.len() >= req {
                // The usual case: a whole request at the start of the chunk.
                let seq = u64::from_le_bytes(chunk[..8].try_into().expect("8 bytes"));
                emit(seq, xxh3_64(&chunk[8..req]), &mut self.served)?;
                chunk = &chunk[req..];
                continue;
            }
            if self.got == 0 {
                self.hasher.reset();
            }
            let take = (req - self.got).min(chunk.len());
            let part = &chunk[..take];
            let mut body = 0;
            if self.got < 8 {
                body = (8 - self.got).min(take);
                self.head[self.got..self.got + body].copy_from_slice(&part[..body]);
            }
            self.hasher.update(&part[body..]);
            self.got += take;
            chunk = &chunk[take..];
            if self.got == req {
                self.got = 0;
                emit(
                    u64::from_le_bytes(self.head),
                    self.hasher.digest(),
                    &mut self.served,
                )?;
            }
        }
        Ok(k * resp)
    }
}

/// The servers' response buffer: [`MAX_BATCH`] + 1 response templates in a row.
pub fn out_template(resp: usize) -> Vec<u8> {
    response_template(resp).repeat(MAX_BATCH + 1)
}

/// The servers' receive size: [`MAX_BATCH`] requests.
pub fn in_capacity(req: usize) -> usize {
    req * MAX_BATCH
}

/// How the measured server moves bytes.
pub enum ServerKind {
    /// recv(2) and send(2) on a blocking socket.
    Blocking,
    /// A non-blocking socket, epoll_wait(2) for readiness, recv until EAGAIN, send.
    Epoll(nix::sys::epoll::Epoll),
    /// io_uring ([`RrUring`]).
    Uring(Box<RrUring>),
}

/// A measured server: its mechanism, buffers and framer.
pub struct Server {
    pub kind: ServerKind,
    pub framer: ServerFramer,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// System calls of the io_uring loop (io_uring_enter), when counted there.
    pub enters: u64,
}

impl Server {
    /// A blocking or epoll server for `shape`.
    pub fn classic(shape: Shape, epoll: bool) -> io::Result<Server> {
        let kind = if epoll {
            ServerKind::Epoll(nix::sys::epoll::Epoll::new(
                nix::sys::epoll::EpollCreateFlags::EPOLL_CLOEXEC,
            )?)
        } else {
            ServerKind::Blocking
        };
        Ok(Server {
            kind,
            framer: ServerFramer::new(shape),
            inbuf: vec![0; in_capacity(shape.req)],
            out: out_template(shape.resp),
            enters: 0,
        })
    }

    /// An io_uring server on `ring` (for [`RecvStyle::Fixed`], with registered buffers of at
    /// least [`in_capacity`] and `out_template(resp).len()` bytes).
    pub fn uring(shape: Shape, ring: crate::ring::Ring, style: RecvStyle) -> io::Result<Server> {
        let u = RrUring::new(
            ring,
            style,
            in_capacity(shape.req),
            out_template(shape.resp),
        )?;
        Ok(Server {
            kind: ServerKind::Uring(Box::new(u)),
            framer: ServerFramer::new(shape),
            inbuf: Vec::new(),
            out: Vec::new(),
            enters: 0,
        })
    }

    /// Accepts one connection on `l` with this server's mechanism.
    pub fn accept(&mut self, l: &TcpListener) -> io::Result<TcpStream> {
        match &mut self.kind {
            ServerKind::Blocking => Ok(l.accept()?.0),
            ServerKind::Epoll(ep) => {
                wait_in(ep, l)?;
                Ok(l.accept()?.0)
            }
            ServerKind::Uring(u) => u
                .accept(l.as_raw_fd(), &mut self.enters)
                .map(TcpStream::from),
        }
    }

    /// Serves `conn` until the client closes it (end of stream, or a reset between requests;
    /// on a connected UDP socket, a datagram of zero bytes).
    pub fn serve(&mut self, conn: &(impl AsFd + AsRawFd)) -> io::Result<()> {
        let framer = &mut self.framer;
        match &mut self.kind {
            ServerKind::Blocking => loop {
                let n = match recv(conn, &mut self.inbuf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    break;
                }
                let k = framer.feed(&self.inbuf[..n], &mut self.out)?;
                send_all(conn, &self.out[..k])?;
            },
            ServerKind::Epoll(ep) => {
                set_nonblocking(conn)?;
                let r = serve_epoll(ep, conn, framer, &mut self.inbuf, &mut self.out);
                let _ = ep.delete(conn);
                r?;
            }
            ServerKind::Uring(u) => {
                let s = u.serve(conn, |chunk, out| framer.feed(chunk, out))?;
                self.enters += s.enters;
            }
        }
        if self.framer.mid_request() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed the connection inside a request",
            ));
        }
        Ok(())
    }
}

/// O_NONBLOCK on `fd` (fcntl(2)).
fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let fl = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Buffers in the multishot server's provided-buffer ring.
pub const MULTISHOT_BUFFERS: u16 = 64;

/// The ring and receive style of rr's io_uring server variants, by variant name (None for
/// the classic servers); `cpu` is the SQPOLL thread's (None: unpinned). Every ring has 8 entries and no
/// optional setup flag beyond its variant's own, so the variants differ by one thing each.
pub fn uring_server(variant: &str, cpu: Option<u32>) -> Option<(RingConfig, RecvStyle)> {
    use crate::catalog::rr as names;
    let plain = RingConfig {
        entries: 8,
        ..Default::default()
    };
    Some(match variant {
        names::URING_ONESHOT => (plain, RecvStyle::OneShot),
        names::URING_MULTISHOT => (
            plain,
            RecvStyle::Multishot {
                buffers: MULTISHOT_BUFFERS,
            },
        ),
        names::URING_FIXED => (plain, RecvStyle::Fixed),
        names::URING_SQPOLL => (RingConfig::sqpoll(8, 1000, cpu), RecvStyle::OneShot),
        names::URING_DEFER_TASKRUN => (
            RingConfig {
                single_issuer: Want::Require,
                defer_taskrun: Want::Require,
                ..plain
            },
            RecvStyle::OneShot,
        ),
        _ => return None,
    })
}

/// The registered buffers a [`RecvStyle::Fixed`] server needs for `shape`: two (receive,
/// response) of this size.
pub fn fixed_buffer_size(shape: Shape) -> usize {
    in_capacity(shape.req).max(out_template(shape.resp).len())
}

/// The server of rr variant `variant` for `shape`, built without a trial to record into
/// (`zclab serve` runs it for a client on another host; the rr experiment builds the same
/// servers through its trials, which record the ring's flags). Busy polling is the caller's:
/// classic-busy-poll is the blocking server here.
pub fn server_by_name(variant: &str, shape: Shape, cpu: Option<u32>) -> io::Result<Server> {
    use crate::catalog::rr as names;
    match variant {
        names::CLASSIC_BLOCKING | names::CLASSIC_BUSY_POLL => Server::classic(shape, false),
        names::CLASSIC_EPOLL => Server::classic(shape, true),
        v => {
            let (cfg, style) = uring_server(v, cpu).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no rr server variant {v:?}"),
                )
            })?;
            let mut ring = crate::ring::Ring::new(&cfg).map_err(io::Error::other)?;
            if style == RecvStyle::Fixed {
                ring.register_buffers(2, fixed_buffer_size(shape))
                    .map_err(io::Error::other)?;
            }
            Server::uring(shape, ring, style)
        }
    }
}

/// An error once SIGINT or SIGTERM has arrived (checked where a blocking call returned EINTR).
pub(crate) fn cancelled() -> io::Result<()> {
    if crate::sys::signal::Cancel::process().is_cancelled() {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes; end of stream before that is an error.
fn read_all(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("server closed the connection {got} bytes into a response"),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => cancelled()?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf`.
fn write_all(s: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => cancelled()?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// recv(2) of up to `buf.len()` bytes, retried when a signal interrupts it.
fn recv(s: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::sys::socket::recv(s.as_raw_fd(), buf, nix::sys::socket::MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => cancelled()?,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// send(2) until all of `buf` is gone; on a non-blocking socket, waits for room with poll(2).
fn send_all(s: &(impl AsFd + AsRawFd), mut buf: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    while !buf.is_empty() {
        match send(s.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "send returned 0")),
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => cancelled()?,
            Err(nix::errno::Errno::EAGAIN) => {
                wait_fd(s, nix::poll::PollFlags::POLLOUT, None)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// poll(2) on one descriptor until `ev` or the timeout (ns resolution with ppoll(2)): whether
/// an event came.
pub(crate) fn wait_fd(
    fd: &impl AsFd,
    ev: nix::poll::PollFlags,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let mut fds = [nix::poll::PollFd::new(fd.as_fd(), ev)];
    let ts = timeout.map(nix::sys::time::TimeSpec::from_duration);
    match nix::poll::ppoll(&mut fds, ts, None) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => cancelled().map(|()| false),
        Err(e) => Err(e.into()),
    }
}

/// Waits with epoll until `fd` is readable (it is added for the wait and removed after).
fn wait_in(ep: &nix::sys::epoll::Epoll, fd: &impl AsFd) -> io::Result<()> {
    use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
    ep.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
    let mut ev = [EpollEvent::empty()];
    let r = loop {
        match ep.wait(&mut ev, EpollTimeout::NONE) {
            Ok(n) if n > 0 => break Ok(()),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {
                if let Err(e) = cancelled() {
                    break Err(e);
                }
            }
            Err(e) => break Err(e.into()),
        }
    };
    let _ = ep.delete(fd);
    r
}

/// The epoll server's loop on one non-blocking connection: wait for readability, receive until
/// EAGAIN, answering each chunk's requests.
fn serve_epoll(
    ep: &nix::sys::epoll::Epoll,
    conn: &(impl AsFd + AsRawFd),
    framer: &mut ServerFramer,
    inbuf: &mut [u8],
    out: &mut [u8],
) -> io::Result<()> {
    use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
    ep.add(conn, EpollEvent::new(EpollFlags::EPOLLIN, 2))?;
    let mut ev = [EpollEvent::empty(); 4];
    loop {
        match ep.wait(&mut ev, EpollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => cancelled()?,
            Err(e) => return Err(e.into()),
        }
        loop {
            let n = match recv(conn, inbuf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e),
            };
            let k = framer.feed(&inbuf[..n], out)?;
            send_all(conn, &out[..k])?;
        }
    }
}

/// What the client did: its latency histogram (ns), the transactions it completed, the first
/// integrity failure, its CPU usage, and for open loop the span of the schedule.
pub struct ClientReport {
    pub hist: Histogram<u64>,
    pub done: u64,
    /// Responses that failed a check, and the first such failure.
    pub bad: u64,
    /// UDP: transactions whose request or response never arrived (open loop only; a closed
    /// loop fails on the first).
    pub lost: u64,
    pub first_bad: Option<String>,
    pub usage: Usage,
    /// From the start (the first intended send) to the last response, ns.
    pub span_ns: u64,
    /// Open loop: the rate asked for.
    pub rate: Option<f64>,
}

impl ClientReport {
    /// Completed transactions per second over the span.
    pub fn achieved_rate(&self) -> f64 {
        self.done as f64 * 1e9 / self.span_ns.max(1) as f64
    }
}

/// One client run: `n` transactions of `shape` to `addr`, in `mode`, closed loop or at `rate`
/// per second; sockets created in network namespace `netns` when given. With `udp`, the
/// transactions go over that socket, connected to the server's, one datagram each way
/// ([`super::rr_udp`]), and `addr` and `netns` are not used; with `stream`, the rr mode runs
/// on that connection (to a server on another host) instead of one of its own.
#[derive(Debug, Clone)]
pub struct ClientJob {
    pub shape: Shape,
    pub n: u64,
    pub mode: Mode,
    pub rate: Option<f64>,
    pub addr: SocketAddr,
    pub netns: Option<String>,
    pub clock: Clock,
    pub udp: Option<Arc<UdpSocket>>,
    pub stream: Option<Arc<TcpStream>>,
}

/// Starts the client thread pinned to `cpu`.
pub fn spawn_client(job: ClientJob, cpu: usize) -> io::Result<PeerThread<ClientReport>> {
    spawn("zclab-rr-client", "rr client", cpu, move || {
        if let Some(ns) = &job.netns {
            crate::net::netns::enter_netns(ns)?;
        }
        let u0 = usage::thread()?;
        let mut r = run_client(&job)?;
        r.usage = usage::thread()?.since(&u0);
        Ok(r)
    })
}

/// The client's run on the calling thread (usage not filled in).
pub fn run_client(job: &ClientJob) -> io::Result<ClientReport> {
    // Open-loop sends wake from ppoll on time only without the default 50 us slack.
    let _ = nix::sys::prctl::set_timerslack(1);
    match (&job.udp, job.mode, job.rate) {
        (Some(s), Mode::Rr, rate) => super::rr_udp::client(job, s, rate),
        (Some(_), Mode::Crr, _) => Err(io::Error::other("UDP has no connections")),
        (None, mode, rate) => tcp_client(job, mode, rate),
    }
}

/// The TCP client: ping-pong, connect per transaction, or open loop.
fn tcp_client(job: &ClientJob, mode: Mode, rate: Option<f64>) -> io::Result<ClientReport> {
    let r = match (mode, rate) {
        (Mode::Rr, None) => closed_rr(job),
        (Mode::Crr, None) => closed_crr(job),
        (Mode::Rr, Some(rate)) => open_rr(job, rate),
        (Mode::Crr, Some(_)) => Err(io::Error::other("connect per transaction is closed-loop")),
    };
    if r.is_err() && mode == Mode::Crr {
        // The server waits in accept for the next transaction: one empty connection ends
        // its wait (it then fails the trial: a connection without a request).
        let _ = TcpStream::connect(job.addr);
    }
    r
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The rr mode's connection: the job's own, or a new one to `addr`.
fn connection(job: &ClientJob) -> io::Result<TcpStream> {
    match &job.stream {
        Some(s) => {
            let s = s.try_clone()?;
            s.set_nodelay(true)?;
            Ok(s)
        }
        None => connect(job.addr),
    }
}

pub(crate) fn report(
    rec: &mut Recorder,
    done: u64,
    bad: u64,
    first_bad: Option<String>,
    span_ns: u64,
) -> ClientReport {
    ClientReport {
        hist: rec.take(),
        done,
        bad,
        lost: 0,
        first_bad,
        usage: Usage::default(),
        span_ns,
        rate: None,
    }
}

/// The closed loop both connection modes run: `job.n` transactions, one at a time. Each is
/// timed from before `transact(request, response)` to its return; `then` disposes of what it
/// returned (outside the sample), and the response is checked.
pub(crate) fn closed_loop<T>(
    job: &ClientJob,
    mut transact: impl FnMut(&[u8], &mut [u8]) -> io::Result<T>,
    mut then: impl FnMut(T) -> io::Result<()>,
) -> io::Result<ClientReport> {
    let mut reqs = Requests::new(job.shape.req);
    let template = response_template(job.shape.resp);
    let mut resp = vec![0u8; job.shape.resp];
    let mut rec = Recorder::new(job.clock);
    let (mut bad, mut first_bad) = (0, None);
    let start = rec.now();
    for seq in 0..job.n {
        // SIGINT/SIGTERM may have been taken by another thread: the flag is read every time.
        cancelled()?;
        let t = rec.now();
        let out = transact(reqs.get(seq), &mut resp)?;
        rec.record_since(t);
        then(out)?;
        if let Some(why) = check_response(&resp, seq, &reqs, &template) {
            bad += 1;
            first_bad.get_or_insert(why);
        }
    }
    let span = job.clock.ns_between(start, rec.now());
    Ok(report(&mut rec, job.n, bad, first_bad, span))
}

/// Ping-pong on one connection: write a request, read its response, check it, next.
fn closed_rr(job: &ClientJob) -> io::Result<ClientReport> {
    let mut s = connection(job)?;
    let mut r = closed_loop(
        job,
        |req, resp| {
            write_all(&mut s, req)?;
            read_all(&mut s, resp)
        },
        |()| Ok(()),
    )?;
    s.shutdown(Shutdown::Write)?;
    let mut rest = [0u8; 64];
    if s.read(&mut rest)? != 0 {
        r.bad += 1;
        r.first_bad
            .get_or_insert("bytes after the last response".into());
    }
    Ok(r)
}

/// Connect per transaction: connect, request, response, check, then close with a reset
/// (SO_LINGER 0), so no TIME_WAIT sockets pile up and exhaust the ephemeral ports.
fn closed_crr(job: &ClientJob) -> io::Result<ClientReport> {
    closed_loop(
        job,
        |req, resp| {
            let mut s = connect(job.addr)?;
            write_all(&mut s, req)?;
            read_all(&mut s, resp)?;
            Ok(s)
        },
        reset,
    )
}

/// Open loop on one connection: request `i` is queued at its intended time whatever is still
/// outstanding; the socket is non-blocking, so sending and receiving never wait on each other.
fn open_rr(job: &ClientJob, rate: f64) -> io::Result<ClientReport> {
    let (req, resp_len) = (job.shape.req, job.shape.resp);
    let mut s = connection(job)?;
    s.set_nonblocking(true)?;
    let mut reqs = Requests::new(req);
    let template = response_template(resp_len);
    let mut rec = Recorder::new(job.clock);
    let clock = job.clock;
    let due = |i: u64| (i as f64 * 1e9 / rate) as u64;
    let mut outq: Vec<u8> = Vec::with_capacity(req * 64);
    let mut off = 0;
    let mut inb = vec![0u8; (64 << 10).max(resp_len * 4)];
    let mut filled = 0;
    let (mut sent, mut done, mut bad, mut first_bad) = (0u64, 0u64, 0u64, None);
    let mut last = 0u64;
    let start = clock.now();
    while done < job.n {
        cancelled()?;
        let now = clock.ns_between(start, clock.now());
        let mut progress = false;
        while sent < job.n && due(sent) <= now && outq.len() < req * 64 {
            outq.extend_from_slice(reqs.get(sent));
            sent += 1;
            progress = true;
        }
        if off < outq.len() {
            match s.write(&outq[off..]) {
                Ok(n) => {
                    off += n;
                    progress |= n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => cancelled()?,
                Err(e) => return Err(e),
            }
            if off == outq.len() {
                outq.clear();
                off = 0;
            }
        }
        match s.read(&mut inb[filled..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("server closed after {done} of {} responses", job.n),
                ));
            }
            Ok(n) => {
                filled += n;
                progress = true;
                let at = clock.ns_between(start, clock.now());
                let mut p = 0;
                while filled - p >= resp_len {
                    let seq = done;
                    rec.record_ns(at.saturating_sub(due(seq)));
                    if let Some(why) = check_response(&inb[p..p + resp_len], seq, &reqs, &template)
                    {
                        bad += 1;
                        first_bad.get_or_insert(why);
                    }
                    p += resp_len;
                    done += 1;
                    last = at;
                }
                inb.copy_within(p..filled, 0);
                filled -= p;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => cancelled()?,
            Err(e) => return Err(e),
        }
        if !progress {
            let mut ev = nix::poll::PollFlags::POLLIN;
            if off < outq.len() {
                ev |= nix::poll::PollFlags::POLLOUT;
            }
            let wait = (sent < job.n && outq.len() < req * 64)
                .then(|| Duration::from_nanos(due(sent).saturating_sub(now)));
            wait_fd(&s, ev, wait)?;
        }
    }
    s.shutdown(Shutdown::Write)?;
    let mut r = report(&mut rec, done, bad, first_bad, last);
    r.rate = Some(rate);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests cut anywhere (one byte at a time, across the header, several per chunk) are
    /// answered once each, in order, with the checksum the client expects.
    #[test]
    fn framer_answers_requests_cut_anywhere() {
        for (req, resp) in [(16, 16), (64, 100), (5000, 64)] {
            let shape = Shape { req, resp };
            let mut reqs = Requests::new(req);
            let template = response_template(resp);
            let stream: Vec<u8> = (0..40u64).flat_map(|s| reqs.get(s).to_vec()).collect();
            for cut in [1, 3, 7, 9, req - 1, req, req + 5, 3 * req + 1] {
                let mut f = ServerFramer::new(shape);
                let mut out = out_template(resp);
                let mut got = Vec::new();
                for chunk in stream.chunks(cut.min(in_capacity(req))) {
                    let n = f.feed(chunk, &mut out).unwrap();
                    got.extend_from_slice(&out[..n]);
                }
                assert!(!f.mid_request());
                assert_eq!(f.served, 40, "cut {cut}");
                for (seq, r) in got.chunks(resp).enumerate() {
                    assert_eq!(check_response(r, seq as u64, &reqs, &template), None);
                }
            }
        }
    }

    /// A changed body byte, a wrong sequence number and a changed response pattern are caught.
    #[test]
    fn client_check_catches_corruption() {
        let mut reqs = Requests::new(64);
        let template = response_template(32);
        let mut f = ServerFramer::new(Shape { req: 64, resp: 32 });
        let mut out = out_template(32);
        let mut r = reqs.get(5).to_vec();
        let n = f.feed(&r, &mut out).unwrap();
        assert_eq!(check_response(&out[..n], 5, &reqs, &template), None);
        assert!(check_response(&out[..n], 6, &reqs, &template).is_some());
        let mut bad = out[..n].to_vec();
        bad[20] ^= 1;
        assert!(check_response(&bad, 5, &reqs, &template).is_some());
        r[30] ^= 1;
        let n = f.feed(&r, &mut out).unwrap();
        assert!(check_response(&out[..n], 5, &reqs, &template).is_some());
    }
}
