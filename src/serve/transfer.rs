//! The peer side of one transfer (`docs/serve-protocol.md`, "Messages", the roles): a TCP
//! receiver that hashes or counts, a UDP receiver that counts, an echo server, a sender of
//! pattern bytes; each on its own thread pinned to the requested CPU, measuring that thread's
//! own usage, bounded by timeouts, stopped on the client's abort.

use super::session::Event;
use super::{Server, log, nothing_yet};
use crate::hash::{Xxh3, xxh3_64};
use crate::loops::rr::{Server as RrServer, Shape as RrShape};
use crate::measure::usage;
use crate::net::peers::{EchoServer, try_zeroed};
use crate::net::remote::protocol::{MAX_TEXT, Report, Role, Setup, clip, hex64};
use crate::net::remote::wire::{DATA_USER_TIMEOUT, set_user_timeout};
use crate::sys::file::fill_pattern;
use crate::sys::threads::self_cpu_ns;
use std::io::{self, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long after `ready` the client has to open the data connection.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A data connection without progress this long fails its transfer.
const DATA_TIMEOUT: Duration = Duration::from_secs(60);
/// udp-sink: after `finish`, stop when no datagram came for this long ...
const UDP_QUIET: Duration = Duration::from_millis(500);
/// ... or this long after `finish` at the latest.
const UDP_LINGER: Duration = Duration::from_secs(5);

/// A running transfer: how to stop it.
pub(super) struct Active {
    pub(super) id: u64,
    pub(super) role: Role,
    stop: Arc<AtomicBool>,
    /// The accepted data connection, to shut down when the transfer is given up.
    data: Arc<Mutex<Option<TcpStream>>>,
    /// udp-sink: datagrams announced by `finish` (u64::MAX until then).
    pub(super) expect: Arc<AtomicU64>,
    pub(super) handle: JoinHandle<()>,
}

impl Active {
    /// Gives the transfer up: its thread stops and its data connection is shut down.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.data.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// /proc/<pid>/schedstat of ksoftirqd/<cpu>: its CPU time in ns.
fn ksoftirqd_ns(cpu: u32) -> Option<u64> {
    let want = format!("ksoftirqd/{cpu}");
    let p = std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).ok()?;
        (comm.trim() == want).then(|| p.join("schedstat"))
    })?;
    std::fs::read_to_string(p)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sets up the peer side of `s`: binds its socket on the address the client reached, starts
