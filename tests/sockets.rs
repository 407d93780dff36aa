//! The socket experiments (socket_to_file, proxy, gather_write, syscall_floor) on tiny inputs:
//! every variant runs with its integrity check passing and writes parseable results; a peer
//! that resets its connection mid-transfer fails only its own variant; bad input is refused
//! with one line and a non-zero exit.
//!
//! None of these variants needs root. A variant the kernel cannot run is skipped with its
//! reason outside CI and is a failure inside it (env `CI`), where the kernel is known to have
//! every feature.

mod common;

use common::*;
use std::path::Path;
use zclab::catalog;
use zclab::results::{Row, Status};

const SOCKET_TO_FILE: &str = env!("CARGO_BIN_EXE_socket_to_file");
const PROXY: &str = env!("CARGO_BIN_EXE_proxy");
const GATHER_WRITE: &str = env!("CARGO_BIN_EXE_gather_write");
const SYSCALL_FLOOR: &str = env!("CARGO_BIN_EXE_syscall_floor");

/// `bin` with one quiet repeat into `results`, without the lab's variables from the
/// environment the tests run in.
fn lab(bin: &str, results: &Path) -> Lab {
    Lab::new(bin)
        .argv("--repeat 1 --warmup 0 --quiet")
        .results(results)
        .clean_env()
}

/// Runs `bin` ([`lab`]) with `argv` into a new directory, which must succeed, and returns the
/// directory (kept while the results are read) and the experiment's results.
fn run_ok(bin: &str, argv: &str) -> (tempfile::TempDir, Exp) {
    let d = tempfile::tempdir().unwrap();
    let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
    let e = lab(bin, d.path()).argv(argv).run().ok().exp(name);
    (d, e)
}

/// Checks every expected variant ran at every point with status ok and integrity ok, and that
/// every histogram it names parses with samples in it. Returns the rows.
fn check_ok(e: &Exp, variants: &[&str], points: usize) -> Vec<Row> {
    let meta = e.meta();
    let skip = skipped_variants(&meta);
    for v in variants {
        if skip.iter().any(|(n, _)| n == v) {
            continue;
        }
        let mine: Vec<&Row> = e.rows.iter().filter(|r| r.variant == *v).collect();
        let points_skipped = variant_meta(&meta, v)["points_skipped"]
            .as_array()
            .map_or(0, |a| a.len());
        assert_eq!(
            mine.len() + points_skipped,
            points,
            "{v}: rows for every point: {mine:#?}"
        );
        for r in &mine {
            assert_ok(r);
            assert!(r.histograms.contains_key("step"), "{v}: step histogram");
        }
        let mine: Vec<Row> = mine.into_iter().cloned().collect();
        check_histograms(&e.dir, &mine);
    }
    e.rows.clone()
}

#[test]
fn socket_to_file_every_variant() {
    let d = tempfile::tempdir().unwrap();
    let e = lab(SOCKET_TO_FILE, d.path())
        .argv("--sizes 1100000 --chunks 16KiB --fsync none,every:1")
        .workdir(d.path())
        .run()
        .ok()
        .exp("socket_to_file");
    for r in &check_ok(&e, catalog::socket_to_file::VARIANTS, 2) {
        let m = metrics(r);
        assert_eq!(m.bytes, 1_100_000);
        // every 1 MiB of 1.1 MB: one on the way, one for the rest at the end.
        let want = if r.point.contains("fsync=none") {
            0.0
        } else {
            2.0
        };
        assert_eq!(m.extra["fsyncs"], want, "{}", what(r));
        assert!(m.peer_user_ns.is_some(), "sender usage subtracted");
    }
    // The received files are removed.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dat"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn proxy_every_variant_both_modes() {
    let d = tempfile::tempdir().unwrap();
    let r = lab(PROXY, d.path())
        .argv("--sizes 1000,4KiB --requests 300 --stream-bytes 1MiB")
        .run()
        .ok();
    let e = r.exp("proxy");
    for r in &check_ok(&e, catalog::proxy::VARIANTS, 4) {
        let m = metrics(r);
        if r.point.starts_with("mode=echo") {
            // The step histogram is the client's round trips, one per request.
            assert_eq!(m.latency.count, 300, "{}", what(r));
            assert!(m.latency.step.contains("round trip"), "{}", m.latency.step);
            assert!(r.histograms.contains_key("relay"));
            assert_eq!(m.extra_latency["relay"].count, 300);
        } else {
            assert_eq!(m.bytes, 1 << 20);
        }
    }
    let c = e.json("crossover.json");
    for mode in ["stream", "echo"] {
        for key in [
            "classic-splice vs classic-read-write",
            "uring-splice vs uring-recv-send",
        ] {
            let e = &c[mode][key];
            let sizes = e["by_size"].as_array().map(Vec::len);
            assert_eq!(sizes, Some(2), "{mode} {key}: {e}");
            assert!(e["verdict"].is_string());
        }
    }
    assert!(
        !r.stdout.contains("splice against copy"),
        "--quiet prints nothing"
    );
}

