//! The receiving side of a TCP trial, measured: a sender process on the peer CPU (plain
//! send(2) or MSG_ZEROCOPY, see Documentation/networking/msg_zerocopy.rst) streams stamped
//! messages over loopback or the lab's veth pair, and this thread receives them with read(2),
//! TCP_ZEROCOPY_RECEIVE (tcp(7)) or an io_uring receive ([`crate::uring::recv`]), hashing the
//! stream in order (mapped pages are read in place).
//!
//! The sender is a process of its own (the experiment's binary again, told by
//! [`SENDER_ENV`] to be the sender: [`sender_child`]), not a thread: a thread would share the
//! receiver's address space, and every page the zero-copy receive unmaps would then cost a
//! TLB-shootdown interrupt to the sender's CPU, a cost no receiver with a separate sender pays.
//!
//! A trial: [`connect`] (outside the clock: the listener, with TCP_MAXSEG when asked, and the
//! sender process, connected and waiting), [`Link::start`] inside the clock, one of the
//! receive loops until end of stream, [`Link::finish`] (the sender's account: its CPU time,
//! its zero-copy notifications), then [`integrity`] after the clock against
//! [`super::send::expected_hash`].

use super::send::{NOTIF_TIMEOUT, stamp};
use crate::hash::Xxh3;
use crate::measure::{Clock, Recorder, Usage, usage};
use crate::net::netns::{NetPath, VethLab, enter_netns, in_netns};
use crate::net::peers;
use crate::net::remote::{self, Report};
use crate::results::{Integrity, ZcCounts};
use crate::sys::errqueue;
use crate::sys::file::fill_pattern;
use crate::sys::signal::Cancel;
use crate::sys::tcp_zc::{self, ZcMap};
use crate::zc::msg::ZcPool;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// How long the receiver waits for the sender to connect, or for data to arrive.
pub const WAIT: Duration = Duration::from_secs(10);

/// The environment variable that makes the experiment's binary the sender of one trial
/// (its value: the sender's orders as JSON).
pub const SENDER_ENV: &str = "ZCLAB_RECV_SENDER";

/// How the sender sends.
#[derive(clap::ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SendMode {
    /// send(2): the kernel copies into its own page fragments, rarely page-aligned, so the
    /// receiver can map almost nothing.
    Plain,
    /// send(2) with MSG_ZEROCOPY: on local delivery the kernel copies the pinned pages into
    /// whole fresh pages, which the receiver can map.
    Zerocopy,
}

/// What the sender thread sends: `msgs` messages of `size` bytes, from `pool` buffers
/// (MSG_ZEROCOPY reuses a buffer only after its notification); it resets the connection
/// after `reset_after` bytes instead when given (a fault injected for tests).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SendSpec {
    pub mode: SendMode,
    pub size: usize,
    pub msgs: u64,
    pub pool: usize,
    pub reset_after: Option<u64>,
}

impl SendSpec {
    /// Bytes the sender sends.
    pub fn bytes(&self) -> u64 {
        self.msgs * self.size as u64
    }
}

/// The sender's account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    pub bytes: u64,
    /// The sender's CPU time from the start signal to its last notification.
    pub usage: Usage,
    /// Its MSS (TCP_MAXSEG of the connected socket).
    pub mss: Option<u32>,
    /// MSG_ZEROCOPY's completions (None for a plain sender).
    pub zc: Option<ZcCounts>,
}

/// One trial's connection: the receiving socket (this thread's) and the sender process.
pub struct Link {
    pub sock: TcpStream,
    go: Option<ChildStdin>,
    sender: Option<Child>,
}

/// The sender's orders, passed in [`SENDER_ENV`].
#[derive(Serialize, Deserialize)]
struct Orders {
    ns: Option<String>,
    to: SocketAddr,
    cpu: usize,
    spec: SendSpec,
}

