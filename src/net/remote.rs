//! Two hosts: the control protocol of `zclab serve`, and its client — a remote peer that looks
//! to an experiment like the local peer threads of [`super::peers`].
//!
//! The measured side stays in the experiment's process; the peer side (a TCP receiver that
//! hashes or only counts, a UDP receiver that counts, an echo server, a sender of pattern
//! bytes) runs in `zclab serve` on the other host. They talk over one TCP control connection:
//! newline-delimited JSON, one object per line, at most [`MAX_MESSAGE`] bytes per message
//! including its newline. Data connections use ephemeral ports that the server announces.
//! The messages, their order and what happens on a version mismatch are described in
//! `docs/serve-protocol.md`; [`PROTOCOL`] is the version both sides must share.
//!
//! Clocks of the two hosts are never compared: the server reports counts, hashes, its own
//! thread's CPU usage and durations on its own clock, never timestamps.
//!
//! Every wait is bounded: connecting ([`CONNECT_TIMEOUT`]), the server's answers
//! ([`ANSWER_TIMEOUT`]), reports ([`REPORT_TIMEOUT`]), and data connections give up when sent
//! bytes stay unacknowledged for [`DATA_USER_TIMEOUT`] (TCP_USER_TIMEOUT, tcp(7)). When the
//! control connection breaks, [`Peer`] reconnects at the next request; after
//! [`MAX_RECONNECTS`] failed attempts in a row it answers at once with "peer unreachable".

use super::Received;
use crate::caps::Caps;
use crate::measure::Usage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The lab's name in every hello: anything else is not a zclab peer.
pub const LAB: &str = "zclab";
/// Version of the control protocol. Client and server of different versions refuse each other.
pub const PROTOCOL: u32 = 2;
/// The control port `zclab serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7878;
/// Largest control message, newline included.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Longest free text (error messages) in a message.
pub const MAX_TEXT: usize = 4096;
/// Longest short string (host name, kernel, version, error code).
pub const MAX_NAME: usize = 256;
/// Largest receive buffer, echo message or write size a client may ask for.
pub const MAX_BUFFER: u64 = 64 << 20;

/// Connecting to the control port or to an announced data port.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer a hello or a setup (a pattern source of up to
/// 1 GiB is generated before the answer).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to report once the client has ended its part of a transfer.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(90);
/// Data and control sockets give up when sent bytes stay unacknowledged this long.
pub const DATA_USER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to tear down a transfer the client gave up.
pub const ABORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed reconnections in a row after which requests fail at once.
pub const MAX_RECONNECTS: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Messages

/// The first message each side sends: who it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// Always [`LAB`].
    pub lab: String,
    /// [`PROTOCOL`] of the sender.
    pub protocol: u32,
    /// The lab version (Cargo package version).
    pub version: String,
    /// Git revision the binary was built from.
    pub git_revision: String,
    /// "server" or "client".
    pub role: String,
    /// Host name.
    pub host: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// The host's `zclab probe --json` (a JSON object).
    pub probe: Value,
}

/// What the peer side of a transfer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Accepts one TCP connection and reads it to end of stream, hashing (xxh3-64) or only
    /// counting what arrives.
    TcpSink,
    /// Receives UDP datagrams from the client's address and counts them, their bytes and the
    /// wrapping sum of each datagram's xxh3-64 (order-independent), until the client's
    /// `finish` and the last announced datagram, or a quiet spell.
    UdpSink,
    /// Accepts one TCP connection and echoes messages of exactly `msg` bytes until end of
    /// stream.
    Echo,
    /// Accepts one TCP connection and writes `bytes` of the lab's pattern (offset 0) in writes
    /// of `write_size`, then ends its side of the stream.
    TcpSource,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::TcpSink => "tcp-sink",
            Role::UdpSink => "udp-sink",
            Role::Echo => "echo",
            Role::TcpSource => "tcp-source",
        }
    }
}

/// A request for one transfer's peer side.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    /// Chosen by the client, increasing; the answer and the report carry it.
    pub id: u64,
    pub role: Option<Role>,
    /// CPU to pin the server's peer thread to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// tcp-sink: bytes per read(2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recv_buf: Option<u64>,
    /// tcp-sink: hash what arrives (true) or only count it (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<bool>,
    /// echo: message size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<u64>,
    /// tcp-source: bytes to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// tcp-source: bytes per write(2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_size: Option<u64>,
}

