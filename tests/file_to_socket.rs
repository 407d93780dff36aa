//! file_to_socket end to end: every variant on tiny inputs, the files it writes, skipping when
//! io_uring is unavailable, and bad input.

mod common;

use common::*;
use std::path::Path;
use zclab::results::Status;

const BIN: &str = env!("CARGO_BIN_EXE_file_to_socket");

/// file_to_socket on loopback, one repeat, results under `res`.
fn lab(res: &Path) -> Lab {
    Lab::new(BIN).argv("--paths tcp-loopback").tiny(res)
}

#[test]
fn every_variant_moves_the_file_intact() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("results");
    // 100000 is not a multiple of the chunk: the last step is short.
    let e = Lab::new(BIN)
        .argv("--paths tcp-loopback --sizes 100000,1MiB --chunks 4KiB,64KiB")
        .argv("--repeat 2 --warmup 0")
        .results(&res)
        .workdir(t.path())
        .run()
        .ok()
        .exp_checked("file_to_socket");
    for v in FILE_TO_SOCKET_VARIANTS {
        let mine: Vec<_> = e.rows.iter().filter(|r| r.variant == *v).collect();
        assert_eq!(mine.len(), 2 * 2 * 2, "{v}: 2 sizes x 2 chunks x 2 repeats");
        for r in mine {
            let m = assert_intact(r);
            assert_eq!(m.bytes, r.params["size"].as_u64().unwrap());
            assert!(m.latency.count > 0 && m.wall_ns > 0 && m.gbps > 0.0);
            assert!(m.peer_user_ns.is_some(), "peer usage recorded");
            assert!(r.histograms.contains_key("step"));
        }
    }
    // Zero-copy accounting: on loopback every send is reported copied (NOTES.md).
    for r in e
        .rows
        .iter()
        .filter(|r| r.variant.starts_with("uring-send-zc"))
    {
        let zc = zc(r);
        assert_eq!(zc.notifications, zc.sends, "every send notified");
        assert!(zc.usage_reported);
        assert_eq!(zc.copied, zc.sends, "loopback copies");
        assert!((zc.copied_pct - 100.0).abs() < 1e-9);
        assert!(r.histograms.contains_key("release"));
    }
    // Syscalls are counted as root, and said to be unknown otherwise: never a silent 0.
    let m = metrics(&e.rows[0]);
    if require_root() {
        let n = m.syscalls.known();
        assert!(n.is_some_and(|s| s > 0), "{:?}", m.syscalls);
    }
    let meta = e.meta();
    assert_eq!(meta["status"], "complete");
    assert!(
        meta["probe"]["io_uring"]["opcodes"]
            .as_array()
            .unwrap()
            .len()
            > 40
    );
    assert!(meta["git_revision"].is_string());
    // In CI (root, a kernel with every capability) nothing may be skipped.
    assert_none_skipped_in_ci(&meta);
    // The file sent was removed.
    assert_sources_removed(t.path());
}

/// `--flows 3`: every variant sends the file over three connections from one thread, each
/// stream arrives intact, and the row is the aggregate with each flow's rate and the fairness.
#[test]
fn three_flows_from_one_thread() {
    let t = tempfile::tempdir().unwrap();
    let e = lab(&t.path().join("r"))
        .argv("--sizes 1MiB --chunks 64KiB --flows 3")
        .workdir(t.path())
        .run()
        .ok()
        .exp_checked("file_to_socket");
    assert_variants_on(&e.rows, FILE_TO_SOCKET_VARIANTS, &["tcp-loopback"]);
    for r in &e.rows {
        let m = assert_intact(r);
        assert_eq!(m.bytes, 3 << 20, "three flows of 1 MiB: {}", r.variant);
        assert_eq!((m.extra["flows"], m.extra["flows_failed"]), (3.0, 0.0));
        assert!((0..3).all(|i| m.extra[&format!("flow{i}_gbps")] > 0.0));
        assert!(m.extra["jain_fairness"] > 1.0 / 3.0);
        assert!(integrity(r).method.starts_with("per flow, 3 flows"));
    }
}

/// One flow's receiver resets: that flow fails, named, and the other two are recorded.
#[test]
fn a_dead_flow_fails_alone() {
    let t = tempfile::tempdir().unwrap();
    let r = lab(&t.path().join("r"))
        .argv("--sizes 2MiB --chunks 64KiB --flows 3")
        .args(&["--variants", "classic-sendfile,uring-send-zc-fixed"])
        .fault("peer-reset-after:64KiB@classic-sendfile")
        .workdir(t.path())
        .run();
    assert_eq!(r.code(), Some(1), "{}", r.text());
    let e = r.exp("file_to_socket");
    assert_only_flow_0_failed(&e.rows, "classic-sendfile", "uring-send-zc-fixed", 3);
}

#[test]
fn cold_cache_and_small_pool() {
    let t = tempfile::tempdir().unwrap();
    let e = Lab::new(BIN)
        .argv("--sizes 2MiB --chunks 4KiB --cache cold --pool 1 --repeat 1 --warmup 0")
        .results(&t.path().join("r"))
        .workdir(t.path())
        .run()
        .ok()
        .exp_checked("file_to_socket");
    assert!(
        e.rows.iter().all(|r| r.status == Status::Ok),
        "{:?}",
        e.rows
    );
}

