//! # file_to_socket: serving a file to a TCP client, as Kafka serves consumers
//!
//! **Question.** Which path moves a file from the page cache to a socket with the least time,
//! CPU and system calls: the traditional read+write (two CPU copies, four user/kernel switches
//! per chunk, in the seeds' words), mmap+write, sendfile, splice, or their io_uring
//! counterparts — and does io_uring's zero-copy send avoid the copy on this path?
//!
//! **Set-up.** A file of known content is sent over a loopback TCP connection to a peer thread
//! pinned to the other CPU, which receives into user space and hashes the stream; every trial
//! checks that hash against the file's. The measured thread is pinned to the first CPU.
//!
//! **Variants.** See `VARIANTS` below: `classic-*` use plain system calls, `uring-*` io_uring.
//! One latency sample is one step: one read+write pair, one write from the mapping, one
//! sendfile call, one splice pair, or one io_uring submission to its completion.
//!
//! **Parameters.** `--sizes` (file sizes), `--chunks` (bytes per step), `--cache warm|cold`
//! (cold drops the file's pages with posix_fadvise before each trial), `--pipe-size`,
//! `--pool` (zero-copy buffers), `--nodelay`, `--workdir`.
//!
//! **Minimum kernel.** classic: any 2.6.33+; uring-read-send 5.6 (IORING_OP_READ/SEND);
//! uring-splice 5.7; uring-send-zc-fixed 6.0 (IORING_OP_SEND_ZC), usage reporting 6.2.

use anyhow::{Context, Result};
use clap::Parser;
use nix::fcntl::{SpliceFFlags, splice};
use serde_json::json;
use std::fs::File;
use std::io::Write;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use zclab::harness::{self, CommonArgs, Done, Lab, Need, Point, Trial, Variant};
use zclab::measure::Recorder;
use zclab::net::LoopbackTcp;
use zclab::results::Integrity;
use zclab::ring::{Ring, RingConfig};
use zclab::sys::file::{PatternFile, map_readonly};
use zclab::sys::pipe::pipe_with_size;
use zclab::uring::{self, Fd, zc::ZcSender};

const NAME: &str = "file_to_socket";

#[derive(Parser, Debug)]
#[command(name = NAME, about = "Serve a file to a TCP peer over loopback: read+write, mmap, sendfile, splice, io_uring")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// File sizes to send, comma-separated (e.g. 64KiB,1MiB,64MiB; K/M/G are powers of 1024,
    /// KB/MB/GB powers of 1000).
    #[arg(long, default_value = "64KiB,1MiB,64MiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Bytes moved per step (read/write buffer, sendfile count, splice length), comma-separated.
    /// 4 KiB is what the published read+send measurements used.
    #[arg(long, default_value = "4KiB,256KiB", value_delimiter = ',', value_parser = harness::size_arg)]
    chunks: Vec<u64>,
    /// Page cache state of the file when a trial starts.
    #[arg(long, value_enum, default_value_t = Cache::Warm)]
    cache: Cache,
    /// Pipe capacity for the splice variants (F_SETPIPE_SZ); default: the chunk size, at least 4 KiB.
    #[arg(long, value_parser = harness::size_arg)]
    pipe_size: Option<u64>,
    /// Registered buffers in the zero-copy pool (a buffer is reused only after its notification).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pool: u32,
    /// TCP_NODELAY on the sending socket (`--nodelay false` leaves Nagle on). On by default:
    /// one-at-a-time zero-copy sends with Nagle on stall on the peer's delayed ACK.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    nodelay: bool,
    /// Directory for the files to send (created there, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    workdir: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Cache {
    Warm,
    Cold,
}

struct Ctx {
    args: Args,
    /// The current file; replaced when a point needs another size.
    file: Option<PatternFile>,
}

impl Ctx {
    fn file(&mut self, size: u64) -> Result<&PatternFile> {
        if self.file.as_ref().is_none_or(|f| f.size != size) {
            self.file = None; // remove the previous file first: it may be large
            let path = self
                .args
                .workdir
                .join(format!("zclab-{NAME}-{}-{size}.dat", std::process::id()));
            self.file = Some(
                PatternFile::create(&path, size)
                    .with_context(|| format!("cannot create the {size}-byte source file"))?,
            );
        }
        Ok(self.file.as_ref().expect("just set"))
    }
}