/// What the server's peer side did in one transfer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes received (sinks), echoed (echo) or sent (source).
    pub bytes: u64,
    /// xxh3-64 as 16 hex digits: of what arrived (tcp-sink with hashing), or of what was sent
    /// (tcp-source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// udp-sink: datagrams counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagrams: Option<u64>,
    /// udp-sink: wrapping sum of every datagram's xxh3-64, 16 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// udp-sink: growth of the peer namespace's `Udp: InCsumErrors` over the transfer
    /// (datagrams dropped for a bad checksum; namespace-wide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_in_csum_errors: Option<u64>,
    /// udp-sink: growth of `Udp: RcvbufErrors` (dropped for a full receive buffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_rcvbuf_errors: Option<u64>,
    /// udp-sink: datagrams from other addresses, ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign: Option<u64>,
    /// udp-sink: the receive buffer the socket got (SO_RCVBUF as read back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcvbuf: Option<u64>,
    /// echo: messages echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// getrusage(RUSAGE_THREAD) of the server's peer thread over the transfer.
    pub usage: Usage,
    /// The transfer's duration on the server's own clock (accepted to done).
    pub wall_ns: u64,
    /// CPU the peer thread was pinned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// CPU time of ksoftirqd on that CPU during the transfer (softirq work deferred there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ksoftirqd_ns: Option<u64>,
}

/// A control message. On the wire: `{"type": "<kebab-case name>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Msg {
    /// Both sides, first: who they are.
    Hello(Hello),
    /// Server, after accepting the client's hello.
    Welcome { session: u64 },
    /// Client: set up a peer side.
    Setup(Setup),
    /// Server: the peer side of `id` listens (TCP) or receives (UDP) on `port` of the address
    /// the client reached the control port on.
    Ready { id: u64, port: u16 },
    /// Client, udp-sink: all `datagrams` are sent.
    Finish { id: u64, datagrams: u64 },
    /// Client: give up transfer `id` (the server tears it down and still reports).
    Abort { id: u64 },
    /// Server: the peer side of `id` is done and torn down.
    Report(Report),
    /// Either side: a refusal or a failure. `code` is one of busy, protocol-mismatch,
    /// bad-message, refused, timeout.
    Error { code: String, message: String },
    /// Client: the session is over.
    Bye {},
}

/// Why a received line is not an acceptable message.
#[derive(Debug, Clone, PartialEq)]
pub enum BadMsg {
    /// A zclab hello with another protocol version.
    Mismatch {
        protocol: u64,
        version: String,
        host: String,
    },
    /// Anything else: not JSON, unknown type, missing or out-of-range fields.
    Invalid(String),
}

impl std::fmt::Display for BadMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadMsg::Mismatch {
                protocol, version, ..
            } => write!(
                f,
                "control protocol {protocol} (zclab {version}), expected {PROTOCOL}"
            ),
            BadMsg::Invalid(s) => f.write_str(s),
        }
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end.saturating_sub(3)])
}

fn short(what: &str, s: &str, max: usize) -> Result<(), BadMsg> {
    if s.len() > max {
        return Err(BadMsg::Invalid(format!(
            "{what} is {} bytes long (at most {max})",
            s.len()
        )));
    }
    Ok(())
}

fn range(what: &str, v: Option<u64>, lo: u64, hi: u64) -> Result<u64, BadMsg> {
    match v {
        None => Err(BadMsg::Invalid(format!("{what} is missing"))),
        Some(x) if x < lo || x > hi => Err(BadMsg::Invalid(format!(
            "{what} = {x} is out of range ({lo}..={hi})"
        ))),
        Some(x) => Ok(x),
    }
}

impl Setup {
    /// Checks that exactly the fields of its role are present, within the lab's limits.
    /// `max_source` bounds tcp-source's `bytes` (the server holds them in memory).
    pub fn validate(&self, max_source: u64) -> Result<Role, BadMsg> {
        let role = self
            .role
            .ok_or_else(|| BadMsg::Invalid("setup without a role".into()))?;
        let allowed: &[&str] = match role {
            Role::TcpSink => &["recv_buf", "hash"],
            Role::UdpSink => &[],
            Role::Echo => &["msg"],
            Role::TcpSource => &["bytes", "write_size"],
        };
        let present = [
            ("recv_buf", self.recv_buf.is_some()),
            ("hash", self.hash.is_some()),
            ("msg", self.msg.is_some()),
            ("bytes", self.bytes.is_some()),
            ("write_size", self.write_size.is_some()),
        ];
        for (f, p) in present {
            if p && !allowed.contains(&f) {
                return Err(BadMsg::Invalid(format!(
                    "field {f} does not apply to role {}",
                    role.name()
                )));
            }
        }
        if let Some(c) = self.cpu {
            if c >= 4096 {
                return Err(BadMsg::Invalid(format!("cpu = {c} is out of range")));
            }
        }
        match role {
            Role::TcpSink => {
                range("recv_buf", self.recv_buf, 1, MAX_BUFFER)?;
                if self.hash.is_none() {
                    return Err(BadMsg::Invalid("hash is missing".into()));
                }
            }
            Role::UdpSink => {}
            Role::Echo => {
                range("msg", self.msg, 1, MAX_BUFFER)?;
            }
            Role::TcpSource => {
                range("bytes", self.bytes, 1, max_source)?;
                range("write_size", self.write_size, 1, MAX_BUFFER)?;
            }
        }
        Ok(role)
    }
}

