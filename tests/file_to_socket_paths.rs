//! file_to_socket on every network path: every variant on tcp-loopback, tcp-veth and udp-sink
//! on tiny inputs, the sink's counters and the zero-copy truth on udp-sink, (variant, path)
//! combinations that cannot run skipped with their reason, the paths chosen without root, and
//! nothing left behind, also after SIGINT. Root-only tests skip outside CI and fail inside it.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;
use zclab::results::{Row, Status};

const BIN: &str = env!("CARGO_BIN_EXE_file_to_socket");
const ZC: &[&str] = &["uring-send-zc-fixed", "uring-send-zc-mmap"];
const PATHS: &[&str] = &["tcp-loopback", "tcp-veth", "udp-sink"];

/// file_to_socket with the tiny-run options, results under `res` and work files in `work`.
fn lab(res: &Path, work: &Path) -> Lab {
    Lab::new(BIN).tiny(res).workdir(work)
}

/// A scratch directory for a test that needs root; None when it is skipped ([`need_root`]).
fn root_scratch(test: &str) -> Option<TempDir> {
    need_root(test).then(|| tempfile::tempdir().unwrap())
}

/// Runs [`lab`] with `args` in a [`root_scratch`] directory (results in r/ below it), expecting
/// success and no namespace left behind; returns the directory (to be kept while the results
/// are read), the run and its checked results.
fn run_as_root(test: &str, args: &str) -> Option<(TempDir, Ran, Exp)> {
    let t = root_scratch(test)?;
    let r = run_clean(lab(&t.path().join("r"), t.path()).argv(args));
    let e = r.exp_checked("file_to_socket");
    Some((t, r, e))
}

/// One row of the every-path run: intact, counted, and zero copy where the kernel can.
fn check_every_path_row(r: &Row) {
    let what = what(r);
    let m = assert_intact(r);
    let (size, chunk) = (
        r.params["size"].as_u64().unwrap(),
        r.params["chunk"].as_u64().unwrap(),
    );
    assert_eq!(m.bytes, size, "{what}");
    assert!(r.histograms.contains_key("step"), "{what}");
    assert!(m.syscalls.known().is_some_and(|s| s > 0), "{what}");
    if path_of(r) == "udp-sink" {
        // One step is one datagram; MTU 65535 carries each in one frame, dropped at IP.
        let datagrams = size.div_ceil(chunk);
        assert_eq!(m.ops, datagrams, "{what}");
        assert_eq!(m.extra["datagrams"], datagrams as f64, "{what}");
        assert_eq!(m.extra["sink_rx_packets"], datagrams as f64, "{what}");
        let rx = (size + datagrams * (8 + 34)) as f64;
        assert_eq!(m.extra["sink_rx_bytes"], rx, "{what}");
        let dropped = m.extra["sink_ip_in_addr_errors"];
        assert_eq!(dropped, datagrams as f64, "{what}: dropped at IP");
        assert_eq!(m.extra["datagram_bytes"], chunk as f64);
        assert!(m.peer_user_ns.is_none(), "no receiver on the sink");
    } else {
        assert!(m.peer_user_ns.is_some(), "{what}: receiver's usage");
        assert!(integrity(r).method.contains("xxh3"), "{what}");
    }
    if ZC.contains(&r.variant.as_str()) {
        let z = zc(r);
        assert!(z.usage_reported, "{what}");
        assert_eq!(z.ids_completed, z.sends, "{what}: every send notified");
        assert_eq!(z.bytes, size, "{what}");
        // The kernel copies for a local receiver, never on the sink.
        let want = if path_of(r) == "udp-sink" { 0.0 } else { 100.0 };
        assert_eq!(z.copied_pct, want, "{what}");
        assert!(r.histograms.contains_key("release"), "{what}");
    } else {
        assert!(m.zc.is_none(), "{what}");
    }
}

