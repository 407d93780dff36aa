//! The network paths of the experiments that send to a socket (file_to_socket; net_send has
//! the same choices): which paths run by default and which are refused, the datagram sizes
//! as sent, the parameter points, and how meta.json and `--list` describe them. Pure
//! functions of the options and of why network namespaces cannot be made here, so that an
//! experiment's `plan` stays short and refusals stay the same across experiments.

use crate::caps::Caps;
use crate::net::netns::{self, MAX_UDP_PAYLOAD, NetPath, VethLab};
use crate::net::remote;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The options of every experiment that moves bytes over a network path: which paths, and
/// the host of the remote ones.
#[derive(clap::Args, Debug, Clone)]
pub struct NetArgs {
    /// Paths, comma-separated: tcp-loopback, tcp-veth, udp-sink (the veth ones need root),
    /// remote-tcp, remote-udp (need --peer). Default: the local three (those this host can
    /// run), or the remote two with --peer.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub paths: Vec<NetPath>,
    /// Host running `zclab serve` (port 7878 unless given): the receiving end of the remote
    /// paths runs there, and its accounting comes back beside this side's, which is measured.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = remote::parse_peer)]
    pub peer: Option<remote::PeerAddr>,
}

/// The lab's veth pair for an experiment's veth paths, or why it cannot be made here: an
/// error when `required` (the user asked for those paths alone), else `Ok((None, Some(why)))`
/// so the veth paths are skipped with the reason.
pub fn veth_or_reason(
    experiment: &str,
    caps: &Caps,
    mtu: u32,
    required: bool,
) -> Result<(Option<VethLab>, Option<String>)> {
    match netns::unavailable_reason(caps) {
        Some(why) if required => bail!("path tcp-veth was requested but cannot run here: {why}"),
        Some(why) => Ok((None, Some(why))),
        None => Ok((Some(veth_lab(experiment, caps, mtu)?), None)),
    }
}

/// Paths left out of the default run, each with the reason.
pub type SkippedPaths = Vec<(NetPath, String)>;

/// The paths to run and, for those left out of the default, why: `asked` (duplicates
/// dropped), else the remote two with a peer, else the local three when network namespaces
/// can be made here (`unavailable` is None), else tcp-loopback alone. A path asked for that
/// needs namespaces which cannot be made is an error.
pub fn choose_paths(
    asked: &[NetPath],
    peer: bool,
    unavailable: Option<String>,
) -> Result<(Vec<NetPath>, SkippedPaths)> {
    if peer && asked.is_empty() {
        return Ok((NetPath::REMOTE.to_vec(), Vec::new()));
    }
    if asked.is_empty() {
        return Ok(match unavailable {
            None => (NetPath::ALL.to_vec(), Vec::new()),
            Some(r) => (
                vec![NetPath::TcpLoopback],
                NetPath::ALL
                    .into_iter()
                    .filter(|p| p.needs_netns())
                    .map(|p| (p, r.clone()))
                    .collect(),
            ),
        });
    }
    let mut paths: Vec<NetPath> = Vec::new();
    for p in asked {
        if !paths.contains(p) {
            paths.push(*p);
        }
    }
    if let (Some(p), Some(r)) = (paths.iter().find(|p| p.needs_netns()), unavailable) {
        bail!("path {} was requested but cannot run here: {r}", p.name());
    }
    Ok((paths, Vec::new()))
}

/// What `--datagram` sizes above the largest IPv4 UDP payload become, one line each.
pub fn capped_datagrams(asked: &[u64]) -> Vec<String> {
    asked
        .iter()
        .filter(|&&d| d > MAX_UDP_PAYLOAD)
        .map(|&d| {
            format!(
                "datagram size {} is sent as {MAX_UDP_PAYLOAD} B, the largest IPv4 UDP payload",
                crate::units::fmt_size(d)
            )
        })
        .collect()
}

/// Datagram payload sizes as sent: `asked` (by default the largest that crosses a veth of
/// `mtu` unfragmented), each capped at the largest IPv4 UDP payload, duplicates dropped.
pub fn datagram_sizes(asked: &[u64], mtu: u32) -> Vec<u64> {
    let fit = (mtu as u64 - 28).min(MAX_UDP_PAYLOAD);
    let mut sizes: Vec<u64> = Vec::new();
    for d in asked.iter().map(|&d| d.min(MAX_UDP_PAYLOAD)) {
        if !sizes.contains(&d) {
            sizes.push(d);
        }
    }
    if sizes.is_empty() {
        sizes.push(fit);
    }
    sizes
}

/// Why `paths` cannot run with (`peer`) or without a peer host: a remote path needs one, a
/// local path builds both ends here.
pub fn peer_mismatch(paths: &[NetPath], peer: bool) -> Option<String> {
    let p = paths.iter().find(|p| p.is_remote() != peer)?;
    Some(if peer {
        format!(
            "path {} builds both ends on this host; with --peer the paths are remote-tcp and remote-udp",
            p.name()
        )
    } else {
        format!(
            "path {} needs --peer HOST[:PORT] (a host running `zclab serve`)",
            p.name()
        )
    })
}

