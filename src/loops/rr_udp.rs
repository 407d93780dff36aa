//! Request/response over UDP (the `rr` experiment's udp paths): the client's closed and open
//! loops on a connected UDP socket, one request datagram and one response datagram per
//! transaction, with the wire format and checks of [`super::rr`]. The servers are rr's own:
//! on a connected UDP socket every receive is one datagram, so one whole request, and the end
//! of the client's run is a datagram of zero bytes, for which recv(2) (and io_uring's RECV and
//! READ) returns 0 as at a TCP end of stream.
//!
//! **Loss.** UDP may drop a datagram: a socket buffer that fills under an open-loop rate the
//! server cannot keep up with. A closed loop waits [`LOSS_WAIT`] for each response and fails
//! the trial when none comes. An open loop counts the transactions whose response never came
//! (`lost`) from the gaps in the sequence numbers of those that did, and after its last
//! request waits until [`LOSS_WAIT`] has passed without a response before it counts the rest
//! as lost. A response of the wrong length, out of order or for a request not yet sent is a
//! failed check.

use super::rr::{
    ClientJob, ClientReport, Requests, cancelled, check_response, closed_loop, report,
    response_template, wait_fd,
};
use crate::measure::Recorder;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recv, send};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The largest UDP payload over IPv4 (65535 less the IP and UDP headers).
pub const MAX_DATAGRAM: u64 = 65507;
/// How long the client waits for a response before it counts it as lost.
pub const LOSS_WAIT: Duration = Duration::from_secs(1);
/// Receive buffer asked for on both sockets: the default (about 208 KiB, some 25 datagrams of
/// 5000 B) drops requests whenever the server is off the CPU for a millisecond, which would
/// measure the buffer rather than the server; UDP servers set large ones.
pub const RCVBUF: usize = 8 << 20;

/// Sets the receive buffer to `bytes` (SO_RCVBUFFORCE, which root may set past rmem_max;
/// otherwise SO_RCVBUF, capped there); returns the size in force, as the kernel reports it.
pub fn set_rcvbuf(sock: &UdpSocket, bytes: usize) -> io::Result<usize> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        setsockopt(sock, sockopt::RcvBuf, &bytes)?;
    }
    Ok(getsockopt(sock, sockopt::RcvBuf)?)
}

/// A server socket at `server` and a client socket at `client` (each an address and the
/// network namespace to create it in), bound to ephemeral ports, connected to each other,
/// with receive buffers of [`RCVBUF`] where permitted.
pub fn pair(
    server: (Ipv4Addr, Option<&str>),
    client: (Ipv4Addr, Option<&str>),
) -> io::Result<(UdpSocket, UdpSocket)> {
    let bind = |(ip, ns): (Ipv4Addr, Option<&str>)| -> io::Result<UdpSocket> {
        let any = SocketAddrV4::new(ip, 0);
        match ns {
            Some(ns) => crate::net::netns::in_netns(ns, move || UdpSocket::bind(any)),
            None => UdpSocket::bind(any),
        }
    };
    let (s, c) = (bind(server)?, bind(client)?);
    set_rcvbuf(&s, RCVBUF)?;
    set_rcvbuf(&c, RCVBUF)?;
    s.connect(c.local_addr()?)?;
    c.connect(s.local_addr()?)?;
    Ok((s, c))
}

/// The client's run on `sock`: closed loop, or open loop at `rate`; then the end datagram,
/// also after a failure, so the server's loop ends.
pub fn client(job: &ClientJob, sock: &UdpSocket, rate: Option<f64>) -> io::Result<ClientReport> {
    let r = match rate {
        None => closed(job, sock),
        Some(rate) => open(job, sock, rate),
    };
    // Twice: the server stops at the first; an extra one goes with its socket.
    for _ in 0..2 {
        let _ = sock.set_nonblocking(false);
        let _ = sock.send(&[]);
    }
    r
}

/// Sends one datagram: false when the socket's buffer is full (non-blocking).
fn send_datagram(sock: &UdpSocket, buf: &[u8]) -> io::Result<bool> {
    loop {
        match send(sock.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) if n == buf.len() => return Ok(true),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "send(2) took {n} of a {} B datagram",
                    buf.len()
                )));
            }
            Err(Errno::EINTR) => cancelled()?,
            Err(Errno::EAGAIN) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one datagram into `buf`: its whole length (MSG_TRUNC, so a longer one shows), or