#[test]
fn gather_write_every_variant() {
    let (_d, e) = run_ok(
        GATHER_WRITE,
        "--parts 1,3 --part-size 100,4KiB --size 64KiB",
    );
    let rs = check_ok(&e, catalog::gather_write::VARIANTS, 4);
    for r in rs.iter().filter(|r| r.variant == "uring-sendmsg-zc") {
        let zc = zc(r);
        assert_eq!(zc.sends, zc.notifications, "every send notified: {zc:?}");
        assert!(zc.sends >= 256);
        assert!(r.histograms.contains_key("release"));
        if zc.usage_reported {
            // Loopback: the kernel copies every zero-copy send (NOTES.md).
            assert_eq!(zc.copied, zc.sends, "{zc:?}");
        }
    }
}

#[test]
fn syscall_floor_every_variant() {
    let (_d, e) = run_ok(SYSCALL_FLOOR, "--batches 1,8 --ops 4096");
    let rs = check_ok(&e, catalog::syscall_floor::VARIANTS, 2);
    // getppid runs at the smallest batch only.
    assert_eq!(rs.iter().filter(|r| r.variant == "getppid").count(), 1);
    for r in &rs {
        let m = metrics(r);
        assert!(m.ops >= 4096 && m.latency.count == m.ops, "{r:?}");
    }
    let meta = e.meta();
    let reg = variant_meta(&meta, "uring-nop-regring");
    if reg["status"] == "ran" {
        assert_eq!(reg["ring"]["registered_ring_fd"], true);
    }
    let f = e.json("floor.json");
    assert!(f["per_op"].as_array().unwrap().len() >= 5);
    assert!(f["nop_rate"]["ratio_p50"].as_f64().is_some());
}

/// A peer resetting its connection mid-transfer fails that variant only: exit 1, its rows are
/// errors with a message, the other variants' rows are ok, and every file still parses.
struct Reset {
    bin: &'static str,
    exp: &'static str,
    victim: &'static str,
    args: &'static str,
    others: &'static [&'static str],
    points: usize,
}

fn reset_case(c: &Reset, work: &Path) {
    let d = tempfile::tempdir().unwrap();
    let list = [&[c.victim], c.others].concat().join(",");
    let r = lab(c.bin, d.path())
        .argv(&c.args.replace("WORK", work.to_str().unwrap()))
        .args(&["--variants", &list])
        .fault(&format!("peer-reset-after:64KiB@{}", c.victim))
        .run();
    assert_eq!(r.code(), Some(1), "{}", r.text());
    let e = r.exp(c.exp);
    let bad: Vec<&Row> = e.rows.iter().filter(|r| r.variant == c.victim).collect();
    assert!(!bad.is_empty(), "{} recorded rows", c.victim);
    for r in bad {
        assert_eq!(r.status, Status::Error, "{r:?}");
        let e = r.error.as_deref().unwrap_or("");
        assert!(
            e.contains("reset") || e.contains("closed") || e.contains("Broken pipe"),
            "{}: the error says what happened: {e}",
            c.victim
        );
    }
    check_ok(&e, c.others, c.points);
    let meta = e.meta();
    assert_eq!(meta["status"], "complete");
    assert_eq!(variant_meta(&meta, c.victim)["status"], "failed");
    assert!(r.stderr.contains(c.victim), "{}", r.stderr);
}

