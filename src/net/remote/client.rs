//! The client's control connection to `zclab serve` (`docs/serve-protocol.md`, "The control
//! protocol" / "Sequence"): connect, exchange hellos, await the welcome; one setup and its
//! ready at a time (transfers then run side by side, up to [`MAX_TRANSFERS`], their reports
//! kept by id until asked for); reconnection after a broken connection and the "peer lost" / "peer
//! unreachable" errors ("When the peer goes away"); bye. The transfers themselves are in
//! [`super::transfer`].

use super::addr::PeerAddr;
use super::protocol::{
    BadMsg, Hello, MAX_TRANSFERS, Msg, PROTOCOL, Report, Setup, hello, mismatch_text, msg_name,
};
use super::wire::{ANSWER_TIMEOUT, CONNECT_TIMEOUT, LineReader, send_msg, tune_control};
use crate::caps::Caps;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The client's end of a control connection.
struct Ctrl {
    stream: TcpStream,
    reader: LineReader,
}

impl Ctrl {
    fn send(&mut self, m: &Msg) -> io::Result<()> {
        send_msg(&mut self.stream, m)
    }

    fn recv(&mut self, timeout: Duration) -> io::Result<Result<Msg, BadMsg>> {
        self.stream.set_read_timeout(Some(timeout))?;
        match self.reader.read_line(&mut self.stream) {
            Ok(Some(line)) => Ok(Msg::parse(&line)),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the control connection (zclab serve stopped, or its host went away)",
            )),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                ))
            }
            Err(e) => Err(e),
        }
    }
}

pub(super) struct Inner {
    addr: PeerAddr,
    hello: Hello,
    server: Hello,
    ctrl: Option<Ctrl>,
    /// Failed reconnections in a row.
    failed: u32,
    /// Why the control connection is down.
    down: Option<String>,
    next_id: u64,
    session: u64,
    /// Reports that came while another answer was awaited, by transfer id (at most
    /// [`MAX_TRANSFERS`]: the oldest go first, those of transfers given up long ago).
    reports: BTreeMap<u64, Report>,
}

/// A `zclab serve` on another host, reached over its control connection. Cloning shares the
/// connection; messages are serialised, and up to [`MAX_TRANSFERS`] transfers may run at once.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Mutex<Inner>>,
}

pub(super) fn peer_err(
    addr: &PeerAddr,
    kind: io::ErrorKind,
    what: impl std::fmt::Display,
) -> io::Error {
    io::Error::new(kind, format!("zclab serve at {addr}: {what}"))
}

/// Failed reconnections in a row after which requests fail at once.
pub const MAX_RECONNECTS: u32 = 3;

/// How long a client retries a server that is busy with another client: the session before
/// (an experiment run just before this one) may still be closing.
pub const BUSY_WAIT: Duration = Duration::from_secs(3);

