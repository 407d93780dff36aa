//! A relay between two TCP connections (an HTTP proxy, a broker forwarding between peers): the
//! measured loops of the `proxy` experiment, with the classic calls (read(2)/write(2),
//! splice(2) through a pipe) and their io_uring counterparts.
//!
//! Two loops: [`stream`] forwards one connection's stream to the other until it ends, one
//! latency sample per relay step; [`echo`] relays requests of a known size one way and their
//! replies back, one sample per request. [`ends`] opens the relay's connections and the
//! server end (a thread here, or `zclab serve` on another host).

use super::common::move_to_end;
use super::tcp::read_some;
use crate::measure::Recorder;
use crate::net::peers::{EchoServer, HashSink, PeerReport, tcp_pair};
use crate::net::remote::{self, Peer, RemoteTcp};
use crate::ring::Ring;
use crate::uring::Fd;
use crate::uring::sock::{Mover, Put, Take, Via, move_exact};
use anyhow::{Context, Result, bail};
use nix::fcntl::{SpliceFFlags, splice};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// How the relay moves bytes, the same mechanism in both directions.
pub enum Relay {
    /// read(2) into this buffer (at least a message long), write(2) from it.
    Copy(Vec<u8>),
    /// splice(2) socket -> pipe, splice(2) pipe -> socket; `cap` is the pipe's capacity.
    Splice {
        pr: OwnedFd,
        pw: OwnedFd,
        cap: usize,
    },
    /// IORING_OP_RECV into the buffer + IORING_OP_SEND (MSG_WAITALL) from it.
    UringCopy(Ring, Vec<u8>),
    /// IORING_OP_SPLICE socket -> pipe (read end, write end) + IORING_OP_SPLICE pipe -> socket.
    UringSplice(Ring, OwnedFd, OwnedFd),
}

impl Relay {
    /// What one latency sample of [`stream`] is, for this mechanism.
    pub fn stream_step(&self) -> &'static str {
        match self {
            Relay::Copy(_) => {
                "one read(2) of up to a message from the client + write(2) of it to the server"
            }
            Relay::Splice { .. } => {
                "one splice(2) client -> pipe of up to a message + splice(2) pipe -> server"
            }
            Relay::UringCopy(..) => {
                "one io_uring_enter: SEND of the previous message to the server + RECV of the next from the client"
            }
            Relay::UringSplice(..) => {
                "one io_uring_enter: SPLICE pipe -> server of the previous message + SPLICE client -> pipe of the next"
            }
        }
    }

    /// Whether the relay goes through io_uring.
    pub fn is_uring(&self) -> bool {
        matches!(self, Relay::UringCopy(..) | Relay::UringSplice(..))
    }

    /// The [`Mover`]'s input mode for an io_uring relay.
    fn take(&self) -> Option<Take> {
        match self {
            Relay::UringCopy(..) => Some(Take::Recv),
            Relay::UringSplice(_, pr, pw) => Some(Take::Splice {
                pipe_r: pr.as_raw_fd(),
                pipe_w: pw.as_raw_fd(),
            }),
            _ => None,
        }
    }
}

/// The error of a connection that ended early: `what` closed after `got` bytes.
fn closed(what: &str, got: u64) -> anyhow::Error {
    anyhow::anyhow!("{what}: peer closed the connection after {got} bytes")
}

/// What [`stream`] moved: bytes forwarded and relay steps (samples) taken.
#[derive(Debug, Clone, Copy, Default)]
pub struct Relayed {
    pub bytes: u64,
    pub steps: u64,
}