/// its thread, and returns it with the port to announce.
pub(super) fn start(
    srv: &Server,
    s: &Setup,
    role: Role,
    peer_ip: IpAddr,
    local_ip: IpAddr,
    tx: Sender<Event>,
) -> io::Result<(Active, u16)> {
    if let Some(c) = s.cpu {
        let n = crate::sys::cpu::online_count();
        if c as usize >= n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "CPU {c} does not exist on {} ({n} CPUs online)",
                    srv.caps.hostname
                ),
            ));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let data: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
    let expect = Arc::new(AtomicU64::new(u64::MAX));
    let bind = SocketAddr::new(local_ip, 0);
    let job = Job {
        id: s.id,
        cpu: s.cpu,
        peer_ip,
        stop: stop.clone(),
        data: data.clone(),
        expect: expect.clone(),
    };
    let (port, body): (u16, Body) = match role {
        Role::UdpSink => {
            let u = UdpSocket::bind(bind)?;
            // Before `ready`: the client's first burst may arrive before this thread runs.
            let rcvbuf = big_rcvbuf(&u);
            let port = u.local_addr()?.port();
            (port, Box::new(move |j: &Job| udp_sink(j, u, rcvbuf)))
        }
        _ => {
            let l = TcpListener::bind(bind)?;
            let port = l.local_addr()?.port();
            let s = s.clone();
            (
                port,
                Box::new(move |j: &Job| {
                    if role == Role::RrServer && s.connections.is_some() {
                        return rr_crr_server(j, l, &s);
                    }
                    let sock = j.accept(&l)?;
                    drop(l);
                    match role {
                        Role::TcpSink => tcp_sink(
                            j,
                            sock,
                            s.recv_buf.expect("validated") as usize,
                            s.hash.expect("validated"),
                        ),
                        Role::Echo => echo(j, sock, s.msg.expect("validated") as usize),
                        Role::RrServer => rr_server(j, sock, &s),
                        Role::TcpSource | Role::UdpSink => source(
                            j,
                            sock,
                            s.bytes.expect("validated"),
                            s.write_size.expect("validated") as usize,
                        ),
                    }
                }),
            )
        }
    };
    let handle = std::thread::Builder::new()
        .name(format!("zclab-{}", role.name()))
        .spawn(move || {
            if let Some(c) = job.cpu {
                let _ = crate::sys::cpu::pin_to(c as usize);
            }
            let k0 = job.cpu.and_then(ksoftirqd_ns);
            let r = body(&job);
            let k1 = job.cpu.and_then(ksoftirqd_ns);
            let mut r = r.unwrap_or_else(|e| Report {
                id: job.id,
                ok: false,
                error: Some(clip(
                    &if job.stop.load(Ordering::SeqCst) {
                        "aborted by the client".to_string()
                    } else {
                        e.to_string()
                    },
                    MAX_TEXT,
                )),
                ..Default::default()
            });
            r.id = job.id;
            r.cpu = job.cpu;
            if let (Some(a), Some(b)) = (k0, k1) {
                r.ksoftirqd_ns = Some(b.saturating_sub(a));
            }
            let _ = tx.send(Event::Done(r));
        })?;
    Ok((
        Active {
            id: s.id,
            role,
            stop,
            data,
            expect,
            handle,
        },
        port,
    ))
}

/// What a transfer's thread runs.
type Body = Box<dyn FnOnce(&Job) -> io::Result<Report> + Send>;

/// What a transfer's thread works with.
struct Job {
    id: u64,
    cpu: Option<u32>,
    peer_ip: IpAddr,
    stop: Arc<AtomicBool>,
    data: Arc<Mutex<Option<TcpStream>>>,
    expect: Arc<AtomicU64>,
}

