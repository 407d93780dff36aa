//! The suite runner and compare, end to end on a tiny run.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");

fn zclab(args: &str) -> Lab {
    Lab::new(ZCLAB).argv(args)
}

/// `zclab run file_to_socket` on a tiny input; returns the run directory.
fn tiny_run(res: &Path) -> PathBuf {
    let r = zclab("run file_to_socket --results")
        .arg(res)
        .argv("--no-plots --exp-args")
        .arg("--sizes 64KiB,1MiB --chunks 4KiB --repeat 2 --warmup 0 --duration 1ms --paths tcp-loopback,tcp-veth,udp-sink")
        .run()
        .ok();
    let out = &r.stdout;
    assert!(
        out.contains("file_to_socket") && out.contains("ok"),
        "{out}"
    );
    assert!(
        out.contains("Published claims"),
        "claims table printed: {out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("report: "))
        .expect("report path printed");
    let report = Path::new(line.trim_start_matches("report: "));
    report.parent().unwrap().to_path_buf()
}

#[test]
fn run_writes_one_run_directory_with_report_and_suite_json() {
    let t = tempfile::tempdir().unwrap();
    let dir = tiny_run(&t.path().join("r"));
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("## file_to_socket")
            && report.contains("classic-sendfile")
            && report.contains("## Published claims"),
        "{report}"
    );
    assert!(
        report.contains("kernel:"),
        "machine and kernel in the report"
    );
    let suite = read_json(&dir.join("suite.json"));
    assert_eq!(suite["status"], "complete");
    assert_eq!(suite["outcomes"][0]["status"], "ok");
    let rows = rows_and_histograms(&dir.join("file_to_socket"));
    // 9 variants x 2 sizes x 2 repeats per path: tcp-loopback, and as root tcp-veth and
    // udp-sink too.
    let paths = if require_root() { 3 } else { 1 };
    assert_eq!(rows.len(), 9 * 2 * 2 * paths);
    assert!(dir.join("claims.json").exists());
}

#[test]
fn unknown_experiment_is_refused_without_creating_anything() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let r = zclab("run no_such_thing --results").arg(&res).run();
    assert_eq!(r.code(), Some(1));
    let msg = "unknown experiment 'no_such_thing'";
    assert!(r.stderr.contains(msg), "{}", r.stderr);
    assert!(!res.exists());
}

#[test]
fn every_preset_gives_every_experiment_arguments_it_accepts() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    for preset in ["quick", "full", "claims"] {
        let r = zclab("run --check --preset")
            .arg(preset)
            .arg("--results")
            .arg(&res)
            .run()
            .ok();
        assert!(
            r.stdout
                .contains(&format!("preset {preset}: the arguments of all")),
            "{}",
            r.stdout
        );
        // Every experiment said what it would measure.
        assert!(r.stdout.contains("storage_read: ") && r.stdout.contains("  point: "));
    }
    // A refused argument names the experiment and its arguments, and nothing is measured.
    let r = zclab("run --check --preset claims storage_read --results")
        .arg(&res)
        .arg("--exp-args=--repeat auto:41")
        .run();
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr.contains("storage_read refused their arguments") && r.stderr.contains("auto:41"),
        "{}",
        r.stderr
    );
    assert!(!res.exists());
}

#[test]
fn compare_two_runs_side_by_side() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let a = tiny_run(&res);
    let b = tiny_run(&res);
    assert_ne!(a, b);
    let md = t.path().join("cmp.md");
    zclab("compare")
        .arg(&a)
        .arg(&b)
        .arg("--out")
        .arg(&md)
        .run()
        .ok();
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("## Kernel capabilities") && text.contains("no capability differences"),
        "{text}"
    );
    let row = "| classic-sendfile | path=tcp-loopback,size=1MiB,chunk=4KiB | GB/s |";
    assert!(text.contains(row), "{text}");
    // Bad input: one directory, or one that is not a run.
    assert!(!zclab("compare").arg(&a).run().status.success());
    let r = zclab("compare").arg(&a).arg(t.path()).run();
    r.exits(1).says("holds no experiment results");
}

#[test]
fn probe_text_and_json() {
    let r = zclab("probe").run().ok();
    let s = &r.stdout;
    assert!(s.contains("io_uring") && s.contains("opcodes"), "{s}");
    let r = zclab("probe --json").run();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let ops = v["io_uring"]["opcodes"].as_array().unwrap();
    assert!(ops.iter().any(|x| x == "SEND_ZC"));
    let r = zclab("probe").hide("bogus-token").run();
    assert_eq!(r.code(), Some(1));
    assert!(r.stderr.contains("bogus-token"));
}
