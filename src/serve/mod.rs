//! `zclab serve`: the peer side of the socket experiments on another host, as iperf3 -s,
//! netserver or neper's server let a benchmark run across two machines.
//!
//! It listens on a control port (`127.0.0.1:7878` unless `--listen` names another address),
//! speaks the control protocol of [`crate::net::remote::protocol`] (documented in
//! `docs/serve-protocol.md`) with one client at a time, and for each transfer the client asks
//! for sets up one of the lab's own peer sides on an ephemeral port of the address the client
//! reached — a TCP receiver that hashes or counts, a UDP receiver that counts, an echo server,
//! a sender of pattern bytes — pins its thread to the requested CPU, and reports that thread's
//! own accounting (CPU time, context switches, bytes, hash) before tearing it down. It never
//! runs anything a client sends: a client only chooses among these roles and their sizes,
//! within limits.
//!
//! Robustness: every control message is validated (a malformed or oversized one is answered
//! with an error, logged, and ends that connection); every other client is refused with a
//! `busy` message while one is served; clients that disconnect at any point only end their own
//! session; every wait (hello, data connection, data progress, idle session) has a timeout,
//! the idle one reset only by real progress, and a session has a deadline. Memory is bounded:
//! a pattern source is generated as it is sent, from a buffer of one write, and a buffer the
//! server cannot allocate fails that transfer instead of aborting the process. What a client
//! says is logged with its control characters escaped. SIGINT/SIGTERM stop the server.
//!
//! The pieces: this module (options, the listener, refusing a second client), `session`
//! (one client's control connection, `docs/serve-protocol.md` "Sequence" and "Error codes and
//! what happens") and `transfer` (the peer side of one transfer, "Messages": the roles).

mod session;
mod transfer;

use crate::caps::{self, Caps};
use crate::net::remote::protocol::{self as proto, Hello, Msg, PROTOCOL};
use crate::net::remote::{addr, wire};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Refused connections held open at once while the client reads its `busy` (each at most
/// [`REFUSE_LINGER`]); beyond, a refused connection is closed right after the message.
const MAX_LINGERING: usize = 256;
/// How long a refused connection is kept open for the client to read `busy` and close.
const REFUSE_LINGER: Duration = Duration::from_secs(2);

/// Options of `zclab serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Control address to listen on, ADDR[:PORT] (default port 7878). Only loopback unless
    /// you name another address. There is no authentication: the server accepts any client
    /// that reaches it, so listen only on a network you trust. Port 0 picks a free port
    /// (printed at start).
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: String,
    /// Close a session after this many seconds without progress while no transfer is
    /// running (progress: a setup, a finish or abort of the running transfer, a report);
    /// other messages do not count.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,
    /// Close a session this many seconds after it started, whatever it does (a running
    /// transfer is stopped and reported), so that no client holds the server for ever.
    #[arg(long, default_value_t = 21600, value_parser = clap::value_parser!(u64).range(1..=604800))]
    pub max_session: u64,
    /// Largest stream a client may ask the pattern sender (tcp-source) for; it is generated
    /// as it is sent, never held in memory. K/M/G are powers of 1024.
    #[arg(long, default_value = "1GiB", value_parser = crate::harness::size_arg)]
    pub max_source_bytes: u64,
    /// Only log sessions, refusals and errors, not every transfer.
    #[arg(long)]
    pub quiet: bool,
}

/// What every session needs to know about the server.
pub(crate) struct Server {
    caps: Caps,
    hello: Hello,
    idle: Duration,
    max_session: Duration,
    max_source: u64,
    quiet: bool,
}

/// A read on a socket with a timeout that got nothing yet (timed out, or interrupted by a
/// signal): the caller tries again.
fn nothing_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Logs one line; control characters (newlines, escape sequences) are written escaped, so
/// that nothing a client sends can forge a log line or drive the operator's terminal.
pub(crate) fn log(s: &str) {
    eprintln!("zclab serve: {}", escape_controls(s));
}