impl Job {
    fn stopped(&self) -> io::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "aborted"));
        }
        Ok(())
    }

    /// Accepts the data connection from the client's address within [`ACCEPT_TIMEOUT`];
    /// connections from elsewhere are closed.
    fn accept(&self, l: &TcpListener) -> io::Result<TcpStream> {
        l.set_nonblocking(true)?;
        let t0 = Instant::now();
        loop {
            self.stopped()?;
            match l.accept() {
                Ok((s, from)) if from.ip() == self.peer_ip => {
                    s.set_nonblocking(false)?;
                    s.set_read_timeout(Some(DATA_TIMEOUT))?;
                    s.set_write_timeout(Some(DATA_TIMEOUT))?;
                    set_user_timeout(&s, DATA_USER_TIMEOUT)?;
                    *self.data.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.try_clone()?);
                    self.stopped()?; // an abort that raced the accept
                    return Ok(s);
                }
                Ok((_, from)) => {
                    log(&format!(
                        "transfer {}: closed a data connection from {from}, not the client",
                        self.id
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if t0.elapsed() > ACCEPT_TIMEOUT {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no data connection within {}s", ACCEPT_TIMEOUT.as_secs()),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn data_err(e: io::Error, what: &str, bytes: u64) -> io::Error {
    let k = e.kind();
    if matches!(k, io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{what}: no progress for {}s after {bytes} bytes",
                DATA_TIMEOUT.as_secs()
            ),
        )
    } else {
        io::Error::new(k, format!("{what} after {bytes} bytes: {e}"))
    }
}

fn tcp_sink(j: &Job, mut s: TcpStream, recv_buf: usize, hash: bool) -> io::Result<Report> {
    let mut buf = try_zeroed(recv_buf, "receive buffer")?;
    let mut h = crate::hash::TimedXxh3::new();
    let mut bytes = 0u64;
    let t0 = Instant::now();
    let u0 = usage::thread()?;
    let sink = if hash {
        crate::net::Sink::Hash
    } else {
        crate::net::Sink::Discard
    };
    loop {
        j.stopped()?;
        let n = match crate::net::read_or_discard(&mut s, &mut buf, sink) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(data_err(e, "receive", bytes)),
        };
        if hash {
            h.update(&buf[..n]);
        }
        bytes += n as u64;
    }
    // An abort shuts the socket down, which reads as a clean end of stream.
    j.stopped()?;
    let u1 = usage::thread()?;
    Ok(Report {
        ok: true,
        bytes,
        hash: hash.then(|| hex64(h.digest())),
        hash_ns: hash.then(|| h.ns()),
        usage: u1.since(&u0),
        wall_ns: t0.elapsed().as_nanos() as u64,
        ..Default::default()
    })
}

/// The CPU to hand to a [`crate::net::peers`] thread: the requested one, or none (an
/// impossible CPU, whose pinning fails and is ignored: the thread keeps this thread's mask).
fn peer_cpu(j: &Job) -> usize {
    j.cpu.map_or(usize::MAX, |c| c as usize)
}

fn echo(j: &Job, s: TcpStream, msg: usize) -> io::Result<Report> {
    let t0 = Instant::now();
    let r = EchoServer::spawn(s, peer_cpu(j), msg)?.join();
    j.stopped()?;
    let r = r.map_err(|e| data_err(e, "echo", 0))?;
    Ok(Report {
        ok: true,
        bytes: r.bytes,
        requests: Some(r.bytes / msg as u64),
        usage: r.usage,
        wall_ns: t0.elapsed().as_nanos() as u64,
        ..Default::default()
    })
}

/// rr-server: the server of rr variant `s.server` (built for the setup's sizes) and the
/// shape, or why not.
fn rr_setup(j: &Job, s: &Setup) -> io::Result<(RrServer, RrShape, bool)> {
    let variant = s.server.as_deref().expect("validated");
    let shape = RrShape {
        req: s.req.expect("validated") as usize,
        resp: s.resp.expect("validated") as usize,
    };
    let busy = variant == crate::catalog::rr::CLASSIC_BUSY_POLL;
    Ok((
        crate::loops::rr::server_by_name(variant, shape, j.cpu)?,
        shape,
        busy,
    ))
}

/// The measured part of an rr-server: `run` on `server`, with the thread's usage (an SQPOLL
/// ring's SQ thread counted in it and reported apart), the requests answered and the
/// io_uring calls in the report.
fn rr_measured(
    j: &Job,
    server: &mut RrServer,
    shape: RrShape,
    run: impl FnOnce(&mut RrServer) -> io::Result<()>,
) -> io::Result<Report> {
    let t0 = Instant::now();
    let u0 = usage::thread()?;
    let sq0 = usage::helper_threads("iou-sqp");
    let r = run(server);
    let sq1 = usage::helper_threads("iou-sqp");
    let u1 = usage::thread()?;
    j.stopped()?;
    let served = server.framer.served;
    r.map_err(|e| data_err(e, "rr", served * shape.req as u64))?;
    let sqpoll = usage::helper_threads_since(&sq0, &sq1);
    let mut u = u1.since(&u0);
    u.sys_ns += sqpoll.unwrap_or(0);
    Ok(Report {
        ok: true,
        bytes: served * shape.req as u64,
        requests: Some(served),
        uring_enters: (server.enters > 0).then_some(server.enters),
        sqpoll_ns: sqpoll,
        usage: u,
        wall_ns: t0.elapsed().as_nanos() as u64,
        ..Default::default()
    })
}

/// rr-server: the server of rr variant `s.server` answers requests on `sock` until end of
/// stream (an abort shuts the socket down, which ends it too). classic-busy-poll is the
/// blocking server with SO_BUSY_POLL on the connection; the connection's NAPI id is reported.
fn rr_server(j: &Job, sock: TcpStream, s: &Setup) -> io::Result<Report> {
    let (mut server, shape, busy) = rr_setup(j, s)?;
    sock.set_nodelay(true)?;
    // The servers wait for requests without a timeout of their own: the data connection's
    // read timeout would end a blocking server's wait, but not the others'.
    sock.set_read_timeout(None)?;
    if busy {
        crate::sys::busy_poll::enable(&sock, crate::loops::busy::BUSY_POLL_US)?;
    }
    let mut rep = rr_measured(j, &mut server, shape, |server| server.serve(&sock))?;
    rep.napi_id = busy
        .then(|| crate::sys::busy_poll::napi_id(&sock).map(u64::from))
        .transpose()?;
    Ok(rep)
}

/// rr-server with `connections`: a connection per transaction. The server of rr variant
/// `s.server` accepts `connections` connections with its own mechanism (accept(2), epoll then
/// accept(2), IORING_OP_ACCEPT) and answers each until the client closes it; connections from
/// another address are closed and not counted. An abort shuts the listener down, which ends a
/// waiting accept.
fn rr_crr_server(j: &Job, l: TcpListener, s: &Setup) -> io::Result<Report> {
    let n = s.connections.expect("checked by the caller");
    let (mut server, shape, busy) = rr_setup(j, s)?;
    // Accepted sockets inherit TCP_NODELAY (and SO_BUSY_POLL) from the listener.
    nix::sys::socket::setsockopt(&l, nix::sys::socket::sockopt::TcpNoDelay, &true)?;
    if busy {
        crate::sys::busy_poll::enable(&l, crate::loops::busy::BUSY_POLL_US)?;
    }
    // Stop() shuts down what `data` holds, here the listener: a waiting accept ends. A
    // connection being served ends when the client's side closes (it resets every one).
    let handle = TcpStream::from(std::os::fd::OwnedFd::from(l.try_clone()?));
    *j.data.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
    j.stopped()?;
    rr_measured(j, &mut server, shape, |server| {
        let mut accepted = 0u64;
        while accepted < n {
            let c = server.accept(&l)?;
            j.stopped()?;
            if c.peer_addr()?.ip() != j.peer_ip {
                continue;
            }
            let before = server.framer.served;
            server.serve(&c)?;
            j.stopped()?;
            if server.framer.served == before {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "a connection ended without a request: the client stopped",
                ));
            }
            accepted += 1;
        }
        Ok(())
    })
}

