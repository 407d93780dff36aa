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
//! with an error, logged, and ends that connection); a second client is refused with a
//! message while the first is served; clients that disconnect at any point only end their own
//! session; every wait (hello, data connection, data progress, idle session) has a timeout.
//! SIGINT/SIGTERM stop the server.
//!
//! The pieces: this module (options, the listener, refusing a second client), `session`
//! (one client's control connection, `docs/serve-protocol.md` "Sequence" and "Error codes and
//! what happens") and `transfer` (the peer side of one transfer, "Messages": the roles).

mod session;
mod transfer;

use crate::caps::{self, Caps};
use crate::net::peers::PatternStream;
use crate::net::remote::protocol::{self as proto, Hello, Msg, PROTOCOL};
use crate::net::remote::{addr, wire};
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
pub(crate) struct Server {
    caps: Caps,
    hello: Hello,
    idle: Duration,
    max_source: u64,
    quiet: bool,
    /// Memory of the last pattern source, reused while clients ask for the same size.
    pattern: Mutex<Option<PatternStream>>,
}

/// A read on a socket with a timeout that got nothing yet (timed out, or interrupted by a
/// signal): the caller tries again.
fn nothing_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

pub(crate) fn log(s: &str) {
    eprintln!("zclab serve: {s}");
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
            if wire::send_msg(&mut s, &msg).is_ok() {
                let _ = s.shutdown(Shutdown::Write);
                let mut sink = [0u8; 4096];
                let mut total = 0;
                while total < proto::MAX_MESSAGE {
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
