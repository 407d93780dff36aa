//! file_to_socket on every network path: every variant on tcp-loopback, tcp-veth and udp-sink
//! on tiny inputs, the sink's counters and the zero-copy truth on udp-sink, (variant, path)
//! combinations that cannot run skipped with their reason, the paths chosen without root, and
//! nothing left behind, also after SIGINT. Root-only tests skip outside CI and fail inside it.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use zclab::results::{Row, Status};

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
const ZC: &[&str] = &["uring-send-zc-fixed", "uring-send-zc-mmap"];
const PATHS: &[&str] = &["tcp-loopback", "tcp-veth", "udp-sink"];

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

/// Runs the binary with `args` after the tiny-run options, returning its pid and output.
fn spawn_run(results: &Path, work: &Path, args: &[&str], env: &[(&str, &str)]) -> (u32, Output) {
    let mut c = Command::new(BIN);
    c.args(["--repeat", "1", "--warmup", "0", "--results"])
        .arg(results)
        .arg("--workdir")
        .arg(work)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c.spawn().expect("run file_to_socket");
    let pid = child.id();
    (pid, child.wait_with_output().unwrap())
}

/// Namespaces and links of process `pid` still present.
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

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

/// (variant, point, reason) of every skip recorded: whole variants and single points.
fn skips(meta: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in meta["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_string();
        if v["status"] == "skipped" {
            out.push((
                name.clone(),
                "*".into(),
                v["reason"].as_str().unwrap_or("").into(),
            ));
        }
        for p in v["points_skipped"].as_array().unwrap() {
            out.push((
                name.clone(),
                p[0].as_str().unwrap().into(),
                p[1].as_str().unwrap_or("").into(),
            ));
        }
    }
    out
}

fn path_of(r: &Row) -> &str {
    r.params["path"].as_str().unwrap()
}