/// tcp-source: writes `bytes` of the lab's pattern (offset 0) in writes of `write_size`,
/// then ends its side. Each write's bytes are generated (and hashed) just before it, in one
/// buffer of `write_size` bytes, so a source of any size costs the server one write's memory.
/// The thread CPU time of generating and hashing is taken out of the reported user time: the
/// report counts the sending, as when the pattern was prepared ahead.
fn source(j: &Job, mut s: TcpStream, bytes: u64, write_size: usize) -> io::Result<Report> {
    let len = (write_size as u64).min(bytes) as usize;
    let mut buf = try_zeroed(len, "send buffer")?;
    let mut h = Xxh3::new();
    let (mut off, mut gen_ns) = (0u64, 0u64);
    let t0 = Instant::now();
    let u0 = usage::thread()?;
    while off < bytes {
        j.stopped()?;
        let n = (bytes - off).min(len as u64) as usize;
        let g0 = self_cpu_ns()?;
        fill_pattern(&mut buf[..n], off);
        h.update(&buf[..n]);
        gen_ns += self_cpu_ns()?.saturating_sub(g0);
        s.write_all(&buf[..n])
            .map_err(|e| data_err(e, "send", off))?;
        off += n as u64;
    }
    // A graceful close: what is still queued is delivered, then the FIN.
    s.shutdown(Shutdown::Write)
        .map_err(|e| data_err(e, "send", off))?;
    let u1 = usage::thread()?;
    let mut usage = u1.since(&u0);
    usage.user_ns = usage.user_ns.saturating_sub(gen_ns);
    Ok(Report {
        ok: true,
        bytes: off,
        hash: Some(hex64(h.digest())),
        usage,
        wall_ns: t0.elapsed().as_nanos() as u64,
        ..Default::default()
    })
}

