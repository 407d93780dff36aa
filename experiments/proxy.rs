//! # proxy: relaying between two TCP connections, copy against splice
//!
//! **Question.** A relay (an HTTP proxy, a message broker forwarding between peers) moves bytes
//! from one socket to another. Does splice(2) through a pipe — no copy to user space — beat a
//! read/write loop, and from which message size on? Published experience says splice loses on
//! small payloads (HAProxy: below ~4 kB) and is no better for an echo round trip (Cloudflare).
//!
//! **Set-up.** Three parties over loopback TCP: a client and a server, both threads pinned to
//! the peer CPU, and the relay between them, the measured thread, pinned to the first CPU.
//! The relay's CPU usage is the process's less the client's and the server's (each measured in
//! its own thread). Two modes:
//! - `stream`: the client streams `--stream-bytes` in writes of the message size, the relay
//!   forwards them, the server hashes what arrives; integrity is that hash. One latency sample
//!   is one relay step (one receive of up to a message and its forwarding).
//! - `echo`: the client sends one message, the server echoes it back through the relay, the
//!   client checks it and sends the next (`--requests` per trial). The latency the user wants
//!   is the round trip, which only the client can see: it is measured in the client thread and
//!   recorded as the step histogram (its description says so); the relay's own per-request
//!   time is kept beside it as the `relay` histogram. Integrity: every echo equals what was
//!   sent.
//!
//! **Two hosts.** With `--peer HOST[:PORT]` the server end runs in `zclab serve` on that host
//! (a hashing receiver in stream mode, an echo server in echo mode): the relay's second
//! connection crosses the link between the hosts, the client stays a local thread on the peer
//! CPU. The client's CPU time is subtracted from the process's as before; the server's is
//! measured on its host and recorded as `peer_user_ns`/`peer_sys_ns` (and `peer_*` extras),
//! the client's then as `client_user_ns`/`client_sys_ns`. Round trips are still timed in the
//! client thread: one clock, no cross-host timestamps.
//!
//! **Variants.** See `VARIANTS`. Both relays of a variant use the same mechanism. In echo mode
//! the relay knows the message size (as a proxy knows a request's length) and moves exactly
//! one message each way per request.
//!
//! **Output.** Besides the standard run directory, `crossover.json`: per mode, the message size
//! at which each splice variant overtakes its copy-based counterpart (stream: throughput;
//! echo: median round trip), with the figures per size, by the lab's one crossover rule
//! (`zclab::loops::proxy_crossover`).
//!
//! **Minimum kernel.** classic: any 2.6.17+; uring-recv-send 5.6 (IORING_OP_RECV/SEND; the
//! MSG_WAITALL retry 5.18); uring-splice 5.7.

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use zclab::catalog::{Entry, proxy as names};
use zclab::harness::{self, Analysis, CommonArgs, Done, Experiment, Plan, Point, Trial, Variant};
use zclab::loops::proxy_crossover;
use zclab::loops::relay::{self, Relay, Served};
use zclab::loops::tcp;
use zclab::measure::Usage;
use zclab::net::peers::{EchoClient, FaultSpec, PatternStream, Streamer, add_usage};
use zclab::net::remote::{self, PeerAddr};
use zclab::results::{Integrity, Row};
use zclab::ring::{Ring, RingConfig};
use zclab::sys::pipe::pipe_with_size;
use zclab::units;

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<Proxy>] = harness::variants![
    names::CLASSIC_READ_WRITE => classic_read_write, [], "read(2) from one socket into a buffer, write(2) it to the other";
    names::CLASSIC_SPLICE => classic_splice, [], "splice(2) socket -> pipe, splice(2) pipe -> other socket: no copy to user space";
    names::URING_RECV_SEND => uring_recv_send, [op(Recv), op(Send)], "IORING_OP_RECV into a buffer + IORING_OP_SEND (MSG_WAITALL) to the other socket";
    names::URING_SPLICE => uring_splice, [op(Splice)], "IORING_OP_SPLICE socket -> pipe + IORING_OP_SPLICE pipe -> other socket";
];

