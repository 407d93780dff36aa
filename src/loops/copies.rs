//! Did zero-copy happen? The seeds' table of CPU copies and user/kernel switches per chunk
//! (read+write, mmap+write, sendfile, splice) beside what file_to_socket measured on its
//! udp-sink path, where nothing receives: system calls per MiB and per datagram, sender CPU
//! per MiB, throughput and the zero-copy usage the kernel reported. Computed from the run's
//! rows in memory; the experiment writes it as `copies.md`.

use crate::catalog::file_to_socket as v;
use crate::results::{Row, Status};
use crate::units;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

const PAGE: u64 = 4096;

/// One method of the seeds' table: its name there, CPU copies, user/kernel switches, and the
/// variant that does it here (None: the kernel no longer offers it as a separate path).
struct Seed {
    method: &'static str,
    copies: &'static str,
    switches: &'static str,
    variant: Option<&'static str>,
    note: &'static str,
}

const SEEDS: &[Seed] = &[
    Seed {
        method: "read + write",
        copies: "2",
        switches: "4",
        variant: Some(v::CLASSIC_READ_WRITE),
        note: "page cache -> buffer, buffer -> socket buffer",
    },
    Seed {
        method: "mmap + write",
        copies: "1",
        switches: "4",
        variant: Some(v::CLASSIC_MMAP_WRITE),
        note: "mapping -> socket buffer (the mmap itself once per file)",
    },
    Seed {
        method: "sendfile (before 2.4)",
        copies: "1",
        switches: "2",
        variant: None,
        note: "not a separate path any more: the kernel sends page references whenever the device does scatter/gather (veth does)",
    },
    Seed {
        method: "sendfile + DMA gather",
        copies: "0",
        switches: "2",
        variant: Some(v::CLASSIC_SENDFILE),
        note: "page references in the skb (MSG_SPLICE_PAGES)",
    },
    Seed {
        method: "splice",
        copies: "0",
        switches: "2",
        variant: Some(v::CLASSIC_SPLICE),
        note: "file -> pipe -> socket is two splice(2) calls per chunk",
    },
];

/// Variants beyond the seeds, and the CPU copies of the payload each makes on udp-sink.
const BEYOND: &[(&str, &str)] = &[
    (v::URING_READ_SEND, "2"),
    (v::URING_READ_FIXED_SEND, "2"),
    (v::URING_SPLICE, "0"),
    (v::URING_SEND_ZC_FIXED, "1 (the read)"),
    (v::URING_SEND_ZC_MMAP, "0"),
];

/// Pages splice_to_socket hands to one sendmsg (its bio_vec array), and the buffers of the
/// internal pipe sendfile uses.
const SPLICE_BATCH_PAGES: u64 = 16;

/// The most pages of the file a datagram of `d` bytes touches, over the offsets k * d at
/// which datagrams start: the offsets within a page reach PAGE - gcd(d, PAGE).
pub fn max_pages(d: u64) -> u64 {
    let (mut a, mut b) = (d, PAGE);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    (PAGE - a + d).div_ceil(PAGE)
}

/// Median, min and max of `f` over the rows; None unless every row has it.
fn spread(rows: &[&Row], f: impl Fn(&Row) -> Option<f64>) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = rows.iter().filter_map(|r| f(r)).collect();
    if v.is_empty() || v.len() != rows.len() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((median, v[0], v[n - 1]))
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1000.0)
}

/// Where the table was measured, for its title and note.
pub struct Host<'a> {
    pub kernel: &'a str,
    pub cpu_model: &'a str,
    /// Repeats per variant and point (`--repeat`).
    pub repeat: u32,
}

