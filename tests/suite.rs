//! The suite runner and compare, end to end on a tiny run.

mod common;

use common::*;

const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");

fn tiny_run(res: &str) -> std::path::PathBuf {
    let o = run(
        ZCLAB,
        &[
            "run",
            "file_to_socket",
            "--results",
            res,
            "--no-plots",
            "--exp-args",
            "--sizes 64KiB,1MiB --chunks 4KiB --repeat 2 --warmup 0",
        ],
        &[],
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
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
    std::path::Path::new(line.trim_start_matches("report: "))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn run_writes_one_run_directory_with_report_and_suite_json() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let dir = tiny_run(res.to_str().unwrap());
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
    let suite: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("suite.json")).unwrap()).unwrap();
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
    let o = run(
        ZCLAB,
        &["run", "no_such_thing", "--results", res.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown experiment 'no_such_thing'"),
        "{}",
        stderr(&o)
    );
    assert!(!res.exists());
}

#[test]
fn compare_two_runs_side_by_side() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let a = tiny_run(res.to_str().unwrap());
    let b = tiny_run(res.to_str().unwrap());
    assert_ne!(a, b);
    let md = t.path().join("cmp.md");
    let o = run(
        ZCLAB,
        &[
            "compare",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            md.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("## Kernel capabilities") && text.contains("no capability differences"),
        "{text}"
    );
    assert!(
        text.contains("| classic-sendfile | path=tcp-loopback,size=1MiB,chunk=4KiB | GB/s |"),
        "{text}"
    );
    // Bad input: one directory, or one that is not a run.
    let o = run(ZCLAB, &["compare", a.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    let o = run(
        ZCLAB,
        &["compare", a.to_str().unwrap(), t.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("holds no experiment results"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn probe_text_and_json() {
    let o = run(ZCLAB, &["probe"], &[]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("io_uring") && s.contains("opcodes"), "{s}");
    let o = run(ZCLAB, &["probe", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["io_uring"]["opcodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "SEND_ZC")
    );
    let o = run(ZCLAB, &["probe"], &[("ZCLAB_HIDE", "bogus-token")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bogus-token"));
}