#[test]
fn io_uring_unavailable_skips_uring_variants_and_runs_classic() {
    let t = tempfile::tempdir().unwrap();
    let e = lab(&t.path().join("r"))
        .argv("--sizes 64KiB --chunks 4KiB")
        .hide("io_uring")
        .run()
        .ok()
        .exp_checked("file_to_socket");
    let classic_ok =
        |r: &zclab::results::Row| r.variant.starts_with("classic-") && r.status == Status::Ok;
    assert!(e.rows.iter().all(classic_ok));
    assert_eq!(e.rows.len(), 4);
    let meta = e.meta();
    let skipped = meta["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 5);
    let why = |s: &serde_json::Value| s["reason"].as_str().unwrap().to_string();
    assert!(
        skipped
            .iter()
            .all(|s| why(s).contains("io_uring unavailable")),
        "{skipped:?}"
    );
}

#[test]
fn a_requested_variant_that_cannot_run_fails_loudly() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let r = lab(&res)
        .argv("--sizes 64KiB --variants uring-send-zc-fixed")
        .hide("op:SEND_ZC")
        .run();
    assert_eq!(
        r.code(),
        Some(77),
        "nothing requested could run: {}",
        r.stderr
    );
    let msg = "requested variant cannot run here: uring-send-zc-fixed: \
               IORING_OP_SEND_ZC needs Linux 6.0";
    assert!(r.stderr.contains(msg), "{}", r.stderr);
    // With another runnable variant requested too, the exit is a failure, not a skip.
    lab(&res)
        .argv("--sizes 64KiB --variants classic-sendfile,uring-send-zc-fixed")
        .hide("op:SEND_ZC")
        .run()
        .exits(1);
}

#[test]
fn bad_input_gets_one_clear_line_and_no_result_files() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let cases: &[(&[&str], &str)] = &[
        (&["--sizes", "0"], "size must be greater than 0"),
        (&["--sizes", "12XB"], "unknown size unit 'XB'"),
        (
            &["--variants", "classic-nope"],
            "unknown variant 'classic-nope'",
        ),
        (
            &["--workdir", "/nonexistent/dir"],
            "work directory /nonexistent/dir does not exist",
        ),
        (&["--cpus", "0,99"], "CPU 99 does not exist"),
        (&["--repeat", "0"], "repeat"),
        (&["--datagram", "100KiB"], "at most 64 KiB"),
        (&["--paths", "tcp-nowhere"], "tcp-nowhere"),
        (
            &["--flows", "2", "--threads", "3"],
            "--threads 3 is more than --flows 2",
        ),
        (
            &["--flows", "4", "--threads", "2"],
            "serves its flows from one thread",
        ),
        (
            &["--flows", "2", "--peer-cpus", "4096"],
            "CPU 4096 does not exist",
        ),
    ];
    for (args, msg) in cases {
        let r = Lab::new(BIN)
            .results(&res)
            .argv("--repeat 1 --warmup 0 --sizes 64KiB")
            .args(args)
            .run();
        assert_eq!(r.code(), Some(2), "{args:?} is bad usage: {}", r.stderr);
        assert!(
            r.stderr.contains(msg),
            "{args:?}: expected '{msg}' in: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("panicked"),
            "{args:?} panicked: {}",
            r.stderr
        );
        assert_no_run_dir(&res);
    }
    // Nothing measured was written by the refused runs.
    assert_no_tmp_files(&res);
}

#[test]
fn unwritable_results_directory_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    Lab::new(BIN)
        .results(&file)
        .argv("--sizes 64KiB")
        .run()
        .one_error_line(1, &["cannot create", "not-a-dir"]);
}

#[test]
fn run_directories_are_never_overwritten() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let twice = || {
        Lab::new(BIN)
            .argv("--sizes 64KiB --chunks 4KiB --variants classic-sendfile")
            .argv("--repeat 1 --warmup 0")
            .results(&res)
            .run()
            .ok()
    };
    twice();
    twice();
    assert_eq!(std::fs::read_dir(&res).unwrap().count(), 2);
    // Reusing an experiment directory through --run-dir is refused.
    let run_dir = first_run_dir(&res);
    let r = Lab::new(BIN)
        .argv("--sizes 64KiB --run-dir")
        .arg(&run_dir)
        .argv("--repeat 1")
        .run();
    r.exits(1).says("cannot create experiment directory");
}

#[test]
fn list_shows_variants_and_whether_they_run() {
    let r = Lab::new(BIN).arg("--list").hide("op:SPLICE").run().ok();
    for v in FILE_TO_SOCKET_VARIANTS {
        assert!(r.stdout.contains(v), "{v} missing from --list");
    }
    let s = &r.stdout;
    assert!(
        s.contains("skipped here: IORING_OP_SPLICE needs Linux 5.7"),
        "{s}"
    );
    assert!(
        s.contains("paths: tcp-loopback; tcp-veth and udp-sink"),
        "{s}"
    );
}
