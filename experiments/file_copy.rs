//! # file_copy: copying a file to a new file, every way Linux offers
//!
//! **Question.** Which way of copying a file is fastest, and at what CPU and system-call cost:
//! read+write through a user buffer (from 1 byte at a time, like the seeds' unbuffered Java
//! stream, to 1 MiB), mmap of the source with write(2), both files mapped with memcpy,
//! sendfile(2) file to file, splice(2) through a pipe, copy_file_range(2), or io_uring's
//! read/write and splice? The seeds (Java, 3.8 MB / 394 MB / 800 MB) found transferTo
//! (sendfile) fastest, then 1 KiB buffered streams, then mmap, with 1-byte streams slowest by
//! orders of magnitude.
//!
//! **Set-up.** A source file of the lab's pattern, XOR-ed with a key drawn for the run
//! (`pattern_key` in meta.json), is written and fsynced in `--workdir`, and opened with
//! O_NOATIME where the user may (`noatime` in the results). Each
//! trial creates a new destination file there (O_CREAT|O_TRUNC, before the clock), applies the
//! cache policy to the source (`cache=cold`: posix_fadvise(DONTNEED) first; `cache=warm`: the
//! source is read in if any of it is not cached), then times the copy: mapping the files,
//! pre-sizing the destination, and (with `--fsync`) fsync(2) of the destination are inside
//! the clock; opening the files is not. After the clock stops the destination is read back,
//! its xxh3-64 compared with the source's known hash, and the file removed. The measured
//! thread is pinned to the first `--cpus` CPU.
//!
//! **Steps.** `buf` is the bytes one step moves: the read/write buffer, the length of one
//! write from the mapping or one memcpy between mappings, the count of one sendfile or
//! copy_file_range call, one splice pair's length (the pipe is sized to it), one io_uring
//! chunk. One latency sample is one step (for io_uring read/write, a chunk from its
//! submission to its write's completion, `--depth` chunks in flight). 1-byte steps are run by
//! `classic-read-write` only, and only for sizes up to `--one-byte-max` (3.8 MB by default:
//! the seeds' unbuffered stream took 16.9 s there; at 394 MB it would take half an hour).
//!
//! **copy_file_range.** On the same filesystem it lets the filesystem copy without user
//! memory: a reflink on btrfs/xfs, an in-kernel page-cache copy (splice-based) on ext4 and
//! tmpfs, which have no reflink. The filesystem type is recorded in the parameters (`fs_type`).
//!
//! **Variants.** See `VARIANTS`. **Parameters.** `--sizes` (default 3.8MB,64MiB; the seeds'
//! full set is `--sizes 3.8MB,394MB,800MB`, which also gives the >= 256 MiB points the
//! copy_file_range claim needs), `--bufs`, `--cache warm,cold`, `--fsync`, `--depth`,
//! `--one-byte-max`, `--workdir`. Refused before anything is measured: a source plus
//! destination larger than the work directory's free space.
//!
//! **Minimum kernel.** sendfile to a regular file 2.6.33; copy_file_range 4.5 (across
//! filesystems 5.19); io_uring READ/WRITE 5.6, READ_FIXED/WRITE_FIXED 5.1, SPLICE 5.7.

use anyhow::{Context, Result, bail};
use nix::fcntl::{SpliceFFlags, copy_file_range, splice};
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use zclab::catalog::{Entry, file_copy as names};
use zclab::harness::{self, CommonArgs, Done, Experiment, Plan, Point, Trial, Variant};
use zclab::loops::common;
use zclab::loops::files::{self, Cache, PatternFiles, set_cache};
use zclab::measure::Recorder;
use zclab::results::Integrity;
use zclab::ring::RingConfig;
use zclab::sys::file::{hash_file, map_readonly};
use zclab::sys::filemap::{Presized, map_shared_mut, presize};
use zclab::sys::pipe::pipe_with_size;
use zclab::uring::Fd;
use zclab::uring::file::{Buffers, CopyLoop, OwnedBuffers, copy_read_write, splice_file};

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<FileCopy>] = harness::variants![
    names::CLASSIC_READ_WRITE => classic_read_write, [], "read(2) a buffer from the source, write(2) it to the copy";
    names::CLASSIC_MMAP_WRITE => classic_mmap_write, [], "mmap(2) the source, write(2) each step from the mapping";
    names::CLASSIC_MMAP_MMAP => classic_mmap_mmap, [], "mmap(2) both (copy pre-sized with fallocate(2)), memcpy each step";
    names::CLASSIC_SENDFILE => classic_sendfile, [], "sendfile(2) source -> copy, one call per step";
    names::CLASSIC_SPLICE => classic_splice, [], "splice(2) source -> pipe -> copy, one pair per step";
    names::CLASSIC_COPY_FILE_RANGE => classic_copy_file_range, [], "copy_file_range(2) source -> copy, one call per step";
    names::URING_READ_WRITE => |ctx, t| uring_rw(ctx, t, false), [op(Read), op(Write)], "IORING_OP_READ linked to IORING_OP_WRITE per chunk, --depth chunks in flight";
    names::URING_READ_WRITE_FIXED => |ctx, t| uring_rw(ctx, t, true), [op(ReadFixed), op(WriteFixed)], "IORING_OP_READ_FIXED linked to IORING_OP_WRITE_FIXED, registered buffers";
    names::URING_SPLICE => uring_splice, [op(Splice)], "two linked IORING_OP_SPLICE per step: source -> pipe -> copy";
];