const RESETS: &[Reset] = &[
    // The sender resets while the receiver persists.
    Reset {
        bin: SOCKET_TO_FILE,
        exp: "socket_to_file",
        victim: "uring-splice",
        args: "--sizes 2MiB --chunks 16KiB --fsync none --workdir WORK",
        others: &["classic-recv-write", "uring-recv-write-fixed"],
        points: 1,
    },
    Reset {
        bin: SOCKET_TO_FILE,
        exp: "socket_to_file",
        victim: "classic-recv-mmap",
        args: "--sizes 2MiB --chunks 16KiB --fsync end --workdir WORK",
        others: &["classic-splice"],
        points: 1,
    },
    // The client resets while the relay forwards, in both modes.
    Reset {
        bin: PROXY,
        exp: "proxy",
        victim: "uring-recv-send",
        args: "--sizes 4KiB --requests 200 --stream-bytes 2MiB",
        others: &["classic-splice"],
        points: 2,
    },
    Reset {
        bin: PROXY,
        exp: "proxy",
        victim: "classic-read-write",
        args: "--sizes 16KiB --requests 100 --stream-bytes 2MiB",
        others: &["uring-splice"],
        points: 2,
    },
    // The receiver resets while the sender writes gathered messages.
    Reset {
        bin: GATHER_WRITE,
        exp: "gather_write",
        victim: "uring-sendmsg-zc",
        args: "--parts 4 --part-size 4KiB --size 2MiB",
        others: &["classic-writev"],
        points: 1,
    },
    Reset {
        bin: GATHER_WRITE,
        exp: "gather_write",
        victim: "classic-concat-write",
        args: "--parts 4 --part-size 4KiB --size 2MiB",
        others: &["uring-writev"],
        points: 1,
    },
];

#[test]
fn peer_reset_fails_only_its_variant() {
    let d = tempfile::tempdir().unwrap();
    for c in RESETS {
        reset_case(c, d.path());
    }
}

/// Bad input: non-zero exit, one line on stderr naming the problem, no panic.
fn refused(bin: &str, args: &str, env: &[(&str, &str)], needle: &str) {
    let d = tempfile::tempdir().unwrap();
    let r = lab(bin, d.path()).argv(args).envs(env).run();
    assert!(!r.status.success(), "{}", r.text());
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !r.stderr.contains("panicked"),
        "no panic on bad input: {}",
        r.text()
    );
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "'{needle}' in: {}",
        r.stderr
    );
    // clap adds a usage hint after its one-line error; the lab's own errors are one line.
    if r.code() == Some(1) {
        assert_eq!(lines.len(), 1, "{}", r.stderr);
    }
}

#[test]
fn bad_input_is_refused() {
    let (stf, px, gw, sf) = (SOCKET_TO_FILE, PROXY, GATHER_WRITE, SYSCALL_FLOOR);
    let fault = |f| [("ZCLAB_FAULT", f)];
    refused(stf, "--sizes 0", &[], "'0'");
    refused(stf, "--fsync sometimes", &[], "sometimes");
    refused(stf, "--variants nope", &[], "unknown variant 'nope'");
    refused(stf, "--sizes 64KiB", &fault("explode"), "ZCLAB_FAULT");
    let reset_nope = fault("peer-reset-after:1KiB@nope");
    refused(px, "--sizes 4KiB", &reset_nope, "unknown variant 'nope'");
    refused(px, "--sizes 0", &[], "'0'");
    refused(px, "--mode telepathy", &[], "telepathy");
    refused(px, "--variants nope", &[], "unknown variant 'nope'");
    refused(gw, "--part-size 0", &[], "'0'");
    refused(gw, "--parts 0", &[], "0");
    refused(gw, "--variants nope", &[], "unknown variant 'nope'");
    refused(sf, "--ops 0", &[], "at least 1");
    refused(sf, "--batches 0", &[], "0");
    refused(sf, "--variants nope", &[], "unknown variant 'nope'");
}
