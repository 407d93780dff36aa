//! # mmap_read: scanning a file through read(2), through a mapping, and through io_uring
//!
//! **Question.** To read a whole file once (here: checksum it), is it cheaper to read(2) it
//! into a buffer, or to map it and touch the pages (plain, with MAP_POPULATE, with
//! MADV_SEQUENTIAL), or to read it with io_uring — in time, CPU, and page faults? And what does
//! a mapping cost for a small file: the seeds' point that a 5 KB file occupies 8 KB mapped,
//! since mappings come in whole pages.
//!
//! **Set-up.** A file of the lab's pattern, XOR-ed with a key drawn for the run
//! (`pattern_key` in meta.json, so that no other file's bytes hash alike), is written and
//! fsynced in `--workdir`. Each trial applies the cache policy (`cache=warm`: the file is read
//! in if any of it is not cached; `cache=cold`: posix_fadvise(DONTNEED) first), opens the file
//! (with O_NOATIME where the user may, as storage_read: `noatime` in the results), then times
//! the scan: the
//! xxh3-64 of the whole file, computed step by step, compared after the clock stops with the
//! hash known from writing it (the integrity check). Mapping and unmapping are inside the
//! clock. The measured thread is pinned to the first `--cpus` CPU.
//!
//! **Steps.** `buf` is the bytes per step: one read(2) into a `buf`-byte buffer and its hash;
//! hashing `buf` bytes of the mapping (the page faults happen there); for io_uring, one
//! IORING_OP_READ of `buf` bytes, `--qd` in flight, delivered and hashed in file order — its
//! latency sample is the read's submission to its completion, the hash outside it.
//!
//! **Reported.** Besides time and CPU: minor and major page faults (`minflt`, `majflt`; the
//! faults MAP_POPULATE takes inside mmap(2) count too, and one fault can map many pages:
//! fault-around and large folios), and
//! `file_bytes` and, for the mapping variants, `mapped_bytes` (the length rounded up to whole
//! pages) as extras.
//!
//! **Variants.** See `VARIANTS`. **Parameters.** `--sizes` (default 5KB,1MiB,64MiB), `--bufs`
//! (4KiB,64KiB,1MiB), `--cache warm,cold`, `--qd`, `--workdir`. Refused before anything is
//! measured: a file larger than the work directory's free space.
//!
//! **Minimum kernel.** MAP_POPULATE 2.5.46; io_uring READ 5.6.

use anyhow::{Result, bail};
use serde_json::json;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use zclab::catalog::{Entry, mmap_read as names};
use zclab::harness::{self, CommonArgs, Done, Experiment, Plan, Point, Trial, Variant};
use zclab::hash::Xxh3;
use zclab::loops::common;
use zclab::loops::files::{self, Cache, PatternFiles, hash_mapping, hash_reads, set_cache};
use zclab::measure::Recorder;
use zclab::results::Integrity;
use zclab::ring::RingConfig;
use zclab::sys::file::map_readonly;
use zclab::sys::filemap::{advise_sequential, map_readonly_populate, page_round};
use zclab::uring::Fd;
use zclab::uring::file::{Buffers, OwnedBuffers, ReadLoop, read_pipeline};

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<MmapRead>] = harness::variants![
    names::CLASSIC_READ => classic_read, [], "read(2) buf bytes at a time into a buffer, hash each";
    names::CLASSIC_MMAP => |ctx, t| mapped(ctx, t, Map::Plain), [], "mmap(2) the file (PROT_READ, MAP_SHARED), hash it in place; pages fault in on touch";
    names::CLASSIC_MMAP_POPULATE => |ctx, t| mapped(ctx, t, Map::Populate), [], "mmap(2) with MAP_POPULATE: the kernel faults every page in inside mmap, none while hashing";
    names::CLASSIC_MMAP_SEQUENTIAL => |ctx, t| mapped(ctx, t, Map::Sequential), [], "mmap(2), then madvise(2) MADV_SEQUENTIAL (aggressive read-ahead), hash in place";
    names::URING_READ => uring_read, [op(Read)], "IORING_OP_READ of buf bytes, --qd in flight, hashed in file order";
];

#[derive(clap::Args, Debug)]
struct Args {
    /// File sizes, comma-separated (5KB is the seeds' small file; KB/MB are powers of 1000).
    #[arg(long, default_value = "5KB,1MiB,64MiB", value_delimiter = ',', value_parser = harness::size_arg)]
    sizes: Vec<u64>,
    /// Bytes per step (read buffer, hashed slice of the mapping, io_uring read), comma-separated.
    #[arg(long, default_value = "4KiB,64KiB,1MiB", value_delimiter = ',', value_parser = harness::size_arg)]
    bufs: Vec<u64>,
    /// Page cache state of the file when a trial starts, comma-separated.
    #[arg(long, value_enum, default_value = "warm", value_delimiter = ',')]
    cache: Vec<Cache>,
    /// Reads in flight for uring-read.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    qd: u32,
    /// Directory for the files (created there, removed afterwards).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    workdir: PathBuf,
}

struct MmapRead {
    args: Args,
    /// The file read, made for each size.
    file: PatternFiles,
}