#[derive(clap::Args, Debug)]
struct Args {
    /// File sizes, comma-separated (the seeds': 3.8MB,394MB,800MB; KB/MB/GB are powers of 1000).
    #[arg(long, default_value = "3.8MB,64MiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Bytes per step, comma-separated (1 B runs for classic-read-write at small sizes only).
    #[arg(long, default_value = "1B,1KiB,64KiB,1MiB", value_delimiter = ',', value_parser = harness::size_arg)]
    bufs: Vec<u64>,
    /// Largest file copied 1 byte at a time.
    #[arg(long, default_value = "3.8MB", value_parser = harness::size_arg)]
    one_byte_max: u64,
    /// Page cache state of the source when a trial starts, comma-separated.
    #[arg(long, value_enum, default_value = "warm", value_delimiter = ',')]
    cache: Vec<Cache>,
    /// fsync(2) the destination before the clock stops.
    #[arg(long)]
    fsync: bool,
    /// Chunks in flight for the io_uring read/write variants.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    depth: u32,
    /// Directory for the source and the copies (created there, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    workdir: PathBuf,
}

struct FileCopy {
    args: Args,
    /// The source, made for each size.
    src: PatternFiles,
}

impl Experiment for FileCopy {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, _common: &CommonArgs) -> Result<Plan<Self>> {
        let largest = *args.sizes.iter().max().expect("clap gives at least one");
        let what = format!("copying a {largest}-byte file (source + copy)");
        files::workdir_room(&args.workdir, largest.saturating_mul(2), &what)
            .map_err(harness::usage)?;
        let fs_type = zclab::caps::probe_odirect(&args.workdir).fs_type;
        // A key of this run's own for the source's pattern: a copy holding bytes of any other
        // file (an earlier run's, at the same offsets) fails the check.
        let key = zclab::sys::file::run_key();
        let parameters = json!({
            "sizes": args.sizes, "bufs": args.bufs, "one_byte_max": args.one_byte_max,
            "pattern_key": format!("{key:#018x}"),
            "cache": args.cache, "fsync": args.fsync, "depth": args.depth,
            "workdir": args.workdir, "fs_type": fs_type,
            "copy_file_range_note": "same filesystem: reflink where supported (btrfs, xfs), else an in-kernel page-cache copy (ext4, tmpfs)",
        });
        let fsync = if args.fsync { "yes" } else { "no" };
        let points = files::sweep(&args.sizes, &args.bufs, &args.cache)
            .map(|(size, buf, c)| {
                Point::new()
                    .size("size", size)
                    .size("buf", buf)
                    .text("cache", c.name())
                    .text("fsync", fsync)
            })
            .collect();
        let src =
            PatternFiles::new(&args.workdir, names::NAME, "src", "source file", 0).with_key(key);
        Ok(Plan::new(FileCopy { args, src }, points, parameters))
    }
}

fn main() -> ExitCode {
    harness::run::<FileCopy>()
}

/// The files of one trial, opened before the clock starts.
struct Files {
    src: File,
    dst: File,
    size: u64,
    buf: usize,
    hash: u64,
    dst_path: PathBuf,
    /// Whether the source was opened with O_NOATIME (open(2): the owner or CAP_FOWNER).
    noatime: bool,
}

