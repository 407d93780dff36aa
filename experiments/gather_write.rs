//! # gather_write: sending a message made of parts, copied together or gathered by the kernel
//!
//! **Question.** A message built from several buffers (a header and body slices — Netty's
//! CompositeByteBuf, the seeds' "zero copy in user space") can be concatenated into one buffer
//! and written, or handed to the kernel as a list of buffers (writev(2), sendmsg(2) with an
//! iovec array, io_uring WRITEV, io_uring SENDMSG_ZC). How much does the user-space copy cost
//! against the gather, as the number of parts and their size change?
//!
//! **Set-up.** The measured thread, pinned to the first CPU, sends messages over a loopback
//! TCP connection to a receiver thread pinned to the peer CPU, which hashes what arrives. The
//! parts live at scattered places of one pool (never adjacent in message order), and message
//! k takes parts `(k*parts + i) mod (parts + 7)`, so consecutive messages differ. Integrity:
//! the receiver's xxh3-64 equals that of the concatenation of every message.
//!
//! **Variants.** See `VARIANTS`. One latency sample is one message: one write of the
//! concatenation, one gathered call, or one io_uring submission to its completion (a short
//! write is finished inside the same sample). For SENDMSG_ZC the notifications are tracked:
//! the transfer ends when the kernel has released every page (on loopback it copies anyway:
//! see the copied column).
//!
//! **Parameters.** `--parts`, `--part-size` (every combination), `--size` (bytes per trial,
//! at least 256 messages), `--nodelay`.
//!
//! **Minimum kernel.** classic: any; uring-writev 5.1; uring-sendmsg-zc 6.1
//! (IORING_OP_SENDMSG_ZC), usage reporting 6.2.

use anyhow::{Context, Result, bail};
use clap::Parser;
use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmsg};
use serde_json::json;
use std::io::{IoSlice, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;
use xxhash_rust::xxh3::Xxh3;
use zclab::harness::{self, CommonArgs, Done, Lab, Need, Point, Trial, Variant};
use zclab::measure::Recorder;
use zclab::net::peers::{FaultSpec, HashSink, tcp_pair};
use zclab::results::Integrity;
use zclab::ring::{Ring, RingConfig};
use zclab::sys::file::fill_pattern;
use zclab::units;
use zclab::uring::Fd;
use zclab::uring::sock::{ZcMsgSender, writev_all};

const NAME: &str = "gather_write";

/// Distinct slices in the pool beyond the parts of one message.
const EXTRA_SLICES: usize = 7;
/// Gap between slices in the pool, so no two are adjacent.
const GAP: usize = 64;
/// Fewest messages per trial.
const MIN_MESSAGES: u64 = 256;

#[derive(Parser, Debug)]
#[command(name = NAME, about = "Send messages made of parts: concatenate then write, or gather with writev/sendmsg/io_uring")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Parts per message (the first is the header), comma-separated.
    #[arg(long, default_value = "2,8,32", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=1024))]
    parts: Vec<u64>,
    /// Bytes per part, comma-separated.
    #[arg(long, default_value = "64,1KiB,16KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    part_size: Vec<u64>,
    /// Bytes sent per trial (rounded up to whole messages, at least 256 messages).
    #[arg(long, default_value = "8MiB", value_parser = harness::size_arg)]
    size: u64,
    /// TCP_NODELAY on the sending socket (`--nodelay false` leaves Nagle on).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    nodelay: bool,
}

struct Ctx {
    args: Args,
    fault: Option<FaultSpec>,
}

const VARIANTS: &[Variant<Ctx>] = &[
    Variant {
        name: "classic-concat-write",
        about: "copy the parts into one buffer in user space, then one write(2)",
        needs: &[],
        run: classic_concat_write,
    },
    Variant {
        name: "classic-writev",
        about: "writev(2) with one iovec per part",
        needs: &[],
        run: classic_writev,
    },
    Variant {
        name: "classic-sendmsg-iov",
        about: "sendmsg(2) with the parts as the msghdr's iovec array",
        needs: &[],
        run: classic_sendmsg_iov,
    },
    Variant {
        name: "uring-writev",
        about: "IORING_OP_WRITEV with one iovec per part, one submission per message",
        needs: &[Need::Op("WRITEV")],
        run: uring_writev,
    },
    Variant {
        name: "uring-sendmsg-zc",
        about: "IORING_OP_SENDMSG_ZC with the parts as iovecs, notifications tracked, with usage reporting",
        needs: &[Need::Op("SENDMSG_ZC")],
        run: uring_sendmsg_zc,
    },
];