const VARIANTS: &[Variant<Ctx>] = &[
    Variant {
        name: "classic-read-write",
        about: "pread(2) a chunk into a buffer, write(2) it to the socket",
        needs: &[],
        run: classic_read_write,
    },
    Variant {
        name: "classic-mmap-write",
        about: "mmap(2) the file, write(2) each chunk from the mapping",
        needs: &[],
        run: classic_mmap_write,
    },
    Variant {
        name: "classic-sendfile",
        about: "sendfile(2) file -> socket, one call per chunk",
        needs: &[],
        run: classic_sendfile,
    },
    Variant {
        name: "classic-splice",
        about: "splice(2) file -> pipe -> socket, one pair per chunk",
        needs: &[],
        run: classic_splice,
    },
    Variant {
        name: "uring-read-send",
        about: "IORING_OP_READ linked to IORING_OP_SEND, one submission per chunk",
        needs: &[Need::Op("READ"), Need::Op("SEND")],
        run: uring_read_send,
    },
    Variant {
        name: "uring-read-fixed-send",
        about: "IORING_OP_READ_FIXED into a registered buffer linked to IORING_OP_SEND",
        needs: &[Need::Op("READ_FIXED"), Need::Op("SEND")],
        run: uring_read_fixed_send,
    },
    Variant {
        name: "uring-splice",
        about: "two linked IORING_OP_SPLICE: file -> pipe -> socket",
        needs: &[Need::Op("SPLICE")],
        run: uring_splice,
    },
    Variant {
        name: "uring-send-zc-fixed",
        about: "IORING_OP_READ_FIXED linked to IORING_OP_SEND_ZC from registered buffers, with usage reporting",
        needs: &[Need::Op("READ_FIXED"), Need::Op("SEND_ZC")],
        run: uring_send_zc_fixed,
    },
];

fn main() -> ExitCode {
    harness::main(NAME, || {
        let args = Args::parse();
        if args.common.list {
            let caps = zclab::caps::probe(&args.workdir);
            print!("{}", harness::list_variants(NAME, VARIANTS, &caps));
            return Ok(ExitCode::SUCCESS);
        }
        if !args.workdir.is_dir() {
            anyhow::bail!("work directory {} does not exist", args.workdir.display());
        }
        let params = json!({
            "sizes": args.sizes, "chunks": args.chunks, "cache": args.cache, "pipe_size": args.pipe_size,
            "pool": args.pool, "nodelay": args.nodelay, "workdir": args.workdir, "path": "tcp-loopback",
        });
        let points: Vec<Point> = args
            .sizes
            .iter()
            .flat_map(|&s| {
                args.chunks
                    .iter()
                    .map(move |&c| Point::new().size("size", s).size("chunk", c))
            })
            .collect();
        let mut lab = Lab::open(NAME, &args.common, params)?;
        let mut ctx = Ctx { args, file: None };
        lab.run(VARIANTS, &points, &mut ctx)
    })
}

/// Runs one transfer of the point's file: opens the file and the connection, applies the cache
/// policy, then times `step` over the file chunk by chunk (one latency sample per step), waits
/// for the peer to receive the last byte, and records the peer's usage and the integrity check.
/// `step(rec_unused, file, sock, off, len)` moves up to `len` bytes at `off` and returns how many.
fn transfer(
    ctx: &mut Ctx,
    t: &mut Trial,
    step_name: &str,
    mut step: impl FnMut(&File, &TcpStream, u64, usize) -> Result<usize>,
) -> Result<()> {
    let (size, chunk) = (t.point.num("size"), t.point.num("chunk") as usize);
    let (nodelay, cold) = (ctx.args.nodelay, ctx.args.cache == Cache::Cold);
    let pf = ctx.file(size)?;
    let (path, hash) = (pf.path.clone(), pf.hash);
    if cold {
        pf.drop_cache()?;
    }
    let file = File::open(&path)?;
    let mut conn = LoopbackTcp::connect(t.cpus.1, chunk.max(128 << 10), nodelay)?;
    let mut received = None;
    t.measure(step_name, |rec: &mut Recorder| {
        let mut off = 0u64;
        let mut steps = 0u64;
        let mut s = rec.now();
        while off < size {
            let len = chunk.min((size - off) as usize);
            let n = step(&file, &conn.sender, off, len)
                .with_context(|| format!("sending to the peer at byte {off} of {size}"))?;
            if n == 0 {
                anyhow::bail!("source file ended early at {off} of {size} bytes");
            }
            off += n as u64;
            steps += 1;
            s = rec.record_since(s);
        }
        received = Some(conn.finish().context("peer failed")?);
        Ok(Done {
            bytes: size,
            ops: steps,
        })
    })?;
    let r = received.expect("measure returned Ok");
    t.set_peer(r.usage);
    t.set_integrity(Integrity {
        ok: r.bytes == size && r.hash == hash,
        method: "xxh3-64 of the received stream".into(),
        expected: format!("{hash:016x}"),
        got: format!("{:016x}", r.hash),
        bytes_expected: size,
        bytes_got: r.bytes,
    });
    Ok(())
}

