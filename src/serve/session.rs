//! One client's session on the control connection (`docs/serve-protocol.md`, "Sequence",
//! "Error codes and what happens", "Versions"): hellos, then setups, each answered by a
//! ready and, when its transfer ends, a report (up to `MAX_TRANSFERS` transfers run at once,
//! the flows of a many-flow trial); a bad message, a timeout or a
//! vanished client ends only this session.

use super::transfer::{Active, start};
use super::{Server, log, nothing_yet};
use crate::net::remote::protocol::{
    BadMsg, MAX_TRANSFERS, Msg, Report, Role, mismatch_text, msg_name,
};
use crate::net::remote::wire::{LineReader, send_msg, tune_control};
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long a new client has to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What the session loop hears about.
pub(super) enum Event {
    /// A control message, or why a line was not one.
    Ctrl(Result<Msg, BadMsg>),
    /// The control connection ended (cleanly or not): the reason.
    Closed(String),
    /// A transfer finished; its report.
    Done(Report),
}

/// One client's session, from its hello to its end; never panics the server, whatever the
/// client does.
pub(super) fn session(srv: &Server, sock: TcpStream, from: SocketAddr, n: u64) {
    let who = format!("session {n} ({from})");
    let peer_ip = from.ip();
    let local_ip = match sock.local_addr() {
        Ok(a) => a.ip(),
        Err(e) => {
            log(&format!("{who}: {e}"));
            return;
        }
    };
    if let Err(e) = tune_control(&sock) {
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
            Err(e) if nothing_yet(&e) => {}
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
    let started = Instant::now();
    if let Err(e) = send_msg(out, &Msg::Hello(srv.hello.clone())) {
        return format!("ended before its hello: {e}");
    }
    // The client's hello.
    match rx.recv_timeout(HELLO_TIMEOUT.min(srv.max_session)) {
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
            let text = mismatch_text(
                &format!("client {host}"),
                protocol,
                &version,
                &format!("zclab serve on {}", srv.caps.hostname),
            );
            let _ = send_msg(out, &Msg::error("protocol-mismatch", &text));
            return format!("refused: {text}");
        }
        Ok(Event::Ctrl(Ok(m))) => {
            let e = format!("expected a client hello, got {}", msg_name(&m));
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
    // Transfers running, in the order they started (at most MAX_TRANSFERS).
    let mut active: Vec<Active> = Vec::new();
    // Only progress (a setup, a finish or abort of the running transfer, a report) moves the
    // idle deadline; the session deadline never moves.
    let deadline = started + srv.max_session;
    let mut progress = Instant::now();
    let end = loop {
        let now = Instant::now();
        if now >= deadline {
            let e = format!(
                "session open for {}s (--max-session): closed",
                srv.max_session.as_secs()
            );
            let _ = send_msg(out, &Msg::error("timeout", &e));
            break format!("closed: {e}");
        }
        // A transfer bounds itself (accept and progress timeouts); between transfers the
        // idle timeout does.
        let until = if !active.is_empty() {
            deadline
        } else {
            deadline.min(progress + srv.idle)
        };
        let ev = match rx.recv_timeout(until.saturating_duration_since(now)) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => continue,
            Err(RecvTimeoutError::Timeout) => {
                let _ = send_msg(
                    out,
                    &Msg::error(
                        "timeout",
                        &format!("no progress for {}s: session closed", srv.idle.as_secs()),
                    ),
                );
                break format!("closed: no progress for {}s", srv.idle.as_secs());
            }
            Err(RecvTimeoutError::Disconnected) => break "ended".into(),
        };
        match ev {
            Event::Done(r) => {
                if let Some(k) = active.iter().position(|a| a.id == r.id) {
                    progress = Instant::now();
                    let a = active.remove(k);
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
                    let clash = if active.iter().any(|a| a.id == s.id) {
                        Some(format!("setup {}: transfer {} is running", s.id, s.id))
                    } else if active.len() >= MAX_TRANSFERS {
                        Some(format!(
                            "setup {} while {MAX_TRANSFERS} transfers are running (at most {MAX_TRANSFERS} at once)",
                            s.id
                        ))
                    } else {
                        None
                    };
                    if let Some(e) = clash {
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
                    progress = Instant::now();
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
                            active.push(a);
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
                    if let Some(a) = active.iter().find(|a| a.id == id) {
                        progress = Instant::now();
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
                    if let Some(a) = active.iter().find(|a| a.id == id) {
                        progress = Instant::now();
                        a.stop();
                    } // else: already done and reported; not progress
                }
                Msg::Bye {} => break "client said bye".into(),
                other => {
                    let e = format!("unexpected {} from a client", msg_name(&other));
                    let _ = send_msg(out, &Msg::error("bad-message", &e));
                    break format!("closed: {e}");
                }
            },
        }
    };
    for a in &active {
        a.stop();
    }
    for a in active {
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