fn main() -> ExitCode {
    harness::main(NAME, || {
        let args = Args::parse();
        if args.common.list {
            let caps = zclab::caps::probe(std::path::Path::new("."));
            print!("{}", harness::list_variants(NAME, VARIANTS, &caps));
            return Ok(ExitCode::SUCCESS);
        }
        for &p in &args.parts {
            for &s in &args.part_size {
                if p * s > (64 << 20) {
                    bail!(
                        "a message of {p} parts of {} is over 64 MiB",
                        units::fmt_size(s)
                    );
                }
            }
        }
        if args.size > (16 << 30) {
            bail!("--size is at most 16 GiB");
        }
        let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
        let fault = FaultSpec::from_env_for(&names)?;
        let params = json!({
            "parts": args.parts, "part_size": args.part_size, "size": args.size,
            "min_messages": MIN_MESSAGES, "nodelay": args.nodelay, "path": "tcp-loopback",
            "pool": format!("parts + {EXTRA_SLICES} distinct slices, {GAP} B apart"),
            "fault": fault.as_ref().map(|f| format!("{f:?}")),
        });
        let mut points = Vec::new();
        for &p in &args.parts {
            for &s in &args.part_size {
                points.push(Point::new().int("parts", p).size("part_size", s));
            }
        }
        let mut lab = Lab::open(NAME, &args.common, params)?;
        let mut ctx = Ctx { args, fault };
        lab.run(VARIANTS, &points, &mut ctx)
    })
}

/// The parts: slices of one pattern-filled pool, and which of them each message takes.
struct Plan {
    pool: Vec<u8>,
    parts: usize,
    part_size: usize,
    slices: usize,
    messages: u64,
    msg_bytes: usize,
    hash: u64,
}

impl Plan {
    fn new(parts: usize, part_size: usize, size: u64) -> Plan {
        let slices = parts + EXTRA_SLICES;
        let mut pool = vec![0u8; slices * (part_size + GAP)];
        fill_pattern(&mut pool, 0);
        let msg_bytes = parts * part_size;
        let messages = size.div_ceil(msg_bytes as u64).max(MIN_MESSAGES);
        let mut p = Plan {
            pool,
            parts,
            part_size,
            slices,
            messages,
            msg_bytes,
            hash: 0,
        };
        let mut h = Xxh3::new();
        for k in 0..messages {
            for i in 0..parts {
                h.update(p.part(k, i));
            }
        }
        p.hash = h.digest();
        p
    }

    /// Where part `i` of message `k` starts in the pool.
    #[inline]
    fn start(&self, k: u64, i: usize) -> usize {
        let r = ((k as usize % self.slices) * self.parts + i) % self.slices;
        r * (self.part_size + GAP)
    }

    #[inline]
    fn part(&self, k: u64, i: usize) -> &[u8] {
        let s = self.start(k, i);
        &self.pool[s..s + self.part_size]
    }

    fn total(&self) -> u64 {
        self.messages * self.msg_bytes as u64
    }
}

/// Runs one trial: connects to a hashing receiver, times `send(sock, Some(k))` once per
/// message k, calls `send(sock, None)` to finish inside the clock (untimed as a sample), waits
/// for the receiver's account and checks it.
fn run_trial(
    ctx: &Ctx,
    t: &mut Trial,
    variant: &str,
    step: &str,
    plan: &Plan,
    mut send: impl FnMut(&TcpStream, Option<u64>) -> Result<()>,
) -> Result<()> {
    let (tx, rx) = tcp_pair().context("cannot open a loopback TCP connection")?;
    tx.set_nodelay(ctx.args.nodelay)?;
    let reset = FaultSpec::for_variant(&ctx.fault, variant);
    let sink = HashSink::spawn(rx, t.cpus.1, 256 << 10, reset)?;
    let total = plan.total();
    let res = t.measure(step, |rec: &mut Recorder| {
        let mut s = rec.now();
        for k in 0..plan.messages {
            send(&tx, Some(k)).with_context(|| format!("message {k} of {}", plan.messages))?;
            s = rec.record_since(s);
        }
        send(&tx, None)?;
        tx.shutdown(std::net::Shutdown::Write)?;
        Ok(Done {
            bytes: total,
            ops: plan.messages,
        })
    });
    drop(tx);
    let got = sink.join();
    res?;
    let got = got.context("receiver failed")?;
    t.set_peer(got.usage);
    t.set_extra("messages", plan.messages as f64);
    t.set_extra("message_bytes", plan.msg_bytes as f64);
    t.set_integrity(Integrity {
        ok: got.bytes == total && got.hash == plan.hash,
        method: "xxh3-64 of the received stream against the concatenation of every message".into(),
        expected: format!("{:016x}", plan.hash),
        got: format!("{:016x}", got.hash),
        bytes_expected: total,
        bytes_got: got.bytes,
    });
    Ok(())
}

