//! file_to_socket end to end: every variant on tiny inputs, the files it writes, skipping when
//! io_uring is unavailable, and bad input.

mod common;

use common::*;
use zclab::results::Status;

const BIN: &str = env!("CARGO_BIN_EXE_file_to_socket");
const VARIANTS: &[&str] = &[
    "classic-read-write",
    "classic-mmap-write",
    "classic-sendfile",
    "classic-splice",
    "uring-read-send",
    "uring-read-fixed-send",
    "uring-splice",
    "uring-send-zc-fixed",
    "uring-send-zc-mmap",
];

#[test]
fn every_variant_moves_the_file_intact() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("results");
    // 100000 is not a multiple of the chunk: the last step is short.
    let o = run(
        BIN,
        &[
            "--paths",
            "tcp-loopback",
            "--sizes",
            "100000,1MiB",
            "--chunks",
            "4KiB,64KiB",
            "--repeat",
            "2",
            "--warmup",
            "0",
            "--results",
            res.to_str().unwrap(),
            "--workdir",
            t.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "exit {:?}\n{}", o.status, stderr(&o));
    let dir = experiment_dir(&res, "file_to_socket");
    let rows = rows_and_histograms(&dir);
    for v in VARIANTS {
        let mine: Vec<_> = rows.iter().filter(|r| r.variant == *v).collect();
        assert_eq!(mine.len(), 2 * 2 * 2, "{v}: 2 sizes x 2 chunks x 2 repeats");
        for r in mine {
            assert_eq!(r.status, Status::Ok, "{v} {}: {:?}", r.point, r.error);
            let i = r.integrity.as_ref().unwrap();
            assert!(i.ok && i.bytes_got == i.bytes_expected, "{v}: {i:?}");
            let m = r.metrics.as_ref().unwrap();
            assert_eq!(m.bytes, r.params["size"].as_u64().unwrap());
            assert!(m.latency.count > 0 && m.wall_ns > 0 && m.gbps > 0.0);
            assert!(m.peer_user_ns.is_some(), "peer usage recorded");
            assert!(r.histograms.contains_key("step"));
        }
    }
    // Zero-copy accounting: on loopback every send is reported copied (NOTES.md).
    for r in rows
        .iter()
        .filter(|r| r.variant.starts_with("uring-send-zc"))
    {
        let zc = r.metrics.as_ref().unwrap().zc.as_ref().expect("zc counts");
        assert_eq!(zc.notifications, zc.sends, "every send notified");
        assert!(zc.usage_reported);
        assert_eq!(zc.copied, zc.sends, "loopback copies");
        assert!((zc.copied_pct - 100.0).abs() < 1e-9);
        assert!(r.histograms.contains_key("release"));
    }
    // Syscalls are counted as root, and said to be unknown otherwise: never a silent 0.
    let m = rows[0].metrics.as_ref().unwrap();
    if require_root() {
        assert!(
            m.syscalls.known().is_some_and(|s| s > 0),
            "{:?}",
            m.syscalls
        );
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
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
    if std::env::var_os("CI").is_some() {
        assert!(
            meta["skipped"].as_array().unwrap().is_empty(),
            "skipped in CI: {}",
            meta["skipped"]
        );
    }
    // The file sent was removed.
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("zclab-"))
        .collect();
    assert!(left.is_empty(), "source files left behind: {left:?}");
}

