//! # socket_to_file: persisting what a TCP peer sends, as a Kafka broker stores what producers send
//!
//! **Question.** Which path moves bytes from a socket into a file with the least time, CPU and
//! system calls: recv+write through a user buffer (two copies), splice through a pipe (no copy
//! to user space), receiving straight into a shared mapping of the file (one copy, no write
//! call — the seeds' "mmap for producer data"), or their io_uring counterparts — and what an
//! fsync policy (none, at the end, every N MiB: Kafka's flush settings) costs on top?
//!
//! **Set-up.** A sender thread pinned to the peer CPU streams a known byte pattern over a
//! loopback TCP connection; the measured thread, pinned to the first CPU, receives it and
//! persists it to a new file in `--workdir`. The sender's own CPU usage is measured in its
//! thread and subtracted. After the clock stops, the file is read back and its xxh3-64 and
//! length are checked against the stream's.
//!
//! **Two hosts.** With `--peer HOST[:PORT]` the sender runs in `zclab serve` on that host
//! (pinned to the peer CPU there) and the stream crosses the link between the hosts; the
//! receiving, persisting side stays here and is measured as before. The sender's CPU time is
//! measured there and recorded as `peer_user_ns`/`peer_sys_ns` (nothing is subtracted here);
//! the file read back is checked against the xxh3-64 of the pattern, computed here, and the
//! server's own hash of what it sent. `ZCLAB_FAULT` (a local sender's reset) does not apply.
//!
//! **Variants.** See `VARIANTS`. One latency sample is one step: one receive of up to CHUNK bytes
//! (whatever the socket holds) and the write of what it returned, or one io_uring submission
//! that writes the previous step's bytes and receives the next (double buffering), or one
//! receive into the mapping. A step that issues an fsync includes it.
//!
//! **Parameters.** `--sizes` (bytes per transfer), `--chunks` (bytes per step), `--fsync`
//! (policies: `none`, `end`, `every:N` with N in MiB; classic variants call fsync(2), the
//! mapping variant msync(2) MS_SYNC, io_uring variants IORING_OP_FSYNC), `--pipe-size`,
//! `--send-size` (the sender's write size), `--workdir`.
//!
//! **Minimum kernel.** classic: any 2.6.17+; uring-recv-write 5.6 (IORING_OP_RECV/WRITE);
//! uring-recv-write-fixed 5.1 (READ_FIXED on a socket, WRITE_FIXED); uring-splice 5.7.

use anyhow::{Context, Result};
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use zclab::catalog::{Entry, socket_to_file as names};
use zclab::harness::{self, CommonArgs, Done, Experiment, Plan, Point, Trial, Variant};
use zclab::loops::sock_file::{self, Fsync, Persisted, SockToFile};
use zclab::loops::tcp;
use zclab::loops::{common, files};
use zclab::measure::Recorder;
use zclab::net::peers::{self, FaultSpec, PatternStream, Streamer, tcp_pair};
use zclab::net::remote::{self, PeerAddr, RemoteTcp};
use zclab::results::Integrity;
use zclab::ring::{Ring, RingConfig};
use zclab::sys::file::hash_file;
use zclab::sys::pipe::pipe_with_size;
use zclab::units;
use zclab::uring::sock::Take;

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<SocketToFile>] = harness::variants![
    names::CLASSIC_RECV_WRITE => classic_recv_write, [], "read(2) up to a chunk from the socket into a buffer, write(2) it to the file";
    names::CLASSIC_SPLICE => classic_splice, [], "splice(2) socket -> pipe, then splice(2) pipe -> file: no copy to user space";
    names::CLASSIC_RECV_MMAP => classic_recv_mmap, [], "ftruncate(2)+mmap(2) MAP_SHARED the file, read(2) from the socket straight into the mapping";
    names::URING_RECV_WRITE => uring_recv_write, [op(Recv), op(Write), op(Fsync)], "IORING_OP_WRITE of the previous chunk + IORING_OP_RECV of the next, one submission per step";
    names::URING_RECV_WRITE_FIXED => uring_recv_write_fixed, [op(ReadFixed), op(WriteFixed), op(Fsync)], "IORING_OP_READ_FIXED on the socket into a registered buffer + IORING_OP_WRITE_FIXED of the previous one";
    names::URING_SPLICE => uring_splice, [op(Splice), op(Fsync)], "IORING_OP_SPLICE pipe -> file of the previous chunk + IORING_OP_SPLICE socket -> pipe of the next";
];

