//! # mmap_read: scanning a file through read(2), through a mapping, and through io_uring
//!
//! **Question.** To read a whole file once (here: checksum it), is it cheaper to read(2) it
//! into a buffer, or to map it and touch the pages (plain, with MAP_POPULATE, with
//! MADV_SEQUENTIAL), or to read it with io_uring — in time, CPU, and page faults? And what does
//! a mapping cost for a small file: the seeds' point that a 5 KB file occupies 8 KB mapped,
//! since mappings come in whole pages.
//!
//! **Set-up.** A file of the lab's pattern is written and fsynced in `--workdir`. Each trial
//! applies the cache policy (`cache=warm`: the file is read in if any of it is not cached;
//! `cache=cold`: posix_fadvise(DONTNEED) first), opens the file, then times the scan: the
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

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use xxhash_rust::xxh3::Xxh3;
use zclab::harness::{self, CommonArgs, Done, Lab, Need, Point, Trial, Variant};
use zclab::measure::Recorder;
use zclab::results::Integrity;
use zclab::ring::{Ring, RingConfig};
use zclab::sys::file::{PatternFile, free_bytes, map_readonly};
use zclab::sys::filemap::{
    advise_sequential, map_readonly_populate, page_round, resident_fraction,
};
use zclab::uring::Fd;
use zclab::uring::file::{Buffers, OwnedBuffers, ReadLoop, read_pipeline};

const NAME: &str = "mmap_read";

#[derive(Parser, Debug)]
#[command(name = NAME, about = "Scan (checksum) a file through read(2), mmap (plain, MAP_POPULATE, MADV_SEQUENTIAL) and io_uring")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
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

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Cache {
    Warm,
    Cold,
}

struct Ctx {
    args: Args,
    file: Option<PatternFile>,
}

impl Ctx {
    fn file(&mut self, size: u64) -> Result<&PatternFile> {
        if self.file.as_ref().is_none_or(|f| f.size != size) {
            self.file = None;
            let path = self
                .args
                .workdir
                .join(format!("zclab-{NAME}-{}-{size}.dat", std::process::id()));
            self.file = Some(
                PatternFile::create(&path, size)
                    .with_context(|| format!("cannot create the {size}-byte file"))?,
            );
        }
        Ok(self.file.as_ref().expect("just set"))
    }
}

const VARIANTS: &[Variant<Ctx>] = &[
    Variant {
        name: "classic-read",
        about: "read(2) buf bytes at a time into a buffer, hash each",
        needs: &[],
        run: classic_read,
    },
    Variant {
        name: "classic-mmap",
        about: "mmap(2) the file (PROT_READ, MAP_SHARED), hash it in place; pages fault in on touch",
        needs: &[],
        run: classic_mmap,
    },
    Variant {
        name: "classic-mmap-populate",
        about: "mmap(2) with MAP_POPULATE: the kernel faults every page in inside mmap, none while hashing",
        needs: &[],
        run: classic_mmap_populate,
    },
    Variant {
        name: "classic-mmap-sequential",
        about: "mmap(2), then madvise(2) MADV_SEQUENTIAL (aggressive read-ahead), hash in place",
        needs: &[],
        run: classic_mmap_sequential,
    },
    Variant {
        name: "uring-read",
        about: "IORING_OP_READ of buf bytes, --qd in flight, hashed in file order",
        needs: &[Need::Op("READ")],
        run: uring_read,
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
            bail!("work directory {} does not exist", args.workdir.display());
        }
        let largest = *args.sizes.iter().max().expect("clap gives at least one");
        let free = free_bytes(&args.workdir)?;
        if largest > free {
            bail!(
                "a {largest}-byte file does not fit in {}: its filesystem has {free} B free (use smaller --sizes or another --workdir)",
                args.workdir.display()
            );
        }
        let params = json!({
            "sizes": args.sizes, "bufs": args.bufs, "cache": args.cache, "qd": args.qd,
            "workdir": args.workdir, "page_size": zclab::sys::filemap::page_size(),
            "fs_type": zclab::caps::probe_odirect(&args.workdir).fs_type,
        });
        let mut points = Vec::new();
        for &size in &args.sizes {
            for &buf in &args.bufs {
                for &c in &args.cache {
                    points.push(Point::new().size("size", size).size("buf", buf).text(
                        "cache",
                        match c {
                            Cache::Warm => "warm",
                            Cache::Cold => "cold",
                        },
                    ));
                }
            }
        }
        let mut lab = Lab::open(NAME, &args.common, params)?;
        let mut ctx = Ctx { args, file: None };
        lab.run(VARIANTS, &points, &mut ctx)
    })
}