/// Every variant on every path: data intact, the sink's counters exactly the datagrams sent,
/// zero copy on the sink and copies where a local receiver is, the seeds' table written, and
/// no namespace or link left.
#[test]
fn every_variant_on_every_path() {
    if !need_root("every_variant_on_every_path") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    // 100000 is a multiple of neither the chunk nor the datagrams: the last step is short.
    let (pid, o) = spawn_run(
        &res,
        t.path(),
        &[
            "--paths",
            "tcp-loopback,tcp-veth,udp-sink",
            "--sizes",
            "100000,1MiB",
            "--chunks",
            "16KiB",
            "--datagram",
            "65507,1400",
            "--pool",
            "2",
        ],
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(ns_leftovers(pid).is_empty(), "{:?}", ns_leftovers(pid));
    let dir = experiment_dir(&res, "file_to_socket");
    let rows = rows_and_histograms(&dir);
    for v in VARIANTS {
        for p in PATHS {
            let n = rows
                .iter()
                .filter(|r| r.variant == *v && path_of(r) == *p)
                .count();
            // 2 sizes x 1 chunk on TCP, 2 sizes x 2 datagram sizes on udp-sink.
            let want = if *p == "udp-sink" { 4 } else { 2 };
            assert_eq!(n, want, "{v} on {p}");
        }
    }
    for r in &rows {
        let what = format!("{} {}", r.variant, r.point);
        assert_eq!(r.status, Status::Ok, "{what}: {:?}", r.error);
        let i = r.integrity.as_ref().unwrap();
        assert!(i.ok && i.bytes_got == i.bytes_expected, "{what}: {i:?}");
        let m = r.metrics.as_ref().unwrap();
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
            assert_eq!(
                m.extra["sink_rx_bytes"],
                (size + datagrams * (8 + 34)) as f64,
                "{what}"
            );
            assert_eq!(
                m.extra["sink_ip_in_addr_errors"], datagrams as f64,
                "{what}: dropped at IP"
            );
            assert_eq!(m.extra["datagram_bytes"], chunk as f64);
            assert!(m.peer_user_ns.is_none(), "no receiver on the sink");
        } else {
            assert!(m.peer_user_ns.is_some(), "{what}: receiver's usage");
            assert!(i.method.contains("xxh3"), "{what}");
        }
        if ZC.contains(&r.variant.as_str()) {
            let z = m.zc.as_ref().expect("zero-copy accounting");
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
    let meta = meta(&dir);
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
    if std::env::var_os("CI").is_some() {
        assert!(s.is_empty(), "skipped in CI: {s:?}");
    }
    // The seeds' table, from this run.
    let md = std::fs::read_to_string(dir.join("copies.md")).unwrap();
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
    assert!(out.contains("Did zero-copy happen?"), "{out}");
    assert!(
        std::fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("zclab-")),
        "source files removed"
    );
}

/// A datagram above the veth MTU leaves as IPv4 fragments: the sink counts every one.
#[test]
fn fragments_on_a_small_mtu_are_counted() {
    if !need_root("fragments_on_a_small_mtu_are_counted") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let (pid, o) = spawn_run(
        &res,
        t.path(),
        &[
            "--paths",
            "udp-sink",
            "--veth-mtu",
            "1500",
            "--sizes",
            "40000",
            "--datagram",
            "4000",
            "--variants",
            "classic-read-write,classic-sendfile,classic-splice,uring-send-zc-mmap",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ns_leftovers(pid).is_empty());
    let rows = rows_and_histograms(&experiment_dir(&res, "file_to_socket"));
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let m = r.metrics.as_ref().unwrap();
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
    if !need_root("skipped_combinations_have_reasons") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let (pid, o) = spawn_run(
        &res,
        t.path(),
        &[
            "--paths",
            "tcp-loopback,udp-sink",
            "--sizes",
            "200000",
            "--chunks",
            "16KiB",
            "--pipe-size",
            "64KiB",
            "--variants",
            "classic-sendfile,classic-splice,uring-splice",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(ns_leftovers(pid).is_empty());
    let dir = experiment_dir(&res, "file_to_socket");
    let rows = rows_and_histograms(&dir);
    let ran = |v: &str, p: &str| rows.iter().any(|r| r.variant == v && path_of(r) == p);
    assert!(ran("classic-sendfile", "udp-sink") && ran("classic-sendfile", "tcp-loopback"));
    let s = skips(&meta(&dir));
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
    let res = t.path().join("r");
    let hide = [("ZCLAB_HIDE", "root")];
    let (_, o) = spawn_run(
        &res,
        t.path(),
        &["--sizes", "64KiB", "--variants", "classic-sendfile"],
        &hide,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("path udp-sink skipped: needs root"));
    let dir = experiment_dir(&res, "file_to_socket");
    let rows = rows_and_histograms(&dir);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| path_of(r) == "tcp-loopback"));
    let meta = meta(&dir);
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
    assert!(
        skipped
            .iter()
            .all(|s| s["reason"].as_str().unwrap().contains("needs root")),
        "{skipped:?}"
    );
    assert!(!dir.join("copies.md").exists(), "no sink, no table");
    // Named: refused before anything is created.
    let res2 = t.path().join("r2");
    let (_, o) = spawn_run(
        &res2,
        t.path(),
        &["--paths", "tcp-loopback,udp-sink", "--sizes", "64KiB"],
        &hide,
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("path udp-sink was requested but cannot run here: needs root"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(!res2.exists(), "no run directory for a refused request");
}

#[test]
fn datagram_sizes_are_checked_and_capped() {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let o = run(
        BIN,
        &[
            "--results",
            res.to_str().unwrap(),
            "--datagram",
            "65KiB",
            "--paths",
            "udp-sink",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("at most 64 KiB"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    let o = run(
        BIN,
        &["--results", res.to_str().unwrap(), "--paths", "nope"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!res.exists());
    if !need_root("datagram_sizes_are_checked_and_capped (the capped run)") {
        return;
    }
    let (_, o) = spawn_run(
        &res,
        t.path(),
        &[
            "--paths",
            "udp-sink",
            "--sizes",
            "200000",
            "--datagram",
            "64KiB",
            "--variants",
            "classic-sendfile",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("is sent as 65507 B"), "{}", stderr(&o));
    let rows = rows_and_histograms(&experiment_dir(&res, "file_to_socket"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].params["chunk"], 65507);
    assert_eq!(
        rows[0].metrics.as_ref().unwrap().ops,
        4,
        "200000 B in 4 datagrams"
    );
}

/// SIGINT in the middle of a udp-sink trial: exit 130, results so far kept, nothing left.
#[test]
fn sigint_mid_run_leaves_no_namespace() {
    if !need_root("sigint_mid_run_leaves_no_namespace") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let mut child = Command::new(BIN)
        .args(["--repeat", "1000", "--warmup", "0", "--results"])
        .arg(&res)
        .arg("--workdir")
        .arg(t.path())
        .args([
            "--paths",
            "udp-sink,tcp-veth",
            "--sizes",
            "16MiB",
            "--chunks",
            "4KiB",
            "--variants",
            "classic-read-write,classic-sendfile",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let summary = loop {
        assert!(Instant::now() < deadline, "no trial within 30 s");
        assert!(child.try_wait().unwrap().is_none(), "ended early");
        let found = std::fs::read_dir(&res)
            .ok()
            .and_then(|mut d| d.next())
            .map(|e| e.unwrap().path().join("file_to_socket/summary.jsonl"))
            .filter(|p| p.exists());
        if let Some(p) = found {
            if !ns_leftovers(pid).is_empty() {
                break p;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(ns_leftovers(pid).is_empty(), "{:?}", ns_leftovers(pid));
    let rows =
        zclab::results::row::parse_jsonl(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Ok || r.status == Status::Interrupted),
        "{err}"
    );
    assert!(
        std::fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("zclab-")),
        "source file removed"
    );
}