/// When [`SENDER_ENV`] is set, this process is a trial's sender: it sends as ordered, prints
/// its account (JSON) on stdout and returns its exit status. None otherwise: call first
/// thing in `main`.
pub fn sender_child() -> Option<ExitCode> {
    let orders = std::env::var(SENDER_ENV).ok()?;
    let r = serde_json::from_str::<Orders>(&orders)
        .map_err(|e| io::Error::other(format!("{SENDER_ENV}: {e}")))
        .and_then(|o| {
            let _ = crate::sys::cpu::pin_to(o.cpu);
            let go = || {
                let mut b = [0u8; 1];
                match io::stdin().read(&mut b) {
                    Ok(1) => Ok(()),
                    _ => Err(io::Error::other("the receiver ended before the start")),
                }
            };
            send(o.ns, o.to, o.spec, go, Clock::new(), Cancel::process())
        })
        .and_then(|sent| {
            let mut out = io::stdout().lock();
            writeln!(out, "{}", serde_json::to_string(&sent)?)?;
            out.flush()
        });
    Some(match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sender: {e}");
            ExitCode::from(1)
        }
    })
}

/// The sender's side (in namespace A when `ns` is given): connect, wait for the start (`go`),
/// send, wait for every notification, end the stream.
fn send(
    ns: Option<String>,
    to: SocketAddr,
    spec: SendSpec,
    go: impl FnOnce() -> io::Result<()>,
    clock: Clock,
    cancel: Cancel,
) -> io::Result<Sent> {
    if let Some(ns) = &ns {
        enter_netns(ns)?;
    }
    let mut s = TcpStream::connect_timeout(&to, WAIT)?;
    s.set_nodelay(true)?;
    let mss = tcp_zc::maxseg(s.as_fd()).ok();
    let mut plain = Vec::new();
    let mut pool = None;
    match spec.mode {
        SendMode::Plain => {
            plain = vec![0u8; spec.size];
            fill_pattern(&mut plain, 0);
        }
        SendMode::Zerocopy => {
            errqueue::enable_zerocopy(s.as_fd())?;
            let mut p = ZcPool::new(spec.pool, spec.size, clock, cancel)?;
            for i in 0..spec.pool {
                fill_pattern(p.buffer_mut(i).expect("a new pool is free"), 0);
            }
            pool = Some(p);
        }
    }
    go()?;
    let u0 = usage::thread()?;
    let end = spec
        .reset_after
        .map_or(spec.bytes(), |r| r.min(spec.bytes()));
    let mut sent = 0u64;
    for seq in 0..spec.msgs {
        if sent >= end {
            break;
        }
        let n = (spec.size as u64).min(end - sent) as usize;
        match pool.as_mut() {
            None => {
                stamp(&mut plain, seq);
                s.write_all(&plain[..n])?;
            }
            Some(p) => {
                let b = loop {
                    if let Some(b) = p.free_buffer() {
                        break b;
                    }
                    if p.wait(s.as_fd(), NOTIF_TIMEOUT)? == 0 {
                        return Err(io::Error::other(
                            "no MSG_ZEROCOPY completion while every buffer was busy",
                        ));
                    }
                };
                stamp(p.buffer_mut(b).expect("free buffer"), seq);
                let mut off = 0;
                while off < n {
                    match p.send(s.as_fd(), b, off, n - off, 0) {
                        Ok(k) => off += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                p.reap(s.as_fd())?;
            }
        }
        sent += n as u64;
    }
    if spec.reset_after.is_some() {
        peers::reset(s)?;
        return Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("fault injected: the sender reset the connection after {sent} bytes"),
        ));
    }
    if let Some(p) = pool.as_mut() {
        p.drain(s.as_fd(), NOTIF_TIMEOUT)?;
    }
    s.shutdown(Shutdown::Write)?;
    // Wait for the receiver to close, so the last bytes are read before this socket goes.
    let mut scratch = [0u8; 64];
    let _ = s.read(&mut scratch);
    let u1 = usage::thread()?;
    let zc = pool.map(|p| p.ledger().report().0);
    Ok(Sent {
        bytes: sent,
        usage: u1.since(&u0),
        mss,
        zc,
    })
}