#[derive(clap::Args, Debug)]
struct Args {
    /// Bytes per transfer, comma-separated (K/M/G powers of 1024, KB/MB/GB powers of 1000).
    #[arg(long, default_value = "64MiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Bytes received per step (receive buffer, splice length), comma-separated.
    #[arg(long, default_value = "4KiB,64KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    chunks: Vec<u64>,
    /// fsync policies, comma-separated: `none` (page cache only), `end` (once after the last
    /// byte), `every:N` (every N MiB, and at the end).
    #[arg(long, default_value = "none,end", value_delimiter = ',', value_parser = Fsync::parse)]
    fsync: Vec<Fsync>,
    /// Pipe capacity for the splice variants (F_SETPIPE_SZ); default twice the chunk, at least
    /// 64 KiB (io_uring splices the next chunk in while the previous drains).
    #[arg(long, value_parser = harness::size_arg)]
    pipe_size: Option<u64>,
    /// The sender's write size.
    #[arg(long, default_value = "256KiB", value_parser = harness::size_arg)]
    send_size: u64,
    /// Directory for the received files (created there, removed after each trial).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    workdir: PathBuf,
    /// Run the sender on another host, in `zclab serve` there (HOST[:PORT], default port
    /// 7878); the receiving side, measured, stays here.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = remote::parse_peer)]
    peer: Option<PeerAddr>,
}

struct SocketToFile {
    args: Args,
    fault: Option<FaultSpec>,
    stream: Option<PatternStream>,
    /// xxh3-64 of the pattern stream by size, for a remote sender (nothing held in memory).
    remote_hash: Option<(u64, u64)>,
}

impl Experiment for SocketToFile {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, _common: &CommonArgs) -> Result<Plan<Self>> {
        files::workdir_exists(&args.workdir).map_err(harness::usage)?;
        if let Some(&s) = args.sizes.iter().find(|&&s| s > (8 << 30)) {
            return Err(harness::usage(format!(
                "size {} is too large: the stream is held in memory (at most 8 GiB)",
                units::fmt_size(s)
            )));
        }
        let fault =
            FaultSpec::from_env_for(names::VARIANTS).map_err(|e| harness::usage(e.to_string()))?;
        if fault.is_some() && args.peer.is_some() {
            return Err(harness::usage(peers::fault_with_peer("sender")));
        }
        let fsync: Vec<String> = args.fsync.iter().map(Fsync::label).collect();
        let parameters = json!({
            "sizes": args.sizes, "chunks": args.chunks, "fsync": fsync, "pipe_size": args.pipe_size,
            "send_size": args.send_size, "workdir": args.workdir,
            "path": if args.peer.is_some() { "remote-tcp" } else { "tcp-loopback" },
            "peer": args.peer.as_ref().map(|p| p.text.clone()),
            "fsync_calls": {"classic-*": "fsync(2)", "classic-recv-mmap": "msync(2) MS_SYNC", "uring-*": "IORING_OP_FSYNC"},
            "fault": fault.as_ref().map(|f| format!("{f:?}")),
        });
        let mut points = Vec::new();
        for &s in &args.sizes {
            for &c in &args.chunks {
                for f in &fsync {
                    points.push(
                        Point::new()
                            .size("size", s)
                            .size("chunk", c)
                            .text("fsync", f),
                    );
                }
            }
        }
        let ctx = SocketToFile {
            args,
            fault,
            stream: None,
            remote_hash: None,
        };
        Ok(Plan::new(ctx, points, parameters))
    }

    fn peer_addr(&self) -> Option<&PeerAddr> {
        self.args.peer.as_ref()
    }
}

fn main() -> ExitCode {
    harness::run::<SocketToFile>()
}

fn classic_recv_write(ctx: &mut SocketToFile, t: &mut Trial) -> Result<()> {
    let mut buf = vec![0u8; t.point.num("chunk") as usize];
    run_trial(
        ctx,
        t,
        names::CLASSIC_RECV_WRITE,
        "one read(2) of up to a chunk from the socket + write(2) of it to the file",
        |x, rec| sock_file::recv_write(x, &mut buf, rec),
    )
}

