//! The wire of `packet_io`: two network namespaces joined by one veth pair, built so that
//! nothing can outlive the process.
//!
//! ```text
//!   A (sender, generator)                 B (receiver)
//!   zp<pid>a 10.203.0.1/24   <--veth-->   zp<pid>b 10.203.0.2/24
//!   permanent neighbour entries both ways (the receiver's XDP program may swallow ARP)
//! ```
//!
//! The namespaces are anonymous: a helper thread unshare(2)s a new network namespace and the
//! lab keeps only a file descriptor to it (/proc/thread-self/ns/net); no name under /run/netns
//! is created. When the process ends — normally, on Ctrl-C, or killed with SIGKILL — the last
//! reference goes and the kernel removes the namespaces with the veth pair and every XDP
//! program attached to it. iproute2's `ip` configures the links; it is started from a thread
//! inside the namespace concerned, so it acts there (a child inherits its creator's
//! namespace), and names B by the path /proc/<pid>/fd/<n> of the lab's descriptor.

use super::netns::{net_dev_fields, on_ns_thread, run_ip};
use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

/// One side of the pair.
#[derive(Debug)]
pub struct Side {
    /// The namespace (an nsfs descriptor).
    pub ns: File,
    pub ifname: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
}

/// The lab's two namespaces and the veth pair between them.
#[derive(Debug)]
pub struct PktNet {
    pub a: Side,
    pub b: Side,
    pub mtu: u32,
}

fn in_ns<T: Send>(ns: &File, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    on_ns_thread(|| enter(ns), f)
}

/// Moves the calling thread into namespace `ns` for good.
pub fn enter(ns: &File) -> io::Result<()> {
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io::Error::other(format!("setns(CLONE_NEWNET): {e}")))
}

/// A new anonymous network namespace, IPv6 off (no neighbour discovery on the wire), `lo` up.
fn new_ns(ip: &Path) -> io::Result<File> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNET): {e}")))?;
            for f in ["all", "default"] {
                let p = format!("/proc/sys/net/ipv6/conf/{f}/disable_ipv6");
                match fs::write(&p, "1") {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    r => r?,
                }
            }
            run_ip(ip, &["link", "set", "lo", "up"])?;
            File::open("/proc/thread-self/ns/net")
        })
        .join()
        .map_err(|_| io::Error::other("namespace helper thread panicked"))?
    })
}

fn parse_mac(s: &str) -> io::Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .filter_map(|x| u8::from_str_radix(x, 16).ok())
        .collect();
    v.try_into()
        .map_err(|_| io::Error::other(format!("cannot parse MAC address '{s}'")))
}

/// The MAC address and ifindex of `ifname` in the calling thread's namespace.
fn link_info(ip: &Path, ifname: &str) -> io::Result<([u8; 6], u32)> {
    let j = run_ip(ip, &["-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value = serde_json::from_str(&j)
        .map_err(|e| io::Error::other(format!("cannot parse `ip -j link show`: {e}")))?;
    let mac = parse_mac(v[0]["address"].as_str().unwrap_or(""))?;
    let idx = v[0]["ifindex"]
        .as_u64()
        .ok_or_else(|| io::Error::other("`ip -j link show` gave no ifindex"))?;
    Ok((mac, idx as u32))
}

fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Where `ip` is, or why the veth wire cannot be built here.
pub fn find_ip() -> Result<PathBuf, String> {
    for p in ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err("iproute2's `ip` is not installed (needed to create the veth pair)".into())
}

impl PktNet {
    /// Creates both namespaces and the pair (root needed), MTU `mtu` on both ends.
    pub fn create(ip: &Path, mtu: u32) -> io::Result<PktNet> {
        let pid = std::process::id();
        let (na, nb) = (format!("zp{pid}a"), format!("zp{pid}b"));
        let ns_a = new_ns(ip)?;
        let ns_b = new_ns(ip)?;
        let peer_path = format!("/proc/{pid}/fd/{}", ns_b.as_raw_fd());
        let mtu_s = mtu.to_string();
        let (addr_a, addr_b) = (Ipv4Addr::new(10, 203, 0, 1), Ipv4Addr::new(10, 203, 0, 2));
        let (mac_a, idx_a) = in_ns(&ns_a, || {
            run_ip(
                ip,
                &[
                    "link", "add", "name", &na, "mtu", &mtu_s, "type", "veth", "peer", "name", &nb,
                    "netns", &peer_path, "mtu", &mtu_s,
                ],
            )?;
            run_ip(ip, &["addr", "add", &format!("{addr_a}/24"), "dev", &na])?;
            run_ip(ip, &["link", "set", "dev", &na, "up"])?;
            link_info(ip, &na)
        })?;
        let (mac_b, idx_b) = in_ns(&ns_b, || {
            run_ip(ip, &["addr", "add", &format!("{addr_b}/24"), "dev", &nb])?;
            run_ip(ip, &["link", "set", "dev", &nb, "up"])?;
            let info = link_info(ip, &nb)?;
            run_ip(
                ip,
                &[
                    "neigh",
                    "replace",
                    &addr_a.to_string(),
                    "lladdr",
                    &mac_text(&mac_a),
                    "dev",
                    &nb,
                    "nud",
                    "permanent",
                ],
            )?;
            Ok(info)
        })?;
        in_ns(&ns_a, || {
            run_ip(
                ip,
                &[
                    "neigh",
                    "replace",
                    &addr_b.to_string(),
                    "lladdr",
                    &mac_text(&mac_b),
                    "dev",
                    &na,
                    "nud",
                    "permanent",
                ],
            )
        })?;
        Ok(PktNet {
            a: Side {
                ns: ns_a,
                ifname: na,
                ifindex: idx_a,
                mac: mac_a,
                addr: addr_a,
            },
            b: Side {
                ns: ns_b,
                ifname: nb,
                ifindex: idx_b,
                mac: mac_b,
                addr: addr_b,
            },
            mtu,
        })
    }

    /// Runs `f` on a short-lived thread inside side A's namespace.
    pub fn in_a<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        in_ns(&self.a.ns, f)
    }

    /// Runs `f` on a short-lived thread inside side B's namespace.
    pub fn in_b<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        in_ns(&self.b.ns, f)
    }
}

/// Counters of interface `ifname` in the calling thread's namespace (/proc/thread-self/net/dev):
/// (rx_packets, rx_dropped, tx_packets, tx_dropped).
pub fn dev_counters(ifname: &str) -> io::Result<(u64, u64, u64, u64)> {
    let f = net_dev_fields(ifname, 12)?;
    Ok((f[1], f[3], f[9], f[11]))
}

/// `Udp: RcvbufErrors` of the calling thread's namespace.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let t = fs::read_to_string("/proc/thread-self/net/snmp").ok()?;
    super::netns::snmp_field(&t, "Udp", "RcvbufErrors")
}