#[derive(clap::Args, Debug)]
struct Args {
    /// Message sizes, comma-separated: the client's write size and the relay's unit in stream
    /// mode, the request and reply size in echo mode.
    #[arg(long, default_value = "512,2KiB,4KiB,16KiB,64KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Modes, comma-separated: stream (throughput) and echo (round-trip latency).
    #[arg(long, default_value = "stream,echo", value_delimiter = ',', value_parser = ["stream", "echo"])]
    mode: Vec<String>,
    /// Bytes the client streams per trial in stream mode.
    #[arg(long, default_value = "32MiB", value_parser = harness::size_arg)]
    stream_bytes: u64,
    /// Round trips per parameter point in echo mode, shared by the repeats (each trial runs
    /// requests/repeat, rounded up; a warm-up at most 1000), so the point's merged histogram
    /// (`.hgrm`) holds at least this many: 10000 or more for it to reach p99.99.
    #[arg(long, default_value_t = 20000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    requests: u64,
    /// Pipe capacity for the splice variants; default twice the message size, at least 64 KiB.
    #[arg(long, value_parser = harness::size_arg)]
    pipe_size: Option<u64>,
    /// Run the server end on another host, in `zclab serve` there (HOST[:PORT], default port
    /// 7878); the relay (measured) and the client stay here.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = remote::parse_peer)]
    peer: Option<PeerAddr>,
}

struct Proxy {
    args: Args,
    /// `--warmup` and `--repeat`: echo trials share `--requests` among the repeats.
    warmup: u32,
    repeat: u32,
    fault: Option<FaultSpec>,
    stream: Option<PatternStream>,
    /// Trials started per (variant, point): the harness runs the warm-ups first, so the first
    /// `--warmup` of each are warm-ups (echo warm-ups run fewer requests).
    started: std::collections::HashMap<(String, String), u32>,
}

/// Round trips of an echo warm-up trial (at most).
const WARMUP_REQUESTS: u64 = 1000;

impl Experiment for Proxy {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, common: &CommonArgs) -> Result<Plan<Self>> {
        if let Some(&s) = args.sizes.iter().find(|&&s| s > (64 << 20)) {
            return Err(harness::usage(format!(
                "message size {} is too large (at most 64 MiB)",
                units::fmt_size(s)
            )));
        }
        if args.stream_bytes > (8 << 30) {
            return Err(harness::usage(
                "--stream-bytes is held in memory: at most 8 GiB",
            ));
        }
        let fault =
            FaultSpec::from_env_for(names::VARIANTS).map_err(|e| harness::usage(e.to_string()))?;
        let parameters = json!({
            "sizes": args.sizes, "modes": args.mode, "stream_bytes": args.stream_bytes,
            "requests": args.requests, "pipe_size": args.pipe_size,
            "path": if args.peer.is_some() { "remote-tcp" } else { "tcp-loopback" },
            "peer": args.peer.as_ref().map(|p| p.text.clone()),
            "links": if args.peer.is_some() {
                "client -> relay over loopback; relay -> server (zclab serve on the peer host) across the link"
            } else {
                "both over loopback"
            },
            "placement": "relay on the first CPU; client and server on the peer CPU",
            "tcp_nodelay": "all sockets in echo mode; relay sockets in both modes",
            "fault": fault.as_ref().map(|f| format!("{f:?}")),
        });
        let mut points = Vec::new();
        for m in &args.mode {
            for &s in &args.sizes {
                points.push(Point::new().text("mode", m).size("msg", s));
            }
        }
        let ctx = Proxy {
            args,
            warmup: common.warmup,
            repeat: common.repeat.min,
            fault,
            stream: None,
            started: Default::default(),
        };
        Ok(Plan::new(ctx, points, parameters))
    }

    fn peer_addr(&self) -> Option<&PeerAddr> {
        self.args.peer.as_ref()
    }

    /// Where each splice variant beats its copying counterpart: `crossover.json`.
    fn analyse(&self, rows: &[Row], _common: &CommonArgs) -> Result<Vec<Analysis>> {
        let a = proxy_crossover::crossover(rows);
        Ok(a.into_iter()
            .map(|(json, text)| Analysis {
                file: "crossover.json".into(),
                json,
                text,
            })
            .collect())
    }
}

