//! The file experiments (file_copy, storage_read, mmap_read) run every variant on tiny inputs
//! with integrity ok and readable histograms, and refuse misuse before measuring anything.
//! O_DIRECT needs a work directory on a block filesystem: it is skipped (with the reason)
//! where the temp dir has none, unless `CI` is set, where that is a failure.

mod common;

use common::*;
use std::path::Path;
use zclab::results::Row;

const COPY: &str = env!("CARGO_BIN_EXE_file_copy");
const STORAGE: &str = env!("CARGO_BIN_EXE_storage_read");
const MMAP: &str = env!("CARGO_BIN_EXE_mmap_read");

struct Run {
    ran: Ran,
    results: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Run {
    /// Rows written anywhere under the results directory (none for a refused run).
    fn any_rows(&self) -> usize {
        files_under(self.results.path())
            .iter()
            .filter(|p| p.file_name().is_some_and(|f| f == "summary.jsonl"))
            .map(|p| {
                let t = std::fs::read_to_string(p).unwrap_or_default();
                t.lines().filter(|l| !l.trim().is_empty()).count()
            })
            .sum()
    }
}

/// Runs `bin` with `args` plus one repeat, no warm-up, a fresh results dir and (unless the
/// arguments name one) a fresh work dir in the temp dir.
fn run(bin: &str, args: &str) -> Run {
    let results = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let mut lab = Lab::new(bin).tiny(results.path()).argv(args);
    if !args.contains("--workdir") {
        lab = lab.workdir(work.path());
    }
    Run {
        ran: lab.run(),
        results,
        work,
    }
}

/// Every variant in `variants` has at least one row, and every row is ok with integrity ok
/// and parseable, non-empty histograms.
fn check_all_ok(r: &Run, exp: &str, variants: &[&str]) -> Exp {
    assert!(r.ran.status.success(), "{exp} failed: {}", r.ran.text());
    let e = r.ran.exp(exp);
    assert_variants(&e.rows, variants);
    for row in &e.rows {
        let m = assert_ok(row);
        assert!(m.bytes > 0 && m.ops > 0 && m.wall_ns > 0);
        assert!(
            !row.histograms.is_empty(),
            "{} has no histogram",
            row.variant
        );
    }
    check_histograms(&e.dir, &e.rows);
    e
}

/// Runs `bin` with `args` and checks that every variant of its experiment (the catalogue's)
/// ran ok at every point ([`check_all_ok`]).
fn run_every_variant(bin: &str, args: &str) -> (Run, Exp) {
    let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
    let entry = zclab::catalog::find(name).expect("an experiment of the catalogue");
    let r = run(bin, args);
    let e = check_all_ok(&r, name, entry.variants);
    (r, e)
}

fn assert_refused(r: &Run, words: &[&str]) {
    assert!(!r.ran.status.success(), "expected a refusal");
    let e = r.ran.stderr.to_lowercase();
    for w in words {
        assert!(e.contains(&w.to_lowercase()), "stderr lacks '{w}': {e}");
    }
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(r.any_rows(), 0, "a refused run wrote summary rows");
}

#[test]
fn file_copy_every_variant_copies_exactly() {
    let (r, e) = run_every_variant(
        COPY,
        "--sizes 30KB,300001 --bufs 1B,4KiB,64KiB --one-byte-max 30KB --cache warm,cold --fsync",
    );
    let one_byte: Vec<&Row> = e
        .rows
        .iter()
        .filter(|r| r.point.contains("buf=1B"))
        .collect();
    assert!(!one_byte.is_empty());
    assert!(
        one_byte
            .iter()
            .all(|r| r.variant == "classic-read-write" && r.point.contains("size=30KB")),
        "1-byte steps: classic-read-write at the small size only"
    );
    let meta = e.meta();
    assert!(meta["parameters"]["fs_type"].is_string());
    assert_eq!(meta["parameters"]["fsync"], true);
    assert_keyed(&e);
    // The copies were removed.
    assert_eq!(std::fs::read_dir(r.work.path()).unwrap().count(), 0);
}

fn check_storage(rows: &[Row], io: &str) {
    for row in rows {
        assert!(row.point.contains(&format!("io={io}")), "{}", row.point);
        let m = row.metrics.as_ref().unwrap();
        let x = &m.extra;
        // One latency sample per read, runs of equal latencies recorded at once included.
        assert_eq!(m.latency.count, m.ops, "{} {}", row.variant, row.point);
        assert!(x.contains_key("cpu_ns_per_io") && x.contains_key("check_ns_per_io"));
        // One latency sample per read at qd 1 (SQPOLL waits for completions without the
        // clock): a reading before and after each read, plus the time limit's and the check
        // timer's occasional ones.
        let reads = x["clock_reads_per_op"];
        if row.point.contains("qd=1") && row.variant != "uring-sqpoll" {
            assert!(
                (2.0..2.6).contains(&reads),
                "{} {}: {reads}",
                row.variant,
                row.point
            );
        }
        assert!(x["clock_ns_per_op"] > 0.0 && x["clock_ns_per_op"] < reads * 1000.0);
        // The default check: sector words on every block, the whole checksum on every 64th.
        assert_eq!(x.get("check_full_every"), Some(&64.0), "{}", row.point);
        // The lab owns the file it reads, so O_NOATIME (as t/io_uring opens) always takes.
        assert_eq!(x.get("noatime"), Some(&1.0), "{}", row.point);
        if row.variant == "classic-pread" {
            assert!(
                row.point.contains("qd=1"),
                "pread only at qd 1: {}",
                row.point
            );
        }
        if row.variant.starts_with("uring-") {
            // The default completions per wait: 1 on O_DIRECT, half the depth on SQPOLL, all
            // (0) on plain rings reading the page cache.
            let qd: f64 = row.params["qd"].as_f64().unwrap();
            let want = match (io, row.variant.as_str()) {
                ("direct", _) => 1.0,
                (_, "uring-sqpoll") => (qd / 2.0).floor().max(1.0),
                _ => 0.0,
            };
            assert_eq!(
                x.get("reap_max"),
                Some(&want),
                "{} {}",
                row.variant,
                row.point
            );
        }
        if row.variant == "uring-sqpoll" {
            assert!(
                x.get("sqpoll_thread_ns").is_some_and(|&s| s > 0.0),
                "exact SQPOLL thread time recorded: {x:?}"
            );
            assert_ne!(
                x.get("sqpoll_in_rusage"),
                Some(&0.0),
                "rusage counts the SQPOLL thread"
            );
            assert!(x.contains_key("sqpoll_ns_per_io"));
        }
    }
}

#[test]
fn storage_read_buffered_every_variant() {
    let (_r, e) = run_every_variant(
        STORAGE,
        "--file-size 1MiB --ios 400 --qd 1,4 --pattern rand,seq --bs 4KiB,64KiB --buffered",
    );
    check_storage(&e.rows, "buffered");
    let meta = std::fs::read_to_string(e.dir.join("meta.json")).unwrap();
    assert!(meta.contains("qd=4") && meta.contains("pread(2) is synchronous"));
    assert_keyed(&e);
}

/// The experiment's file pattern is keyed for this run, the key is recorded, every row's
/// check says so, and every file was read with O_NOATIME (the tests run as the file's owner).
fn assert_keyed(e: &Exp) {
    let key = e.meta()["parameters"]["pattern_key"]
        .as_str()
        .expect("pattern_key")
        .to_string();
    let k = u64::from_str_radix(key.trim_start_matches("0x"), 16).expect("a hex key");
    assert!(key.len() == 18 && k != 0, "{key}");
    for row in &e.rows {
        assert!(
            row.integrity
                .as_ref()
                .is_some_and(|i| i.method.contains("keyed pattern")),
            "{} {}",
            row.variant,
            row.point
        );
        assert_eq!(
            metrics(row).extra.get("noatime"),
            Some(&1.0),
            "{} {}",
            row.variant,
            row.point
        );
    }
}

/// `--reap N` is taken as given, on every io_uring variant, and every block still arrives
/// checked.
#[test]
fn storage_read_reap_as_given() {
    let r = run(
        STORAGE,
        "--file-size 1MiB --ios 300 --qd 8 --reap 3 --pattern rand --buffered \
         --variants uring-read,uring-read-fixed,uring-sqpoll",
    );
    let variants = ["uring-read", "uring-read-fixed", "uring-sqpoll"];
    let e = check_all_ok(&r, "storage_read", &variants);
    for row in &e.rows {
        let m = metrics(row);
        assert_eq!(m.extra.get("reap_max"), Some(&3.0), "{}", row.variant);
        assert_eq!(m.ops, 300, "{}", row.variant);
    }
    run(STORAGE, "--reap 65 --buffered").ran.exits(2);
}

#[test]
fn storage_read_direct_every_variant() {
    if let Err(why) = zclab::caps::direct_io(&std::env::temp_dir()) {
        skip_or_fail(&format!(
            "storage_read_direct_every_variant: no O_DIRECT on the temp dir: {why}"
        ));
        return;
    }
    let (_r, e) = run_every_variant(
        STORAGE,
        "--file-size 2MiB --ios 300 --qd 1,8 --pattern rand,seq --bs 4KiB --direct",
    );
    check_storage(&e.rows, "direct");
    let align = e.meta()["parameters"]["direct"]["offset_align"].as_u64();
    assert!(align.unwrap() > 0);
}

#[test]
fn sqpoll_thread_cpu_is_in_the_reported_cpu() {
    // Long enough (by time) for tick-granular accounting to show the thread's share.
    let r = run(
        STORAGE,
        "--file-size 4MiB --ios 0 --runtime 1s --qd 4 --pattern rand --buffered \
         --variants uring-sqpoll",
    );
    let e = check_all_ok(&r, "storage_read", &["uring-sqpoll"]);
    for row in &e.rows {
        let x = &metrics(row).extra;
        assert_eq!(x.get("sqpoll_in_rusage"), Some(&1.0), "{x:?}");
        let (cpu, sq, main) = (
            x["cpu_ns_per_io"],
            x["sqpoll_ns_per_io"],
            x["main_thread_cpu_ns_per_io"],
        );
        assert!(
            cpu + 1.0 >= (sq + main) * 0.9,
            "cpu/io {cpu} < SQPOLL {sq} + main {main}"
        );
        assert!(sq > 0.0 && main > 0.0);
    }
}

#[test]
fn storage_read_default_points_include_direct_where_real() {
    // No --direct/--buffered: buffered always, O_DIRECT where the work dir does it.
    let r = run(
        STORAGE,
        "--file-size 256KiB --ios 50 --qd 2 --pattern rand --variants uring-read",
    );
    let e = check_all_ok(&r, "storage_read", &["uring-read"]);
    let direct_ok = zclab::caps::direct_io(r.work.path()).is_ok();
    let has = |io: &str| e.rows.iter().any(|r| r.point.contains(io));
    assert!(has("io=buffered"));
    assert_eq!(has("io=direct"), direct_ok);
}

#[test]
fn mmap_read_every_variant_and_page_rounding() {
    let r = run(
        MMAP,
        "--sizes 5KB,200001 --bufs 4KiB,64KiB --cache warm,cold",
    );
    let variants = [
        "classic-read",
        "classic-mmap",
        "classic-mmap-populate",
        "classic-mmap-sequential",
        "uring-read",
    ];
    let e = check_all_ok(&r, "mmap_read", &variants);
    assert_keyed(&e);
    let page = zclab::sys::filemap::page_size() as f64;
    for row in e.rows.iter().filter(|r| r.point.contains("size=5KB")) {
        let x = &metrics(row).extra;
        assert_eq!(x.get("file_bytes"), Some(&5000.0));
        if row.variant.contains("mmap") {
            let mapped = (5000.0 / page).ceil() * page;
            assert_eq!(x.get("mapped_bytes"), Some(&mapped));
        } else {
            assert!(!x.contains_key("mapped_bytes"));
        }
    }
}

#[test]
fn direct_on_tmpfs_is_refused() {
    if !Path::new("/dev/shm").is_dir() {
        eprintln!("skipping direct_on_tmpfs_is_refused: no /dev/shm");
        return;
    }
    let r = run(STORAGE, "--workdir /dev/shm --direct --file-size 1MiB");
    assert_refused(&r, &["--direct refused", "tmpfs", "O_DIRECT"]);
}

#[test]
fn misaligned_direct_block_size_is_refused() {
    let r = run(STORAGE, "--direct --bs 1000 --file-size 1MiB");
    if zclab::caps::direct_io(r.work.path()).is_ok() {
        assert_refused(&r, &["block size 1000", "alignment"]);
    } else {
        assert!(!in_ci(), "CI must have O_DIRECT on the temp dir");
        assert_refused(&r, &["O_DIRECT"]);
    }
}

#[test]
fn files_larger_than_the_disk_are_refused() {
    assert_refused(&run(STORAGE, "--file-size 900TB --buffered"), &["free"]);
    assert_refused(&run(COPY, "--sizes 500TB"), &["source + copy", "free"]);
    assert_refused(&run(MMAP, "--sizes 900TB"), &["free"]);
}