/// Skips 1-byte steps for every variant but classic-read-write, and for it above
/// `--one-byte-max`.
fn one_byte_rule(ctx: &FileCopy, t: &Trial, variant_does_one_byte: bool) -> Result<()> {
    if t.point.num("buf") != 1 {
        return Ok(());
    }
    if !variant_does_one_byte {
        return Err(harness::skip_point(
            "1-byte steps are the seeds' unbuffered-stream case: only classic-read-write runs them",
        ));
    }
    let size = t.point.num("size");
    if size > ctx.args.one_byte_max {
        return Err(harness::skip_point(format!(
            "1 byte at a time is two system calls per byte: {size} B would take minutes (limit --one-byte-max {} B)",
            ctx.args.one_byte_max
        )));
    }
    Ok(())
}

/// Prepares the source (cache policy) and a new, empty destination.
fn open_files(ctx: &mut FileCopy, t: &mut Trial, dst_read: bool) -> Result<Files> {
    let (size, buf) = (t.point.num("size"), t.point.num("buf") as usize);
    let cache = Cache::named(t.point.str("cache"));
    let workdir = ctx.args.workdir.clone();
    let pf = ctx.src.get(size)?;
    set_cache(pf, cache)?;
    let (src, noatime) = zclab::sys::direct::open_read(&pf.path, false)?;
    let dst_path = workdir.join(format!("zclab-{}-{}.copy", names::NAME, std::process::id()));
    let dst = OpenOptions::new()
        .read(dst_read)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&dst_path)
        .map_err(|e| zclab::results::named(e, "cannot create", &dst_path))?;
    Ok(Files {
        src,
        dst,
        size,
        buf,
        hash: pf.hash,
        dst_path,
        noatime,
    })
}

/// Times `copy(files, rec) -> steps` as the trial, fsyncs inside the clock if asked, then
/// checks and removes the copy.
fn timed(
    ctx: &mut FileCopy,
    t: &mut Trial,
    step: &str,
    dst_read: bool,
    copy: impl FnOnce(&Files, &mut Recorder) -> Result<u64>,
) -> Result<()> {
    let f = open_files(ctx, t, dst_read)?;
    let fsync = ctx.args.fsync;
    let res = t.measure(step, |rec| {
        let steps = copy(&f, rec)?;
        if fsync {
            f.dst.sync_all().context("fsync of the copy")?;
        }
        Ok(Done {
            bytes: f.size,
            ops: steps,
        })
    });
    let check = (|| -> Result<(u64, u64)> {
        res?;
        let len = f.dst.metadata()?.len();
        Ok((len, hash_file(&f.dst_path)?))
    })();
    let _ = std::fs::remove_file(&f.dst_path);
    let (len, got) = check?;
    t.set_integrity(Integrity {
        ok: len == f.size && got == f.hash,
        method: "xxh3-64 of the copy, read back after the clock stopped, vs the source's (this run's keyed pattern)".into(),
        expected: format!("{:016x}", f.hash),
        got: format!("{got:016x}"),
        bytes_expected: f.size,
        bytes_got: len,
    });
    t.set_flag("noatime", f.noatime);
    Ok(())
}

/// Runs `step(off, len) -> moved` over the file, one latency sample per step.
fn steps(
    f: &Files,
    rec: &mut Recorder,
    step: impl FnMut(u64, usize) -> Result<usize>,
) -> Result<u64> {
    files::by_steps(f.size, f.buf, rec, step)
}

fn classic_read_write(ctx: &mut FileCopy, t: &mut Trial) -> Result<()> {
    one_byte_rule(ctx, t, true)?;
    let mut buf = vec![0u8; t.point.num("buf") as usize];
    timed(ctx, t, "one read + one write", false, |f, rec| {
        let (mut src, mut dst) = (&f.src, &f.dst);
        steps(f, rec, |_, len| {
            let n = src.read(&mut buf[..len])?;
            dst.write_all(&buf[..n])?;
            Ok(n)
        })
    })
}

fn classic_mmap_write(ctx: &mut FileCopy, t: &mut Trial) -> Result<()> {
    one_byte_rule(ctx, t, false)?;
    timed(ctx, t, "one write from the mapping", false, |f, rec| {
        let map = map_readonly(&f.src)?; // inside the clock: mapping is part of the method
        let mut dst = &f.dst;
        steps(f, rec, |off, len| {
            dst.write_all(&map[off as usize..off as usize + len])?;
            Ok(len)
        })
    })
}