/// Accepts the sender's connection within [`WAIT`].
fn accept(l: &TcpListener) -> io::Result<TcpStream> {
    l.set_nonblocking(true)?;
    if !tcp_zc::wait_readable(l.as_fd(), WAIT)? {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the sender did not connect",
        ));
    }
    let (s, _) = l.accept()?;
    s.set_nonblocking(false)?;
    Ok(s)
}

/// Opens one trial's connection: a listener here (127.0.0.1, or 10.200.0.2 in namespace B of
/// `veth`) with TCP_MAXSEG `mss` when given (the accepted socket inherits it and announces it,
/// so the sender's segments carry at most that), and the sender process pinned to `cpu` (in
/// namespace A for the veth path), connected and waiting for [`Link::start`].
pub fn connect(
    veth: Option<&VethLab>,
    mss: Option<u32>,
    cpu: usize,
    spec: SendSpec,
) -> io::Result<Link> {
    let listen = move || -> io::Result<TcpListener> {
        let addr = match veth {
            Some(v) => SocketAddr::from((v.tcp_b_addr, 0)),
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let s = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        if let Some(m) = mss {
            tcp_zc::set_maxseg(s.as_fd(), m)?;
        }
        let l = TcpListener::from(s);
        nix::sys::socket::setsockopt(&l, nix::sys::socket::sockopt::ReuseAddr, &true)?;
        let sa = nix::sys::socket::SockaddrIn::from(match addr {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("IPv4 only"),
        });
        nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&l), &sa)?;
        nix::sys::socket::listen(
            &l,
            nix::sys::socket::Backlog::new(4).expect("small backlog"),
        )?;
        Ok(l)
    };
    let listener = match veth {
        Some(v) => in_netns(&v.ns_b, listen)?,
        None => listen()?,
    };
    let to = listener.local_addr()?;
    let orders = Orders {
        ns: veth.map(|v| v.ns_a.clone()),
        to,
        cpu,
        spec,
    };
    let mut child = Command::new(std::env::current_exe()?)
        .env(
            SENDER_ENV,
            serde_json::to_string(&orders).map_err(io::Error::other)?,
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start the sender process: {e}")))?;
    let go = child.stdin.take();
    let link = Link {
        sock: match accept(&listener) {
            Ok(s) => s,
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output()?;
                return Err(io::Error::new(
                    e.kind(),
                    format!("{e}; {}", String::from_utf8_lossy(&out.stderr).trim()),
                ));
            }
        },
        go,
        sender: Some(child),
    };
    link.sock.set_nodelay(true)?;
    Ok(link)
}

impl Link {
    /// The receiving end of a stream whose sender is not the lab's process here (`zclab
    /// serve`'s tcp-source on the --peer host): no start signal, and the sender's account
    /// comes from that host.
    pub fn remote(sock: TcpStream) -> Link {
        Link {
            sock,
            go: None,
            sender: None,
        }
    }

    /// Lets the sender start (call first thing inside the clock).
    pub fn start(&mut self) -> io::Result<()> {
        match self.go.as_mut() {
            Some(g) => {
                g.write_all(b"g")?;
                g.flush()
            }
            None => Ok(()),
        }
    }

    /// The MSS of the receiving socket (TCP_MAXSEG).
    pub fn mss(&self) -> Option<u32> {
        tcp_zc::maxseg(self.sock.as_fd()).ok()
    }

    /// After end of stream: closes the receiving socket and returns the sender's account
    /// (an error with the sender's own message when it failed).
    pub fn finish(&mut self) -> io::Result<Sent> {
        let _ = self.sock.shutdown(Shutdown::Both);
        self.go.take();
        let mut child = self
            .sender
            .take()
            .ok_or_else(|| io::Error::other("sender already finished"))?;
        let deadline = Instant::now() + NOTIF_TIMEOUT + WAIT;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the sender did not end after the stream ended",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "the sender failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| io::Error::other(format!("the sender's account: {e}")))
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // A failed receiver: end the sender (no start, or a closed socket) and reap it.
        self.go.take();
        let _ = self.sock.shutdown(Shutdown::Both);
        if let Some(mut c) = self.sender.take() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// What a classic receive loop counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassicCounts {
    pub bytes: u64,
    /// recv(2)/read(2) calls, getsockopt calls and polls.
    pub calls: u64,
    /// TCP_ZEROCOPY_RECEIVE: bytes mapped, copied into the copy buffer, and read by recv(2).
    pub mapped: u64,
    pub copybuf: u64,
    pub recv_copied: u64,
    /// TCP_ZEROCOPY_RECEIVE calls, and polls because nothing was queued.
    pub zc_calls: u64,
    pub polls: u64,
}

