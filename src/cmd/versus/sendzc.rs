//! liburing's examples/send-zerocopy as a comparison tool, with the receiving end the lab
//! provides for it, and a check that the bytes it claims to have sent arrived.
//!
//! The example (liburing 2.3) submits `-n` (8) sends of one `-s` byte buffer, waits for their
//! results (not for zero-copy notifications, so the buffer is re-sent while the kernel may
//! still hold it) and repeats for `-t` seconds plus 200 ms. It prints the sends and MiB it
//! counted, and divides them by the whole seconds only; the figure here is bytes that
//! arrived over the loop's real length.

use super::Cpu;
use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use zclab::measure::usage;
use zclab::net::Sink;
use zclab::net::netns::{VethLab, udp_frames};

/// One send-zerocopy configuration.
#[derive(Debug, Clone, Copy)]
pub(super) struct SendZc {
    /// TCP over loopback to a discarding receiver, or UDP from the lab's namespace A to its
    /// sink (dropped at IP in namespace S).
    pub tcp: bool,
    /// Bytes per send (`-s`).
    pub payload: usize,
    /// IORING_OP_SEND_ZC (`-z 1`) or IORING_OP_SEND (`-z 0`).
    pub zc: bool,
    /// Registered buffer (`-b 1`).
    pub fixed: bool,
    /// Sends submitted together and in flight at once (`-n`).
    pub inflight: u32,
}