fn classic_read_write(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut buf = vec![0u8; t.point.num("chunk") as usize];
    transfer(ctx, t, "one pread + one write", |f, mut s, off, len| {
        let n = f.read_at(&mut buf[..len], off)?;
        s.write_all(&buf[..n])?;
        Ok(n)
    })
}

fn classic_mmap_write(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut map = None;
    transfer(
        ctx,
        t,
        "one write from the mapping",
        |f, mut s, off, len| {
            if map.is_none() {
                map = Some(map_readonly(f)?); // mapped once, inside the clock, as a server would
            }
            let m = map.as_ref().expect("just mapped");
            let end = (off as usize + len).min(m.len());
            s.write_all(&m[off as usize..end])?;
            Ok(end - off as usize)
        },
    )
}

fn classic_sendfile(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    transfer(ctx, t, "one sendfile", |f, s, off, len| {
        let mut o = off as i64;
        let mut moved = 0;
        while moved < len {
            match nix::sys::sendfile::sendfile64(s.as_fd(), f.as_fd(), Some(&mut o), len - moved)? {
                0 => break,
                n => moved += n,
            }
        }
        Ok(moved)
    })
}

fn pipe_size(ctx: &Ctx, t: &Trial) -> usize {
    ctx.args
        .pipe_size
        .map_or((t.point.num("chunk") as usize).max(4096), |p| p as usize)
}

fn classic_splice(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let (pr, pw, cap) = pipe_with_size(pipe_size(ctx, t))?;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
    transfer(ctx, t, "one splice pair", |f, s, off, len| {
        let mut o = off as i64;
        let n = splice(f.as_fd(), Some(&mut o), &pw, None, len.min(cap), flags)?;
        let mut out = 0;
        while out < n {
            match splice(&pr, None, s.as_fd(), None, n - out, flags)? {
                0 => anyhow::bail!("splice to socket moved 0 bytes: peer closed"),
                m => out += m,
            }
        }
        Ok(n)
    })
}

fn ring(t: &mut Trial, cfg: &RingConfig) -> Result<Ring> {
    let r = Ring::new(cfg).map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    Ok(r)
}

fn uring_read_send(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, &RingConfig::tuned(8))?;
    let mut buf = vec![0u8; t.point.num("chunk") as usize];
    transfer(
        ctx,
        t,
        "one READ+SEND submission to completion",
        |f, s, off, len| {
            Ok(uring::read_send(
                &mut r,
                Fd::Raw(f.as_raw_fd()),
                off,
                &mut buf[..len],
                Fd::Raw(s.as_raw_fd()),
            )?)
        },
    )
}

fn uring_read_fixed_send(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, &RingConfig::tuned(8))?;
    r.register_buffers(1, t.point.num("chunk") as usize)
        .map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    transfer(
        ctx,
        t,
        "one READ_FIXED+SEND submission to completion",
        |f, s, off, len| {
            Ok(uring::read_fixed_send(
                &mut r,
                Fd::Raw(f.as_raw_fd()),
                off,
                0,
                len,
                Fd::Raw(s.as_raw_fd()),
            )?)
        },
    )
}

fn uring_splice(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, &RingConfig::tuned(8))?;
    let (pr, pw, cap) = pipe_with_size(pipe_size(ctx, t))?;
    transfer(
        ctx,
        t,
        "one SPLICE+SPLICE submission to completion",
        |f, s, off, len| {
            Ok(uring::splice_pair(
                &mut r,
                Fd::Raw(f.as_raw_fd()),
                off,
                pr.as_raw_fd(),
                pw.as_raw_fd(),
                Fd::Raw(s.as_raw_fd()),
                len.min(cap) as u32,
            )?)
        },
    )
}

fn uring_send_zc_fixed(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut r = ring(t, &RingConfig::tuned(64))?;
    r.register_buffers(ctx.args.pool as usize, t.point.num("chunk") as usize)
        .map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    let report = t.caps.io_uring.send_zc_report_usage == Some(true);
    let mut zc = ZcSender::new(&r, true, report, t.clock);
    let size = t.point.num("size");
    let mut sent = 0u64;
    transfer(
        ctx,
        t,
        "one READ_FIXED+SEND_ZC submission to its send completion",
        |f, s, off, len| {
            let n = zc.read_fixed_send(
                &mut r,
                Fd::Raw(f.as_raw_fd()),
                off,
                len,
                Fd::Raw(s.as_raw_fd()),
            )?;
            sent += n as u64;
            if sent >= size {
                // The transfer is complete only when the kernel has released every buffer.
                zc.drain(&mut r, Duration::from_secs(10))?;
            }
            Ok(n)
        },
    )?;
    let release = zc.release.take();
    t.set_zc(zc.counts.clone(), Some(release));
    Ok(())
}
