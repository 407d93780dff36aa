//! `zclab serve`: the peer side of the socket experiments on another host, as iperf3 -s,
//! netserver or neper's server let a benchmark run across two machines.
//!
//! It listens on a control port (`127.0.0.1:7878` unless `--listen` names another address),
//! speaks the control protocol of [`crate::net::remote`] (documented in
//! `docs/serve-protocol.md`) with one client at a time, and for each transfer the client asks
//! for sets up one of the lab's own peer sides on an ephemeral port of the address the client
//! reached — a TCP receiver that hashes or counts, a UDP receiver that counts, an echo server,
//! a sender of pattern bytes — pins its thread to the requested CPU, and reports that thread's
//! own accounting (CPU time, context switches, bytes, hash) before tearing it down. It never
//! runs anything a client sends: a client only chooses among these roles and their sizes,
//! within limits.
//!
//! Robustness: every control message is validated (a malformed or oversized one is answered
//! with an error, logged, and ends that connection); a second client is refused with a
//! message while the first is served; clients that disconnect at any point only end their own
//! session; every wait (hello, data connection, data progress, idle session) has a timeout.
//! SIGINT/SIGTERM stop the server.

use crate::caps::{self, Caps};
use crate::measure::usage;
use crate::net::peers::{EchoServer, PatternStream, Streamer};
use crate::net::remote::{
    self, BadMsg, LineReader, Msg, PROTOCOL, Report, Role, Setup, hex64, send_msg,
};
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// How long a new client has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after `ready` the client has to open the data connection.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A data connection without progress this long fails its transfer.
const DATA_TIMEOUT: Duration = Duration::from_secs(60);
/// udp-sink: after `finish`, stop when no datagram came for this long ...
const UDP_QUIET: Duration = Duration::from_millis(500);
/// ... or this long after `finish` at the latest.
const UDP_LINGER: Duration = Duration::from_secs(5);
/// Refusals being delivered at once (each on a short-lived thread); beyond, connections are
/// closed without a message.
const MAX_REFUSALS: usize = 8;

/// Options of `zclab serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Control address to listen on, ADDR[:PORT] (default port 7878). Only loopback unless
    /// you name another address: the server accepts any client that reaches it. Port 0 picks
    /// a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: String,
    /// Close a session after this many seconds without a control message while no transfer
    /// is running.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,
    /// Largest stream a client may ask the pattern sender (tcp-source) for; it is held in
    /// memory. K/M/G are powers of 1024.
    #[arg(long, default_value = "1GiB", value_parser = crate::harness::size_arg)]
    pub max_source_bytes: u64,
    /// Only log sessions, refusals and errors, not every transfer.
    #[arg(long)]
    pub quiet: bool,
}

/// What every session needs to know about the server.
struct Server {
    caps: Caps,
    hello: remote::Hello,
    idle: Duration,
    max_source: u64,
    quiet: bool,
    /// Memory of the last pattern source, reused while clients ask for the same size.
    pattern: Mutex<Option<PatternStream>>,
}

fn log(s: &str) {
    eprintln!("zclab serve: {s}");
}

/// Runs the server until SIGINT/SIGTERM; returns the exit code.
pub fn run(args: &ServeArgs) -> anyhow::Result<i32> {
    let (host, port) =
        remote::split_host_port(&args.listen, remote::DEFAULT_PORT).map_err(anyhow::Error::msg)?;
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("--listen {}: cannot resolve {host}: {e}", args.listen))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--listen {}: {host} has no address", args.listen))?;
    crate::harness::install_signal_handlers();
    let listener =
        TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let caps = caps::probe(&std::env::temp_dir());
    let hello = remote::hello("server", &caps, &crate::harness::git_revision());
    let server = Arc::new(Server {
        hello,
        idle: Duration::from_secs(args.idle_timeout),
        max_source: args.max_source_bytes,
        quiet: args.quiet,
        pattern: Mutex::new(None),
        caps,
    });
    log(&format!(
        "listening on {bound} (control protocol {PROTOCOL}, zclab {}, host {}, kernel {}, {} CPUs); one client at a time",
        env!("CARGO_PKG_VERSION"),
        server.caps.hostname,
        server.caps.kernel.release,
        crate::sys::cpu::online_count()
    ));
    let busy: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
    let refusals = Arc::new(AtomicUsize::new(0));
    let mut session_no = 0u64;
    let mut current: Option<JoinHandle<()>> = None;
    loop {
        if let Some(sig) = crate::harness::interrupted() {
            log(&format!("stopping on signal {sig}"));
            return Ok(128 + sig);
        }
        let (sock, from) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Polled, so a signal is noticed whichever thread it interrupted.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and the like: say so, back off, keep serving.
                log(&format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let _ = sock.set_nonblocking(false);
        let holder = *busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = holder {
            refuse(sock, from, other, &server.caps.hostname, &refusals);
            continue;
        }
        if let Some(h) = current.take() {
            let _ = h.join(); // finished: its slot was released
        }
        session_no += 1;
        *busy.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
        let (srv, b, n) = (server.clone(), busy.clone(), session_no);
        let spawned = std::thread::Builder::new()
            .name("zclab-session".into())
            .spawn(move || {
                // A bug in a session must not leave the server refusing everyone as busy.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    session(&srv, sock, from, n)
                }));
                if r.is_err() {
                    log(&format!("session {n} ({from}): ended by an internal error"));
                }
                *b.lock().unwrap_or_else(|e| e.into_inner()) = None;
            });
        match spawned {
            Ok(h) => current = Some(h),
            Err(e) => {
                log(&format!("{from}: cannot start a session thread: {e}"));
                *busy.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
    }
}