impl SendZc {
    fn args(&self, dst: &str, port: u16, secs: u32) -> Vec<String> {
        let v = [
            "-4",
            "-D",
            dst,
            "-p",
            &port.to_string(),
            "-s",
            &self.payload.to_string(),
            "-t",
            &secs.to_string(),
            "-z",
            if self.zc { "1" } else { "0" },
            "-b",
            if self.fixed { "1" } else { "0" },
            "-n",
            &self.inflight.to_string(),
            if self.tcp { "tcp" } else { "udp" },
        ];
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// The sends the example counted: its `tx=N (MB=M), ...` line (on stderr).
fn sends_and_mib(stderr: &str) -> Option<(u64, u64)> {
    let l = stderr.lines().find_map(|l| l.trim().strip_prefix("tx="))?;
    let (n, rest) = l.split_once(' ')?;
    let mb = rest.strip_prefix("(MB=")?.split(')').next()?;
    Some((n.parse().ok()?, mb.parse().ok()?))
}

/// What a finished run of the example counted (sends, MiB), or why it failed.
fn counted(out: &std::process::Output) -> Result<(u64, u64)> {
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("send-zerocopy failed: {}", err.trim());
    }
    sends_and_mib(&err).with_context(|| {
        format!(
            "send-zerocopy printed no tx= line: {}",
            err.lines().next().unwrap_or("")
        )
    })
}

/// Runs the example for `secs` s pinned to CPU 0 and returns Gbit/s of what arrived: over
/// loopback to a receiver thread on CPU 1 that drops the bytes with recv(MSG_TRUNC) (as the
/// kernel's msg_zerocopy selftest receiver does), or, with `net`, from namespace A to the
/// sink, counted by the sink device; for UDP also the example's CPU time per send.
pub(super) fn run(
    bin: &Path,
    p: &SendZc,
    secs: u32,
    net: Option<&VethLab>,
) -> Result<(f64, Option<Cpu>)> {
    let loop_s = secs as f64 + 0.2;
    if p.tcp {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        // A tool that never connects must not leave the receiver in accept forever.
        nix::sys::socket::setsockopt(
            &l,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(secs as i64 + 10, 0),
        )
        .map_err(std::io::Error::from)?;
        // The receiver net_send gives itself: the same thread, CPU and read size.
        let recv_buf = p.payload.max(256 << 10);
        let rx = std::thread::spawn(move || -> std::io::Result<u64> {
            let _ = zclab::sys::cpu::pin_to(1);
            let (s, _) = l.accept()?;
            s.set_read_timeout(None)?;
            Ok(zclab::net::receive(s, recv_buf, Sink::Discard)?.bytes)
        });
        let cpu0 = usage::children().context("getrusage(RUSAGE_CHILDREN)")?;
        let out = Command::new("taskset")
            .args(["-c", "0"])
            .arg(bin)
            .args(p.args("127.0.0.1", port, secs))
            .output()
            .context("cannot run send-zerocopy under taskset");
        let (sends, mib) = match out.and_then(|o| counted(&o)) {
            Ok(c) => c,
            Err(e) => {
                // Wake the receiver from accept (or end its stream) before reporting.
                let _ = std::net::TcpStream::connect(("127.0.0.1", port));
                let _ = rx.join();
                return Err(e);
            }
        };
        let got = rx
            .join()
            .map_err(|_| anyhow::anyhow!("receiver thread panicked"))?
            .context("the receiver for send-zerocopy")?;
        // It counts whole MiB of the bytes its sends reported: what arrived must match.
        if got >> 20 != mib || got > sends * p.payload as u64 {
            bail!("send-zerocopy counted {sends} sends, {mib} MiB; the receiver got {got} bytes");
        }
        // The example's process is the sender alone (the receiver is a thread here), as the
        // lab's row counts its sending thread without its receiver; both receivers discard
        // alike, so the kernel's work splits alike between the two CPUs. Per message of
        // `payload` bytes, as the lab counts its operations.
        let used = usage::children()
            .context("getrusage(RUSAGE_CHILDREN)")?
            .since(&cpu0);
        let msgs = (got as f64 / p.payload as f64).max(1.0);
        let cpu = Cpu {
            user_ns_per_op: used.user_ns as f64 / msgs,
            sys_ns_per_op: used.sys_ns as f64 / msgs,
        };
        Ok((got as f64 * 8.0 / loop_s / 1e9, Some(cpu)))
    } else {
        let net = net.context("the UDP rows need the lab's namespaces")?;
        let before = net.sink_counters()?;
        let cpu0 = usage::children().context("getrusage(RUSAGE_CHILDREN)")?;
        let out = Command::new("ip")
            .args(["netns", "exec", &net.ns_a, "taskset", "-c", "0"])
            .arg(bin)
            .args(p.args(&net.sink_dst.to_string(), 9, secs))
            .output()
            .context("cannot run send-zerocopy in the lab's namespace")?;
        let (sends, _) = counted(&out)?;
        let used = usage::children()
            .context("getrusage(RUSAGE_CHILDREN)")?
            .since(&cpu0);
        let frames = udp_frames(p.payload as u64, net.mtu as u64).0;
        let after = net.wait_sink(before.rx_packets + sends * frames, Duration::from_secs(2))?;
        let arrived = after.rx_packets.wrapping_sub(before.rx_packets) / frames;
        if arrived > sends {
            bail!("the sink got {arrived} datagrams, send-zerocopy counted {sends} sends");
        }
        if arrived < sends {
            eprintln!(
                "versus: send-zerocopy sent {sends} datagrams, the sink got {arrived}; the figure counts those that arrived"
            );
        }
        // The sink drops at IP, in the sender's softirq work: the process's CPU time is all of
        // the sending, as the lab's udp-sink rows count it (ksoftirqd's share left out on both).
        let per = |ns: u64| ns as f64 / sends.max(1) as f64;
        let cpu = Cpu {
            user_ns_per_op: per(used.user_ns),
            sys_ns_per_op: per(used.sys_ns),
        };
        Ok((
            (arrived * p.payload as u64) as f64 * 8.0 / loop_s / 1e9,
            Some(cpu),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_cpu_time_is_counted_once_it_is_waited_for() {
        let before = usage::children().unwrap();
        // About 50 ms of shell arithmetic, in user space.
        let st = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(st.success());
        let used = usage::children().unwrap().since(&before);
        let (user, sys) = (used.user_ns, used.sys_ns);
        assert!(user + sys >= 10_000_000, "user {user} ns, sys {sys} ns");
    }

    #[test]
    fn parses_the_tx_line() {
        let e = "tx=1234567 (MB=76928), tx/s=246913 (MB/s=15385)\n";
        assert_eq!(sends_and_mib(e), Some((1234567, 76928)));
        assert_eq!(sends_and_mib("Connection failure"), None);
    }
}