#[test]
fn cold_cache_and_small_pool() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let o = run(
        BIN,
        &[
            "--sizes",
            "2MiB",
            "--chunks",
            "4KiB",
            "--cache",
            "cold",
            "--pool",
            "1",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--results",
            res.to_str().unwrap(),
            "--workdir",
            t.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = rows_and_histograms(&experiment_dir(&res, "file_to_socket"));
    assert!(rows.iter().all(|r| r.status == Status::Ok), "{rows:?}");
}

#[test]
fn io_uring_unavailable_skips_uring_variants_and_runs_classic() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let o = run(
        BIN,
        &[
            "--paths",
            "tcp-loopback",
            "--sizes",
            "64KiB",
            "--chunks",
            "4KiB",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--results",
            res.to_str().unwrap(),
        ],
        &[("ZCLAB_HIDE", "io_uring")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = experiment_dir(&res, "file_to_socket");
    let rows = rows_and_histograms(&dir);
    assert!(
        rows.iter()
            .all(|r| r.variant.starts_with("classic-") && r.status == Status::Ok)
    );
    assert_eq!(rows.len(), 4);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let skipped = meta["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 5);
    assert!(
        skipped.iter().all(|s| s["reason"]
            .as_str()
            .unwrap()
            .contains("io_uring unavailable")),
        "{skipped:?}"
    );
}

#[test]
fn a_requested_variant_that_cannot_run_fails_loudly() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let args = [
        "--paths",
        "tcp-loopback",
        "--sizes",
        "64KiB",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--results",
        res.to_str().unwrap(),
        "--variants",
        "uring-send-zc-fixed",
    ];
    let o = run(BIN, &args, &[("ZCLAB_HIDE", "op:SEND_ZC")]);
    assert_eq!(
        o.status.code(),
        Some(77),
        "nothing requested could run: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("requested variant cannot run here: uring-send-zc-fixed: IORING_OP_SEND_ZC needs Linux 6.0"), "{}", stderr(&o));
    // With another runnable variant requested too, the exit is a failure, not a skip.
    let args2 = [
        "--paths",
        "tcp-loopback",
        "--sizes",
        "64KiB",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--results",
        res.to_str().unwrap(),
        "--variants",
        "classic-sendfile,uring-send-zc-fixed",
    ];
    let o = run(BIN, &args2, &[("ZCLAB_HIDE", "op:SEND_ZC")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn bad_input_gets_one_clear_line_and_no_result_files() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let r = res.to_str().unwrap();
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
    ];
    for (args, msg) in cases {
        let mut a = vec![
            "--results",
            r,
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--sizes",
            "64KiB",
        ];
        a.extend_from_slice(args);
        let o = run(BIN, &a, &[]);
        let e = stderr(&o);
        if msg.is_empty() {
            assert!(
                o.status.success() || o.status.code() == Some(2),
                "{args:?}: {e}"
            );
            continue;
        }
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(e.contains(msg), "{args:?}: expected '{msg}' in: {e}");
        assert!(!e.contains("panicked"), "{args:?} panicked: {e}");
        assert!(
            !res.exists() || std::fs::read_dir(&res).unwrap().count() == 0,
            "{args:?} left a run directory"
        );
    }
    // Nothing measured was written by the refused runs (only the one valid '4K,' run may exist).
    if res.exists() {
        for run_dir in std::fs::read_dir(&res).unwrap().flatten() {
            for f in walk(&run_dir.path()) {
                assert!(
                    !f.to_string_lossy().contains(".tmp-"),
                    "temporary file left: {f:?}"
                );
            }
        }
    }
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                v.extend(walk(&path));
            } else {
                v.push(path);
            }
        }
    }
    v
}

#[test]
fn unwritable_results_directory_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let o = run(
        BIN,
        &["--results", file.to_str().unwrap(), "--sizes", "64KiB"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("cannot create") && e.contains("not-a-dir"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
}

#[test]
fn run_directories_are_never_overwritten() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let a = [
        "--sizes",
        "64KiB",
        "--chunks",
        "4KiB",
        "--variants",
        "classic-sendfile",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--results",
        res.to_str().unwrap(),
    ];
    assert!(run(BIN, &a, &[]).status.success());
    assert!(run(BIN, &a, &[]).status.success());
    assert_eq!(std::fs::read_dir(&res).unwrap().count(), 2);
    // Reusing an experiment directory through --run-dir is refused.
    let run_dir = std::fs::read_dir(&res)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let b = [
        "--sizes",
        "64KiB",
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--repeat",
        "1",
    ];
    let o = run(BIN, &b, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot create experiment directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn list_shows_variants_and_whether_they_run() {
    let o = run(BIN, &["--list"], &[("ZCLAB_HIDE", "op:SPLICE")]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for v in VARIANTS {
        assert!(s.contains(v), "{v} missing from --list");
    }
    assert!(
        s.contains("skipped here: IORING_OP_SPLICE needs Linux 5.7"),
        "{s}"
    );
    assert!(
        s.contains("paths: tcp-loopback; tcp-veth and udp-sink"),
        "{s}"
    );
}
