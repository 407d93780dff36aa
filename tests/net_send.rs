//! net_send end to end: every variant on tiny inputs, zero-copy truth per path, integrity with
//! the smallest buffer pool, clean-up of the lab's namespaces after SIGINT/SIGTERM, and bad
//! input. Root-only tests skip outside CI and fail inside it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use zclab::results::hgrm;
use zclab::results::row::{Row, Status, parse_jsonl};

const BIN: &str = env!("CARGO_BIN_EXE_net_send");

const ZC_VARIANTS: &[&str] = &[
    "classic-send-msg-zerocopy",
    "uring-send-zc",
    "uring-send-zc-fixed",
    "uring-sendmsg-zc",
];
const ALL_VARIANTS: &[&str] = &[
    "classic-send",
    "classic-send-msg-zerocopy",
    "uring-send",
    "uring-send-zc",
    "uring-send-zc-fixed",
    "uring-sendmsg-zc",
];

fn need_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root, and CI is set"
    );
    eprintln!("skipping {test}: needs root (network namespaces and veth pairs)");
    false
}

fn run(results: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--repeat", "1", "--warmup", "0", "--results"])
        .arg(results)
        .args(args)
        .output()
        .expect("run net_send")
}

/// The experiment directory of the only run under `results`.
fn exp_dir(results: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(results)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].join("net_send")
}

fn rows(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("summary.jsonl")).unwrap();
    parse_jsonl(&text).unwrap()
}