fn classic_mmap_mmap(ctx: &mut FileCopy, t: &mut Trial) -> Result<()> {
    one_byte_rule(ctx, t, false)?;
    let mut how = Presized::Fallocate;
    timed(ctx, t, "one memcpy between the mappings", true, |f, rec| {
        let src = map_readonly(&f.src)?;
        how = presize(&f.dst, f.size)?;
        let mut dst = map_shared_mut(&f.dst)?;
        let n = steps(f, rec, |off, len| {
            let r = off as usize..off as usize + len;
            dst[r.clone()].copy_from_slice(&src[r]);
            Ok(len)
        })?;
        drop(dst); // munmap inside the clock; fsync (if asked) writes the dirty pages back
        Ok(n)
    })?;
    t.set_flag("presized_with_fallocate", how == Presized::Fallocate);
    Ok(())
}

fn classic_sendfile(ctx: &mut FileCopy, t: &mut Trial) -> Result<()> {
    one_byte_rule(ctx, t, false)?;
    timed(ctx, t, "one sendfile", false, |f, rec| {
        let mut o = 0i64;
        steps(f, rec, |_, len| {
            Ok(nix::sys::sendfile::sendfile64(
                f.dst.as_fd(),
                f.src.as_fd(),
                Some(&mut o),
                len,
            )?)
        })
    })
}

fn classic_splice(ctx: &mut FileCopy, t: &mut Trial) -> Result<()> {
    one_byte_rule(ctx, t, false)?;
    let (pr, pw, cap) = pipe_with_size(t.point.num("buf").max(4096) as usize)?;
    timed(ctx, t, "one splice pair", false, |f, rec| {
        let flags = SpliceFFlags::SPLICE_F_MOVE;
        let (mut oi, mut oo) = (0i64, 0i64);
        steps(f, rec, |_, len| {
            let n = splice(f.src.as_fd(), Some(&mut oi), &pw, None, len.min(cap), flags)?;
            let mut out = 0;
            while out < n {
                match splice(&pr, None, f.dst.as_fd(), Some(&mut oo), n - out, flags)? {
                    0 => bail!("splice from the pipe to the copy moved 0 bytes"),
                    m => out += m,
                }
            }
            Ok(n)
        })
    })
}

fn classic_copy_file_range(ctx: &mut FileCopy, t: &mut Trial) -> Result<()> {
    one_byte_rule(ctx, t, false)?;
    timed(ctx, t, "one copy_file_range", false, |f, rec| {
        let (mut oi, mut oo) = (0i64, 0i64);
        steps(f, rec, |_, len| {
            Ok(copy_file_range(
                f.src.as_fd(),
                Some(&mut oi),
                f.dst.as_fd(),
                Some(&mut oo),
                len,
            )?)
        })
    })
}

fn uring_rw(ctx: &mut FileCopy, t: &mut Trial, fixed: bool) -> Result<()> {
    one_byte_rule(ctx, t, false)?;
    let depth = ctx.args.depth as usize;
    let buf = t.point.num("buf") as usize;
    let mut r = common::ring(t, &RingConfig::tuned((2 * depth as u32).max(8)))?;
    let mut owned = None;
    if fixed {
        common::register_buffers(t, &mut r, depth, buf)?;
    } else {
        owned = Some(OwnedBuffers::new(depth, buf)?);
    }
    timed(
        ctx,
        t,
        "one chunk, READ submitted to WRITE completed",
        false,
        |f, rec| {
            let cfg = CopyLoop {
                src: Fd::Raw(f.src.as_raw_fd()),
                dst: Fd::Raw(f.dst.as_raw_fd()),
                size: f.size,
                chunk: f.buf,
                depth,
            };
            let bufs = match owned.as_mut() {
                Some(o) => Buffers::Owned(o),
                None => Buffers::Registered,
            };
            Ok(copy_read_write(&mut r, bufs, &cfg, rec)?)
        },
    )
}

fn uring_splice(ctx: &mut FileCopy, t: &mut Trial) -> Result<()> {
    one_byte_rule(ctx, t, false)?;
    let mut r = common::ring(t, &RingConfig::tuned(8))?;
    let (pr, pw, cap) = pipe_with_size(t.point.num("buf").max(4096) as usize)?;
    timed(
        ctx,
        t,
        "one SPLICE+SPLICE submission to completion",
        false,
        |f, rec| {
            steps(f, rec, |off, len| {
                Ok(splice_file(
                    &mut r,
                    Fd::Raw(f.src.as_raw_fd()),
                    off,
                    pr.as_raw_fd(),
                    pw.as_raw_fd(),
                    Fd::Raw(f.dst.as_raw_fd()),
                    len.min(cap) as u32,
                )?)
            })
        },
    )
}