/// `s` with every control character as a Rust escape (`\n`, `\u{1b}`); the rest unchanged.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs the server until SIGINT/SIGTERM; returns the exit code.
pub fn run(args: &ServeArgs) -> anyhow::Result<i32> {
    let (host, port) =
        addr::split_host_port(&args.listen, proto::DEFAULT_PORT).map_err(anyhow::Error::msg)?;
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("--listen {}: cannot resolve {host}: {e}", args.listen))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--listen {}: {host} has no address", args.listen))?;
    let cancel = crate::sys::signal::Cancel::install();
    let listener =
        TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let caps = caps::probe(&std::env::temp_dir());
    let hello = proto::hello("server", &caps, &crate::harness::git_revision());
    let server = Arc::new(Server {
        hello,
        idle: Duration::from_secs(args.idle_timeout),
        max_session: Duration::from_secs(args.max_session),
        max_source: args.max_source_bytes,
        quiet: args.quiet,
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
    let refuser = start_refuser()?;
    let mut session_no = 0u64;
    let mut current: Option<JoinHandle<()>> = None;
    loop {
        if let Some(sig) = cancel.signal() {
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
            refuse(&refuser, sock, from, other, &server.caps.hostname);
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
                    session::session(&srv, sock, from, n)
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

/// Tells a refused client that the server is busy: the message is written at once (it fits
/// the socket's send buffer of a new connection), our side ends, and the connection goes to the
/// refuser thread, which reads what the client still sends until it closes (so that our close
/// does not reset the connection before the client has read the message).
fn refuse(
    to: &Sender<TcpStream>,
    sock: TcpStream,
    from: SocketAddr,
    holder: SocketAddr,
    host: &str,
) {
    log(&format!(
        "{from}: refused: busy with {holder} (one client at a time)"
    ));
    let msg = Msg::error(
        "busy",
        &format!(
            "zclab serve on {host} is serving another client ({holder}); one client at a time: try again when its run is over"
        ),
    );
    let mut s = sock;
    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
    if wire::send_msg(&mut s, &msg).is_ok() {
        let _ = s.flush();
        let _ = s.shutdown(Shutdown::Write);
        let _ = to.send(s);
    }
}

/// The thread that lingers on refused connections: each is read (non-blocking) until the
/// client closes, [`REFUSE_LINGER`] passes or [`MAX_MESSAGE`](proto::MAX_MESSAGE) bytes came;
/// at most [`MAX_LINGERING`] at once (older ones are closed first).
fn start_refuser() -> io::Result<Sender<TcpStream>> {
    let (tx, rx) = mpsc::channel::<TcpStream>();
    std::thread::Builder::new()
        .name("zclab-refuse".into())
        .spawn(move || linger_refused(&rx))?;
    Ok(tx)
}

fn linger_refused(rx: &Receiver<TcpStream>) {
    let mut held: Vec<(TcpStream, Instant, usize)> = Vec::new();
    let mut sink = [0u8; 4096];
    loop {
        // Block while nothing lingers; otherwise take what is queued and poll every 20 ms.
        let first = if held.is_empty() {
            match rx.recv() {
                Ok(s) => Some(s),
                Err(_) => return,
            }
        } else {
            std::thread::sleep(Duration::from_millis(20));
            None
        };
        for s in first.into_iter().chain(rx.try_iter()) {
            if s.set_nonblocking(true).is_ok() {
                if held.len() >= MAX_LINGERING {
                    held.remove(0);
                }
                held.push((s, Instant::now(), 0));
            }
        }
        held.retain_mut(|(s, t0, total)| {
            loop {
                match s.read(&mut sink) {
                    Ok(0) => return false,
                    Ok(k) => {
                        *total += k;
                        if *total >= proto::MAX_MESSAGE {
                            return false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            t0.elapsed() < REFUSE_LINGER
        });
    }
}