/// Opens a control connection, retrying for [`BUSY_WAIT`] while the server is busy.
fn open(addr: &PeerAddr, hello: &Hello) -> io::Result<(Ctrl, Hello, u64)> {
    let t0 = std::time::Instant::now();
    loop {
        match open_once(addr, hello) {
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && t0.elapsed() < BUSY_WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// Opens a control connection: connect, read the server's hello, send ours, await welcome.
fn open_once(addr: &PeerAddr, hello: &Hello) -> io::Result<(Ctrl, Hello, u64)> {
    let stream = TcpStream::connect_timeout(&addr.addr, CONNECT_TIMEOUT).map_err(|e| {
        peer_err(
            addr,
            e.kind(),
            format!("cannot connect to {}: {e}", addr.addr),
        )
    })?;
    tune_control(&stream)?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut c = Ctrl {
        stream,
        reader: LineReader::new(),
    };
    let wrap = |e: io::Error| peer_err(addr, e.kind(), e);
    let server = match c.recv(ANSWER_TIMEOUT).map_err(wrap)? {
        Ok(Msg::Hello(h)) if h.role == "server" => h,
        Ok(Msg::Error { code, message }) => {
            let kind = if code == "busy" {
                io::ErrorKind::ResourceBusy
            } else {
                io::ErrorKind::ConnectionRefused
            };
            return Err(peer_err(addr, kind, format!("refused ({code}): {message}")));
        }
        Err(BadMsg::Mismatch {
            protocol, version, ..
        }) => {
            // Tell the server who we are anyway, so it can log the refusal too.
            let _ = c.send(&Msg::Hello(hello.clone()));
            let _ = c.stream.shutdown(Shutdown::Both);
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                mismatch_text(
                    &format!("zclab serve at {addr}"),
                    protocol,
                    &version,
                    "this client",
                ),
            ));
        }
        Ok(other) => {
            return Err(peer_err(
                addr,
                io::ErrorKind::InvalidData,
                format!("expected a server hello, got {}", msg_name(&other)),
            ));
        }
        Err(BadMsg::Invalid(e)) => {
            return Err(peer_err(
                addr,
                io::ErrorKind::InvalidData,
                format!("not a zclab server: {e}"),
            ));
        }
    };
    c.send(&Msg::Hello(hello.clone())).map_err(wrap)?;
    match c.recv(ANSWER_TIMEOUT).map_err(wrap)? {
        Ok(Msg::Welcome { session }) => Ok((c, server, session)),
        Ok(Msg::Error { code, message }) => Err(peer_err(
            addr,
            io::ErrorKind::ConnectionRefused,
            format!("refused ({code}): {message}"),
        )),
        Ok(other) => Err(peer_err(
            addr,
            io::ErrorKind::InvalidData,
            format!("expected welcome, got {}", msg_name(&other)),
        )),
        Err(e) => Err(peer_err(
            addr,
            io::ErrorKind::InvalidData,
            format!("bad answer to hello: {e}"),
        )),
    }
}

impl Inner {
    /// Keeps a report for a later [`Inner::report`] of its id.
    fn stash(&mut self, r: Report) {
        self.reports.insert(r.id, r);
        while self.reports.len() > MAX_TRANSFERS {
            self.reports.pop_first();
        }
    }

    /// Marks the control connection broken and returns the error to report.
    fn broken(&mut self, e: io::Error) -> io::Error {
        self.reports.clear();
        if let Some(c) = self.ctrl.take() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        let text = e.to_string();
        let text = text.strip_prefix("peer lost: ").unwrap_or(&text);
        let e = if text.starts_with("zclab serve at") {
            io::Error::new(e.kind(), format!("peer lost: {text}"))
        } else {
            io::Error::new(
                e.kind(),
                format!("peer lost: zclab serve at {}: {text}", self.addr),
            )
        };
        self.down = Some(e.to_string());
        e
    }

    /// A live control connection: the current one, or a new one (same server host) while
    /// fewer than [`MAX_RECONNECTS`] attempts in a row have failed.
    fn ensure(&mut self) -> io::Result<&mut Ctrl> {
        if self.ctrl.is_none() {
            let last = self.down.clone().unwrap_or_default();
            if self.failed >= MAX_RECONNECTS {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "peer unreachable (gave up after {MAX_RECONNECTS} failed reconnections): {last}"
                    ),
                ));
            }
            match open(&self.addr, &self.hello) {
                Ok((c, server, session)) if server.host == self.server.host => {
                    self.ctrl = Some(c);
                    self.session = session;
                    self.failed = 0;
                }
                Ok((c, server, _)) => {
                    let _ = c.stream.shutdown(Shutdown::Both);
                    self.failed = MAX_RECONNECTS;
                    let e = format!(
                        "zclab serve at {} is now host {} (the run started with {})",
                        self.addr, server.host, self.server.host
                    );
                    self.down = Some(e.clone());
                    return Err(io::Error::other(format!("peer unreachable: {e}")));
                }
                Err(e) => {
                    self.failed += 1;
                    self.down = Some(e.to_string());
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        format!("peer unreachable: {e}"),
                    ));
                }
            }
        }
        Ok(self.ctrl.as_mut().expect("just ensured"))
    }

    /// Waits for the report of `id`; a broken connection on any failure.
    pub(super) fn report(&mut self, id: u64, timeout: Duration) -> io::Result<Report> {
        if let Some(r) = self.reports.remove(&id) {
            return Ok(r);
        }
        loop {
            let Some(c) = self.ctrl.as_mut() else {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    self.down
                        .clone()
                        .unwrap_or_else(|| "peer lost before its report".into()),
                ));
            };
            let m = match c.recv(timeout) {
                Ok(m) => m,
                Err(e) => {
                    let e = io::Error::new(e.kind(), format!("waiting for the report: {e}"));
                    return Err(self.broken(e));
                }
            };
            match m {
                Ok(Msg::Report(r)) if r.id == id => return Ok(r),
                Ok(Msg::Report(r)) => {
                    // Another transfer's (running beside this one, or given up): kept.
                    self.stash(r);
                }
                Ok(Msg::Error { code, message }) => {
                    let e = io::Error::other(format!("server error ({code}): {message}"));
                    return Err(self.broken(e));
                }
                Ok(other) => {
                    let e = io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("expected the report of {id}, got {}", msg_name(&other)),
                    );
                    return Err(self.broken(e));
                }
                Err(b) => {
                    let e = io::Error::new(io::ErrorKind::InvalidData, format!("bad message: {b}"));
                    return Err(self.broken(e));
                }
            }
        }
    }
}