/// The seeds' table of copies and switches beside what udp-sink measured, one table per
/// point (file size, datagram size), as Markdown: system calls per MiB and per datagram (two
/// user/kernel switches each), sender CPU per MiB (median and min-max of the repeats),
/// throughput, and the zero-copy usage the kernel reported. None when no udp-sink row is ok.
pub fn copies_table(rows: &[Row], host: &Host) -> Option<String> {
    let sink: Vec<&Row> = rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter(|r| r.params.get("path").and_then(Value::as_str) == Some("udp-sink"))
        .collect();
    if sink.is_empty() {
        return None;
    }
    let mut by_point: BTreeMap<(u64, u64), Vec<&Row>> = BTreeMap::new();
    for r in &sink {
        let n = |k: &str| r.params.get(k).and_then(Value::as_u64).unwrap_or(0);
        by_point.entry((n("size"), n("chunk"))).or_default().push(r);
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Did zero-copy happen? file -> UDP sink ({}, {})\n",
        host.kernel, host.cpu_model
    );
    let _ = writeln!(
        md,
        "Seeds: copies and user/kernel switches per chunk as the seeds state them. Measured: udp-sink, median of {} repeats (min-max); CPU copies measured (with --profile, which the quick preset gives): the places in the sender's profile that copy the payload, each taking at least a quarter of a reference copy's time per MiB, and in brackets the copy functions' time per MiB in reference copies (a copy from colder memory counts as more than one); CPU is the sending process's user + system time (the sink's drop at IP runs in the sender's softirq and is included, the same per datagram for every method); a system call is two user/kernel switches.\n",
        host.repeat
    );
    for ((size, chunk), rs) in &by_point {
        point_table(&mut md, *size, *chunk, rs);
    }
    let _ = writeln!(
        md,
        "CPU copies of the payload each io_uring variant makes on this path, by construction: {}.",
        BEYOND
            .iter()
            .map(|(v, c)| format!("{v} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Some(md)
}

/// One point's table: a line per seed method and per io_uring variant.
fn point_table(md: &mut String, size: u64, chunk: u64, rs: &[&Row]) {
    let of = |v: &str| -> Vec<&Row> { rs.iter().copied().filter(|r| r.variant == v).collect() };
    let pages = max_pages(chunk);
    let _ = writeln!(
        md,
        "## file {}, datagrams of {} B\n\nA datagram touches up to {pages} pages of the file (one pipe buffer and one skb fragment each).\n",
        units::fmt_size(size),
        chunk
    );
    let _ = writeln!(
        md,
        "| method (seeds) | CPU copies (seeds) | CPU copies measured | switches (seeds) | variant measured | syscalls / MiB | syscalls / datagram | sender CPU µs / MiB | of which system | GB/s | copied (kernel's report) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    let line = |md: &mut String, method: &str, copies: &str, sw: &str, v: &str| {
        let r = of(v);
        if r.is_empty() {
            let _ = writeln!(
                md,
                "| {method} | {copies} | | {sw} | {v} | not measured | | | | | |"
            );
            return;
        }
        let sysc = spread(&r, |x| x.metrics.as_ref()?.syscalls_per_mib);
        let per_dgram = spread(&r, |x| {
            let m = x.metrics.as_ref()?;
            Some(m.syscalls.0? as f64 / *m.extra.get("datagrams")?)
        });
        let cpu = spread(&r, |x| Some(x.metrics.as_ref()?.cpu_ns_per_mib));
        let sys = spread(&r, |x| Some(x.metrics.as_ref()?.sys_ns_per_mib));
        let gbps = spread(&r, |x| Some(x.metrics.as_ref()?.gbps));
        let copied = spread(&r, |x| {
            let z = x.metrics.as_ref()?.zc.as_ref()?;
            z.usage_reported.then_some(z.copied_pct)
        });
        // With --profile: the copy sites counted in the sender's profile, and its copy time
        // in reference copies (docs/method.md, "Where the CPU goes").
        let sites = spread(&r, |x| x.metrics.as_ref()?.extra.get("copy_sites").copied());
        let timed = spread(&r, |x| {
            x.metrics.as_ref()?.extra.get("copies_per_byte").copied()
        });
        let measured = match (sites, timed) {
            (Some(n), Some(t)) => format!("{:.0} ({:.2} timed)", n.0, t.0),
            _ => "no profile".into(),
        };
        let _ = writeln!(
            md,
            "| {method} | {copies} | {measured} | {sw} | {v} | {} | {} | {} | {} | {} | {} |",
            sysc.map_or("unknown".into(), |s| format!("{:.1}", s.0)),
            per_dgram.map_or("unknown".into(), |s| format!("{:.2}", s.0)),
            cpu.map_or("-".into(), |c| format!(
                "{} ({}-{})",
                us(c.0),
                us(c.1),
                us(c.2)
            )),
            sys.map_or("-".into(), |c| us(c.0)),
            gbps.map_or("-".into(), |g| format!("{:.2}", g.0)),
            copied.map_or("-".into(), |c| format!("{:.0}%", c.0)),
        );
    };
    for s in SEEDS {
        match s.variant {
            Some(v) => line(md, s.method, s.copies, s.switches, v),
            None => {
                let _ = writeln!(
                    md,
                    "| {} | {} | | {} | — | {} | | | | | |",
                    s.method, s.copies, s.switches, s.note
                );
            }
        }
    }
    for (v, copies) in BEYOND {
        line(md, "(io_uring, beyond the seeds)", copies, "-", v);
    }
    md.push('\n');
    if pages > SPLICE_BATCH_PAGES {
        let _ = writeln!(
            md,
            "Over {SPLICE_BATCH_PAGES} pages, sendfile and splice hand a datagram to UDP in two sendmsg calls ({SPLICE_BATCH_PAGES} pages per call since Linux 6.5), the first with MSG_MORE, and a corked UDP datagram gets no checksum offload: the kernel reads every byte to checksum it (csum_partial under skb_splice_from_iter in a profile). No copy, but a pass over the data. A datagram that touches at most {SPLICE_BATCH_PAGES} pages at every offset goes in one call: `--datagram 63488` is the largest (15.5 pages, starting at multiples of 2 KiB), 61440 is 15 pages exactly.\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_a_datagram_touches() {
        assert_eq!(max_pages(65507), 17);
        assert_eq!(max_pages(61440), 15);
        assert_eq!(max_pages(61441), 16);
        assert_eq!(max_pages(61439), 16);
        assert_eq!(max_pages(4096), 1);
        assert_eq!(max_pages(4097), 2);
        // Datagrams start at multiples of 2048 within a page: 15.5 pages touch at most 16.
        assert_eq!(max_pages(63488), 16);
        assert_eq!(max_pages(63489), 17);
        assert_eq!(max_pages(1400), 2);
        assert_eq!(max_pages(2048), 1);
    }

    #[test]
    fn no_sink_rows_no_table() {
        let host = Host {
            kernel: "6.18",
            cpu_model: "x",
            repeat: 1,
        };
        assert!(copies_table(&[], &host).is_none());
    }
}