/// Tells a second client that the server is busy, on a short-lived thread: write the error,
/// end our side, and read what the client sends until it closes (so our close does not reset
/// the connection before it has read the message).
fn refuse(sock: TcpStream, from: SocketAddr, holder: SocketAddr, host: &str, n: &Arc<AtomicUsize>) {
    log(&format!(
        "{from}: refused: busy with {holder} (one client at a time)"
    ));
    if n.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSALS {
        n.fetch_sub(1, Ordering::SeqCst);
        return; // dropped: closed without a message
    }
    let msg = Msg::error(
        "busy",
        &format!(
            "zclab serve on {host} is serving another client ({holder}); one client at a time: try again when its run is over"
        ),
    );
    let n2 = n.clone();
    let r = std::thread::Builder::new()
        .name("zclab-refuse".into())
        .spawn(move || {
            let mut s = sock;
            let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            if send_msg(&mut s, &msg).is_ok() {
                let _ = s.shutdown(Shutdown::Write);
                let mut sink = [0u8; 4096];
                let mut total = 0;
                while total < remote::MAX_MESSAGE {
                    match s.read(&mut sink) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => total += k,
                    }
                }
            }
            n2.fetch_sub(1, Ordering::SeqCst);
        });
    if r.is_err() {
        n.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the session loop hears about.
enum Event {
    /// A control message, or why a line was not one.
    Ctrl(Result<Msg, BadMsg>),
    /// The control connection ended (cleanly or not): the reason.
    Closed(String),
    /// A transfer finished; its report.
    Done(Report),
}

/// A running transfer: how to stop it.
struct Active {
    id: u64,
    role: Role,
    stop: Arc<AtomicBool>,
    /// The accepted data connection, to shut down when the transfer is given up.
    data: Arc<Mutex<Option<TcpStream>>>,
    /// udp-sink: datagrams announced by `finish` (u64::MAX until then).
    expect: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

impl Active {
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.data.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// One client's session, from its hello to its end; never panics the server, whatever the
/// client does.
fn session(srv: &Server, sock: TcpStream, from: SocketAddr, n: u64) {
    let who = format!("session {n} ({from})");
    let peer_ip = from.ip();
    let local_ip = match sock.local_addr() {
        Ok(a) => a.ip(),
        Err(e) => {
            log(&format!("{who}: {e}"));
            return;
        }
    };
    if let Err(e) = remote::tune_control(&sock) {
        log(&format!("{who}: cannot set socket options: {e}"));
    }
    let _ = sock.set_write_timeout(Some(Duration::from_secs(10)));
    let mut out = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => {
            log(&format!("{who}: {e}"));
            return;
        }
    };
    let (tx, rx) = mpsc::channel::<Event>();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (tx, s, stop) = (tx.clone(), sock.try_clone(), stop.clone());
        let Ok(s) = s else {
            log(&format!("{who}: cannot clone the control socket"));
            return;
        };
        std::thread::Builder::new()
            .name("zclab-ctrl".into())
            .spawn(move || read_control(s, &tx, &stop))
    };
    let reader = match reader {
        Ok(h) => h,
        Err(e) => {
            log(&format!("{who}: cannot start the reader thread: {e}"));
            return;
        }
    };
    let end = serve_session(srv, &mut out, &rx, &tx, &who, peer_ip, local_ip, n);
    log(&format!("{who}: {end}"));
    // Our last message, then our FIN; the reader drains what the client still sends, so
    // closing does not reset the connection before the client has read that message.
    let _ = sock.shutdown(Shutdown::Write);
    stop.store(true, Ordering::SeqCst);
    let _ = reader.join();
}

/// How often the control reader looks at its stop flag.
const READER_POLL: Duration = Duration::from_millis(250);

/// The session's control reader: parses each line into an event. A malformed or oversized
/// message is passed on and ends the reading; so does the session's stop flag. Either way it
/// then drains the connection (bounded) until the client closes.
fn read_control(mut s: TcpStream, tx: &Sender<Event>, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(READER_POLL));
    let mut r = LineReader::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match r.read_line(&mut s) {
            Ok(Some(line)) => {
                let m = Msg::parse(&line);
                let bad = m.is_err();
                if tx.send(Event::Ctrl(m)).is_err() || bad {
                    break; // a bad message ends the session
                }
            }
            Ok(None) => {
                let _ = tx.send(Event::Closed("client closed the connection".into()));
                return;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = tx.send(Event::Ctrl(Err(BadMsg::Invalid(e.to_string()))));
                break;
            }
            Err(e) => {
                let _ = tx.send(Event::Closed(e.to_string()));
                return;
            }
        }
    }
    drain(&mut s);
}

