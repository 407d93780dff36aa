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

use anyhow::{Context, Result};
use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmsg};
use serde_json::json;
use std::io::{IoSlice, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;
use zclab::catalog::{Entry, gather_write as names};
use zclab::harness::{self, CommonArgs, Done, Experiment, Plan, Point, Trial, Variant};
use zclab::loops::common;
use zclab::loops::gather::{EXTRA_SLICES, GAP, MIN_MESSAGES, Messages, gathered};
use zclab::measure::Recorder;
use zclab::net::peers::{FaultSpec, HashSink, tcp_pair};
use zclab::results::Integrity;
use zclab::ring::RingConfig;
use zclab::units;
use zclab::uring::Fd;
use zclab::uring::sock::{ZcMsgSender, writev_all};

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<GatherWrite>] = harness::variants![
    names::CLASSIC_CONCAT_WRITE => classic_concat_write, [], "copy the parts into one buffer in user space, then one write(2)";
    names::CLASSIC_WRITEV => classic_writev, [], "writev(2) with one iovec per part";
    names::CLASSIC_SENDMSG_IOV => classic_sendmsg_iov, [], "sendmsg(2) with the parts as the msghdr's iovec array";
    names::URING_WRITEV => uring_writev, [op(Writev)], "IORING_OP_WRITEV with one iovec per part, one submission per message";
    names::URING_SENDMSG_ZC => uring_sendmsg_zc, [op(SendMsgZc)], "IORING_OP_SENDMSG_ZC with the parts as iovecs, notifications tracked, with usage reporting";
];

#[derive(clap::Args, Debug)]
struct Args {
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

struct GatherWrite {
    args: Args,
    fault: Option<FaultSpec>,
}

impl Experiment for GatherWrite {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, _common: &CommonArgs) -> Result<Plan<Self>> {
        for &p in &args.parts {
            for &s in &args.part_size {
                if p * s > (64 << 20) {
                    return Err(harness::usage(format!(
                        "a message of {p} parts of {} is over 64 MiB",
                        units::fmt_size(s)
                    )));
                }
            }
        }
        if args.size > (16 << 30) {
            return Err(harness::usage("--size is at most 16 GiB"));
        }
        let fault = FaultSpec::from_env_for(names::VARIANTS)?;
        let parameters = json!({
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
        Ok(Plan::new(GatherWrite { args, fault }, points, parameters))
    }
}

fn main() -> ExitCode {
    harness::run::<GatherWrite>()
}

/// Runs one trial: connects to a hashing receiver, times `send(sock, Some(k))` once per
/// message k, calls `send(sock, None)` to finish inside the clock (untimed as a sample), waits
/// for the receiver's account and checks it.
fn run_trial(
    ctx: &GatherWrite,
    t: &mut Trial,
    variant: &str,
    step: &str,
    plan: &Messages,
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
    for (k, v) in got.peer_extras() {
        t.set_extra(k, v);
    }
    let hash = got.hash.unwrap_or(0);
    t.set_extra("messages", plan.messages as f64);
    t.set_extra("message_bytes", plan.msg_bytes as f64);
    t.set_integrity(Integrity {
        ok: got.bytes == total && got.hash == Some(plan.hash),
        method: "xxh3-64 of the received stream against the concatenation of every message".into(),
        expected: format!("{:016x}", plan.hash),
        got: format!("{hash:016x}"),
        bytes_expected: total,
        bytes_got: got.bytes,
    });
    Ok(())
}

fn messages(ctx: &GatherWrite, t: &Trial) -> Messages {
    Messages::new(
        t.point.num("parts") as usize,
        t.point.num("part_size") as usize,
        ctx.args.size,
    )
}

fn classic_concat_write(ctx: &mut GatherWrite, t: &mut Trial) -> Result<()> {
    let p = messages(ctx, t);
    let mut buf = vec![0u8; p.msg_bytes];
    run_trial(
        ctx,
        t,
        names::CLASSIC_CONCAT_WRITE,
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

/// A variant that hands the parts to the kernel as an iovec array with `call` (finishing
/// short writes with more calls).
fn gathered_trial(
    ctx: &mut GatherWrite,
    t: &mut Trial,
    variant: &str,
    step: &str,
    mut call: impl FnMut(&TcpStream, &[IoSlice<'_>]) -> Result<usize>,
) -> Result<()> {
    let p = messages(ctx, t);
    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(p.parts);
    run_trial(ctx, t, variant, step, &p, |s, k| {
        let Some(k) = k else { return Ok(()) };
        gathered(&mut iov, &p, k, |v| call(s, v))
    })
}

fn classic_writev(ctx: &mut GatherWrite, t: &mut Trial) -> Result<()> {
    gathered_trial(
        ctx,
        t,
        names::CLASSIC_WRITEV,
        "one message: writev(2) of its parts",
        |mut s, v| s.write_vectored(v).context("writev"),
    )
}

fn classic_sendmsg_iov(ctx: &mut GatherWrite, t: &mut Trial) -> Result<()> {
    gathered_trial(
        ctx,
        t,
        names::CLASSIC_SENDMSG_IOV,
        "one message: sendmsg(2) with its parts as the iovec array",
        |s, v| {
            sendmsg::<SockaddrStorage>(s.as_raw_fd(), v, &[], MsgFlags::empty(), None)
                .context("sendmsg")
        },
    )
}

fn uring_writev(ctx: &mut GatherWrite, t: &mut Trial) -> Result<()> {
    let mut r = common::ring(t, &RingConfig::tuned(8))?;
    let p = messages(ctx, t);
    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(p.parts);
    let mut enters = 0u64;
    run_trial(
        ctx,
        t,
        names::URING_WRITEV,
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

fn uring_sendmsg_zc(ctx: &mut GatherWrite, t: &mut Trial) -> Result<()> {
    let mut r = common::ring(t, &RingConfig::tuned(64))?;
    let p = messages(ctx, t);
    let report = t.caps.io_uring.send_zc_report_usage == Some(true);
    // The sender owns a copy of the pool: the kernel may read it until each notification.
    let mut zc = ZcMsgSender::new(p.pool.clone(), p.parts, report, t.clock, t.cancel());
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(p.parts);
    let mut enters = 0u64;
    let mut drained = false;
    let res = run_trial(
        ctx,
        t,
        names::URING_SENDMSG_ZC,
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
    t.set_zc(counts, Some(release));
    Ok(())
}