impl Experiment for MmapRead {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, _common: &CommonArgs) -> Result<Plan<Self>> {
        let largest = *args.sizes.iter().max().expect("clap gives at least one");
        let what = format!("a {largest}-byte file");
        files::workdir_room(&args.workdir, largest, &what).map_err(harness::usage)?;
        // A key of this run's own for the file's pattern: bytes of any other file (an earlier
        // run's, at the same offsets) change the hash.
        let key = zclab::sys::file::run_key();
        let parameters = json!({
            "sizes": args.sizes, "bufs": args.bufs, "cache": args.cache, "qd": args.qd,
            "pattern_key": format!("{key:#018x}"),
            "workdir": args.workdir, "page_size": zclab::sys::filemap::page_size(),
            "fs_type": zclab::caps::probe_odirect(&args.workdir).fs_type,
        });
        let points = files::sweep(&args.sizes, &args.bufs, &args.cache)
            .map(|(size, buf, c)| {
                Point::new()
                    .size("size", size)
                    .size("buf", buf)
                    .text("cache", c.name())
            })
            .collect();
        let file = PatternFiles::new(&args.workdir, names::NAME, "dat", "file", 0).with_key(key);
        Ok(Plan::new(MmapRead { args, file }, points, parameters))
    }
}

fn main() -> ExitCode {
    harness::run::<MmapRead>()
}

/// Applies the cache policy, opens the file, times `scan(file, size, buf, hasher, rec) ->
/// steps`, and records the integrity check and the sizes.
fn scan(
    ctx: &mut MmapRead,
    t: &mut Trial,
    step: &str,
    mapped: bool,
    scan: impl FnOnce(&File, u64, usize, &mut Xxh3, &mut Recorder) -> Result<u64>,
) -> Result<()> {
    let (size, buf) = (t.point.num("size"), t.point.num("buf") as usize);
    let pf = ctx.file.get(size)?;
    set_cache(pf, Cache::named(t.point.str("cache")))?;
    let expected = pf.hash;
    let (file, noatime) = zclab::sys::direct::open_read(&pf.path, false)?;
    let mut h = Xxh3::new();
    t.measure(step, |rec| {
        let steps = scan(&file, size, buf, &mut h, rec)?;
        Ok(Done {
            bytes: size,
            ops: steps,
        })
    })?;
    let got = h.digest();
    t.set_integrity(Integrity {
        ok: got == expected,
        method: "xxh3-64 of the bytes scanned vs the file's (this run's keyed pattern)".into(),
        expected: format!("{expected:016x}"),
        got: format!("{got:016x}"),
        bytes_expected: size,
        bytes_got: size,
    });
    t.set_extra("file_bytes", size as f64);
    t.set_flag("noatime", noatime);
    if mapped {
        t.set_extra("mapped_bytes", page_round(size) as f64);
    }
    Ok(())
}

fn classic_read(ctx: &mut MmapRead, t: &mut Trial) -> Result<()> {
    let mut b = vec![0u8; t.point.num("buf") as usize];
    scan(
        ctx,
        t,
        "one read + hash of it",
        false,
        |f, size, _, h, rec| hash_reads(f, size, &mut b, h, rec),
    )
}

/// How a mapping variant maps the file.
#[derive(Clone, Copy)]
enum Map {
    Plain,
    Populate,
    Sequential,
}

fn mapped(ctx: &mut MmapRead, t: &mut Trial, how: Map) -> Result<()> {
    scan(
        ctx,
        t,
        "hash of buf bytes of the mapping",
        true,
        |f, _, buf, h, rec| {
            let m = match how {
                Map::Populate => map_readonly_populate(f)?,
                Map::Plain | Map::Sequential => map_readonly(f)?,
            };
            if let Map::Sequential = how {
                advise_sequential(&m)?;
            }
            Ok(hash_mapping(&m, buf, h, rec))
        },
    )
}

fn uring_read(ctx: &mut MmapRead, t: &mut Trial) -> Result<()> {
    let qd = ctx.args.qd as usize;
    let buf = t.point.num("buf") as usize;
    let mut ring = common::ring(t, &RingConfig::tuned((2 * qd as u32).max(8)))?;
    let mut owned = OwnedBuffers::new(qd, buf)?;
    scan(
        ctx,
        t,
        "one read, submit to completion (hash outside)",
        false,
        |f, size, buf, h, rec| {
            let cfg = ReadLoop {
                file: Fd::Raw(f.as_raw_fd()),
                qd,
                len: buf,
                ordered: true,
                poll_cq: false,
                reap_max: 0,
            };
            let mut off = 0u64;
            let mut got = 0u64;
            let n = read_pipeline(
                &mut ring,
                Buffers::Owned(&mut owned),
                &cfg,
                rec,
                || {
                    (off < size).then(|| {
                        let len = (size - off).min(buf as u64) as usize;
                        off += len as u64;
                        (off - len as u64, len)
                    })
                },
                |b, _| {
                    h.update(b);
                    got += b.len() as u64;
                },
            )?;
            if got != size {
                bail!("read {got} of {size} bytes");
            }
            Ok(n)
        },
    )
}