/// Forwards what arrives on `from` (the client) to `to` (the server), up to `msg` bytes per
/// step, until `from` ends its stream, then shuts `to` down for writing; records one sample
/// per step. The stream must be `total` bytes long.
pub fn stream(
    relay: &mut Relay,
    from: &TcpStream,
    to: &TcpStream,
    msg: usize,
    total: u64,
    rec: &mut Recorder,
) -> Result<Relayed> {
    let take = relay.take();
    let mut steps = 0u64;
    let mut moved = 0u64;
    let mut st = rec.now();
    match relay {
        Relay::Copy(buf) => loop {
            let n = read_some(from, &mut buf[..msg])
                .with_context(|| format!("read from the client after {moved} bytes"))?;
            if n == 0 {
                break;
            }
            (&*to).write_all(&buf[..n]).context("write to the server")?;
            moved += n as u64;
            steps += 1;
            st = rec.record_since(st);
        },
        Relay::Splice { pr, pw, cap } => {
            let fl = SpliceFFlags::SPLICE_F_MOVE;
            loop {
                let n = splice(from.as_fd(), None, &*pw, None, msg.min(*cap), fl)
                    .with_context(|| format!("splice from the client after {moved} bytes"))?;
                if n == 0 {
                    break;
                }
                let mut out = 0;
                while out < n {
                    match splice(&*pr, None, to.as_fd(), None, n - out, fl)
                        .context("splice to the server")?
                    {
                        0 => return Err(closed("splice to the server", moved)),
                        m => out += m,
                    }
                }
                moved += n as u64;
                steps += 1;
                st = rec.record_since(st);
            }
        }
        Relay::UringCopy(r, _) | Relay::UringSplice(r, ..) => {
            let take = take.expect("io_uring relays have a take mode");
            let mut m = Mover::new(
                r,
                Fd::Raw(from.as_raw_fd()),
                Put::Socket(Fd::Raw(to.as_raw_fd())),
                take,
                msg,
                None,
            )?;
            move_to_end(&mut m, r, rec, st, "relay after")?;
            m.finish(r, false)?;
            moved = m.bytes_out;
            steps = m.enters;
        }
    }
    to.shutdown(Shutdown::Write)
        .context("shutdown toward the server")?;
    if moved != total {
        return Err(closed("the client", moved));
    }
    Ok(Relayed {
        bytes: moved,
        steps,
    })
}

/// Relays `requests` messages of `msg` bytes from `a` (the client) to `b` (the server) and
/// each reply of the same size back, exactly one message each way per request; records one
/// sample per request.
pub fn echo(
    relay: &mut Relay,
    a: &TcpStream,
    b: &TcpStream,
    msg: usize,
    requests: u64,
    rec: &mut Recorder,
) -> Result<()> {
    let mut st = rec.now();
    for i in 0..requests {
        exact(relay, a, b, msg)
            .and_then(|_| exact(relay, b, a, msg))
            .with_context(|| format!("request {i} of {requests}"))?;
        st = rec.record_since(st);
    }
    Ok(())
}

/// Moves exactly `len` bytes from `from` to `to`; the peer closing before is an error.
pub fn exact(relay: &mut Relay, from: &TcpStream, to: &TcpStream, len: usize) -> Result<()> {
    let inside = |done: usize| {
        anyhow::anyhow!("peer closed the connection inside a message ({done} of {len} bytes)")
    };
    match relay {
        Relay::Copy(buf) => {
            let mut done = 0;
            while done < len {
                let n = read_some(from, &mut buf[..len - done])?;
                if n == 0 {
                    return Err(inside(done));
                }
                (&*to).write_all(&buf[..n])?;
                done += n;
            }
        }
        Relay::Splice { pr, pw, cap } => {
            let fl = SpliceFFlags::SPLICE_F_MOVE;
            let mut done = 0;
            while done < len {
                let n = splice(from.as_fd(), None, &*pw, None, (len - done).min(*cap), fl)?;
                if n == 0 {
                    return Err(inside(done));
                }
                let mut out = 0;
                while out < n {
                    match splice(&*pr, None, to.as_fd(), None, n - out, fl)? {
                        0 => bail!("splice to a socket moved 0 bytes: peer closed"),
                        m => out += m,
                    }
                }
                done += n;
            }
        }
        Relay::UringCopy(r, buf) => {
            let (f, t) = (Fd::Raw(from.as_raw_fd()), Fd::Raw(to.as_raw_fd()));
            move_exact(r, f, t, Via::Buffer(&mut buf[..len]), len)?;
        }
        Relay::UringSplice(r, pr, pw) => {
            let (f, t) = (Fd::Raw(from.as_raw_fd()), Fd::Raw(to.as_raw_fd()));
            let via = Via::Pipe {
                pipe_r: pr.as_raw_fd(),
                pipe_w: pw.as_raw_fd(),
            };
            move_exact(r, f, t, via, len)?;
        }
    }
    Ok(())
}

