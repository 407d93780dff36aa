//! Network namespaces and veth pairs that the lab creates and removes itself (ip-netns(8),
//! veth(4), setns(2)), and the TCP and UDP fixtures that use them.
//!
//! [`VethLab`] builds, with iproute2's `ip`, three namespaces named after the process
//! (`zcsend-<pid>-a`, `-b`, `-s`) and two veth pairs created directly inside them, so no
//! interface ever appears in (or touches) the caller's namespace:
//!
//! ```text
//!   A (sender)                       B (TCP receiver)
//!   zs<pid>a 10.200.0.1/24  <--->    zs<pid>b 10.200.0.2/24
//!
//!   A (sender)                       S (sink)
//!   zs<pid>c 10.201.0.1/24  <--->    zs<pid>d  (no address; ip_forward 0)
//!   neighbour 10.201.0.2 -> MAC of zs<pid>d, permanent
//! ```
//!
//! UDP from A to 10.201.0.2 crosses the veth pair, reaches S's device (its rx counters grow)
//! and is dropped at IP (`IpInAddrErrors`): nothing receives it locally, so the kernel has no
//! reason to copy, and MSG_ZEROCOPY / SEND_ZC really avoid the copy. Any local receiver (even
//! one that only answers ICMP) makes the kernel copy. IPv6 is disabled in the three
//! namespaces so that no neighbour discovery traffic disturbs the sink's counters.
//!
//! Everything is removed by [`VethLab::cleanup`], which `Drop` calls: at the end of a run, on
//! error, and after SIGINT/SIGTERM (the harness turns those into an orderly return). Namespaces
//! left by a process that was killed outright are removed by [`remove_stale`] on the next run.

use super::Received;
use super::peers::{PeerThread, spawn};
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Prefix of every namespace this module creates: `zcsend-<pid>-<role>`.
pub const NS_PREFIX: &str = "zcsend-";

/// Where `ip netns` keeps its namespace handles.
const NETNS_RUN: &str = "/run/netns";

/// Runs `ip` with `args`; the error carries the command and ip's own message.
pub fn run_ip(ip: &Path, args: &[&str]) -> io::Result<String> {
    let out = Command::new(ip)
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", ip.display())))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Moves the calling thread into network namespace `ns` (a name under /run/netns) with
/// setns(2). Sockets it creates afterwards belong to that namespace for their whole life,
/// whatever thread uses them.
pub fn enter_netns(ns: &str) -> io::Result<()> {
    let p = Path::new(NETNS_RUN).join(ns);
    let f = fs::File::open(&p)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", p.display())))?;
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io::Error::other(format!("setns({}, CLONE_NEWNET): {e}", p.display())))
}

/// Runs `f` on a short-lived thread inside namespace `ns` and returns its result: the way to
/// create a socket in a namespace without moving the calling thread.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    on_ns_thread(|| enter_netns(ns), f)
}

/// Runs `f` on a short-lived thread that `enter` has first moved into a namespace (setns(2)),
/// and returns its result; the calling thread stays where it is.
pub(crate) fn on_ns_thread<T: Send>(
    enter: impl FnOnce() -> io::Result<()> + Send,
    f: impl FnOnce() -> io::Result<T> + Send,
) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter()?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("namespace helper thread panicked"))?
    })
}