/// Reads and discards until the peer closes, for at most 1 s and 1 MiB.
fn drain(s: &mut TcpStream) {
    let t0 = Instant::now();
    let mut buf = [0u8; 8192];
    let mut total = 0;
    while t0.elapsed() < Duration::from_secs(1) && total < (1 << 20) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => total += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// Runs the session's protocol; returns how it ended (for the log).
#[allow(clippy::too_many_arguments)]
fn serve_session(
    srv: &Server,
    out: &mut TcpStream,
    rx: &Receiver<Event>,
    tx: &Sender<Event>,
    who: &str,
    peer_ip: IpAddr,
    local_ip: IpAddr,
    n: u64,
) -> String {
    if let Err(e) = send_msg(out, &Msg::Hello(srv.hello.clone())) {
        return format!("ended before its hello: {e}");
    }
    // The client's hello.
    match rx.recv_timeout(HELLO_TIMEOUT) {
        Ok(Event::Ctrl(Ok(Msg::Hello(h)))) if h.role == "client" => {
            log(&format!(
                "{who}: client {} (zclab {}, kernel {}) connected",
                h.host, h.version, h.kernel
            ));
        }
        Ok(Event::Ctrl(Err(BadMsg::Mismatch {
            protocol,
            version,
            host,
        }))) => {
            let text = remote::mismatch_text(
                &format!("client {host}"),
                protocol,
                &version,
                &format!("zclab serve on {}", srv.caps.hostname),
            );
            let _ = send_msg(out, &Msg::error("protocol-mismatch", &text));
            return format!("refused: {text}");
        }
        Ok(Event::Ctrl(Ok(m))) => {
            let e = format!("expected a client hello, got {}", remote::msg_name(&m));
            let _ = send_msg(out, &Msg::error("bad-message", &e));
            return format!("closed: {e}");
        }
        Ok(Event::Ctrl(Err(BadMsg::Invalid(e)))) => {
            let _ = send_msg(out, &Msg::error("bad-message", &e));
            return format!("closed: malformed message: {e}");
        }
        Ok(Event::Closed(why)) => return format!("ended before its hello: {why}"),
        Ok(Event::Done(_)) => return "internal: report before any transfer".into(),
        Err(_) => {
            let _ = send_msg(
                out,
                &Msg::error(
                    "timeout",
                    &format!("no hello within {}s", HELLO_TIMEOUT.as_secs()),
                ),
            );
            return format!("closed: no hello within {}s", HELLO_TIMEOUT.as_secs());
        }
    }
    if let Err(e) = send_msg(out, &Msg::Welcome { session: n }) {
        return format!("ended: {e}");
    }
    let mut active: Option<Active> = None;
    let end = loop {
        let ev = if active.is_some() {
            // A transfer bounds itself (accept and progress timeouts).
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(srv.idle)
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                let _ = send_msg(
                    out,
                    &Msg::error(
                        "timeout",
                        &format!("idle for {}s: session closed", srv.idle.as_secs()),
                    ),
                );
                break format!("closed: idle for {}s", srv.idle.as_secs());
            }
            Err(RecvTimeoutError::Disconnected) => break "ended".into(),
        };
        match ev {
            Event::Done(r) => {
                if active.as_ref().is_some_and(|a| a.id == r.id) {
                    let a = active.take().expect("checked");
                    let _ = a.handle.join();
                    if !srv.quiet || !r.ok {
                        log(&format!(
                            "{who}: transfer {} {}: {}",
                            r.id,
                            a.role.name(),
                            summary(&r)
                        ));
                    }
                    if let Err(e) = send_msg(out, &Msg::Report(r)) {
                        break format!("ended: cannot send a report: {e}");
                    }
                }
            }
            Event::Closed(why) => break format!("ended: {why}"),
            Event::Ctrl(Err(b)) => {
                let e = b.to_string();
                let _ = send_msg(out, &Msg::error("bad-message", &e));
                break format!("closed: malformed message: {e}");
            }
            Event::Ctrl(Ok(m)) => match m {
                Msg::Setup(s) => {
                    if let Some(a) = &active {
                        let e = format!(
                            "setup {} while transfer {} is running (one at a time)",
                            s.id, a.id
                        );
                        let _ = send_msg(out, &Msg::error("bad-message", &e));
                        break format!("closed: {e}");
                    }
                    let role = match s.validate(srv.max_source) {
                        Ok(r) => r,
                        Err(b) => {
                            let e = format!("setup {}: {b}", s.id);
                            let _ = send_msg(out, &Msg::error("bad-message", &e));
                            break format!("closed: malformed message: {e}");
                        }
                    };
                    match start(srv, &s, role, peer_ip, local_ip, tx.clone()) {
                        Ok((a, port)) => {
                            if !srv.quiet {
                                log(&format!(
                                    "{who}: transfer {} {} on port {port}{}",
                                    s.id,
                                    role.name(),
                                    s.cpu.map_or(String::new(), |c| format!(", CPU {c}"))
                                ));
                            }
                            active = Some(a);
                            if let Err(e) = send_msg(out, &Msg::Ready { id: s.id, port }) {
                                break format!("ended: {e}");
                            }
                        }
                        Err(e) => {
                            log(&format!("{who}: transfer {} refused: {e}", s.id));
                            let m = Msg::error("refused", &format!("setup {}: {e}", s.id));
                            if let Err(e) = send_msg(out, &m) {
                                break format!("ended: {e}");
                            }
                        }
                    }
                }
                Msg::Finish { id, datagrams } => {
                    if let Some(a) = active.as_ref().filter(|a| a.id == id) {
                        if a.role == Role::UdpSink {
                            a.expect.store(datagrams, Ordering::SeqCst);
                        } else {
                            let e = format!("finish for transfer {id}, a {}", a.role.name());
                            let _ = send_msg(out, &Msg::error("bad-message", &e));
                            break format!("closed: {e}");
                        }
                    } // else: it already ended (timed out); its report is on its way
                }
                Msg::Abort { id } => {
                    if let Some(a) = active.as_ref().filter(|a| a.id == id) {
                        a.stop();
                    } // else: already done and reported
                }
                Msg::Bye {} => break "client said bye".into(),
                other => {
                    let e = format!("unexpected {} from a client", remote::msg_name(&other));
                    let _ = send_msg(out, &Msg::error("bad-message", &e));
                    break format!("closed: {e}");
                }
            },
        }
    };
    if let Some(a) = active.take() {
        a.stop();
        let _ = a.handle.join();
    }
    end
}