impl Msg {
    /// Parses and validates one line (without its newline). Setup fields are checked against
    /// their role by [`Setup::validate`], which needs the server's limits.
    pub fn parse(line: &[u8]) -> Result<Msg, BadMsg> {
        let text = std::str::from_utf8(line)
            .map_err(|_| BadMsg::Invalid("message is not UTF-8".into()))?;
        let v: Value = serde_json::from_str(text)
            .map_err(|e| BadMsg::Invalid(format!("message is not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| BadMsg::Invalid("message is not a JSON object".into()))?;
        let ty = obj
            .get("type")
            .and_then(Value::as_str)
            .map(|t| clip(t, 64))
            .ok_or_else(|| BadMsg::Invalid("message has no string \"type\"".into()))?;
        if ty == "hello" {
            // Looked at before the strict parse: a hello of another version may carry fields
            // this version does not know, and must be answered with the versions, not a parse
            // error.
            let lab = obj.get("lab").and_then(Value::as_str).unwrap_or("");
            if lab != LAB {
                return Err(BadMsg::Invalid(format!(
                    "hello from something that is not zclab (lab = {:?})",
                    clip(lab, 64)
                )));
            }
            let protocol = obj.get("protocol").and_then(Value::as_u64).ok_or_else(|| {
                BadMsg::Invalid("hello without a numeric protocol version".into())
            })?;
            if protocol != PROTOCOL as u64 {
                let s = |k: &str| clip(obj.get(k).and_then(Value::as_str).unwrap_or("?"), 64);
                return Err(BadMsg::Mismatch {
                    protocol,
                    version: s("version"),
                    host: s("host"),
                });
            }
        }
        let m: Msg = serde_json::from_value(v)
            .map_err(|e| BadMsg::Invalid(format!("bad {ty} message: {e}")))?;
        match &m {
            Msg::Hello(h) => {
                for (k, s) in [
                    ("version", &h.version),
                    ("git_revision", &h.git_revision),
                    ("host", &h.host),
                    ("kernel", &h.kernel),
                    ("role", &h.role),
                ] {
                    short(k, s, MAX_NAME)?;
                }
                if h.role != "client" && h.role != "server" {
                    return Err(BadMsg::Invalid(format!(
                        "hello role {:?} is neither client nor server",
                        clip(&h.role, 64)
                    )));
                }
                if !h.probe.is_object() {
                    return Err(BadMsg::Invalid("hello probe is not a JSON object".into()));
                }
            }
            Msg::Ready { port, .. } if *port == 0 => {
                return Err(BadMsg::Invalid("ready with port 0".into()));
            }
            Msg::Report(r) => short("error", r.error.as_deref().unwrap_or(""), MAX_TEXT)?,
            Msg::Error { code, message } => {
                short("code", code, MAX_NAME)?;
                short("message", message, MAX_TEXT)?;
            }
            _ => {}
        }
        Ok(m)
    }

    /// The message as one line, newline included; an error if it exceeds [`MAX_MESSAGE`].
    pub fn to_line(&self) -> io::Result<Vec<u8>> {
        let mut v = serde_json::to_vec(self).map_err(io::Error::other)?;
        v.push(b'\n');
        if v.len() > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("control message of {} bytes exceeds {MAX_MESSAGE}", v.len()),
            ));
        }
        Ok(v)
    }

    /// An error message, its text clipped to [`MAX_TEXT`].
    pub fn error(code: &str, message: &str) -> Msg {
        Msg::Error {
            code: clip(code, MAX_NAME),
            message: clip(message, MAX_TEXT),
        }
    }
}

/// Writes one message (write_all of its line).
pub fn send_msg(w: &mut impl Write, m: &Msg) -> io::Result<()> {
    w.write_all(&m.to_line()?)
}

/// Splits a byte stream into lines of at most [`MAX_MESSAGE`] bytes (newline included),
/// keeping a partial line across read timeouts.
#[derive(Debug, Default)]
pub struct LineReader {
    pending: Vec<u8>,
}