/// read(2) into `buf` until end of stream, hashing into `h`; one latency sample per call.
pub fn recv_classic(
    sock: &mut TcpStream,
    buf: &mut [u8],
    h: &mut Xxh3,
    rec: &mut Recorder,
    cancel: Cancel,
) -> io::Result<ClassicCounts> {
    let mut c = ClassicCounts::default();
    loop {
        let t0 = rec.now();
        let r = sock.read(buf);
        rec.record_since(t0);
        c.calls += 1;
        match r {
            Ok(0) => return Ok(c),
            Ok(n) => {
                h.update(&buf[..n]);
                c.bytes += n as u64;
                c.recv_copied += n as u64;
            }
            Err(e) => cancel.intr(e)?,
        }
    }
}

/// TCP_ZEROCOPY_RECEIVE into a mapping of `map_len` bytes until end of stream: mapped pages
/// are hashed in place and given back (madvise) before the next call; what the kernel copied
/// into `copybuf` follows them in the stream, and what it could neither map nor copy
/// (`recv_skip_hint`) is read with recv(2) into `buf`. When nothing is queued the loop polls;
/// EIO (nothing queued, socket done) is confirmed by recv(2): 0 is the end, a reset is an
/// error. One latency sample per getsockopt step, its recv(2) reads included.
pub fn recv_zerocopy(
    sock: &mut TcpStream,
    map_len: usize,
    copybuf: &mut [u8],
    buf: &mut [u8],
    h: &mut Xxh3,
    rec: &mut Recorder,
    cancel: Cancel,
) -> io::Result<ClassicCounts> {
    let mut map = ZcMap::new(sock.as_fd(), map_len)?;
    let mut c = ClassicCounts::default();
    loop {
        let t0 = rec.now();
        c.calls += 1;
        c.zc_calls += 1;
        let step = match map.receive(sock.as_fd(), copybuf) {
            Ok(s) => s,
            Err(e) if tcp_zc::is_done(&e) => {
                c.calls += 1;
                match tcp_zc::recv(sock.as_fd(), buf, libc::MSG_DONTWAIT) {
                    Ok(0) => return Ok(c),
                    Ok(n) => {
                        h.update(&buf[..n]);
                        c.bytes += n as u64;
                        c.recv_copied += n as u64;
                        continue;
                    }
                    Err(e) => {
                        cancel.intr(e)?;
                        continue;
                    }
                }
            }
            Err(e) => {
                cancel.intr(e)?;
                continue;
            }
        };
        if step.mapped > 0 {
            h.update(map.bytes(step.mapped));
            map.release(step.mapped)?;
            c.mapped += step.mapped as u64;
        }
        if step.copied > 0 {
            h.update(&copybuf[..step.copied]);
            c.copybuf += step.copied as u64;
        }
        let mut left = step.skip;
        while left > 0 {
            c.calls += 1;
            let want = left.min(buf.len());
            match tcp_zc::recv(sock.as_fd(), &mut buf[..want], 0) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the stream ended {left} bytes short of the kernel's skip hint"),
                    ));
                }
                Ok(n) => {
                    h.update(&buf[..n]);
                    c.recv_copied += n as u64;
                    left -= n;
                }
                Err(e) => cancel.intr(e)?,
            }
        }
        let got = step.mapped + step.copied + step.skip;
        c.bytes += got as u64;
        if got == 0 {
            c.polls += 1;
            c.calls += 1;
            match tcp_zc::wait_readable(sock.as_fd(), WAIT) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("nothing arrived within {WAIT:?}"),
                    ));
                }
                Err(e) => cancel.intr(e)?,
            }
            continue;
        }
        rec.record_since(t0);
    }
}