/// Checks every row is ok with integrity ok and parseable histograms; zero-copy rows carry
/// complete accounting and a release histogram. Returns the rows.
fn check_rows(dir: &Path, variants: &[&str], paths: &[&str]) -> Vec<Row> {
    let rows = rows(dir);
    for v in variants {
        for p in paths {
            assert!(
                rows.iter()
                    .any(|r| r.variant == *v && r.params["path"] == *p),
                "no row for {v} on {p}"
            );
        }
    }
    for r in &rows {
        assert_eq!(
            r.status,
            Status::Ok,
            "{} {}: {:?}",
            r.variant,
            r.point,
            r.error
        );
        let i = r.integrity.as_ref().expect("integrity recorded");
        assert!(i.ok, "{} {}: {i:?}", r.variant, r.point);
        assert_eq!(i.bytes_got, i.bytes_expected);
        let m = r.metrics.as_ref().expect("metrics");
        assert!(m.bytes > 0 && m.latency.count == m.ops, "{m:?}");
        for f in r.histograms.values() {
            let h = hgrm::parse(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap();
            assert!(h.total_count > 0 && !h.lines.is_empty(), "{f}");
        }
        if ZC_VARIANTS.contains(&r.variant.as_str()) {
            let z = m.zc.as_ref().expect("zero-copy accounting");
            assert!(z.usage_reported);
            assert!(z.sends >= m.ops, "{z:?}");
            assert_eq!(z.ids_completed, z.sends, "every send completed: {z:?}");
            assert_eq!(z.bytes, m.bytes, "{z:?}");
            assert!(z.notifications >= 1 && z.notifications <= z.sends, "{z:?}");
            assert!(r.histograms.contains_key("release"), "{:?}", r.histograms);
            assert!(m.extra_latency.contains_key("release"));
        } else {
            assert!(m.zc.is_none());
        }
    }
    rows
}

/// Fails (in CI) when a variant this kernel supports was skipped.
fn check_nothing_skipped(dir: &Path) {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    for v in meta["variants"].as_array().unwrap() {
        let st = v["status"].as_str().unwrap();
        if st == "skipped" {
            let msg = format!("{} skipped: {}", v["name"], v["reason"]);
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("note: {msg}");
        }
        assert_ne!(st, "failed", "{v}");
    }
}

fn copied_pct(r: &Row) -> f64 {
    r.metrics.as_ref().unwrap().zc.as_ref().unwrap().copied_pct
}

#[test]
fn list_and_bad_input() {
    let out = Command::new(BIN).arg("--list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for v in ALL_VARIANTS {
        assert!(text.contains(v), "{text}");
    }
    let t = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (&["--sizes", "0"][..], "0"),
        (&["--sizes", "4KiB,0"][..], "0"),
        (&["--paths", "tcp-nowhere"][..], "tcp-nowhere"),
        (&["--variants", "classic-sendd"][..], "classic-sendd"),
        (&["--pool", "0"][..], "0"),
        (&["--reap-every", "x"][..], "x"),
    ] {
        let out = run(t.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(err.starts_with("net_send: error: "), "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Bad input never creates a run directory.
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
}

/// The smallest pool (two buffers) on loopback TCP: no byte arrives corrupted, and every
/// zero-copy send is reported copied (the kernel copies on local delivery).
#[test]
fn loopback_all_variants_pool_of_two() {
    let t = tempfile::tempdir().unwrap();
    let out = run(
        t.path(),
        &[
            "--paths",
            "tcp-loopback",
            "--sizes",
            "1000B,64KiB",
            "--bytes",
            "2MiB",
            "--pool",
            "2",
            "--reap-every",
            "1,4",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = exp_dir(t.path());
    let rows = check_rows(&dir, ALL_VARIANTS, &["tcp-loopback"]);
    for r in rows
        .iter()
        .filter(|r| ZC_VARIANTS.contains(&r.variant.as_str()))
    {
        assert_eq!(copied_pct(r), 100.0, "{} {}", r.variant, r.point);
    }
    let mz: Vec<&Row> = rows
        .iter()
        .filter(|r| r.variant == "classic-send-msg-zerocopy")
        .collect();
    assert_eq!(mz.len(), 4, "two sizes x two reap values");
    // The other variants run once per size, at the first reap value.
    assert_eq!(rows.iter().filter(|r| r.variant == "uring-send").count(), 2);
    check_nothing_skipped(&dir);
}

/// `--sink discard`: the peer thread drops the bytes with recv(MSG_TRUNC). Every variant still
/// delivers every byte, the rows say the byte count is all that was checked, and the peer's
/// CPU time is recorded.
#[test]
fn discarding_receiver_counts_every_byte() {
    let t = tempfile::tempdir().unwrap();
    let out = run(
        t.path(),
        &[
            "--paths",
            "tcp-loopback",
            "--sizes",
            "1000B,64KiB",
            "--bytes",
            "4MiB",
            "--sink",
            "discard",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = exp_dir(t.path());
    let rows = check_rows(&dir, ALL_VARIANTS, &["tcp-loopback"]);
    for r in &rows {
        let i = r.integrity.as_ref().unwrap();
        assert!(i.method.starts_with("byte count only"), "{i:?}");
        assert!(i.ok && i.bytes_got == i.bytes_expected, "{i:?}");
        assert!(r.metrics.as_ref().unwrap().peer_sys_ns.is_some());
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(
        meta["parameters"]["sink"], "discard",
        "{}",
        meta["parameters"]
    );
}

fn ns_leftovers(pid: u32) -> Vec<String> {
    let mut left = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for l in String::from_utf8_lossy(&ns.stdout).lines() {
        if l.starts_with(&format!("zcsend-{pid}-")) {
            left.push(l.to_string());
        }
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        if l.contains(&format!(" zs{pid}")) {
            left.push(l.to_string());
        }
    }
    left
}

/// tcp-veth copies (a local receiver in namespace B), udp-sink does not; two buffers suffice
/// for intact data; the sink's counters match; crossover.json is written; nothing is left.
#[test]
fn veth_paths_tell_the_truth() {
    if !need_root("veth_paths_tell_the_truth") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let child = Command::new(BIN)
        .args(["--repeat", "1", "--warmup", "0", "--results"])
        .arg(t.path())
        .args([
            "--paths",
            "tcp-veth,udp-sink",
            "--sizes",
            "4KiB,64KiB",
            "--bytes",
            "2MiB",
            "--pool",
            "2",
            "--inflight",
            "2",
            "--reap-every",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ns_leftovers(pid).is_empty(), "{:?}", ns_leftovers(pid));
    let dir = exp_dir(t.path());
    let rows = check_rows(&dir, ALL_VARIANTS, &["tcp-veth", "udp-sink"]);
    for r in rows
        .iter()
        .filter(|r| ZC_VARIANTS.contains(&r.variant.as_str()))
    {
        let want = if r.params["path"] == "udp-sink" {
            0.0
        } else {
            100.0
        };
        assert_eq!(copied_pct(r), want, "{} {}", r.variant, r.point);
    }
    for r in rows.iter().filter(|r| r.params["path"] == "udp-sink") {
        let m = r.metrics.as_ref().unwrap();
        assert_eq!(m.extra["sink_rx_packets"], m.ops as f64, "{}", r.variant);
        assert_eq!(
            m.extra["sink_ip_in_addr_errors"], m.ops as f64,
            "{}",
            r.variant
        );
        assert!(
            r.point.contains("size=65507B") || r.point.contains("size=4KiB"),
            "{}",
            r.point
        );
    }
    let cross: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("crossover.json")).unwrap())
            .unwrap();
    let vs = cross["variants"].as_array().unwrap();
    assert_eq!(vs.len(), 4, "{cross}");
    for v in vs {
        assert!(v["conclusive"].is_boolean() && v["points"].as_array().unwrap().len() == 2);
        let uring = v["variant"].as_str().unwrap().starts_with("uring-");
        assert_eq!(v["vs_uring_send"].is_object(), uring, "{v}");
    }
    assert!(stdout.contains("crossover on udp-sink"), "{stdout}");
    check_nothing_skipped(&dir);
}

fn interrupt_mid_run(sig: nix::sys::signal::Signal, code: i32) {
    let t = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["--repeat", "1000", "--warmup", "0", "--results"])
        .arg(t.path())
        .args([
            "--paths",
            "udp-sink,tcp-veth",
            "--sizes",
            "64KiB",
            "--variants",
            "classic-send,uring-send-zc",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the namespaces exist and at least one trial has been written.
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        assert!(
            Instant::now() < deadline,
            "no namespaces or no trial within 30 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "net_send ended early");
        let found = std::fs::read_dir(t.path())
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path().join("net_send/summary.jsonl"))
            .filter(|p| p.exists());
        if let Some(p) = found {
            if !ns_leftovers(pid).is_empty() {
                break p;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(300)); // mid-trial, most likely
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "net_send did not stop after {sig}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(code), "{err}");
    assert!(
        ns_leftovers(pid).is_empty(),
        "left behind: {:?}",
        ns_leftovers(pid)
    );
    let rows = parse_jsonl(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Ok || r.status == Status::Interrupted),
        "{err}"
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(summary.with_file_name("meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["status"], "interrupted");
}

#[test]
fn sigint_and_sigterm_leave_nothing_behind() {
    if !need_root("sigint_and_sigterm_leave_nothing_behind") {
        return;
    }
    interrupt_mid_run(nix::sys::signal::Signal::SIGINT, 130);
    interrupt_mid_run(nix::sys::signal::Signal::SIGTERM, 143);
}

/// Without root the veth paths are skipped with the reason and loopback still runs.
#[test]
fn without_root_the_veth_paths_are_skipped() {
    let t = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env("ZCLAB_HIDE", "root")
        .args(["--repeat", "1", "--warmup", "0", "--results"])
        .arg(t.path())
        .args([
            "--paths",
            "tcp-loopback,udp-sink",
            "--sizes",
            "64KiB",
            "--bytes",
            "1MiB",
            "--variants",
            "classic-send",
            "--reap-every",
            "1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let dir = exp_dir(t.path());
    let rows = rows(&dir);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].params["path"], "tcp-loopback");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let v = &meta["variants"][0];
    let skipped = v["points_skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{v}");
    assert!(skipped[0][1].as_str().unwrap().contains("root"), "{v}");
}
