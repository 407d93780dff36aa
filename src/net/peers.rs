//! Peer threads for the socket experiments: a sender that streams known bytes, a receiver that
//! hashes, an echo server and an echo client; loopback TCP pairs; and the test-only fault that
//! makes a peer reset its connection mid-transfer.
//!
//! Every peer runs on its own thread pinned to the peer CPU and measures its own CPU usage
//! (getrusage(RUSAGE_THREAD)) so the measured side can subtract it. Every peer ends when its
//! connection ends: the measured side shutting down or dropping its socket unblocks it, so a
//! failed trial never leaves a thread behind.

use super::{Received, Sink};
use crate::hash::xxh3_64;
use crate::measure::{Clock, Recorder, Usage, usage};
use crate::sys::file::fill_pattern;
use hdrhistogram::Histogram;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The environment variable that injects a fault into a peer (for tests):
/// `peer-reset-after:SIZE[@VARIANT]` makes the peer of VARIANT (of every variant when omitted)
/// reset its connection (SO_LINGER 0, then close: a TCP RST) once it has moved SIZE bytes.
pub const FAULT_ENV: &str = "ZCLAB_FAULT";

/// The refusal of a fault injected ([`FAULT_ENV`]) into a local `side` ("sender",
/// "receiver") when `--peer` puts that side on the peer host.
pub fn fault_with_peer(side: &str) -> String {
    format!(
        "{FAULT_ENV} injects a fault into a local {side}; with --peer the {side} runs on the peer host"
    )
}

/// A fault read from [`FAULT_ENV`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// Bytes the peer moves before it resets the connection.
    pub reset_after: u64,
    /// The only variant whose peer misbehaves; None: every variant's.
    pub variant: Option<String>,
}

impl FaultSpec {
    /// Parses [`FAULT_ENV`]; Ok(None) when it is unset or empty, an error naming the value when
    /// it is malformed.
    pub fn from_env() -> io::Result<Option<FaultSpec>> {
        match std::env::var(FAULT_ENV) {
            Ok(v) if !v.trim().is_empty() => FaultSpec::parse(&v).map(Some),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{FAULT_ENV}: {e}"),
            )),
        }
    }

    /// [`FaultSpec::from_env`], refusing a variant name that is not among `known`.
    pub fn from_env_for(known: &[&str]) -> io::Result<Option<FaultSpec>> {
        let f = FaultSpec::from_env()?;
        if let Some(v) = f.as_ref().and_then(|f| f.variant.as_deref()) {
            if !known.contains(&v) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{FAULT_ENV}: unknown variant '{v}' (known: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(f)
    }

    /// Parses `peer-reset-after:SIZE[@VARIANT]`.
    pub fn parse(s: &str) -> io::Result<FaultSpec> {
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{FAULT_ENV}='{s}': {why} (expected peer-reset-after:SIZE[@VARIANT])"),
            )
        };
        let rest = s
            .trim()
            .strip_prefix("peer-reset-after:")
            .ok_or_else(|| bad("unknown fault"))?;
        let (size, variant) = match rest.split_once('@') {
            Some((a, b)) if !b.is_empty() => (a, Some(b.to_string())),
            Some(_) => return Err(bad("empty variant name")),
            None => (rest, None),
        };
        let reset_after = crate::units::parse_size(size).map_err(|e| bad(&e.to_string()))?;
        Ok(FaultSpec {
            reset_after,
            variant,
        })
    }

    /// The reset point for `variant`'s peer, if the fault applies to it.
    pub fn for_variant(spec: &Option<FaultSpec>, variant: &str) -> Option<u64> {
        spec.as_ref()?.reset_point(variant)
    }

    /// The reset point for `variant`'s peer, if this fault applies to it.
    pub fn reset_point(&self, variant: &str) -> Option<u64> {
        self.variant
            .as_deref()
            .is_none_or(|v| v == variant)
            .then_some(self.reset_after)
    }
}

/// Resets `s`: SO_LINGER {on, 0 s} then close, so the kernel sends a TCP RST instead of a FIN.
pub fn reset(s: TcpStream) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&s.as_fd(), nix::sys::socket::sockopt::Linger, &l)?;
    drop(s);
    Ok(())
}

pub(crate) fn reset_error(after: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("fault injected: peer reset the connection after {after} bytes"),
    )
}