/// The remote paths' receivers as meta.json describes them (`parameters.remote`).
pub fn remote_parameters() -> Value {
    json!({
        "remote_tcp": "TCP to a receiver thread in `zclab serve` on the peer host, pinned to the peer CPU there, which hashes the stream (xxh3-64)",
        "remote_udp": "connected UDP to a receiver thread in `zclab serve` on the peer host that counts datagrams and bytes and sums their xxh3-64",
        "data_sockets": format!("TCP_USER_TIMEOUT {} s", remote::DATA_USER_TIMEOUT.as_secs()),
        "peer_cpu_time": "measured in the receiver's thread on the peer host (getrusage RUSAGE_THREAD), recorded as peer_user_ns/peer_sys_ns; not subtracted here",
    })
}

/// Every (path, file size, step) the experiment runs, in order: on a datagram path the steps
/// are the datagram sizes, on a stream the chunks.
pub fn sweep(
    paths: &[NetPath],
    sizes: &[u64],
    chunks: &[u64],
    datagrams: &[u64],
) -> Vec<(NetPath, u64, u64)> {
    let mut v = Vec::new();
    for &p in paths {
        let steps = if p.is_datagram() { datagrams } else { chunks };
        for &s in sizes {
            v.extend(steps.iter().map(|&c| (p, s, c)));
        }
    }
    v
}

/// `--list` lines: which paths run here, and with what.
pub fn path_notes(unavailable: Option<String>) -> Vec<String> {
    let netns = match unavailable {
        None => "(network namespaces available here)".to_string(),
        Some(r) => format!("skipped here: {r}"),
    };
    vec![
        format!("paths: tcp-loopback; tcp-veth and udp-sink {netns}"),
        "paths: remote-tcp and remote-udp with --peer HOST[:PORT] (`zclab serve` on that host)"
            .into(),
    ]
}

/// The `--list` line of an experiment whose paths are TCP over loopback and over veth.
pub fn tcp_path_notes(unavailable: Option<String>) -> Vec<String> {
    vec![match unavailable {
        None => "paths: tcp-loopback, tcp-veth (network namespaces available here)".into(),
        Some(r) => format!("paths: tcp-loopback; tcp-veth skipped here: {r}"),
    }]
}

/// The lab's namespaces for the veth paths, with a veth MTU of `mtu`; namespaces that a run
/// which no longer exists left behind are removed first, each named on stderr after
/// `experiment`.
pub fn veth_lab(experiment: &str, caps: &Caps, mtu: u32) -> Result<VethLab> {
    let ip = PathBuf::from(caps.net.ip_binary.clone().unwrap_or_default());
    for n in netns::remove_stale(&ip) {
        eprintln!("{experiment}: removed namespace {n} left by a process that no longer exists");
    }
    VethLab::create(&ip, mtu).context("cannot create the lab's network namespaces")
}

/// Removes the lab's namespaces, when there are any (also after a failure or an interruption).
pub fn remove_veth_lab(net: Option<&mut VethLab>) -> Result<()> {
    match net.map(VethLab::cleanup) {
        Some(Err(e)) => Err(anyhow!("network namespace clean-up incomplete: {e}")),
        _ => Ok(()),
    }
}

/// The lab's namespaces as meta.json describes them (`parameters.netns`).
pub fn netns_parameters() -> Value {
    json!({
        "namespaces": format!("zcsend-{}-a (sender), -b (TCP receiver), -s (sink)", std::process::id()),
        "tcp_veth": "10.200.0.1 in A -> 10.200.0.2 in B",
        "udp_sink": "10.201.0.1 in A -> 10.201.0.2, assigned nowhere: permanent neighbour entry in A to the MAC of S's veth end; S has no address and ip_forward 0; IPv6 disabled in all three",
        "created_with": "iproute2 `ip` (see probe.net.ip_binary)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths_and_refusals() {
        let all = choose_paths(&[], false, None).unwrap();
        assert_eq!(all.0, NetPath::ALL.to_vec());
        let (p, skipped) = choose_paths(&[], false, Some("needs root".into())).unwrap();
        assert_eq!(p, [NetPath::TcpLoopback]);
        assert_eq!(skipped.len(), 2);
        assert_eq!(
            choose_paths(&[], true, None).unwrap().0,
            NetPath::REMOTE.to_vec()
        );
        let asked = [NetPath::TcpLoopback, NetPath::UdpSink, NetPath::TcpLoopback];
        assert_eq!(choose_paths(&asked, false, None).unwrap().0.len(), 2);
        let e = choose_paths(&asked, false, Some("needs root".into())).unwrap_err();
        assert!(e.to_string().contains("udp-sink was requested"), "{e}");
        assert!(peer_mismatch(&[NetPath::RemoteUdp], false).is_some());
        assert!(peer_mismatch(&[NetPath::TcpLoopback], true).is_some());
        assert!(peer_mismatch(&[NetPath::RemoteTcp], true).is_none());
    }

    #[test]
    fn datagrams_are_capped_and_deduplicated() {
        assert_eq!(datagram_sizes(&[], 65535), [65507]);
        assert_eq!(datagram_sizes(&[], 1500), [1472]);
        assert_eq!(datagram_sizes(&[65536, 65507, 1400], 1500), [65507, 1400]);
        assert_eq!(capped_datagrams(&[65536, 1400]).len(), 1);
    }
}