impl Peer {
    /// Connects to `zclab serve` at `addr`, introducing this host with `caps` and the git
    /// revision the binary was built from. Fails with a clear message when the server is
    /// unreachable, busy with another client, or speaks another protocol version.
    pub fn connect(addr: PeerAddr, caps: &Caps, git_revision: &str) -> io::Result<Peer> {
        let hello = hello("client", caps, git_revision);
        let (ctrl, server, session) = open(&addr, &hello)?;
        Ok(Peer {
            inner: Arc::new(Mutex::new(Inner {
                addr,
                hello,
                server,
                ctrl: Some(ctrl),
                failed: 0,
                down: None,
                next_id: 1,
                session,
                reports: BTreeMap::new(),
            })),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The address as given.
    pub fn addr(&self) -> PeerAddr {
        self.lock().addr.clone()
    }

    /// The server's hello from the first connection.
    pub fn server(&self) -> Hello {
        self.lock().server.clone()
    }

    /// What a run records about the peer host (meta.json `peer`).
    pub fn meta(&self) -> Value {
        let g = self.lock();
        json!({
            "address": g.addr.text,
            "resolved": g.addr.addr.to_string(),
            "protocol": PROTOCOL,
            "session": g.session,
            "host": g.server.host,
            "kernel": g.server.kernel,
            "zclab_version": g.server.version,
            "git_revision": g.server.git_revision,
            "probe": g.server.probe,
            "note": "the peer side ran in `zclab serve` on this host; its CPU time per trial is in peer_user_ns/peer_sys_ns and peer_* extras; clocks of the two hosts are never compared",
        })
    }

    /// Sends a setup and waits for its ready: (id, data address).
    pub(super) fn request(&self, mut setup: Setup) -> io::Result<(u64, SocketAddr)> {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        setup.id = id;
        let ip = g.addr.addr.ip();
        let c = g.ensure()?;
        if let Err(e) = c.send(&Msg::Setup(setup)) {
            return Err(g.broken(e));
        }
        // A report of a transfer running beside may come first: kept for its caller.
        let ans = loop {
            let c = g.ctrl.as_mut().expect("ensured");
            match c.recv(ANSWER_TIMEOUT) {
                Ok(Ok(Msg::Report(r))) => g.stash(r),
                Ok(a) => break a,
                Err(e) => return Err(g.broken(e)),
            }
        };
        match ans {
            Ok(Msg::Ready { id: i, port }) if i == id => Ok((id, SocketAddr::new(ip, port))),
            Ok(Msg::Error { code, message }) if code == "refused" => Err(peer_err(
                &g.addr,
                io::ErrorKind::Unsupported,
                format!("refused: {message}"),
            )),
            Ok(Msg::Error { code, message }) => Err(g.broken(io::Error::other(format!(
                "server error ({code}): {message}"
            )))),
            Ok(other) => Err(g.broken(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected ready for {id}, got {}", msg_name(&other)),
            ))),
            Err(b) => Err(g.broken(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad message: {b}"),
            ))),
        }
    }

    pub(super) fn send(&self, m: &Msg) -> io::Result<()> {
        let mut g = self.lock();
        let r = match g.ctrl.as_mut() {
            Some(c) => c.send(m),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    g.down.clone().unwrap_or_default(),
                ));
            }
        };
        r.map_err(|e| g.broken(e))
    }

    /// Checks whether the control connection is still there (waiting up to 300 ms for a
    /// closing server to show it); None when it looks alive, else why it is gone.
    pub fn lost(&self) -> Option<String> {
        let mut g = self.lock();
        let r = match g.ctrl.as_ref() {
            None => return g.down.clone(),
            Some(c) => {
                let _ = c.stream.set_read_timeout(Some(Duration::from_millis(300)));
                c.stream.peek(&mut [0u8; 1])
            }
        };
        match r {
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the server closed the control connection (zclab serve stopped, or its host went away)",
                );
                Some(g.broken(e).to_string())
            }
            Ok(_) => None,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => Some(g.broken(e).to_string()),
        }
    }

    /// Adds to a failed trial's error what happened to the peer, when it is gone: the row
    /// then says so instead of only "connection reset". Errors that already name the peer
    /// pass through unchanged. It waits up to 300 ms ([`Peer::lost`]): not for errors that
    /// are no failure (a skipped variant or point), which callers pass on themselves.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let text = format!("{e:#}");
        if text.contains("peer unreachable") || text.contains("zclab serve at") {
            return e;
        }
        match self.lost() {
            Some(why) => e.context(why),
            None => e,
        }
    }

    /// Ends the session politely (best effort).
    pub fn bye(&self) {
        let mut g = self.lock();
        if let Some(mut c) = g.ctrl.take() {
            let _ = c.send(&Msg::Bye {});
            let _ = c.stream.shutdown(Shutdown::Both);
        }
    }
}