/// None when none is there (non-blocking) or none came within the receive timeout.
fn recv_datagram(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match recv(sock.as_raw_fd(), buf, MsgFlags::MSG_TRUNC) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::EINTR) => cancelled()?,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Ping-pong: one request datagram, its response, the check, the next.
fn closed(job: &ClientJob, sock: &UdpSocket) -> io::Result<ClientReport> {
    sock.set_read_timeout(Some(LOSS_WAIT))?;
    closed_loop(
        job,
        |req, resp| {
            send_datagram(sock, req)?;
            match recv_datagram(sock, resp)? {
                Some(n) if n == resp.len() => Ok(()),
                Some(n) => Err(io::Error::other(format!(
                    "a response datagram of {n} B where {} B were due",
                    resp.len()
                ))),
                None => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no response within {LOSS_WAIT:?}: a request or response datagram was lost"
                    ),
                )),
            }
        },
        |()| Ok(()),
    )
}

/// Open loop: request `i` goes out at its intended time whatever is outstanding; responses
/// are matched by sequence number, gaps counted as lost.
fn open(job: &ClientJob, sock: &UdpSocket, rate: f64) -> io::Result<ClientReport> {
    sock.set_nonblocking(true)?;
    let resp_len = job.shape.resp;
    let mut reqs = Requests::new(job.shape.req);
    let template = response_template(resp_len);
    let mut rec = Recorder::new(job.clock);
    let clock = job.clock;
    let due = |i: u64| (i as f64 * 1e9 / rate) as u64;
    let mut buf = vec![0u8; MAX_DATAGRAM as usize + 1];
    let (mut sent, mut next, mut done, mut lost, mut bad) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut first_bad = None;
    // The last response's arrival, and the last event (a send or an arrival), ns from start.
    let (mut last, mut last_event) = (0u64, 0u64);
    let start = clock.now();
    let loss_wait = LOSS_WAIT.as_nanos() as u64;
    while next < job.n {
        cancelled()?;
        let now = clock.ns_between(start, clock.now());
        let mut blocked = false;
        while sent < job.n && due(sent) <= now {
            if !send_datagram(sock, reqs.get(sent))? {
                blocked = true;
                break;
            }
            sent += 1;
            last_event = now;
        }
        while let Some(n) = recv_datagram(sock, &mut buf)? {
            let at = clock.ns_between(start, clock.now());
            last_event = at;
            let got = &buf[..n.min(buf.len())];
            let seq = (n >= 8).then(|| u64::from_le_bytes(got[..8].try_into().expect("8 bytes")));
            let why = match seq {
                _ if n != resp_len => Some(format!(
                    "a response datagram of {n} B where {resp_len} B were due"
                )),
                Some(s) if s < next || s >= sent => Some(format!(
                    "a response with sequence number {s} where {next} to {} were outstanding",
                    sent.saturating_sub(1)
                )),
                Some(s) => {
                    lost += s - next;
                    next = s + 1;
                    done += 1;
                    last = at;
                    rec.record_ns(at.saturating_sub(due(s)));
                    check_response(got, s, &reqs, &template)
                }
                None => unreachable!("n == resp_len >= 16"),
            };
            if let Some(why) = why {
                bad += 1;
                first_bad.get_or_insert(why);
            }
        }
        if next >= job.n {
            break;
        }
        let now = clock.ns_between(start, clock.now());
        if sent == job.n && now.saturating_sub(last_event) >= loss_wait {
            lost += job.n - next;
            break;
        }
        let mut ev = nix::poll::PollFlags::POLLIN;
        if blocked {
            ev |= nix::poll::PollFlags::POLLOUT;
        }
        let wait = if sent < job.n {
            due(sent).saturating_sub(now)
        } else {
            (last_event + loss_wait).saturating_sub(now)
        };
        wait_fd(sock, ev, (!blocked).then(|| Duration::from_nanos(wait)))?;
    }
    let mut r = report(&mut rec, done, bad, first_bad, last);
    r.lost = lost;
    r.rate = Some(rate);
    Ok(r)
}