/// Applies the cache policy, opens the file, times `scan(file, size, buf, hasher, rec) ->
/// steps`, and records the integrity check and the sizes.
fn scan(
    ctx: &mut Ctx,
    t: &mut Trial,
    step: &str,
    mapped: bool,
    scan: impl FnOnce(&File, u64, usize, &mut Xxh3, &mut Recorder) -> Result<u64>,
) -> Result<()> {
    let (size, buf) = (t.point.num("size"), t.point.num("buf") as usize);
    let cold = t.point.str("cache") == "cold";
    let pf = ctx.file(size)?;
    if cold {
        pf.drop_cache()?;
    } else if resident_fraction(&File::open(&pf.path)?)? < 1.0 {
        pf.warm()?;
    }
    let expected = pf.hash;
    let file = File::open(&pf.path)?;
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
        method: "xxh3-64 of the bytes scanned".into(),
        expected: format!("{expected:016x}"),
        got: format!("{got:016x}"),
        bytes_expected: size,
        bytes_got: size,
    });
    t.set_extra("file_bytes", size as f64);
    if mapped {
        t.set_extra("mapped_bytes", page_round(size) as f64);
    }
    Ok(())
}

/// Hashes `map` `buf` bytes per step, one latency sample per step.
fn hash_mapping(map: &[u8], buf: usize, h: &mut Xxh3, rec: &mut Recorder) -> u64 {
    let mut n = 0;
    let mut s = rec.now();
    for chunk in map.chunks(buf) {
        h.update(chunk);
        n += 1;
        s = rec.record_since(s);
    }
    n
}

fn classic_read(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let mut b = vec![0u8; t.point.num("buf") as usize];
    scan(
        ctx,
        t,
        "one read + hash of it",
        false,
        |f, size, _, h, rec| {
            let mut f = f;
            let (mut got, mut n) = (0u64, 0u64);
            let mut s = rec.now();
            loop {
                let r = f.read(&mut b)?;
                if r == 0 {
                    break;
                }
                h.update(&b[..r]);
                got += r as u64;
                n += 1;
                s = rec.record_since(s);
            }
            if got != size {
                bail!("read {got} of {size} bytes");
            }
            Ok(n)
        },
    )
}

fn classic_mmap(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    scan(
        ctx,
        t,
        "hash of buf bytes of the mapping",
        true,
        |f, _, buf, h, rec| {
            let m = map_readonly(f)?;
            Ok(hash_mapping(&m, buf, h, rec))
        },
    )
}

fn classic_mmap_populate(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    scan(
        ctx,
        t,
        "hash of buf bytes of the mapping",
        true,
        |f, _, buf, h, rec| {
            let m = map_readonly_populate(f)?;
            Ok(hash_mapping(&m, buf, h, rec))
        },
    )
}

fn classic_mmap_sequential(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    scan(
        ctx,
        t,
        "hash of buf bytes of the mapping",
        true,
        |f, _, buf, h, rec| {
            let m = map_readonly(f)?;
            advise_sequential(&m)?;
            Ok(hash_mapping(&m, buf, h, rec))
        },
    )
}

fn uring_read(ctx: &mut Ctx, t: &mut Trial) -> Result<()> {
    let qd = ctx.args.qd as usize;
    let buf = t.point.num("buf") as usize;
    let mut ring =
        Ring::new(&RingConfig::tuned((2 * qd as u32).max(8))).map_err(harness::ring_err)?;
    t.set_ring(ring.flags());
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