fn classic_splice(ctx: &mut SocketToFile, t: &mut Trial) -> Result<()> {
    let (pr, pw, cap) = pipe_with_size(pipe_size(ctx, t))?;
    run_trial(
        ctx,
        t,
        names::CLASSIC_SPLICE,
        "one splice(2) socket -> pipe of up to a chunk + splice(2) pipe -> file of those bytes",
        |x, rec| sock_file::splice_to_file(x, (&pr, &pw, cap), rec),
    )?;
    t.set_extra("pipe_bytes", cap as f64);
    Ok(())
}

fn classic_recv_mmap(ctx: &mut SocketToFile, t: &mut Trial) -> Result<()> {
    run_trial(
        ctx,
        t,
        names::CLASSIC_RECV_MMAP,
        "one read(2) of up to a chunk from the socket straight into the mapped file (the first \
         sample includes ftruncate+mmap)",
        sock_file::recv_mmap,
    )?;
    t.set_extra("mapped_bytes", t.point.num("size") as f64);
    Ok(())
}

fn uring_recv_write(ctx: &mut SocketToFile, t: &mut Trial) -> Result<()> {
    let r = common::ring(t, &RingConfig::tuned(8))?;
    uring_move(
        ctx,
        t,
        names::URING_RECV_WRITE,
        "one io_uring_enter: WRITE of the previous chunk (+ linked FSYNC when due) and RECV of the next, both waited for",
        r,
        Take::Recv,
    )
}

fn uring_recv_write_fixed(ctx: &mut SocketToFile, t: &mut Trial) -> Result<()> {
    let chunk = t.point.num("chunk") as usize;
    let r = common::ring_with_buffers(t, &RingConfig::tuned(8), 2, chunk)?;
    uring_move(
        ctx,
        t,
        names::URING_RECV_WRITE_FIXED,
        "one io_uring_enter: WRITE_FIXED of the previous registered buffer (+ linked FSYNC when due) and READ_FIXED from the socket into the other",
        r,
        Take::Fixed,
    )
}

fn uring_splice(ctx: &mut SocketToFile, t: &mut Trial) -> Result<()> {
    let r = common::ring(t, &RingConfig::tuned(8))?;
    let (pr, pw, cap) = pipe_with_size(pipe_size(ctx, t))?;
    if cap < t.point.num("chunk") as usize {
        return Err(harness::skip_point(format!(
            "the pipe holds {cap} B, less than the chunk"
        )));
    }
    uring_move(
        ctx,
        t,
        names::URING_SPLICE,
        "one io_uring_enter: SPLICE pipe -> file of the previous chunk (+ linked FSYNC when due) and SPLICE socket -> pipe of the next",
        r,
        Take::Splice {
            pipe_r: pr.as_raw_fd(),
            pipe_w: pw.as_raw_fd(),
        },
    )?;
    t.set_extra("pipe_bytes", cap as f64);
    Ok(())
}

fn pipe_size(ctx: &SocketToFile, t: &Trial) -> usize {
    ctx.args
        .pipe_size
        .map_or((2 * t.point.num("chunk") as usize).max(64 << 10), |p| {
            p as usize
        })
}

/// The io_uring variants: a Mover from the socket to the file, one step per submission.
fn uring_move(
    ctx: &mut SocketToFile,
    t: &mut Trial,
    variant: &str,
    step: &str,
    mut r: Ring,
    take: Take,
) -> Result<()> {
    run_trial(ctx, t, variant, step, |x, rec| {
        sock_file::uring_to_file(x, &mut r, take, rec)
    })
}

/// The received file, removed when the trial ends.
struct OutFile {
    path: PathBuf,
}

impl Drop for OutFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The sending end: a thread here, or `zclab serve` on the --peer host.
enum Sender {
    Local(Streamer),
    Remote(RemoteTcp),
}

/// One trial's fixture: the receiving socket, the sender, the output file.
struct Fixture {
    sock: TcpStream,
    sender: Sender,
    file: File,
    out: OutFile,
    size: u64,
    chunk: usize,
    fsync: Fsync,
    hash: u64,
}