/// Every variant on every path: data intact, the sink's counters exactly the datagrams sent,
/// zero copy on the sink and copies where a local receiver is, the seeds' table written, and
/// no namespace or link left.
#[test]
fn every_variant_on_every_path() {
    // 100000 is a multiple of neither the chunk nor the datagrams: the last step is short.
    let Some((t, r, e)) = run_as_root(
        "every_variant_on_every_path",
        "--paths tcp-loopback,tcp-veth,udp-sink --sizes 100000,1MiB --chunks 16KiB \
         --datagram 65507,1400 --pool 2",
    ) else {
        return;
    };
    for v in FILE_TO_SOCKET_VARIANTS {
        for p in PATHS {
            let n = e
                .rows
                .iter()
                .filter(|r| r.variant == *v && path_of(r) == *p)
                .count();
            // 2 sizes x 1 chunk on TCP, 2 sizes x 2 datagram sizes on udp-sink.
            let want = if *p == "udp-sink" { 4 } else { 2 };
            assert_eq!(n, want, "{v} on {p}");
        }
    }
    e.rows.iter().for_each(check_every_path_row);
    let meta = e.meta();
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["parameters"]["paths"], serde_json::json!(PATHS));
    assert!(
        meta["parameters"]["paths_skipped"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let s = skips(&meta);
    assert!(s.iter().all(|(_, _, why)| !why.is_empty()), "{s:?}");
    assert!(!in_ci() || s.is_empty(), "skipped in CI: {s:?}");
    // The seeds' table, from this run.
    let md = std::fs::read_to_string(e.dir.join("copies.md")).unwrap();
    for m in [
        "read + write",
        "mmap + write",
        "sendfile + DMA gather",
        "splice",
        "uring-send-zc-mmap",
        "datagrams of 65507 B",
        "datagrams of 1400 B",
    ] {
        assert!(md.contains(m), "{m} missing from copies.md:\n{md}");
    }
    assert!(r.stdout.contains("Did zero-copy happen?"), "{}", r.stdout);
    assert_sources_removed(t.path());
}

/// A datagram above the veth MTU leaves as IPv4 fragments: the sink counts every one.
#[test]
fn fragments_on_a_small_mtu_are_counted() {
    let Some((_t, _, e)) = run_as_root(
        "fragments_on_a_small_mtu_are_counted",
        "--paths udp-sink --veth-mtu 1500 --sizes 40000 --datagram 4000 --variants \
         classic-read-write,classic-sendfile,classic-splice,uring-send-zc-mmap",
    ) else {
        return;
    };
    assert_eq!(e.rows.len(), 4);
    for r in &e.rows {
        let m = metrics(r);
        assert_eq!(r.status, Status::Ok, "{}: {:?}", r.variant, r.error);
        // 4008 bytes of UDP over 1480-byte fragments: 3 frames per datagram, 10 datagrams.
        assert_eq!(m.extra["frames_per_datagram"], 3.0, "{}", r.variant);
        assert_eq!(m.extra["sink_rx_packets"], 30.0, "{}", r.variant);
    }
}

/// A pipe too small for a whole datagram skips the splice variants on udp-sink with the reason,
/// and they still run on TCP.
#[test]
fn skipped_combinations_have_reasons() {
    let Some((_t, _, e)) = run_as_root(
        "skipped_combinations_have_reasons",
        "--paths tcp-loopback,udp-sink --sizes 200000 --chunks 16KiB --pipe-size 64KiB \
         --variants classic-sendfile,classic-splice,uring-splice",
    ) else {
        return;
    };
    let ran = |v: &str, p: &str| e.rows.iter().any(|r| r.variant == v && path_of(r) == p);
    assert!(ran("classic-sendfile", "udp-sink") && ran("classic-sendfile", "tcp-loopback"));
    let s = skips(&e.meta());
    for v in ["classic-splice", "uring-splice"] {
        assert!(ran(v, "tcp-loopback"), "{v} runs on TCP");
        assert!(!ran(v, "udp-sink"), "{v} cannot send whole datagrams here");
        let (_, point, why) = s
            .iter()
            .find(|(n, _, _)| n == v)
            .unwrap_or_else(|| panic!("{v} skip not recorded: {s:?}"));
        assert!(point.starts_with("path=udp-sink"), "{point}");
        assert!(
            why.contains("pipe of 64KiB") && why.contains("datagram would be split"),
            "{why}"
        );
    }
    assert_eq!(s.len(), 2, "{s:?}");
}

/// Without root (hidden with ZCLAB_HIDE=root) the default is tcp-loopback alone, the other
/// paths recorded as skipped with the reason; a path asked for by name fails loudly.
#[test]
fn without_root_loopback_runs_and_named_veth_paths_fail() {
    let t = tempfile::tempdir().unwrap();
    let r = lab(&t.path().join("r"), t.path())
        .argv("--sizes 64KiB --variants classic-sendfile")
        .hide("root")
        .run()
        .ok();
    r.says("path udp-sink skipped: needs root");
    let e = r.exp_checked("file_to_socket");
    assert!(!e.rows.is_empty());
    assert!(e.rows.iter().all(|r| path_of(r) == "tcp-loopback"));
    let meta = e.meta();
    assert_eq!(
        meta["parameters"]["paths"],
        serde_json::json!(["tcp-loopback"])
    );
    let skipped = meta["parameters"]["paths_skipped"].as_array().unwrap();
    let names: Vec<&str> = skipped
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tcp-veth", "udp-sink"]);
    let why = |s: &serde_json::Value| s["reason"].as_str().unwrap().to_string();
    assert!(
        skipped.iter().all(|s| why(s).contains("needs root")),
        "{skipped:?}"
    );
    assert!(!e.dir.join("copies.md").exists(), "no sink, no table");
    // Named: refused before anything is created.
    let res2 = t.path().join("r2");
    lab(&res2, t.path())
        .argv("--paths tcp-loopback,udp-sink --sizes 64KiB")
        .hide("root")
        .run()
        .one_error_line(
            1,
            &["path udp-sink was requested but cannot run here: needs root"],
        );
    assert!(!res2.exists(), "no run directory for a refused request");
}

#[test]
fn datagram_sizes_are_checked_and_capped() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let r = Lab::new(BIN)
        .results(&res)
        .argv("--datagram 65KiB --paths udp-sink")
        .run();
    r.exits(2);
    assert!(r.stderr.contains("at most 64 KiB"), "{}", r.stderr);
    Lab::new(BIN)
        .results(&res)
        .argv("--paths nope")
        .run()
        .exits(2);
    assert!(!res.exists());
    if !need_root("datagram_sizes_are_checked_and_capped (the capped run)") {
        return;
    }
    let r = lab(&res, t.path())
        .argv("--paths udp-sink --sizes 200000 --datagram 64KiB --variants classic-sendfile")
        .run()
        .ok();
    assert!(r.stderr.contains("is sent as 65507 B"), "{}", r.stderr);
    let e = r.exp_checked("file_to_socket");
    assert_eq!(e.rows.len(), 1);
    assert_eq!(e.rows[0].params["chunk"], 65507);
    assert_eq!(metrics(&e.rows[0]).ops, 4, "200000 B in 4 datagrams");
}

/// SIGINT in the middle of a udp-sink trial: exit 130, results so far kept, nothing left.
#[test]
fn sigint_mid_run_leaves_no_namespace() {
    let Some(t) = root_scratch("sigint_mid_run_leaves_no_namespace") else {
        return;
    };
    let lab = Lab::new(BIN)
        .argv("--repeat 1000 --warmup 0")
        .workdir(t.path())
        .argv("--paths udp-sink,tcp-veth --sizes 16MiB --chunks 4KiB")
        .argv("--variants classic-read-write,classic-sendfile");
    let settle = Duration::from_millis(200);
    interrupt_mid_trial(lab, "file_to_socket", Signal::SIGINT, 130, settle);
    assert_sources_removed(t.path());
}