impl LineReader {
    pub fn new() -> LineReader {
        LineReader::default()
    }

    /// The next line without its newline. Ok(None): the stream ended between lines. Errors:
    /// a line over the limit (InvalidData), the stream ending inside a line (UnexpectedEof),
    /// and the reader's own errors (a read timeout keeps what was read so far).
    pub fn read_line(&mut self, r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                if i + 1 > MAX_MESSAGE {
                    return Err(too_long());
                }
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                return Ok(Some(line));
            }
            if self.pending.len() >= MAX_MESSAGE {
                return Err(too_long());
            }
            let mut chunk = [0u8; 8192];
            match r.read(&mut chunk) {
                Ok(0) if self.pending.is_empty() => return Ok(None),
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed inside a message ({} bytes without a newline)",
                            self.pending.len()
                        ),
                    ));
                }
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn too_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("control message longer than {MAX_MESSAGE} bytes"),
    )
}

/// Formats an xxh3-64 the way reports carry it.
pub fn hex64(v: u64) -> String {
    format!("{v:016x}")
}

/// Parses a 16-hex-digit value of a report.
pub fn parse_hex64(s: &str) -> Option<u64> {
    (s.len() == 16)
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

/// This host's hello.
pub fn hello(role: &str, caps: &Caps) -> Hello {
    Hello {
        lab: LAB.into(),
        protocol: PROTOCOL,
        version: env!("CARGO_PKG_VERSION").into(),
        git_revision: clip(&crate::harness::git_revision(), MAX_NAME),
        role: role.into(),
        host: clip(&caps.hostname, MAX_NAME),
        kernel: clip(&caps.kernel.release, MAX_NAME),
        probe: serde_json::to_value(caps).unwrap_or_else(|_| json!({})),
    }
}

/// The one-line refusal for peers of different protocol versions; `them` describes the other
/// side ("zclab serve at 10.0.0.2:7878", "client 10.0.0.1:40000").
pub fn mismatch_text(them: &str, protocol: u64, version: &str, me: &str) -> String {
    format!(
        "{them} speaks zclab control protocol {protocol} (zclab {version}); {me} speaks protocol {PROTOCOL} (zclab {}): run the same zclab version on both hosts",
        env!("CARGO_PKG_VERSION")
    )
}

// ---------------------------------------------------------------------------------------------
// Socket options

/// TCP_USER_TIMEOUT (tcp(7)): the connection fails when sent data stays unacknowledged this
/// long, instead of retrying for many minutes when the other host vanished.
pub fn set_user_timeout(s: &TcpStream, t: Duration) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(s, sockopt::TcpUserTimeout, &(t.as_millis() as u32)).map_err(io::Error::from)
}

/// Control connections: no Nagle delay on small messages, keepalive probes after 10 s idle
/// (every 5 s, 3 of them) so a vanished host is noticed, and the user timeout above.
pub fn tune_control(s: &TcpStream) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    s.set_nodelay(true)?;
    setsockopt(s, sockopt::KeepAlive, &true).map_err(io::Error::from)?;
    setsockopt(s, sockopt::TcpKeepIdle, &10).map_err(io::Error::from)?;
    setsockopt(s, sockopt::TcpKeepInterval, &5).map_err(io::Error::from)?;
    setsockopt(s, sockopt::TcpKeepCount, &3).map_err(io::Error::from)?;
    set_user_timeout(s, DATA_USER_TIMEOUT)
}

// ---------------------------------------------------------------------------------------------
// Addresses

/// A peer address as the user gave it (`HOST[:PORT]`) and as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    pub text: String,
    pub addr: SocketAddr,
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits `HOST[:PORT]` (`[v6]:PORT` for IPv6 with a port) into host and port.
pub fn split_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let s = s.trim();
    let bad_port = |p: &str| format!("'{s}': '{p}' is not a port number (1-65535)");
    let port = |p: &str| -> Result<u16, String> { p.parse::<u16>().map_err(|_| bad_port(p)) };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{s}': missing ']' after an IPv6 address"))?;
        match after {
            "" => (h.to_string(), default_port),
            a => match a.strip_prefix(':') {
                Some(p) => (h.to_string(), port(p)?),
                None => return Err(format!("'{s}': expected [ADDR]:PORT")),
            },
        }
    } else if s.matches(':').count() == 1 {
        let (h, p) = s.split_once(':').expect("one colon");
        (h.to_string(), port(p)?)
    } else {
        (s.to_string(), default_port)
    };
    if host.is_empty() {
        return Err(format!("'{s}': no host"));
    }
    Ok((host, port))
}