fn plan(ctx: &Ctx, t: &Trial) -> Plan {
    Plan::new(
        t.point.num("parts") as usize,
        t.point.num("part_size") as usize,
        ctx.args.size,
    )
}

fn classic_concat_write(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let p = plan(ctx, t);
    let mut buf = vec![0u8; p.msg_bytes];
    run_trial(
        ctx,
        t,
        "classic-concat-write",
        "one message: copy its parts into one buffer, then write(2) it",
        &p,
        |mut s, k| {
            let Some(k) = k else { return Ok(()) };
            for i in 0..p.parts {
                buf[i * p.part_size..(i + 1) * p.part_size].copy_from_slice(p.part(k, i));
            }
            s.write_all(&buf)?;
            Ok(())
        },
    )
}

/// Sends the gathered parts with `call` until all are written (advancing over short writes).
fn gathered<'a>(
    iov: &mut Vec<IoSlice<'a>>,
    p: &'a Plan,
    k: u64,
    mut call: impl FnMut(&[IoSlice<'_>]) -> Result<usize>,
) -> Result<()> {
    iov.clear();
    for i in 0..p.parts {
        iov.push(IoSlice::new(p.part(k, i)));
    }
    let mut rest: &mut [IoSlice<'a>] = &mut iov[..];
    while !rest.is_empty() {
        match call(rest)? {
            0 => bail!("the receiver closed the connection"),
            n => IoSlice::advance_slices(&mut rest, n),
        }
    }
    Ok(())
}

fn classic_writev(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let p = plan(ctx, t);
    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(p.parts);
    run_trial(
        ctx,
        t,
        "classic-writev",
        "one message: writev(2) of its parts",
        &p,
        |mut s, k| {
            let Some(k) = k else { return Ok(()) };
            gathered(&mut iov, &p, k, |v| s.write_vectored(v).context("writev"))
        },
    )
}

fn classic_sendmsg_iov(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let p = plan(ctx, t);
    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(p.parts);
    run_trial(
        ctx,
        t,
        "classic-sendmsg-iov",
        "one message: sendmsg(2) with its parts as the iovec array",
        &p,
        |s, k| {
            let Some(k) = k else { return Ok(()) };
            let fd = s.as_raw_fd();
            gathered(&mut iov, &p, k, |v| {
                sendmsg::<SockaddrStorage>(fd, v, &[], MsgFlags::empty(), None).context("sendmsg")
            })
        },
    )
}

fn ring(t: &mut Trial, entries: u32) -> Result<Ring> {
    let r = Ring::new(&RingConfig::tuned(entries)).map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    Ok(r)
}

fn uring_writev(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, 8)?;
    let p = plan(ctx, t);
    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(p.parts);
    let mut enters = 0u64;
    run_trial(
        ctx,
        t,
        "uring-writev",
        "one message: one IORING_OP_WRITEV submission to its completion (short writes finished with more)",
        &p,
        |s, k| {
            let Some(k) = k else { return Ok(()) };
            iov.clear();
            for i in 0..p.parts {
                iov.push(IoSlice::new(p.part(k, i)));
            }
            enters += writev_all(&mut r, Fd::Raw(s.as_raw_fd()), &mut iov[..])?;
            Ok(())
        },
    )?;
    t.set_extra("enters", enters as f64);
    Ok(())
}

fn uring_sendmsg_zc(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, 64)?;
    let p = plan(ctx, t);
    let report = t.caps.io_uring.send_zc_report_usage == Some(true);
    // The sender owns a copy of the pool: the kernel may read it until each notification.
    let mut zc = ZcMsgSender::new(p.pool.clone(), p.parts, report, t.clock, t.cancel());
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(p.parts);
    let mut enters = 0u64;
    let mut drained = false;
    let res = run_trial(
        ctx,
        t,
        "uring-sendmsg-zc",
        "one message: one IORING_OP_SENDMSG_ZC (MSG_WAITALL) to its send completion, notifications reaped as they come (waiting for the last ones after the final message is inside the wall time, not in a sample)",
        &p,
        |s, k| {
            let Some(k) = k else {
                // The transfer is complete only when the kernel has released every page.
                zc.drain(&mut r, Duration::from_secs(10))?;
                drained = true;
                return Ok(());
            };
            ranges.clear();
            for i in 0..p.parts {
                ranges.push((p.start(k, i), p.part_size));
            }
            enters += zc.send(&mut r, Fd::Raw(s.as_raw_fd()), &ranges)?;
            Ok(())
        },
    );
    if !drained {
        // Failed mid-way: still wait for the notifications so the pool can be freed.
        let _ = zc.drain(&mut r, Duration::from_secs(2));
    }
    res?;
    t.set_extra("enters", enters as f64);
    let (counts, release) = zc.ledger().report();
    t.set_zc(counts.into(), Some(release));
    Ok(())
}