/// Two connected TCP sockets over 127.0.0.1: (the connecting end, the accepted end).
pub fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let c = TcpStream::connect(l.local_addr()?)?;
    let (a, _) = l.accept()?;
    Ok((c, a))
}

/// Sums two usages (a fixture with two peer threads reports both).
pub fn add_usage(a: Usage, b: Usage) -> Usage {
    Usage {
        user_ns: a.user_ns + b.user_ns,
        sys_ns: a.sys_ns + b.sys_ns,
        vcsw: a.vcsw + b.vcsw,
        ivcsw: a.ivcsw + b.ivcsw,
        minflt: a.minflt + b.minflt,
        majflt: a.majflt + b.majflt,
    }
}

/// A zeroed buffer of `len` bytes, or an error (ErrorKind::OutOfMemory) when it cannot be
/// allocated: for sizes a remote client chooses, where an allocation failure must fail the
/// transfer rather than abort the process.
pub fn try_zeroed(len: usize, what: &str) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate the {len}-byte {what}: {e}"),
        )
    })?;
    v.resize(len, 0);
    Ok(v)
}

/// `size` bytes of the lab's positional pattern (offset 0) and their xxh3-64: what a sender
/// peer streams, generated once so generating it costs the peer nothing during a trial.
pub struct PatternStream {
    pub data: Arc<Vec<u8>>,
    pub hash: u64,
}

impl PatternStream {
    pub fn new(size: usize) -> PatternStream {
        let mut v = vec![0u8; size];
        fill_pattern(&mut v, 0);
        let hash = xxh3_64(&v);
        PatternStream {
            data: Arc::new(v),
            hash,
        }
    }
}

/// What a peer thread did.
#[derive(Debug, Clone, Copy)]
pub struct PeerReport {
    pub bytes: u64,
    /// xxh3-64 of what it received (0 for a pure sender).
    pub hash: u64,
    pub usage: Usage,
}

impl PeerReport {
    /// A peer's account at its end: `bytes` moved, `hash` (0 for a pure sender), and the
    /// thread's CPU usage since `u0`.
    fn since(u0: &Usage, bytes: u64, hash: u64) -> io::Result<PeerReport> {
        Ok(PeerReport {
            bytes,
            hash,
            usage: usage::thread()?.since(u0),
        })
    }
}

/// A peer's thread, joined when dropped (its result then discarded), so that a failed trial
/// leaves no peer running.
pub struct PeerThread<T> {
    handle: Option<JoinHandle<io::Result<T>>>,
    who: &'static str,
}

impl<T> PeerThread<T> {
    /// Takes over a started thread; `who` names it when it panicked.
    fn new(handle: JoinHandle<io::Result<T>>, who: &'static str) -> PeerThread<T> {
        PeerThread {
            handle: Some(handle),
            who,
        }
    }

    /// Waits for the thread and returns what it returned.
    pub fn join(mut self) -> io::Result<T> {
        let h = self.handle.take().expect("joined once");
        h.join()
            .map_err(|_| io::Error::other(format!("{} thread panicked", self.who)))?
    }
}

impl<T> Drop for PeerThread<T> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Starts thread `name` pinned to `cpu`, running `f`; `who` names it when it panicked.
pub(crate) fn spawn<T: Send + 'static>(
    name: &str,
    who: &'static str,
    cpu: usize,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<PeerThread<T>> {
    let h = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = start_peer(cpu);
            f()
        })?;
    Ok(PeerThread::new(h, who))
}

/// What a peer thread of the measured one does first: pin itself to `cpu`, and during a
/// profiling trial sample itself ([`crate::measure::profile::sample_this_peer`]).
pub(crate) fn start_peer(cpu: usize) -> io::Result<()> {
    let pinned = crate::sys::cpu::pin_to(cpu);
    crate::measure::profile::sample_this_peer();
    pinned
}

/// A sender peer: streams `data` over its socket in writes of `write_size` bytes, then closes
/// its write side. With a fault it resets the connection after `reset_after` bytes instead.
pub struct Streamer(PeerThread<PeerReport>);