/// Removes namespaces `zcsend-<pid>-*` whose process no longer exists (a run killed with
/// SIGKILL cannot clean up). Returns the names removed. Namespaces of live processes, and
/// any other name, are left alone.
pub fn remove_stale(ip: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(dir) = fs::read_dir(NETNS_RUN) else {
        return removed;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some((pid, role)) = rest.split_once('-') else {
            continue;
        };
        if !matches!(role, "a" | "b" | "s") || pid.parse::<u32>().is_err() {
            continue;
        }
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        if run_ip(ip, &["netns", "del", &name]).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// Writes a sysctl under /proc/sys/net in namespace `ns` (per-namespace since the thread that
/// opens the file decides which namespace it sees).
fn netns_sysctl(ns: &str, path: &str, value: &str) -> io::Result<()> {
    let path = path.to_string();
    let value = value.to_string();
    in_netns(ns, move || fs::write(&path, &value))
}

/// Largest UDP payload in one IPv4 datagram: 65535 - 20 (IP) - 8 (UDP).
pub const MAX_UDP_PAYLOAD: u64 = 65507;
/// Ethernet and IPv4 header bytes per frame, as the sink device counts them.
pub const ETH_IP_HEADERS: u64 = 14 + 20;
/// The UDP header.
pub const UDP_HEADER: u64 = 8;

/// Frames and bytes the sink device receives for one datagram of `payload` bytes over a link
/// of `mtu`: one frame when it fits, else IPv4 fragments of (mtu - 20) rounded down to 8.
pub fn udp_frames(payload: u64, mtu: u64) -> (u64, u64) {
    let l4 = payload + UDP_HEADER;
    let frames = if l4 + 20 <= mtu {
        1
    } else {
        l4.div_ceil(((mtu.saturating_sub(20)) / 8 * 8).max(8)) // fragments carry multiples of 8 bytes
    };
    (frames, l4 + frames * ETH_IP_HEADERS)
}

/// The network paths an experiment can send over (see the module documentation for the
/// namespaces behind the veth ones).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetPath {
    /// TCP over 127.0.0.1 to a receiver thread.
    TcpLoopback,
    /// TCP from namespace A over a veth pair to a receiver thread in namespace B.
    TcpVeth,
    /// UDP from namespace A over a veth pair to a device in namespace S that drops it at IP.
    UdpSink,
    /// TCP to a receiver in `zclab serve` on another host (`--peer`).
    RemoteTcp,
    /// Connected UDP to a counting receiver in `zclab serve` on another host.
    RemoteUdp,
}

impl NetPath {
    /// Every path on this host, in the order experiments run them.
    pub const ALL: [NetPath; 3] = [NetPath::TcpLoopback, NetPath::TcpVeth, NetPath::UdpSink];
    /// The paths to a `zclab serve` on the `--peer` host.
    pub const REMOTE: [NetPath; 2] = [NetPath::RemoteTcp, NetPath::RemoteUdp];

    /// The name used on the command line and in the rows' `path` parameter.
    pub fn name(self) -> &'static str {
        match self {
            NetPath::TcpLoopback => "tcp-loopback",
            NetPath::TcpVeth => "tcp-veth",
            NetPath::UdpSink => "udp-sink",
            NetPath::RemoteTcp => "remote-tcp",
            NetPath::RemoteUdp => "remote-udp",
        }
    }

    /// The path called `s`; an error naming the known paths for any other name.
    pub fn from_name(s: &str) -> io::Result<NetPath> {
        let all = || NetPath::ALL.into_iter().chain(NetPath::REMOTE);
        all().find(|p| p.name() == s).ok_or_else(|| {
            let known: Vec<&str> = all().map(NetPath::name).collect();
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown path '{s}' (known: {})", known.join(", ")),
            )
        })
    }

    /// Whether the path needs the lab's namespaces ([`VethLab`]).
    pub fn needs_netns(self) -> bool {
        matches!(self, NetPath::TcpVeth | NetPath::UdpSink)
    }

    /// Whether the receiving end is on the `--peer` host.
    pub fn is_remote(self) -> bool {
        matches!(self, NetPath::RemoteTcp | NetPath::RemoteUdp)
    }

    /// Whether the path carries datagrams (one send = one datagram) rather than a stream.
    pub fn is_datagram(self) -> bool {
        matches!(self, NetPath::UdpSink | NetPath::RemoteUdp)
    }
}

/// Why the lab's namespaces cannot be created here, or None when they can.
pub fn unavailable_reason(caps: &crate::caps::Caps) -> Option<String> {
    if caps.net.netns {
        None
    } else if caps.net.ip_binary.is_none() {
        Some(
            "needs iproute2's `ip` binary (not found) for network namespaces and veth pairs".into(),
        )
    } else {
        Some("needs root (CAP_SYS_ADMIN) for network namespaces and veth pairs".into())
    }
}