fn main() -> ExitCode {
    harness::run::<Proxy>()
}

fn classic_read_write(ctx: &mut Proxy, t: &mut Trial) -> Result<()> {
    let buf = vec![0u8; t.point.num("msg") as usize];
    run(ctx, t, names::CLASSIC_READ_WRITE, Relay::Copy(buf))
}

fn classic_splice(ctx: &mut Proxy, t: &mut Trial) -> Result<()> {
    let (pr, pw, cap) = pipe(ctx, t)?;
    t.set_extra("pipe_bytes", cap as f64);
    run(ctx, t, names::CLASSIC_SPLICE, Relay::Splice { pr, pw, cap })
}

fn uring_recv_send(ctx: &mut Proxy, t: &mut Trial) -> Result<()> {
    let r = ring(t)?;
    let buf = vec![0u8; t.point.num("msg") as usize];
    run(ctx, t, names::URING_RECV_SEND, Relay::UringCopy(r, buf))
}

fn uring_splice(ctx: &mut Proxy, t: &mut Trial) -> Result<()> {
    let r = ring(t)?;
    let (pr, pw, cap) = pipe(ctx, t)?;
    run(ctx, t, names::URING_SPLICE, Relay::UringSplice(r, pr, pw))?;
    t.set_extra("pipe_bytes", cap as f64);
    Ok(())
}

fn pipe(ctx: &Proxy, t: &Trial) -> Result<(OwnedFd, OwnedFd, usize)> {
    let msg = t.point.num("msg") as usize;
    let want = ctx
        .args
        .pipe_size
        .map_or((2 * msg).max(64 << 10), |p| p as usize);
    let (pr, pw, cap) = pipe_with_size(want)?;
    if cap < msg {
        return Err(harness::skip_point(format!(
            "the pipe holds {cap} B, less than a message ({msg} B)"
        )));
    }
    Ok((pr, pw, cap))
}

fn ring(t: &mut Trial) -> Result<Ring> {
    let r = Ring::new(&RingConfig::tuned(8)).map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    Ok(r)
}

/// Runs the point's mode; a failed trial's error says so when the --peer host went away.
fn run(ctx: &mut Proxy, t: &mut Trial, variant: &str, relay: Relay) -> Result<()> {
    let r = match t.point.str("mode") {
        "stream" => run_stream(ctx, t, variant, relay),
        "echo" => run_echo(ctx, t, variant, relay),
        m => bail!("unknown mode {m}"),
    };
    match (t.remote, r) {
        (Some(p), Err(e)) if e.downcast_ref::<harness::Skip>().is_none() => Err(p.explain(e)),
        (_, r) => r,
    }
}

/// Records the peers' CPU time: the local client's is subtracted from the process's; a remote
/// server's is recorded as the peer's (a local server's is subtracted with the client's).
fn record_peers(t: &mut Trial, client: Usage, served: &Served) {
    let server = served.report.usage;
    match &served.remote {
        None => t.set_peer(add_usage(client, server)),
        Some(r) => {
            t.set_peer(client);
            t.set_remote_peer(r.usage);
            t.set_extra("client_user_ns", client.user_ns as f64);
            t.set_extra("client_sys_ns", client.sys_ns as f64);
        }
    }
    for &(k, v) in &served.extras {
        t.set_extra(k, v);
    }
}