impl Streamer {
    pub fn spawn(
        mut sock: TcpStream,
        cpu: usize,
        data: Arc<Vec<u8>>,
        write_size: usize,
        reset_after: Option<u64>,
    ) -> io::Result<Streamer> {
        let h = spawn("zclab-sender", "sender", cpu, move || {
            let u0 = usage::thread()?;
            let end = reset_after.map_or(data.len(), |r| (r as usize).min(data.len()));
            let mut off = 0;
            while off < end {
                let n = write_size.min(end - off);
                sock.write_all(&data[off..off + n])?;
                off += n;
            }
            if reset_after.is_some() {
                reset(sock)?;
                return Err(reset_error(off as u64));
            }
            // A graceful close: what is still queued is delivered, then the FIN.
            sock.shutdown(Shutdown::Write)?;
            PeerReport::since(&u0, off as u64, 0)
        })?;
        Ok(Streamer(h))
    }

    /// Waits for the sender to finish (the measured side must have closed or shut down its
    /// socket, or read to end of stream).
    pub fn join(self) -> io::Result<PeerReport> {
        self.0.join()
    }
}

/// A receiving peer: reads until end of stream with `recv_buf`-sized reads and hashes
/// ([`super::receive_or_reset`]); with `reset_after`, resets the connection after exactly that
/// many bytes instead.
pub struct HashSink(PeerThread<Received>);

impl HashSink {
    pub fn spawn(
        sock: TcpStream,
        cpu: usize,
        recv_buf: usize,
        reset_after: Option<u64>,
    ) -> io::Result<HashSink> {
        let h = spawn("zclab-sink", "receiver", cpu, move || {
            super::receive_or_reset(sock, recv_buf, Sink::Hash, reset_after)
        })?;
        Ok(HashSink(h))
    }

    /// Waits for end of stream and returns what arrived.
    pub fn join(self) -> io::Result<Received> {
        self.0.join()
    }
}

/// An echo server peer: reads messages of exactly `msg` bytes and writes each back, until end
/// of stream.
pub struct EchoServer(PeerThread<PeerReport>);

impl EchoServer {
    pub fn spawn(mut sock: TcpStream, cpu: usize, msg: usize) -> io::Result<EchoServer> {
        let h = spawn("zclab-echo", "echo server", cpu, move || {
            sock.set_nodelay(true)?;
            let mut buf = try_zeroed(msg, "echo buffer")?;
            let mut bytes = 0u64;
            let u0 = usage::thread()?;
            loop {
                match read_full(&mut sock, &mut buf)? {
                    0 => break,
                    n if n < msg => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "echo server: stream ended inside a message ({n} of {msg} bytes)"
                            ),
                        ));
                    }
                    _ => {}
                }
                sock.write_all(&buf)?;
                bytes += msg as u64;
            }
            PeerReport::since(&u0, bytes, 0)
        })?;
        Ok(EchoServer(h))
    }

    pub fn join(self) -> io::Result<PeerReport> {
        self.0.join()
    }
}

