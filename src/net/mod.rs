//! Network fixtures: loopback TCP connections and the peer threads that receive and hash.

pub mod netns;
pub mod peers;
pub mod remote;

use crate::measure::{Usage, usage};
use std::io::{self, Read};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use xxhash_rust::xxh3::Xxh3;

/// What a receiving peer saw: bytes, their xxh3-64, and the peer thread's own usage from its
/// first to its last byte.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub bytes: u64,
    pub hash: u64,
    pub usage: Usage,
}

/// Receives until end of stream into user space and hashes with xxh3, measuring the calling
/// thread's usage from its first to its last byte. With a fault injected for the current
/// variant ([`peers::FAULT_ENV`]) it resets the connection after that many bytes instead.
pub fn receive(mut s: TcpStream, recv_buf: usize) -> io::Result<Received> {
    let reset_after = peers::FaultSpec::from_env()
        .ok()
        .flatten()
        .and_then(|f| peers::FaultSpec::for_variant(&Some(f), &crate::harness::current_variant()));
    let mut buf = vec![0u8; recv_buf.max(4096)];
    let mut h = Xxh3::new();
    let mut bytes = 0u64;
    let u0 = usage::thread()?;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        bytes += n as u64;
        if reset_after.is_some_and(|r| bytes >= r) {
            peers::reset(s)?;
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("fault injected: peer reset the connection after {bytes} bytes"),
            ));
        }
    }
    let u1 = usage::thread()?;
    Ok(Received {
        bytes,
        hash: h.digest(),
        usage: u1.since(&u0),
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

/// How the peer treats what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Copy into user space and hash (integrity checked).
    Hash,
}

/// A TCP connection over loopback: the sender's end, and a peer thread pinned to `peer_cpu`
/// that receives until end of stream. `nodelay` sets TCP_NODELAY on the sender's socket.
pub struct LoopbackTcp {
    pub sender: TcpStream,
    peer: Option<JoinHandle<io::Result<Received>>>,
}

impl LoopbackTcp {
    /// Connects over 127.0.0.1 to a peer thread on `peer_cpu` that receives with `recv_buf`
    /// sized reads.
    pub fn connect(peer_cpu: usize, recv_buf: usize, nodelay: bool) -> io::Result<LoopbackTcp> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let peer = std::thread::Builder::new()
            .name("zclab-peer".into())
            .spawn(move || -> io::Result<Received> {
                let _ = crate::sys::cpu::pin_to(peer_cpu);
                let (s, _) = listener.accept()?;
                drop(listener);
                receive(s, recv_buf)
            })?;
        let sender = TcpStream::connect(addr)?;
        sender.set_nodelay(nodelay)?;
        Ok(LoopbackTcp {
            sender,
            peer: Some(peer),
        })
    }

    /// Ends the stream (shutdown of the write side) and waits for the peer's account.
    pub fn finish(&mut self) -> io::Result<Received> {
        let _ = self.sender.shutdown(Shutdown::Write);
        match self.peer.take() {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other("peer thread panicked"))?,
            None => Err(io::Error::other("peer already finished")),
        }
    }
}

impl Drop for LoopbackTcp {
    fn drop(&mut self) {
        // Unblock and reap the peer if a variant failed before finishing.
        let _ = self.sender.shutdown(Shutdown::Both);
        if let Some(h) = self.peer.take() {
            let _ = h.join();
        }
    }
}