/// Whether what arrived (`bytes`, hashed to `hash`) is what `spec` sent: the stream of its
/// stamped messages, hashed with xxh3-64.
pub fn integrity(spec: &SendSpec, bytes: u64, hash: u64) -> Integrity {
    let want = super::send::expected_hash(spec.size, spec.msgs);
    let total = spec.bytes();
    Integrity {
        ok: bytes == total && hash == want,
        method: "xxh3-64 of the received stream in order (mapped pages read in place), against \
                 the sender's stream of messages stamped with their sequence number"
            .into(),
        expected: format!("{want:016x}"),
        got: format!("{hash:016x}"),
        bytes_expected: total,
        bytes_got: bytes,
    }
}
/// uring-recv-zc's skip: registers the path's (or --dev's, `dev`: index and name) receive
/// queue `q` (`net`: the lab's veth pair, for tcp-veth); the kernel's refusal, named by its
/// errno, is the skip reason, and so is an acceptance, as no RECV_ZC loop exists yet.
pub fn zcrx_skip(
    dev: Option<(u32, &str)>,
    q: u32,
    path: NetPath,
    net: Option<&VethLab>,
) -> anyhow::Error {
    let (what, r) = match (dev, path, net) {
        (Some((i, name)), _, _) => (
            format!("{name} queue {q}"),
            crate::uring::recv::zcrx_register(i, q),
        ),
        (None, NetPath::TcpVeth, Some(n)) => {
            let dev = n.tcp_b_if.clone();
            let r = in_netns(&n.ns_b, move || {
                let i = nix::net::if_::if_nametoindex(dev.as_str())?;
                Ok(crate::uring::recv::zcrx_register(i, 0))
            });
            let r = match r {
                Ok(r) => r,
                Err(e) => return anyhow::Error::new(e).context("registering veth's queue in B"),
            };
            (format!("veth {} queue 0", n.tcp_b_if), r)
        }
        (None, NetPath::RemoteTcp, _) => {
            return crate::harness::skip_point(
                "on remote-tcp, uring-recv-zc registers a queue of this host's NIC: name it with --dev IFACE --queue Q",
            );
        }
        _ => (
            "lo queue 0".to_string(),
            crate::uring::recv::zcrx_register(1, 0),
        ),
    };
    match r {
        Ok(()) => crate::harness::skip_point(format!(
            "IORING_REGISTER_ZCRX_IFQ accepted {what}; this version has no RECV_ZC receive loop yet"
        )),
        Err(e) => {
            let errno = e
                .raw_os_error()
                .map(|c| format!("{:?}", nix::errno::Errno::from_raw(c)))
                .unwrap_or_else(|| e.to_string());
            crate::harness::skip_point(format!(
                "IORING_REGISTER_ZCRX_IFQ on {what}: the kernel answered {errno} ({e}){}",
                if errno == "EOPNOTSUPP" {
                    ": the device has no header split or queue management (a NIC that has both, with --dev IFACE --queue Q)"
                } else {
                    ""
                }
            ))
        }
    }
}

/// The check of a stream from `zclab serve`'s tcp-source on the --peer host: `bytes_got` bytes
/// hashing to `got` here, against the pattern of `bytes` and what the peer host says it sent.
pub fn remote_integrity(bytes: u64, bytes_got: u64, got: u64, rep: &Report) -> Integrity {
    let want = remote::pattern_hash(bytes);
    let said = rep.hash.as_deref().and_then(remote::parse_hex64);
    Integrity {
        ok: bytes_got == bytes && got == want && rep.bytes == bytes && said == Some(want),
        method: "xxh3-64 of the received stream in order, against the pattern's and the peer host's hash of what it sent".into(),
        expected: format!("{want:016x}"),
        got: format!("{got:016x} (the peer host sent {} B)", rep.bytes),
        bytes_expected: bytes,
        bytes_got,
    }
}
