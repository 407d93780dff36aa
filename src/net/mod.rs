//! Network fixtures: the sending ends of the lab's connections and the peer threads that
//! receive, hash or discard.

pub mod netns;
pub mod peers;
pub mod pktns;
pub mod remote;

use crate::hash::TimedXxh3;
use crate::measure::{Usage, usage};
use std::io::{self, Read};
use std::net::TcpStream;

/// What a receiving peer saw: bytes, their xxh3-64 (none from a [`Sink::Discard`] receiver),
/// and the peer thread's own usage from its first to its last byte.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub bytes: u64,
    pub hash: Option<u64>,
    pub usage: Usage,
    /// Wall time the receiver spent hashing, where it timed it: the part of its usage that a
    /// receiver which only copies (iperf3's) does not spend.
    pub hash_ns: Option<u64>,
}

impl Received {
    /// The figures a row records of this receiver beyond its usage, as `peer_*` extras (as a
    /// remote peer's report gives its own): `peer_hash_ns` where it timed its hashing.
    pub fn peer_extras(&self) -> Vec<(&'static str, f64)> {
        self.hash_ns
            .map(|n| ("peer_hash_ns", n as f64))
            .into_iter()
            .collect()
    }
}

/// How a TCP receiver treats what it receives.
#[derive(clap::ValueEnum, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    /// Copy into user space and hash with xxh3-64: integrity checked byte for byte, as
    /// iperf3's receiver copies.
    Hash,
    /// recv(2) with MSG_TRUNC: TCP drops the bytes in the kernel without copying them, as the
    /// receivers of liburing's send-zerocopy and the kernel's msg_zerocopy selftest do.
    /// Integrity by byte count only.
    Discard,
}

/// One read of up to `buf.len()` bytes: copied into `buf` (Hash), or consumed in the kernel
/// without a copy (Discard: recv(2) with MSG_TRUNC, which TCP takes as "drop this many").
/// 0 is end of stream.
pub fn read_or_discard(s: &mut TcpStream, buf: &mut [u8], sink: Sink) -> io::Result<usize> {
    match sink {
        Sink::Hash => s.read(buf),
        Sink::Discard => {
            use nix::sys::socket::{MsgFlags, recv};
            use std::os::fd::AsRawFd;
            recv(s.as_raw_fd(), buf, MsgFlags::MSG_TRUNC).map_err(io::Error::from)
        }
    }
}

/// Receives until end of stream with `sink`, hashing with xxh3 what it copies, and measures
/// the calling thread's usage from its first to its last byte.
pub fn receive(s: TcpStream, recv_buf: usize, sink: Sink) -> io::Result<Received> {
    receive_or_reset(s, recv_buf, sink, None)
}

/// [`receive`], or, with `reset_after` (a fault injected for tests: [`peers::FAULT_ENV`], as
/// the harness applies it to the trial's variant), a reset of the connection once that many
/// bytes have arrived, and an error saying so.
pub fn receive_or_reset(
    mut s: TcpStream,
    recv_buf: usize,
    sink: Sink,
    reset_after: Option<u64>,
) -> io::Result<Received> {
    let mut buf = vec![0u8; recv_buf.max(4096)];
    let mut h = TimedXxh3::new();
    let mut bytes = 0u64;
    let u0 = usage::thread()?;
    loop {
        // With a reset point, never read past it: the reset comes after exactly that many
        // bytes, whatever the sender's write sizes.
        let want = match reset_after {
            Some(r) if bytes >= r => {
                peers::reset(s)?;
                return Err(peers::reset_error(bytes));
            }
            Some(r) => buf.len().min((r - bytes) as usize),
            None => buf.len(),
        };
        let n = match read_or_discard(&mut s, &mut buf[..want], sink) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if sink == Sink::Hash {
            h.update(&buf[..n]);
        }
        bytes += n as u64;
    }
    let u1 = usage::thread()?;
    Ok(Received {
        bytes,
        hash: (sink == Sink::Hash).then(|| h.digest()),
        usage: u1.since(&u0),
        hash_ns: (sink == Sink::Hash).then(|| h.ns()),
    })
}

/// The sending end of one trial's connection, whichever path it takes.
pub enum Conn {
    /// TCP to a receiver thread here (loopback or the lab's veth pair).
    Tcp(netns::TcpLink),
    /// UDP to the lab's sink namespace.
    Udp(std::net::UdpSocket),
    /// TCP to a receiver in `zclab serve` on the --peer host.
    Remote(remote::RemoteTcp),
    /// Connected UDP to a counting receiver in `zclab serve` on the --peer host.
    RemoteUdp(remote::RemoteUdp),
}

impl Conn {
    /// The socket to send on.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            Conn::Tcp(l) => l.sender.as_fd(),
            Conn::Udp(s) => s.as_fd(),
            Conn::Remote(r) => r.stream.as_fd(),
            Conn::RemoteUdp(u) => u.socket.as_fd(),
        }
    }
    /// Whether one send is one datagram.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Conn::Udp(_) | Conn::RemoteUdp(_))
    }
}

/// A TCP receiver's account: from a thread here, or from `zclab serve`'s report.
pub enum Got {
    Local(Received),
    Remote(Box<remote::Report>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Both sinks see every byte; only the hashing one can say what they were.
    #[test]
    fn hash_and_discard_receivers_count_the_same_stream() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for sink in [Sink::Hash, Sink::Discard] {
            let (mut a, b) = peers::tcp_pair().unwrap();
            let d = data.clone();
            let w = std::thread::spawn(move || {
                a.write_all(&d).unwrap();
            });
            let r = receive(b, 64 << 10, sink).unwrap();
            w.join().unwrap();
            assert_eq!(r.bytes, data.len() as u64, "{sink:?}");
            let want = (sink == Sink::Hash).then(|| crate::hash::xxh3_64(&data));
            assert_eq!(r.hash, want, "{sink:?}");
            // Only the hashing receiver times its hashing.
            match sink {
                Sink::Hash => assert!(r.hash_ns.is_some_and(|n| n > 0), "{r:?}"),
                Sink::Discard => assert_eq!(r.hash_ns, None),
            }
        }
    }
}
