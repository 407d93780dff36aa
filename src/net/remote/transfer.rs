//! One transfer with a peer side in `zclab serve` (`docs/serve-protocol.md`, "Sequence", from
//! `setup` to `report`): the data connection or socket, the report, and giving a transfer up
//! (`abort`) when a trial fails. What a report says is handed back as data ([`Report`],
//! [`Report::peer_extras`]); recording it is the caller's business.

use super::addr::PeerAddr;
use super::client::{Peer, peer_err};
use super::protocol::{Msg, Report, Role, Setup, parse_hex64};
use super::wire::{
    ABORT_TIMEOUT, CONNECT_TIMEOUT, DATA_USER_TIMEOUT, REPORT_TIMEOUT, set_user_timeout,
};
use crate::net::Received;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};

impl Peer {
    /// The client's bookkeeping of transfer `id`.
    fn job(&self, id: u64) -> Job {
        Job {
            peer: self.clone(),
            id,
            done: false,
        }
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
            job: self.job(id),
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

    /// rr's server of variant `server` on the peer host, answering requests of `req` bytes
    /// with responses of `resp` bytes on [`RemoteTcp::stream`] until its end; then
    /// [`RemoteTcp::finish`] gives the report (`requests` answered, the server's usage).
    pub fn rr_server(
        &self,
        cpu: Option<u32>,
        server: &str,
        req: u64,
        resp: u64,
    ) -> io::Result<RemoteTcp> {
        self.tcp(Setup {
            role: Some(Role::RrServer),
            cpu,
            server: Some(server.to_string()),
            req: Some(req),
            resp: Some(resp),
            ..Default::default()
        })
    }

    /// rr's server of variant `server` on the peer host, for a connection per transaction:
    /// it accepts `connections` connections at [`RemoteListen::addr`] and answers each
    /// (requests of `req` bytes, responses of `resp` bytes) until the client closes it; then
    /// [`RemoteListen::wait`] gives the report.
    pub fn rr_server_crr(
        &self,
        cpu: Option<u32>,
        server: &str,
        (req, resp): (u64, u64),
        connections: u64,
    ) -> io::Result<RemoteListen> {
        let (id, addr) = self.request(Setup {
            role: Some(Role::RrServer),
            cpu,
            server: Some(server.to_string()),
            req: Some(req),
            resp: Some(resp),
            connections: Some(connections),
            ..Default::default()
        })?;
        let job = self.job(id);
        Ok(RemoteListen { addr, job })
    }

    /// A UDP receiver on the peer host; [`RemoteUdp::socket`] is connected to it.
    pub fn udp_sink(&self, cpu: Option<u32>) -> io::Result<RemoteUdp> {
        let (id, to) = self.request(Setup {
            role: Some(Role::UdpSink),
            cpu,
            ..Default::default()
        })?;
        let job = self.job(id);
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(to)?;
        Ok(RemoteUdp { socket, job })
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

/// A peer side on the other host that the client connects to itself, as often as it needs.
pub struct RemoteListen {
    /// Where it accepts connections.
    pub addr: SocketAddr,
    job: Job,
}

impl RemoteListen {
    /// Waits for the server's report.
    pub fn wait(&mut self) -> io::Result<Report> {
        let addr = self.job.peer.addr();
        let r = self.job.report()?;
        checked(&addr, r)
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
            hash_ns: r.hash_ns,
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

impl Report {
    /// What the row records of the peer beside its CPU time ([`Report::usage`], which is the
    /// remote peer's own: nothing of it was this process's): context switches, faults, its
    /// own duration, CPU and ksoftirqd time, a TCP receiver's hashing time, and a UDP
    /// receiver's buffer and counters, as `peer_*` extras (`docs/serve-protocol.md`, "What a
    /// run records").
    pub fn peer_extras(&self) -> Vec<(&'static str, f64)> {
        let u = &self.usage;
        let mut v = vec![
            ("peer_vcsw", u.vcsw as f64),
            ("peer_ivcsw", u.ivcsw as f64),
            ("peer_minflt", u.minflt as f64),
            ("peer_majflt", u.majflt as f64),
            ("peer_wall_ns", self.wall_ns as f64),
        ];
        let optional = [
            ("peer_cpu", self.cpu.map(u64::from)),
            ("peer_ksoftirqd_ns", self.ksoftirqd_ns),
            ("peer_hash_ns", self.hash_ns),
            ("peer_rcvbuf", self.rcvbuf),
            ("peer_foreign_datagrams", self.foreign),
            ("peer_udp_in_csum_errors", self.udp_in_csum_errors),
            ("peer_udp_rcvbuf_errors", self.udp_rcvbuf_errors),
        ];
        v.extend(
            optional
                .into_iter()
                .filter_map(|(k, x)| Some((k, x? as f64))),
        );
        v
    }
}

/// xxh3-64 of `size` bytes of the lab's pattern from offset 0, computed in 1 MiB pieces:
/// what a tcp-source sends, without holding it in memory.
pub fn pattern_hash(size: u64) -> u64 {
    let mut h = crate::hash::Xxh3::new();
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

    #[test]
    fn pattern_hash_matches_the_stream() {
        let ps = crate::net::peers::PatternStream::new(3 << 20 | 17);
        assert_eq!(pattern_hash(3 << 20 | 17), ps.hash);
    }
}