/// `/proc/<pid>/schedstat` of the `ksoftirqd/<cpu>` kernel thread: network receive work the
/// kernel defers there is not in any process's CPU time, so experiments record it beside.
pub fn ksoftirqd_schedstat(cpu: usize) -> Option<PathBuf> {
    let want = format!("ksoftirqd/{cpu}");
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let p = e.path();
        let comm = fs::read_to_string(p.join("comm")).ok()?;
        (comm.trim() == want).then(|| p.join("schedstat"))
    })
}

/// CPU time (ns) in a schedstat file, the first field; None when unreadable.
pub fn schedstat_ns(p: Option<&Path>) -> Option<u64> {
    fs::read_to_string(p?)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Counters of the sink device and of IP in the sink namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Frames the sink device received (/proc/net/dev).
    pub rx_packets: u64,
    /// Bytes of those frames, Ethernet header included.
    pub rx_bytes: u64,
    /// `Ip: InAddrErrors` from /proc/net/snmp in the sink namespace, when readable.
    pub in_addr_errors: Option<u64>,
}

/// An XDP program attached to a veth end for its NAPI context ([`VethLab::napi_on_b`]).
#[derive(Debug)]
pub struct NapiXdp {
    // The link first: detached before the program is released.
    _link: crate::sys::bpf::Link,
    _prog: crate::sys::bpf::Prog,
}

/// The namespaces and veth pairs of one run. See the module documentation for the layout.
#[derive(Debug)]
pub struct VethLab {
    ip: PathBuf,
    /// The sender's namespace (`zcsend-<pid>-a`).
    pub ns_a: String,
    /// The TCP receiver's namespace (`-b`).
    pub ns_b: String,
    /// The sink's namespace (`-s`).
    pub ns_s: String,
    /// The TCP pair's end in A.
    pub tcp_a_if: String,
    /// The TCP pair's end in B.
    pub tcp_b_if: String,
    /// The sink pair's end in A.
    pub sink_a_if: String,
    /// The sink pair's end in S: its rx counters show what reached the sink.
    pub sink_s_if: String,
    /// MTU of both pairs.
    pub mtu: u32,
    /// The TCP sender's address (A).
    pub tcp_a_addr: Ipv4Addr,
    /// The TCP receiver's address (B).
    pub tcp_b_addr: Ipv4Addr,
    /// The UDP sender's address (A).
    pub sink_src: Ipv4Addr,
    /// The address UDP is sent to: not assigned anywhere, resolved by a permanent neighbour
    /// entry in A to the sink device's MAC.
    pub sink_dst: Ipv4Addr,
    /// MAC address of the sink device, as the neighbour entry in A names it.
    pub sink_mac: String,
    /// Namespaces created so far (removed by cleanup).
    created: Vec<String>,
    cleaned: bool,
}