/// The server end of the relay: a thread here, or `zclab serve` on the --peer host.
pub enum Server {
    Sink(HashSink),
    Echo(EchoServer),
    Remote(RemoteTcp),
}

/// What the server end did: its account, the figures it gave beyond its usage (`peer_*`
/// extras: a local sink's hashing time, a remote peer's own), and the remote report when it
/// ran on the peer host.
pub struct Served {
    pub report: PeerReport,
    pub extras: Vec<(&'static str, f64)>,
    pub remote: Option<remote::Report>,
}

impl Server {
    /// Waits for the server end to finish (the relay has ended its stream).
    pub fn join(self) -> Result<Served> {
        match self {
            Server::Sink(h) => {
                let r = h.join()?;
                Ok(Served {
                    report: PeerReport {
                        bytes: r.bytes,
                        hash: r.hash.unwrap_or(0),
                        usage: r.usage,
                    },
                    extras: r.peer_extras(),
                    remote: None,
                })
            }
            Server::Echo(e) => Ok(Served {
                report: e.join()?,
                extras: Vec::new(),
                remote: None,
            }),
            Server::Remote(mut r) => {
                let rep = r.finish()?;
                let hash = match rep.hash.as_deref() {
                    Some(h) => remote::parse_hex64(h)
                        .ok_or_else(|| anyhow::anyhow!("the peer's report has a bad hash {h:?}"))?,
                    None => 0,
                };
                Ok(Served {
                    report: PeerReport {
                        bytes: rep.bytes,
                        hash,
                        usage: rep.usage,
                    },
                    extras: rep.peer_extras(),
                    remote: Some(rep),
                })
            }
        }
    }
}

/// The relay's two connections, the client's end of the first and the server at the far end
/// of the second.
pub struct Ends {
    /// Accepted from the client.
    pub a: TcpStream,
    /// Connected to the server.
    pub b: TcpStream,
    /// The client's end of `a`'s connection.
    pub client: TcpStream,
    pub server: Server,
}

/// Opens the relay's connections over loopback (TCP_NODELAY on the relay's sockets) and starts
/// the server end: on `remote` when given (`zclab serve` there, pinned to `cpu`), else a
/// thread here pinned to `cpu`. `echo` picks the server's role: an echo server for messages of
/// `msg` bytes, else a hashing sink.
pub fn ends(remote: Option<&Peer>, cpu: usize, msg: usize, echo: bool) -> Result<Ends> {
    let (client, a) = tcp_pair().context("cannot open the client connection")?;
    let (b, server) = match remote {
        Some(p) => {
            let cpu = Some(cpu as u32);
            let r = if echo {
                p.echo(cpu, msg as u64)?
            } else {
                p.tcp_sink(cpu, msg.max(64 << 10) as u64, true)?
            };
            (r.stream.try_clone()?, Server::Remote(r))
        }
        None => {
            let (b, server) = tcp_pair().context("cannot open the server connection")?;
            let s = if echo {
                Server::Echo(EchoServer::spawn(server, cpu, msg)?)
            } else {
                Server::Sink(HashSink::spawn(server, cpu, msg.max(64 << 10), None)?)
            };
            (b, s)
        }
    };
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok(Ends {
        a,
        b,
        client,
        server,
    })
}