/// Parses and resolves `HOST[:PORT]` (default port [`DEFAULT_PORT`]) for `--peer`.
pub fn parse_peer(s: &str) -> Result<PeerAddr, String> {
    let (host, port) = split_host_port(s, DEFAULT_PORT)?;
    if port == 0 {
        return Err(format!("'{s}': port 0 is not a port a server listens on"));
    }
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("'{s}': cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("'{s}': {host} has no address"))?;
    let text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(PeerAddr { text, addr })
}

// ---------------------------------------------------------------------------------------------
// Client

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

struct Inner {
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
}

/// A `zclab serve` on another host, reached over its control connection. Cloning shares the
/// connection; requests are serialised (one transfer at a time, as the server wants).
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Mutex<Inner>>,
}

fn peer_err(addr: &PeerAddr, kind: io::ErrorKind, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(kind, format!("zclab serve at {addr}: {what}"))
}

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

/// The wire name of a message, for errors and logs.
pub fn msg_name(m: &Msg) -> &'static str {
    match m {
        Msg::Hello(_) => "hello",
        Msg::Welcome { .. } => "welcome",
        Msg::Setup(_) => "setup",
        Msg::Ready { .. } => "ready",
        Msg::Finish { .. } => "finish",
        Msg::Abort { .. } => "abort",
        Msg::Report(_) => "report",
        Msg::Error { .. } => "error",
        Msg::Bye {} => "bye",
    }
}