fn run_stream(ctx: &mut Proxy, t: &mut Trial, variant: &str, mut relay: Relay) -> Result<()> {
    let (msg, total) = (t.point.num("msg") as usize, ctx.args.stream_bytes);
    let ps = tcp::pattern(&mut ctx.stream, total);
    let relay::Ends {
        a,
        b,
        client,
        server,
    } = relay::ends(t.remote, t.cpus.1, msg, false)?;
    let reset = FaultSpec::for_variant(&ctx.fault, variant);
    let streamer = Streamer::spawn(client, t.cpus.1, ps.data.clone(), msg, reset)?;
    let expected = ps.hash;
    let res = t.measure(relay.stream_step(), |rec| {
        let r = relay::stream(&mut relay, &a, &b, msg, total, rec)?;
        Ok(Done {
            bytes: r.bytes,
            ops: r.steps,
        })
    });
    drop((a, b));
    let got = server.join();
    let sent = streamer.join();
    res?;
    let served = got.context("server failed")?;
    let sent = sent.context("client failed")?;
    let remote = served.remote.is_some();
    record_peers(t, sent.usage, &served);
    let got = served.report;
    t.set_integrity(Integrity {
        ok: got.bytes == total && got.hash == expected,
        method: if remote {
            "xxh3-64 of the stream the server received on the peer host".into()
        } else {
            "xxh3-64 of the stream the server received".into()
        },
        expected: format!("{expected:016x}"),
        got: format!("{:016x}", got.hash),
        bytes_expected: total,
        bytes_got: got.bytes,
    });
    Ok(())
}

fn run_echo(ctx: &mut Proxy, t: &mut Trial, variant: &str, mut relay: Relay) -> Result<()> {
    // --requests is per point: the repeats share it, so the point's merged histogram holds at
    // least that many round trips.
    let msg = t.point.num("msg") as usize;
    let n = ctx
        .started
        .entry((variant.to_string(), t.point.label()))
        .or_insert(0);
    *n += 1;
    let warmup = *n <= ctx.warmup;
    let mut requests = ctx.args.requests.div_ceil(ctx.repeat as u64);
    if warmup {
        requests = requests.min(WARMUP_REQUESTS);
    }
    let relay::Ends {
        a,
        b,
        client,
        server,
    } = relay::ends(t.remote, t.cpus.1, msg, true)?;
    let reset = FaultSpec::for_variant(&ctx.fault, variant);
    let cl = EchoClient::spawn(client, t.cpus.1, msg, requests, t.clock, reset)?;
    let mut relay_hist = None;
    let res = t.measure(
        "one request relayed (client -> server, then the reply back), in the relay",
        |rec| {
            relay::echo(&mut relay, &a, &b, msg, requests, rec)?;
            relay_hist = Some(rec.histogram().clone());
            Ok(Done {
                bytes: 2 * requests * msg as u64,
                ops: requests,
            })
        },
    );
    let _ = b.shutdown(Shutdown::Both);
    let _ = a.shutdown(Shutdown::Both);
    drop((a, b));
    let echoed = cl.join();
    let served = server.join();
    res?;
    let echoed = echoed.context("client failed")?;
    let served = served.context("server failed")?;
    record_peers(t, echoed.usage, &served);
    t.set_histogram(
        "step",
        "one request's round trip client -> relay -> server -> relay -> client, measured in the client thread (the relay is the measured thread for CPU; its own per-request time is the `relay` histogram)",
        echoed.rtt,
    );
    if let Some(h) = relay_hist {
        t.set_histogram(
            "relay",
            "one request relayed (client -> server, then the reply back), in the relay thread",
            h,
        );
    }
    t.set_integrity(Integrity {
        ok: echoed.mismatches == 0 && echoed.requests == requests,
        method: "every echoed message compared with what the client sent".into(),
        expected: format!("{requests} requests, 0 mismatches"),
        got: format!(
            "{} requests, {} mismatches",
            echoed.requests, echoed.mismatches
        ),
        bytes_expected: requests * msg as u64,
        bytes_got: echoed.bytes,
    });
    Ok(())
}