fn summary(r: &Report) -> String {
    let u = &r.usage;
    let head = if r.ok {
        "ok".to_string()
    } else {
        format!("FAILED ({})", r.error.as_deref().unwrap_or("?"))
    };
    format!(
        "{head}, {} B{}, {:.3} s, user {:.3} ms, sys {:.3} ms, {} vcsw",
        r.bytes,
        r.datagrams
            .map_or(String::new(), |d| format!(" in {d} datagrams")),
        r.wall_ns as f64 / 1e9,
        u.user_ns as f64 / 1e6,
        u.sys_ns as f64 / 1e6,
        u.vcsw
    )
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
fn start(
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
    let pattern = if role == Role::TcpSource {
        let bytes = s.bytes.expect("validated") as usize;
        let mut g = srv.pattern.lock().unwrap_or_else(|e| e.into_inner());
        if g.as_ref().is_none_or(|p| p.data.len() != bytes) {
            *g = None; // free the old one first: it may be large
            *g = Some(PatternStream::new(bytes));
        }
        let p = g.as_ref().expect("just set");
        Some((p.data.clone(), p.hash))
    } else {
        None
    };
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
                        _ => {
                            let (data, hash) = pattern.expect("a source has its pattern");
                            source(
                                j,
                                sock,
                                data,
                                hash,
                                s.write_size.expect("validated") as usize,
                            )
                        }
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
                error: Some(remote::clip(
                    &if job.stop.load(Ordering::SeqCst) {
                        "aborted by the client".to_string()
                    } else {
                        e.to_string()
                    },
                    remote::MAX_TEXT,
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
                    remote::set_user_timeout(&s, remote::DATA_USER_TIMEOUT)?;
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
    let mut buf = vec![0u8; recv_buf];
    let mut h = Xxh3::new();
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

fn source(
    j: &Job,
    s: TcpStream,
    data: Arc<Vec<u8>>,
    hash: u64,
    write_size: usize,
) -> io::Result<Report> {
    let t0 = Instant::now();
    let r = Streamer::spawn(s, peer_cpu(j), data, write_size, None)?.join();
    j.stopped()?;
    let r = r.map_err(|e| data_err(e, "send", 0))?;
    Ok(Report {
        ok: true,
        bytes: r.bytes,
        hash: Some(hex64(hash)),
        usage: r.usage,
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
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
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
