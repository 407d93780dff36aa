//! The control protocol's messages: their fields, limits, parsing and printing. The code
//! counterpart of `docs/serve-protocol.md`, section "The control protocol": "Messages" (the
//! table of types and fields: [`Msg`], [`Hello`], [`Setup`], [`Report`]), "Error codes and
//! what happens" (the codes of [`Msg::Error`], [`BadMsg`]) and "Versions" (the lenient first
//! read of a hello in [`Msg::parse`], [`mismatch_text`]). How lines travel is in
//! [`super::wire`] ("Transport").

use crate::caps::Caps;
use crate::measure::Usage;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io;

/// The lab's name in every hello: anything else is not a zclab peer.
pub const LAB: &str = "zclab";
/// Version of the control protocol. Client and server of different versions refuse each other.
pub const PROTOCOL: u32 = 4;
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
/// Transfers one session may run at once (one per flow of a many-flow trial).
pub const MAX_TRANSFERS: usize = 64;

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
    /// Accepts one TCP connection and answers rr's requests of `req` bytes with responses of
    /// `resp` bytes until end of stream, with the server of rr variant `server`.
    RrServer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::TcpSink => "tcp-sink",
            Role::UdpSink => "udp-sink",
            Role::Echo => "echo",
            Role::TcpSource => "tcp-source",
            Role::RrServer => "rr-server",
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
    /// rr-server: the rr variant whose server runs (one of [`RR_SERVERS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// rr-server: request size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<u64>,
    /// rr-server: response size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<u64>,
    /// rr-server: a connection per transaction, this many (without it, one connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
}

/// The rr server variants an rr-server runs.
pub const RR_SERVERS: &[&str] = crate::catalog::rr::VARIANTS;
/// rr-server: the most connections (transactions) of a connection-per-transaction setup.
pub const MAX_CONNECTIONS: u64 = 1_000_000_000;
/// rr-server: the smallest and largest request or response.
pub const RR_SIZES: (u64, u64) = (16, 1 << 20);

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
    /// tcp-sink with hashing: wall time spent hashing what arrived, ns (protocol 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_ns: Option<u64>,
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
    /// echo: messages echoed; rr-server: requests answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// rr-server with an io_uring server: io_uring_enter calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uring_enters: Option<u64>,
    /// rr-server on an SQPOLL ring: the SQ thread's CPU time (also counted in `usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqpoll_ns: Option<u64>,
    /// rr-server classic-busy-poll: the connection's NAPI id (SO_INCOMING_NAPI_ID; 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub napi_id: Option<u64>,
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
            Role::RrServer => &["server", "req", "resp", "connections"],
        };
        let present = [
            ("recv_buf", self.recv_buf.is_some()),
            ("hash", self.hash.is_some()),
            ("msg", self.msg.is_some()),
            ("bytes", self.bytes.is_some()),
            ("write_size", self.write_size.is_some()),
            ("server", self.server.is_some()),
            ("req", self.req.is_some()),
            ("resp", self.resp.is_some()),
            ("connections", self.connections.is_some()),
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
            Role::RrServer => {
                range("req", self.req, RR_SIZES.0, RR_SIZES.1)?;
                range("resp", self.resp, RR_SIZES.0, RR_SIZES.1)?;
                if self.connections.is_some() {
                    range("connections", self.connections, 1, MAX_CONNECTIONS)?;
                }
                match self.server.as_deref() {
                    None => return Err(BadMsg::Invalid("server is missing".into())),
                    Some(v) if !RR_SERVERS.contains(&v) => {
                        return Err(BadMsg::Invalid(format!(
                            "server {:?} is not one of {}",
                            clip(v, 64),
                            RR_SERVERS.join(", ")
                        )));
                    }
                    Some(_) => {}
                }
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
pub fn hello(role: &str, caps: &Caps, git_revision: &str) -> Hello {
    Hello {
        lab: LAB.into(),
        protocol: PROTOCOL,
        version: env!("CARGO_PKG_VERSION").into(),
        git_revision: clip(git_revision, MAX_NAME),
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

#[cfg(test)]
mod tests;