impl VethLab {
    /// Gives B's end of the TCP pair a NAPI context, which busy polling needs (veth has one
    /// only with native XDP): a multi-buffer XDP_PASS program attached by bpf_link in
    /// namespace B. Detached when the returned guard is dropped, and by the kernel when the
    /// process ends however it ends.
    pub fn napi_on_b(&self) -> io::Result<NapiXdp> {
        use crate::sys::bpf;
        let dev = self.tcp_b_if.clone();
        in_netns(&self.ns_b, move || {
            let ifindex = nix::net::if_::if_nametoindex(dev.as_str())?;
            let pass = bpf::return_action(crate::sys::consts::XDP_PASS);
            let prog = bpf::load_xdp_frags("pass", &pass)?;
            let link = bpf::attach_xdp(&prog, ifindex, bpf::XdpMode::Native)?;
            Ok(NapiXdp {
                _link: link,
                _prog: prog,
            })
        })
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("attaching the XDP program that gives the veth end its NAPI context: {e}"),
            )
        })
    }

    /// Creates the namespaces and links with `ip` (root or CAP_SYS_ADMIN needed), veth MTU
    /// `mtu` (65535 lets a 65507-byte UDP payload through unfragmented). On failure everything
    /// created so far is removed again.
    pub fn create(ip: &Path, mtu: u32) -> io::Result<VethLab> {
        let pid = std::process::id();
        let ns = |r: &str| format!("{NS_PREFIX}{pid}-{r}");
        let dev = |r: &str| format!("zs{pid}{r}");
        let mut lab = VethLab {
            ip: ip.to_path_buf(),
            ns_a: ns("a"),
            ns_b: ns("b"),
            ns_s: ns("s"),
            tcp_a_if: dev("a"),
            tcp_b_if: dev("b"),
            sink_a_if: dev("c"),
            sink_s_if: dev("d"),
            mtu,
            tcp_a_addr: Ipv4Addr::new(10, 200, 0, 1),
            tcp_b_addr: Ipv4Addr::new(10, 200, 0, 2),
            sink_src: Ipv4Addr::new(10, 201, 0, 1),
            sink_dst: Ipv4Addr::new(10, 201, 0, 2),
            sink_mac: String::new(),
            created: Vec::new(),
            cleaned: false,
        };
        // On error `lab` is dropped here, which removes what was created.
        lab.build()?;
        Ok(lab)
    }

    fn ip(&self, args: &[&str]) -> io::Result<String> {
        run_ip(&self.ip, args)
    }

    fn build(&mut self) -> io::Result<()> {
        for ns in [self.ns_a.clone(), self.ns_b.clone(), self.ns_s.clone()] {
            self.ip(&["netns", "add", &ns])?;
            self.created.push(ns.clone());
            // Before any link exists, so the new devices inherit it from `default`. Kernels
            // without IPv6 have no such files: nothing to silence then.
            for f in ["all", "default"] {
                let p = format!("/proc/sys/net/ipv6/conf/{f}/disable_ipv6");
                match netns_sysctl(&ns, &p, "1") {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    r => r?,
                }
            }
        }
        let mtu = self.mtu.to_string();
        let (a, b, s) = (self.ns_a.clone(), self.ns_b.clone(), self.ns_s.clone());
        let (ta, tb, sa, ss) = (
            self.tcp_a_if.clone(),
            self.tcp_b_if.clone(),
            self.sink_a_if.clone(),
            self.sink_s_if.clone(),
        );
        for (x, nx, y, ny) in [(&ta, &a, &tb, &b), (&sa, &a, &ss, &s)] {
            self.ip(&[
                "link", "add", "name", x, "netns", nx, "mtu", &mtu, "type", "veth", "peer", "name",
                y, "netns", ny, "mtu", &mtu,
            ])?;
        }
        let cidr = |a: Ipv4Addr| format!("{a}/24");
        self.ip(&["-n", &a, "addr", "add", &cidr(self.tcp_a_addr), "dev", &ta])?;
        self.ip(&["-n", &b, "addr", "add", &cidr(self.tcp_b_addr), "dev", &tb])?;
        self.ip(&["-n", &a, "addr", "add", &cidr(self.sink_src), "dev", &sa])?;
        for (ns, d) in [(&a, &ta), (&a, &sa), (&b, &tb), (&s, &ss)] {
            self.ip(&["-n", ns, "link", "set", "dev", d, "up"])?;
        }
        netns_sysctl(&s, "/proc/sys/net/ipv4/ip_forward", "0")?;
        let j = self.ip(&["-n", &s, "-j", "link", "show", "dev", &ss])?;
        let v: serde_json::Value = serde_json::from_str(&j)
            .map_err(|e| io::Error::other(format!("cannot parse `ip -j link show`: {e}")))?;
        self.sink_mac = v[0]["address"]
            .as_str()
            .ok_or_else(|| io::Error::other("`ip -j link show` gave no MAC address"))?
            .to_string();
        let mac = self.sink_mac.clone();
        let dst = self.sink_dst.to_string();
        self.ip(&[
            "-n",
            &a,
            "neigh",
            "replace",
            &dst,
            "lladdr",
            &mac,
            "dev",
            &sa,
            "nud",
            "permanent",
        ])?;
        Ok(())
    }

    /// Removes the links and namespaces. Idempotent; also run by `Drop`. The error lists
    /// whatever could not be removed.
    pub fn cleanup(&mut self) -> io::Result<()> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut failed = Vec::new();
        // Deleting one end of a veth pair deletes both; do it explicitly so the devices go
        // even if some socket keeps a namespace alive a little longer.
        if self.created.contains(&self.ns_a) {
            for d in [self.tcp_a_if.clone(), self.sink_a_if.clone()] {
                let a = self.ns_a.clone();
                if let Err(e) = self.ip(&["-n", &a, "link", "del", "dev", &d]) {
                    if !e.to_string().contains("Cannot find device") {
                        failed.push(e.to_string());
                    }
                }
            }
        }
        for ns in std::mem::take(&mut self.created) {
            if let Err(e) = self.ip(&["netns", "del", &ns]) {
                failed.push(e.to_string());
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(io::Error::other(failed.join("; ")))
        }
    }

    /// A UDP socket in namespace A connected to the sink address, port 9 (discard).
    pub fn sink_socket(&self) -> io::Result<UdpSocket> {
        let (src, dst) = (self.sink_src, self.sink_dst);
        in_netns(&self.ns_a, move || {
            let s = UdpSocket::bind(SocketAddrV4::new(src, 0))?;
            s.connect(SocketAddrV4::new(dst, 9))?;
            Ok(s)
        })
    }

    /// The sink device's receive counters and S's IpInAddrErrors, read inside S
    /// (/proc/thread-self/net/dev and /proc/thread-self/net/snmp).
    pub fn sink_counters(&self) -> io::Result<SinkCounters> {
        let dev = self.sink_s_if.clone();
        in_netns(&self.ns_s, move || {
            let f = net_dev_fields(&dev, 2)?;
            let in_addr_errors = fs::read_to_string("/proc/thread-self/net/snmp")
                .ok()
                .and_then(|t| snmp_field(&t, "Ip", "InAddrErrors"));
            Ok(SinkCounters {
                rx_bytes: f[0],
                rx_packets: f[1],
                in_addr_errors,
            })
        })
    }
}