/// Gives a UDP socket a large receive buffer: SO_RCVBUFFORCE when permitted (root), else
/// SO_RCVBUF up to net.core.rmem_max. Returns the size the kernel reports.
fn big_rcvbuf(u: &UdpSocket) -> Option<u64> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    const WANT: usize = 32 << 20;
    if setsockopt(u, sockopt::RcvBufForce, &WANT).is_err() {
        let _ = setsockopt(u, sockopt::RcvBuf, &WANT);
    }
    getsockopt(u, sockopt::RcvBuf).ok().map(|v| v as u64)
}

/// `Udp: InCsumErrors` and `Udp: RcvbufErrors` of this network namespace (/proc/net/snmp):
/// where datagrams that never reach the receiver went. Namespace-wide, so other UDP traffic
/// on the host counts too; None when unreadable.
fn udp_drop_counters() -> (Option<u64>, Option<u64>) {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    (
        crate::net::netns::snmp_field(&text, "Udp", "InCsumErrors"),
        crate::net::netns::snmp_field(&text, "Udp", "RcvbufErrors"),
    )
}

fn udp_sink(j: &Job, u: UdpSocket, rcvbuf: Option<u64>) -> io::Result<Report> {
    u.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = vec![0u8; 65536];
    let (mut datagrams, mut bytes, mut digest, mut foreign) = (0u64, 0u64, 0u64, 0u64);
    let t0 = Instant::now();
    let u0 = usage::thread()?;
    let snmp0 = udp_drop_counters();
    let mut last = Instant::now();
    let mut finished_at: Option<Instant> = None;
    loop {
        j.stopped()?;
        match u.recv_from(&mut buf) {
            Ok((n, from)) => {
                if from.ip() != j.peer_ip {
                    foreign += 1;
                    continue;
                }
                datagrams += 1;
                bytes += n as u64;
                digest = digest.wrapping_add(xxh3_64(&buf[..n]));
                last = Instant::now();
            }
            Err(e) if nothing_yet(&e) => {}
            Err(e) => return Err(data_err(e, "receive", bytes)),
        }
        let expect = j.expect.load(Ordering::SeqCst);
        if expect != u64::MAX {
            let f = *finished_at.get_or_insert_with(Instant::now);
            if datagrams >= expect || last.elapsed() > UDP_QUIET && f.elapsed() > UDP_QUIET {
                break;
            }
            if f.elapsed() > UDP_LINGER {
                break;
            }
        } else if last.elapsed() > DATA_TIMEOUT {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no datagram and no finish for {}s (after {datagrams} datagrams)",
                    DATA_TIMEOUT.as_secs()
                ),
            ));
        }
    }
    let u1 = usage::thread()?;
    let snmp1 = udp_drop_counters();
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.wrapping_sub(a?));
    Ok(Report {
        ok: true,
        bytes,
        datagrams: Some(datagrams),
        udp_in_csum_errors: delta(snmp0.0, snmp1.0),
        udp_rcvbuf_errors: delta(snmp0.1, snmp1.1),
        digest: Some(hex64(digest)),
        foreign: Some(foreign),
        rcvbuf,
        usage: u1.since(&u0),
        wall_ns: t0.elapsed().as_nanos() as u64,
        ..Default::default()
    })
}