impl Inner {
    /// Marks the control connection broken and returns the error to report.
    fn broken(&mut self, e: io::Error) -> io::Error {
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
    fn report(&mut self, id: u64, timeout: Duration) -> io::Result<Report> {
        let Some(c) = self.ctrl.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                self.down
                    .clone()
                    .unwrap_or_else(|| "peer lost before its report".into()),
            ));
        };
        loop {
            let m = match c.recv(timeout) {
                Ok(m) => m,
                Err(e) => {
                    let e = io::Error::new(e.kind(), format!("waiting for the report: {e}"));
                    return Err(self.broken(e));
                }
            };
            match m {
                Ok(Msg::Report(r)) if r.id == id => return Ok(r),
                Ok(Msg::Report(r)) if r.id < id => continue, // of a transfer already given up
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
    /// Connects to `zclab serve` at `addr`, introducing this host with `caps`. Fails with a
    /// clear message when the server is unreachable, busy with another client, or speaks
    /// another protocol version.
    pub fn connect(addr: PeerAddr, caps: &Caps) -> io::Result<Peer> {
        let hello = hello("client", caps);
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
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
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
    fn request(&self, mut setup: Setup) -> io::Result<(u64, SocketAddr)> {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        setup.id = id;
        let ip = g.addr.addr.ip();
        let c = g.ensure()?;
        if let Err(e) = c.send(&Msg::Setup(setup)) {
            return Err(g.broken(e));
        }
        let c = g.ctrl.as_mut().expect("ensured");
        let ans = match c.recv(ANSWER_TIMEOUT) {
            Ok(a) => a,
            Err(e) => return Err(g.broken(e)),
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

    fn send(&self, m: &Msg) -> io::Result<()> {
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

    fn connect_data(&self, id: u64, to: SocketAddr) -> io::Result<TcpStream> {
        match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
            Ok(s) => {
                set_user_timeout(&s, DATA_USER_TIMEOUT)?;
                Ok(s)
            }
            Err(e) => {
                let e = peer_err(
                    &self.addr(),
                    e.kind(),
                    format!("cannot connect to the announced data port {to}: {e}"),
                );
                // The server reports the transfer as failed once its accept gives up; take
                // that report now so the next request starts clean.
                let _ = self.send(&Msg::Abort { id });
                let _ = self.lock().report(id, ABORT_TIMEOUT);
                Err(e)
            }
        }
    }

    fn tcp(&self, setup: Setup) -> io::Result<RemoteTcp> {
        let (id, to) = self.request(setup)?;
        let stream = self.connect_data(id, to)?;
        Ok(RemoteTcp {
            stream,
            job: Job {
                peer: self.clone(),
                id,
                done: false,
            },
        })
    }

    /// A TCP receiver on the peer host that reads with `recv_buf`-byte reads until end of
    /// stream, hashing what arrives (`hash`) or only counting it; its thread pinned to `cpu`.
    /// Write into [`RemoteTcp::stream`], then [`RemoteTcp::finish`].
    pub fn tcp_sink(&self, cpu: Option<u32>, recv_buf: u64, hash: bool) -> io::Result<RemoteTcp> {
        self.tcp(Setup {
            role: Some(Role::TcpSink),
            cpu,
            recv_buf: Some(recv_buf),
            hash: Some(hash),
            ..Default::default()
        })
    }

    /// An echo server on the peer host for messages of `msg` bytes.
    pub fn echo(&self, cpu: Option<u32>, msg: u64) -> io::Result<RemoteTcp> {
        self.tcp(Setup {
            role: Some(Role::Echo),
            cpu,
            msg: Some(msg),
            ..Default::default()
        })
    }

    /// A sender on the peer host that streams `bytes` of the lab's pattern (offset 0) in
    /// writes of `write_size`, then ends its side. Read [`RemoteTcp::stream`] to end of
    /// stream, then [`RemoteTcp::wait`].
    pub fn tcp_source(
        &self,
        cpu: Option<u32>,
        bytes: u64,
        write_size: u64,
    ) -> io::Result<RemoteTcp> {
        self.tcp(Setup {
            role: Some(Role::TcpSource),
            cpu,
            bytes: Some(bytes),
            write_size: Some(write_size),
            ..Default::default()
        })
    }

    /// A UDP receiver on the peer host; [`RemoteUdp::socket`] is connected to it.
    pub fn udp_sink(&self, cpu: Option<u32>) -> io::Result<RemoteUdp> {
        let (id, to) = self.request(Setup {
            role: Some(Role::UdpSink),
            cpu,
            ..Default::default()
        })?;
        let job = Job {
            peer: self.clone(),
            id,
            done: false,
        };
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(to)?;
        Ok(RemoteUdp { socket, job })
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
    /// then says so instead of only "connection reset". Skips pass through unchanged.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        if e.downcast_ref::<crate::harness::Skip>().is_some() {
            return e;
        }
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

/// One transfer's bookkeeping on the client: its id, and whether its report was taken.
struct Job {
    peer: Peer,
    id: u64,
    done: bool,
}

impl Job {
    fn report(&mut self) -> io::Result<Report> {
        let r = self.peer.lock().report(self.id, REPORT_TIMEOUT);
        self.done = true;
        r
    }

    /// Gives the transfer up: asks the server to tear it down and takes its report.
    fn abort(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if self.peer.send(&Msg::Abort { id: self.id }).is_ok() {
            let _ = self.peer.lock().report(self.id, ABORT_TIMEOUT);
        }
    }
}

impl Drop for Job {
    /// A transfer dropped before its report (a failed trial, or a failure between `ready` and
    /// the data connection) is given up, so the server is free for the next one.
    fn drop(&mut self) {
        self.abort();
    }
}

/// The report as a failure when the server's side failed.
fn checked(addr: &PeerAddr, r: Report) -> io::Result<Report> {
    if r.ok {
        Ok(r)
    } else {
        Err(peer_err(
            addr,
            io::ErrorKind::Other,
            format!(
                "its peer side failed: {}",
                r.error.as_deref().unwrap_or("no reason given")
            ),
        ))
    }
}

/// A TCP data connection to a peer side on the other host.
pub struct RemoteTcp {
    /// The local end: write into it (sink, echo), read from it (source, echo).
    pub stream: TcpStream,
    job: Job,
}

impl RemoteTcp {
    /// Ends the local side of the stream (shutdown(SHUT_WR)) and waits for the server's report.
    pub fn finish(&mut self) -> io::Result<Report> {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.wait()
    }

    /// Waits for the server's report without touching the stream (the source ends its side
    /// itself).
    pub fn wait(&mut self) -> io::Result<Report> {
        let addr = self.job.peer.addr();
        let r = self.job.report()?;
        checked(&addr, r)
    }

    /// [`RemoteTcp::finish`] for a hashing sink, as the local peers report it.
    pub fn received(&mut self) -> io::Result<Received> {
        let r = self.finish()?;
        let hash = r.hash.as_deref().and_then(parse_hex64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the server's report has no hash",
            )
        })?;
        Ok(Received {
            bytes: r.bytes,
            hash: Some(hash),
            usage: r.usage,
        })
    }
}

impl Drop for RemoteTcp {
    fn drop(&mut self) {
        if !self.job.done {
            // A failed trial: unblock the server's side (a clone of the socket may still be
            // open elsewhere); the job's own drop then collects the report.
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }
}

/// A UDP socket connected to a receiver on the other host.
pub struct RemoteUdp {
    pub socket: UdpSocket,
    job: Job,
}

impl RemoteUdp {
    /// Tells the server how many datagrams were sent and waits for its count.
    pub fn finish(&mut self, datagrams: u64) -> io::Result<Report> {
        let addr = self.job.peer.addr();
        if let Err(e) = self.job.peer.send(&Msg::Finish {
            id: self.job.id,
            datagrams,
        }) {
            self.job.done = true;
            return Err(e);
        }
        let r = self.job.report()?;
        checked(&addr, r)
    }
}

impl Report {
    /// " (N lost on the way...)" for an integrity message, with the peer's UDP drop counters
    /// when they grew.
    pub fn lost_note(&self, lost: u64) -> String {
        let mut why = Vec::new();
        if let Some(c) = self.udp_in_csum_errors.filter(|&c| c > 0) {
            why.push(format!("{c} bad UDP checksums"));
        }
        if let Some(c) = self.udp_rcvbuf_errors.filter(|&c| c > 0) {
            why.push(format!("{c} receive-buffer overflows"));
        }
        if why.is_empty() {
            format!(" ({lost} lost on the way)")
        } else {
            format!(
                " ({lost} lost on the way; the peer host counted {})",
                why.join(", ")
            )
        }
    }
}

/// Records a remote peer's report in a trial: its CPU time as the peer's (nothing subtracted
/// locally), its context switches, faults, own duration, CPU and ksoftirqd time as
/// `peer_*` extras. Call after [`crate::harness::Trial::measure`].
pub fn record(t: &mut crate::harness::Trial, r: &Report) {
    t.set_remote_peer(r.usage);
    t.set_extra("peer_vcsw", r.usage.vcsw as f64);
    t.set_extra("peer_ivcsw", r.usage.ivcsw as f64);
    t.set_extra("peer_minflt", r.usage.minflt as f64);
    t.set_extra("peer_majflt", r.usage.majflt as f64);
    t.set_extra("peer_wall_ns", r.wall_ns as f64);
    if let Some(c) = r.cpu {
        t.set_extra("peer_cpu", c as f64);
    }
    if let Some(k) = r.ksoftirqd_ns {
        t.set_extra("peer_ksoftirqd_ns", k as f64);
    }
    if let Some(b) = r.rcvbuf {
        t.set_extra("peer_rcvbuf", b as f64);
    }
    if let Some(f) = r.foreign {
        t.set_extra("peer_foreign_datagrams", f as f64);
    }
    if let Some(c) = r.udp_in_csum_errors {
        t.set_extra("peer_udp_in_csum_errors", c as f64);
    }
    if let Some(c) = r.udp_rcvbuf_errors {
        t.set_extra("peer_udp_rcvbuf_errors", c as f64);
    }
}

/// xxh3-64 of `size` bytes of the lab's pattern from offset 0, computed in 1 MiB pieces:
/// what a tcp-source sends, without holding it in memory.
pub fn pattern_hash(size: u64) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; (1 << 20).min(size as usize).max(1)];
    let mut off = 0u64;
    while off < size {
        let n = (buf.len() as u64).min(size - off) as usize;
        crate::sys::file::fill_pattern(&mut buf[..n], off);
        h.update(&buf[..n]);
        off += n as u64;
    }
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps_json() -> Value {
        json!({"kernel": {"release": "6.18"}})
    }

    fn hello_line(protocol: u64) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": "hello", "lab": "zclab", "protocol": protocol, "version": "9.9.9",
            "git_revision": "x", "role": "client", "host": "h", "kernel": "k",
            "probe": caps_json(), "new_field_of_v9": 1,
        }))
        .unwrap()
    }

    #[test]
    fn messages_round_trip() {
        let h = Hello {
            lab: LAB.into(),
            protocol: PROTOCOL,
            version: "0.1.0".into(),
            git_revision: "abc".into(),
            role: "server".into(),
            host: "b".into(),
            kernel: "6.18".into(),
            probe: caps_json(),
        };
        let msgs = [
            Msg::Hello(h),
            Msg::Welcome { session: 3 },
            Msg::Setup(Setup {
                id: 1,
                role: Some(Role::TcpSink),
                recv_buf: Some(65536),
                hash: Some(true),
                cpu: Some(1),
                ..Default::default()
            }),
            Msg::Ready { id: 1, port: 4000 },
            Msg::Finish {
                id: 1,
                datagrams: 7,
            },
            Msg::Abort { id: 1 },
            Msg::Report(Report {
                id: 1,
                ok: true,
                bytes: 10,
                hash: Some(hex64(5)),
                ..Default::default()
            }),
            Msg::error("busy", "one client at a time"),
            Msg::Bye {},
        ];
        for m in msgs {
            let line = m.to_line().unwrap();
            assert_eq!(*line.last().unwrap(), b'\n');
            assert_eq!(Msg::parse(&line[..line.len() - 1]).unwrap(), m);
        }
    }

    #[test]
    fn bad_messages_are_named() {
        let bad: &[(&[u8], &str)] = &[
            (b"not json", "not JSON"),
            (b"[1,2]", "not a JSON object"),
            (b"{\"x\":1}", "no string \"type\""),
            (b"{\"type\":\"launch\"}", "bad launch message"),
            (b"{\"type\":\"ready\",\"id\":1}", "bad ready message"),
            (b"{\"type\":\"ready\",\"id\":1,\"port\":0}", "port 0"),
            (b"{\"type\":\"bye\",\"extra\":1}", "bad bye message"),
            (b"{\"type\":\"hello\",\"lab\":\"iperf\"}", "not zclab"),
            (
                b"{\"type\":\"hello\",\"lab\":\"zclab\"}",
                "numeric protocol",
            ),
            (b"\xff\xfe", "not UTF-8"),
        ];
        for (line, want) in bad {
            match Msg::parse(line) {
                Err(BadMsg::Invalid(e)) => assert!(e.contains(want), "{e} lacks {want}"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn other_protocol_versions_are_a_mismatch_not_a_parse_error() {
        match Msg::parse(&hello_line(9)) {
            Err(BadMsg::Mismatch {
                protocol, version, ..
            }) => {
                assert_eq!((protocol, version.as_str()), (9, "9.9.9"));
            }
            other => panic!("{other:?}"),
        }
        let t = mismatch_text("zclab serve at x:1", 9, "9.9.9", "this client");
        assert!(t.contains("protocol 9") && t.contains(&format!("protocol {PROTOCOL}")));
    }

    #[test]
    fn setups_are_checked_per_role() {
        let ok = Setup {
            id: 1,
            role: Some(Role::TcpSource),
            bytes: Some(1 << 20),
            write_size: Some(4096),
            ..Default::default()
        };
        assert_eq!(ok.validate(1 << 30), Ok(Role::TcpSource));
        let big = Setup {
            bytes: Some(1 << 40),
            ..ok.clone()
        };
        assert!(big.validate(1 << 30).is_err());
        let foreign = Setup {
            hash: Some(true),
            ..ok.clone()
        };
        assert!(foreign.validate(1 << 30).is_err());
        let missing = Setup {
            id: 2,
            role: Some(Role::Echo),
            ..Default::default()
        };
        assert!(missing.validate(1 << 30).is_err());
        assert!(Setup::default().validate(1).is_err());
    }

    #[test]
    fn lines_are_bounded_and_survive_partial_reads() {
        let mut r = LineReader::new();
        let mut src: &[u8] = b"{\"type\":\"bye\"}\n{\"type\":";
        assert_eq!(
            r.read_line(&mut src).unwrap().unwrap(),
            b"{\"type\":\"bye\"}"
        );
        let e = r.read_line(&mut src).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut empty: &[u8] = b"";
        assert!(LineReader::new().read_line(&mut empty).unwrap().is_none());
        let long = vec![b'a'; MAX_MESSAGE + 10];
        let e = LineReader::new().read_line(&mut &long[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let mut exact = vec![b' '; MAX_MESSAGE - 1];
        exact.push(b'\n');
        assert_eq!(
            LineReader::new()
                .read_line(&mut &exact[..])
                .unwrap()
                .unwrap()
                .len(),
            MAX_MESSAGE - 1
        );
    }

    #[test]
    fn peer_addresses() {
        assert_eq!(
            split_host_port("10.0.0.2", 7878).unwrap(),
            ("10.0.0.2".into(), 7878)
        );
        assert_eq!(split_host_port("h:99", 7878).unwrap(), ("h".into(), 99));
        assert_eq!(split_host_port("[::1]:5", 7878).unwrap(), ("::1".into(), 5));
        assert_eq!(split_host_port("::1", 7878).unwrap(), ("::1".into(), 7878));
        assert!(split_host_port("h:x", 1).is_err());
        assert!(split_host_port(":5", 1).is_err());
        assert!(parse_peer("127.0.0.1:0").is_err());
        assert_eq!(
            parse_peer("127.0.0.1").unwrap().addr,
            "127.0.0.1:7878".parse().unwrap()
        );
    }

    #[test]
    fn pattern_hash_matches_the_stream() {
        let ps = super::super::peers::PatternStream::new(3 << 20 | 17);
        assert_eq!(pattern_hash(3 << 20 | 17), ps.hash);
    }
}
