//! sockperf (Debian's `sockperf` package) ping-pong over loopback TCP against the `rr`
//! experiment's blocking server at the same message size.
//!
//! sockperf's server (`sockperf sr`, one TCP socket: it blocks in recvfrom) runs pinned to CPU 0,
//! its client (`sockperf pp --full-rtt`, one message in flight) to CPU 1: where the lab runs its
//! measured server and its client thread. The figures are sockperf's own: transactions per
//! second over its valid duration (messages received / run time), and the round trip's p50 and
//! p99 as it prints them.

use super::{Pair, Side, s};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Round-trip percentiles, microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Lat {
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Lat {
    /// The median of each field.
    pub fn median(v: &[Lat]) -> Option<Lat> {
        use zclab::analysis::median;
        (!v.is_empty()).then(|| Lat {
            p50_us: median(&v.iter().map(|l| l.p50_us).collect::<Vec<_>>()),
            p99_us: median(&v.iter().map(|l| l.p99_us).collect::<Vec<_>>()),
        })
    }
}

/// The pairs: sockperf ping-pong at 64 B and 4 KiB against rr's classic-blocking ping-pong.
pub(super) fn pairs(full: bool) -> Vec<Pair> {
    let secs = if full { 10 } else { 3 };
    [64u32, 4096]
        .into_iter()
        .map(|size| Pair {
            name: format!("sockperf ping-pong TCP loopback {size} B"),
            unit: "tx/s",
            note: "both servers block in recv on one TCP connection, client and server pinned to separate CPUs; zclab's client checks every response (sequence number, checksum of the request, pattern)",
            tool: Side::Sockperf { size, secs },
            lab: Side::Lab {
                experiment: "rr",
                args: s(&[
                    "--variants",
                    "classic-blocking",
                    "--paths",
                    "tcp-loopback",
                    "--modes",
                    "rr",
                    "--loads",
                    "closed",
                    "--sizes",
                    &size.to_string(),
                    "--transactions",
                    "20000",
                    "--duration",
                    &format!("{secs}s"),
                ]),
                variant: "classic-blocking",
                metric: "ops_per_s",
            },
        })
        .collect()
}

/// One sockperf run: (transactions/s, round-trip percentiles).
pub(super) fn run(size: u32, secs: u32) -> Result<(f64, Lat)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let port = port.to_string();
    let mut server = Command::new("taskset")
        .args([
            "-c",
            "0",
            "sockperf",
            "sr",
            "--tcp",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start sockperf sr under taskset")?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("taskset")
        .args([
            "-c",
            "1",
            "sockperf",
            "pp",
            "--tcp",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
        ])
        .args([
            "-m",
            &size.to_string(),
            "-t",
            &secs.to_string(),
            "--full-rtt",
        ])
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let out = out.context("cannot run sockperf pp")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "sockperf pp failed: {}",
            text.lines().last().unwrap_or("").trim()
        );
    }
    parse(&text).with_context(|| {
        format!(
            "sockperf printed no valid-duration line and percentiles: {}",
            text.lines().last().unwrap_or("")
        )
    })
}

/// Parses sockperf's `[Valid Duration] RunTime=1.548 sec; SentMessages=5257;
/// ReceivedMessages=5257` and `percentile 50.000 = 41.711` lines; refuses a run that dropped,
/// duplicated or reordered messages.
fn parse(text: &str) -> Result<(f64, Lat)> {
    let field = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        let num: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        num.parse().ok()
    };
    let valid = text
        .lines()
        .find(|l| l.contains("[Valid Duration]"))
        .context("no [Valid Duration] line")?;
    let run_s = field(valid, "RunTime=").context("no RunTime")?;
    let got = field(valid, "ReceivedMessages=").context("no ReceivedMessages")?;
    if let Some(l) = text.lines().find(|l| l.contains("dropped messages")) {
        for k in [
            "dropped messages = ",
            "duplicated messages = ",
            "out-of-order messages = ",
        ] {
            if field(l, k).is_some_and(|v| v > 0.0) {
                bail!("sockperf reported {}", l.trim());
            }
        }
    }
    let pct = |p: &str| {
        text.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))
            .and_then(|l| l.rsplit('=').next())
            .and_then(|v| {
                v.trim()
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse::<f64>()
                    .ok()
            })
    };
    let lat = Lat {
        p50_us: pct("50.000").context("no p50")?,
        p99_us: pct("99.000").context("no p99")?,
    };
    if run_s <= 0.0 {
        bail!("sockperf ran for {run_s} s");
    }
    Ok((got / run_s, lat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockperf_output() {
        let t = "sockperf: [Valid Duration] RunTime=1.548 sec; SentMessages=5257; ReceivedMessages=5257\n\
                 sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0\n\
                 sockperf: ---> percentile 99.000 = 6395.594\n\
                 sockperf: ---> percentile 50.000 =   41.711\n";
        let (tps, lat) = parse(t).unwrap();
        assert!((tps - 5257.0 / 1.548).abs() < 1e-6);
        assert_eq!(
            lat,
            Lat {
                p50_us: 41.711,
                p99_us: 6395.594
            }
        );
        let bad = t.replace("# dropped messages = 0", "# dropped messages = 3");
        assert!(parse(&bad).is_err());
        assert!(parse("nothing").is_err());
    }
}