impl VethLab {
    /// Reads the sink's counters until its device has received at least `rx_packets` frames in
    /// total, or `timeout` has passed (then returns what it read): frames still queued in the
    /// receive backlog when the sender returns are counted once they have been processed.
    pub fn wait_sink(
        &self,
        rx_packets: u64,
        timeout: std::time::Duration,
    ) -> io::Result<SinkCounters> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let c = self.sink_counters()?;
            if c.rx_packets >= rx_packets || std::time::Instant::now() >= deadline {
                return Ok(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

impl Drop for VethLab {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("warning: network namespace clean-up incomplete: {e}");
        }
    }
}

/// The counters of interface `dev` in the calling thread's namespace, in the order of its
/// line in /proc/thread-self/net/dev (receive bytes, packets, errs, drop, ..., then the same
/// for transmit); an error when the line has fewer than `min`.
pub fn net_dev_fields(dev: &str, min: usize) -> io::Result<Vec<u64>> {
    let text = fs::read_to_string("/proc/thread-self/net/dev")?;
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{dev}:")))
        .ok_or_else(|| io::Error::other(format!("{dev} not in /proc/net/dev")))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if f.len() < min {
        return Err(io::Error::other("short /proc/net/dev line"));
    }
    Ok(f)
}

/// Packets received by busy polling so far in the calling thread's network namespace
/// (`TcpExt: BusyPollRxPackets` of /proc/thread-self/net/netstat); None when unreadable.
pub fn busy_poll_rx_packets() -> Option<u64> {
    let text = fs::read_to_string("/proc/thread-self/net/netstat").ok()?;
    snmp_field(&text, "TcpExt", "BusyPollRxPackets")
}

/// A field of /proc/net/snmp: the line pair `Proto: names...` / `Proto: values...`.
pub fn snmp_field(text: &str, proto: &str, name: &str) -> Option<u64> {
    let tag = format!("{proto}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&tag));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// A TCP connection whose receiving end is a peer thread pinned to a CPU that receives until
/// end of stream ([`super::receive_or_reset`]: into user space and hashed, or discarded), over loopback
/// or across the lab's veth pair.
pub struct TcpLink {
    /// The sending end.
    pub sender: TcpStream,
    peer: Option<PeerThread<Received>>,
}

impl TcpLink {
    /// Over 127.0.0.1 in the caller's namespace. With `reset_after` the receiver resets the
    /// connection after that many bytes ([`super::receive_or_reset`]).
    pub fn loopback(
        peer_cpu: usize,
        recv_buf: usize,
        sink: super::Sink,
        reset_after: Option<u64>,
    ) -> io::Result<TcpLink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let peer = spawn("zclab-peer", "peer", peer_cpu, move || {
            let (s, _) = listener.accept()?;
            drop(listener);
            super::receive_or_reset(s, recv_buf, sink, reset_after)
        })?;
        let sender = TcpStream::connect(addr)?;
        Ok(TcpLink {
            sender,
            peer: Some(peer),
        })
    }

    /// From namespace A to a peer thread that entered namespace B (setns) before creating its
    /// socket; the sender's socket is created in A. `reset_after` as for [`TcpLink::loopback`].
    pub fn veth(
        lab: &VethLab,
        peer_cpu: usize,
        recv_buf: usize,
        sink: super::Sink,
        reset_after: Option<u64>,
    ) -> io::Result<TcpLink> {
        let (tx, rx) = std::sync::mpsc::channel();
        let ns_b = lab.ns_b.clone();
        let b_addr = lab.tcp_b_addr;
        let peer = spawn("zclab-peer", "peer", peer_cpu, move || {
            let listener = (|| {
                enter_netns(&ns_b)?;
                TcpListener::bind(SocketAddrV4::new(b_addr, 0))
            })();
            let listener = match listener {
                Ok(l) => {
                    let _ = tx.send(l.local_addr().map_err(|e| e.to_string()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return Err(e);
                }
            };
            // A sender that never connects must not leave this thread in accept forever.
            nix::sys::socket::setsockopt(
                &listener,
                nix::sys::socket::sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(10, 0),
            )
            .map_err(io::Error::from)?;
            let (s, _) = listener.accept()?;
            drop(listener);
            s.set_read_timeout(None)?; // the accepted socket inherits the listener's
            super::receive_or_reset(s, recv_buf, sink, reset_after)
        })?;
        let addr = rx
            .recv()
            .map_err(|_| io::Error::other("receiver thread ended before listening"))?
            .map_err(|e| io::Error::other(format!("receiver in {}: {e}", lab.ns_b)))?;
        let sender = match in_netns(&lab.ns_a, move || TcpStream::connect(addr)) {
            Ok(s) => s,
            Err(e) => {
                drop(peer); // joined: its accept times out
                return Err(e);
            }
        };
        Ok(TcpLink {
            sender,
            peer: Some(peer),
        })
    }

    /// Ends the stream (shutdown of the write side) and waits for the peer's account.
    pub fn finish(&mut self) -> io::Result<Received> {
        let _ = self.sender.shutdown(Shutdown::Write);
        match self.peer.take() {
            Some(p) => p.join(),
            None => Err(io::Error::other("peer already finished")),
        }
    }
}

impl Drop for TcpLink {
    fn drop(&mut self) {
        // Unblock and reap the peer if the sender failed before finishing.
        let _ = self.sender.shutdown(Shutdown::Both);
        drop(self.peer.take()); // joins it
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_counts_and_path_names() {
        assert_eq!(udp_frames(65507, 65535), (1, 65507 + 8 + 34));
        assert_eq!(udp_frames(1472, 1500), (1, 1514));
        assert_eq!(udp_frames(1473, 1500), (2, 1481 + 2 * 34));
        assert_eq!(udp_frames(65507, 1500).0, 45);
        for p in NetPath::ALL.into_iter().chain(NetPath::REMOTE) {
            assert_eq!(NetPath::from_name(p.name()).unwrap(), p);
        }
        assert!(NetPath::from_name("nope").is_err());
        assert!(NetPath::UdpSink.is_datagram() && !NetPath::TcpVeth.is_datagram());
    }

    #[test]
    fn snmp_fields() {
        let t = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors\nIp: 2 64 100 0 97\nIcmp: InMsgs\nIcmp: 3\n";
        assert_eq!(snmp_field(t, "Ip", "InAddrErrors"), Some(97));
        assert_eq!(snmp_field(t, "Icmp", "InMsgs"), Some(3));
        assert_eq!(snmp_field(t, "Ip", "Nope"), None);
    }
}