fn fixture(ctx: &mut SocketToFile, t: &Trial, variant: &str) -> Result<Fixture> {
    let (size, chunk) = (t.point.num("size"), t.point.num("chunk") as usize);
    let fsync = Fsync::parse(t.point.str("fsync")).map_err(anyhow::Error::msg)?;
    let path = ctx.args.workdir.join(format!(
        "zclab-{}-{}-{variant}.dat",
        names::NAME,
        std::process::id()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let out = OutFile { path };
    let (sock, sender, hash) = match t.remote {
        Some(p) => {
            if ctx.remote_hash.is_none_or(|(s, _)| s != size) {
                ctx.remote_hash = Some((size, remote::pattern_hash(size)));
            }
            let r = p.tcp_source(Some(t.cpus.1 as u32), size, ctx.args.send_size)?;
            let sock = r.stream.try_clone()?;
            let hash = ctx.remote_hash.expect("just set").1;
            (sock, Sender::Remote(r), hash)
        }
        None => {
            let ps = tcp::pattern(&mut ctx.stream, size);
            let (tx, rx) = tcp_pair().context("cannot open a loopback TCP connection")?;
            let reset = FaultSpec::for_variant(&ctx.fault, variant);
            let sender = Streamer::spawn(
                tx,
                t.cpus.1,
                ps.data.clone(),
                ctx.args.send_size as usize,
                reset,
            )
            .context("cannot start the sender thread")?;
            (rx, Sender::Local(sender), ps.hash)
        }
    };
    Ok(Fixture {
        sock,
        sender,
        file,
        out,
        size,
        chunk,
        fsync,
        hash,
    })
}

/// Runs `body` as the measured part, then closes the socket, collects the sender's usage and
/// checks the file against the stream; a failed trial's error says so when the --peer host went
/// away.
fn run_trial(
    ctx: &mut SocketToFile,
    t: &mut Trial,
    variant: &str,
    step: &str,
    body: impl FnOnce(&SockToFile, &mut Recorder) -> Result<Persisted>,
) -> Result<()> {
    let remote = t.remote;
    let r: Result<()> = (|| {
        let fx = fixture(ctx, t, variant)?;
        let mut stats = Persisted::default();
        let size = fx.size;
        let res = t.measure(step, |rec| {
            let x = SockToFile {
                sock: &fx.sock,
                file: &fx.file,
                size,
                chunk: fx.chunk,
                fsync: fx.fsync,
            };
            stats = body(&x, rec)?;
            Ok(Done {
                bytes: size,
                ops: stats.steps,
            })
        });
        let Fixture {
            sock,
            sender,
            file,
            out,
            hash,
            ..
        } = fx;
        drop(sock);
        drop(file);
        let remote_sent = match sender {
            Sender::Local(s) => {
                let sent = s.join();
                res?;
                t.set_peer(sent.context("sender failed")?.usage);
                None
            }
            Sender::Remote(mut r) => {
                let rep = if res.is_ok() { Some(r.wait()) } else { None };
                drop(r); // a failed trial: the server's side is torn down and reported
                res?;
                let rep = rep
                    .expect("waited when the trial went well")
                    .context("sender failed")?;
                t.set_remote_peer(rep.usage);
                for (k, v) in rep.peer_extras() {
                    t.set_extra(k, v);
                }
                Some(rep)
            }
        };
        t.set_extra("fsyncs", stats.syncs as f64);
        let got_len = std::fs::metadata(&out.path)?.len();
        let got = hash_file(&out.path).context("cannot read the received file back")?;
        // A remote sender also says what it sent: the same pattern, all of it.
        let sent_ok = remote_sent.as_ref().is_none_or(|r| {
            r.bytes == size && r.hash.as_deref().and_then(remote::parse_hex64) == Some(hash)
        });
        t.set_integrity(Integrity {
        ok: got == hash && got_len == size && sent_ok,
        method: if remote_sent.is_some() {
            "xxh3-64 of the file read back after the clock stopped, against the pattern's and the peer host's hash of what it sent".into()
        } else {
            "xxh3-64 of the file read back after the clock stopped".into()
        },
        expected: format!("{hash:016x}"),
        got: format!("{got:016x}"),
        bytes_expected: size,
        bytes_got: got_len,
    });
        Ok(())
    })();
    match (remote, r) {
        (Some(p), Err(e)) if e.downcast_ref::<harness::Skip>().is_none() => Err(p.explain(e)),
        (_, r) => r,
    }
}