/// Reads until `buf` is full or end of stream; returns the bytes read.
fn read_full(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// What the echo client measured: round trips, how many came back different from what was
/// sent, and the round-trip histogram (ns, one sample per request).
pub struct EchoReport {
    pub requests: u64,
    pub mismatches: u64,
    pub bytes: u64,
    pub rtt: Histogram<u64>,
    pub usage: Usage,
}

/// An echo client peer: sends `requests` messages of `msg` bytes one at a time, reads each
/// echo back, compares it with what it sent, and times each round trip with `clock`.
/// Messages cycle through 16 distinct pattern blocks, so a stale or misrouted echo is caught.
pub struct EchoClient(PeerThread<EchoReport>);

impl EchoClient {
    pub fn spawn(
        mut sock: TcpStream,
        cpu: usize,
        msg: usize,
        requests: u64,
        clock: Clock,
        reset_after: Option<u64>,
    ) -> io::Result<EchoClient> {
        let h = spawn("zclab-client", "echo client", cpu, move || {
            sock.set_nodelay(true)?;
            const DISTINCT: usize = 16;
            let mut out = vec![0u8; msg * DISTINCT];
            fill_pattern(&mut out, 0);
            let mut back = vec![0u8; msg];
            let mut rec = Recorder::new(clock);
            let (mut mismatches, mut bytes) = (0u64, 0u64);
            let u0 = usage::thread()?;
            for i in 0..requests {
                if reset_after.is_some_and(|r| bytes >= r) {
                    reset(sock)?;
                    return Err(reset_error(bytes));
                }
                let m = &out[(i as usize % DISTINCT) * msg..][..msg];
                let t = rec.now();
                sock.write_all(m)?;
                let n = read_full(&mut sock, &mut back)?;
                rec.record_since(t);
                if n < msg {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "echo client: connection closed after {n} of {msg} echoed bytes (request {i})"
                        ),
                    ));
                }
                if back != m {
                    mismatches += 1;
                }
                bytes += msg as u64;
            }
            let u1 = usage::thread()?;
            sock.shutdown(Shutdown::Write)?;
            Ok(EchoReport {
                requests,
                mismatches,
                bytes,
                rtt: rec.take(),
                usage: u1.since(&u0),
            })
        })?;
        Ok(EchoClient(h))
    }

    pub fn join(self) -> io::Result<EchoReport> {
        self.0.join()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_spec_parses() {
        let f = FaultSpec::parse("peer-reset-after:1MiB@classic-splice").unwrap();
        assert_eq!(f.reset_after, 1 << 20);
        assert_eq!(f.variant.as_deref(), Some("classic-splice"));
        let s = Some(f);
        assert_eq!(FaultSpec::for_variant(&s, "classic-splice"), Some(1 << 20));
        assert_eq!(FaultSpec::for_variant(&s, "uring-splice"), None);
        let all = Some(FaultSpec::parse("peer-reset-after:4096").unwrap());
        assert_eq!(FaultSpec::for_variant(&all, "x"), Some(4096));
        assert!(FaultSpec::parse("explode").is_err());
        assert!(FaultSpec::parse("peer-reset-after:lots").is_err());
        assert!(FaultSpec::parse("peer-reset-after:1K@").is_err());
    }

    #[test]
    fn streamer_to_sink_over_loopback() {
        let ps = PatternStream::new(300_000);
        let (a, b) = tcp_pair().unwrap();
        let st = Streamer::spawn(a, 0, ps.data.clone(), 65536, None).unwrap();
        let sink = HashSink::spawn(b, 0, 4096, None).unwrap();
        let r = sink.join().unwrap();
        assert_eq!((r.bytes, r.hash), (300_000, Some(ps.hash)));
        assert_eq!(st.join().unwrap().bytes, 300_000);
    }

    #[test]
    fn a_sink_resets_after_exactly_the_bytes_asked_and_times_its_hashing() {
        let ps = PatternStream::new(1 << 20);
        let (a, b) = tcp_pair().unwrap();
        let st = Streamer::spawn(a, 0, ps.data.clone(), 65536, None).unwrap();
        // Reads of 64 KiB would pass a reset point that is not a multiple of them.
        let sink = HashSink::spawn(b, 0, 65536, Some(10_000)).unwrap();
        let e = sink.join().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(e.to_string().contains("after 10000 bytes"), "{e}");
        // The whole stream may already sit in loopback's buffers: the sender may not see it.
        let _ = st.join();

        let (a, b) = tcp_pair().unwrap();
        let st = Streamer::spawn(a, 0, ps.data.clone(), 65536, None).unwrap();
        let r = HashSink::spawn(b, 0, 65536, None).unwrap().join().unwrap();
        st.join().unwrap();
        assert!(r.hash_ns.is_some_and(|n| n > 0));
        assert_eq!(r.peer_extras()[0].0, "peer_hash_ns");
    }

    #[test]
    fn reset_fault_ends_the_stream_with_an_error() {
        let ps = PatternStream::new(1 << 20);
        let (a, mut b) = tcp_pair().unwrap();
        let st = Streamer::spawn(a, 0, ps.data.clone(), 4096, Some(8192)).unwrap();
        let mut got = Vec::new();
        let r = b.read_to_end(&mut got);
        assert!(r.is_err() || got.len() < 1 << 20);
        assert!(st.join().is_err());
    }

    #[test]
    fn echo_round_trips() {
        let (a, b) = tcp_pair().unwrap();
        let srv = EchoServer::spawn(b, 0, 1000).unwrap();
        let cl = EchoClient::spawn(a, 0, 1000, 50, Clock::new(), None).unwrap();
        let r = cl.join().unwrap();
        assert_eq!((r.requests, r.mismatches, r.rtt.len()), (50, 0, 50));
        assert_eq!(srv.join().unwrap().bytes, 50_000);
    }
}
