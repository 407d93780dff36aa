//! Hardening (issue 23): `zclab serve` against hostile clients (bounded memory, a slot that
//! bogus messages cannot hold, log forgery, `busy` for every refused client); signals passed
//! through `zclab run`; readers that refuse broken run directories; temporary files of killed
//! runs; `--exp-args` over the preset's values; a failed mapping named as such. Every wait is
//! bounded; none of these is a timing benchmark.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use zclab::results::Status;

const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");
const F2S: &str = env!("CARGO_BIN_EXE_file_to_socket");

// ---------------------------------------------------------------------------------------------
// zclab serve
// ---------------------------------------------------------------------------------------------

#[test]
fn serve_memory_stays_bounded_for_a_1gib_source() {
    let srv = Server::loopback(&[]);
    let mut c = Ctl::session(&srv.addr);
    let gib = 1u64 << 30;
    let port = c.setup(
        &serde_json::json!({"type": "setup", "id": 1, "role": "tcp-source",
        "bytes": gib, "write_size": 65536})
        .to_string(),
    );
    let mut d = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    d.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let (mut got, mut max_rss, mut h) = (0u64, 0u64, zclab::hash::Xxh3::new());
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    loop {
        let n = d.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if head.len() < 1 << 20 {
            head.extend_from_slice(&buf[..n.min((1 << 20) - head.len())]);
        }
        h.update(&buf[..n]);
        got += n as u64;
        if got % (64 << 20) < n as u64 {
            max_rss = max_rss.max(srv.rss_kib());
        }
    }
    let report = c.line().expect("report");
    max_rss = max_rss.max(srv.rss_kib());
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(got, gib, "the whole stream arrived");
    assert!(
        zclab::sys::file::check_pattern(&head, 0),
        "the lab's pattern"
    );
    assert_eq!(
        report["hash"].as_str().unwrap(),
        format!("{:016x}", h.digest())
    );
    assert!(max_rss < 64 << 10, "serve's resident memory {max_rss} KiB");
}

#[test]
fn an_allocation_failure_fails_the_transfer_not_the_server() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        return skip_or_fail("prlimit (util-linux) is not installed");
    }
    // Room for the server, not for a 64 MiB receive buffer.
    let mut c = Command::new("prlimit");
    c.args(["--as=60000000", ZCLAB, "serve", "--listen", "127.0.0.1:0"]);
    let mut srv = Server::start(c);
    let mut ctl = Ctl::session(&srv.addr);
    let port = ctl.setup(
        &serde_json::json!({"type": "setup", "id": 1, "role": "tcp-sink",
        "recv_buf": 64 << 20, "hash": true})
        .to_string(),
    );
    drop(TcpStream::connect(format!("127.0.0.1:{port}")).unwrap());
    let r = ctl.line().expect("a report");
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("cannot allocate"),
        "{r}"
    );
    assert!(srv.alive(), "the server survives: {}", srv.log());
}

#[test]
fn bogus_aborts_do_not_hold_the_only_slot() {
    let srv = Server::loopback(&["--idle-timeout", "2"]);
    let mut c = Ctl::session_as(&srv.addr, "holder");
    let t0 = Instant::now();
    let end = loop {
        // An abort of a transfer that does not exist is not progress.
        c.send_json(&serde_json::json!({"type": "abort", "id": 999}));
        if let Some(m) = c.line_within(Duration::from_millis(500)) {
            break m;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "session still open");
    };
    assert_eq!(
        (end["type"].as_str(), end["code"].as_str()),
        (Some("error"), Some("timeout"))
    );
    srv.assert_serves_again();
}

#[test]
fn a_session_ends_at_its_deadline() {
    let srv = Server::loopback(&["--idle-timeout", "600", "--max-session", "2"]);
    let mut c = Ctl::session_as(&srv.addr, "silent");
    let m = c.line().expect("the server's timeout");
    assert_eq!(m["code"], "timeout", "{m}");
    assert!(
        m["message"].as_str().unwrap().contains("--max-session"),
        "{m}"
    );
    srv.assert_serves_again();
}

#[test]
fn client_strings_are_escaped_in_the_log() {
    let srv = Server::loopback(&[]);
    let host = "evil\nzclab serve: session 99 forged\u{1b}[2J\r";
    let mut c = Ctl::session_as(&srv.addr, host);
    c.send_json(&serde_json::json!({"type": "bye"}));
    let t0 = Instant::now();
    while !srv.log().contains("said bye") {
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", srv.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = srv.log();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("zclab serve: session 99")),
        "forged line: {log}"
    );
    assert!(
        !log.contains(['\u{1b}', '\r']),
        "raw control characters: {log:?}"
    );
    assert!(
        log.contains(r"evil\nzclab serve: session 99 forged\u{1b}[2J\r"),
        "{log}"
    );
}

#[test]
fn every_refused_client_hears_busy() {
    let srv = Server::loopback(&[]);
    let _holder = Ctl::session_as(&srv.addr, "holder");
    let mut others: Vec<Ctl> = (0..100).map(|_| Ctl::connect_once(&srv.addr)).collect();
    for (i, c) in others.iter_mut().enumerate() {
        let m = c
            .line()
            .unwrap_or_else(|| panic!("client {i} closed without a message"));
        assert_eq!(
            (m["type"].as_str(), m["code"].as_str()),
            (Some("error"), Some("busy"))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// zclab run
// ---------------------------------------------------------------------------------------------

/// The experiment directory `exp` of the one run directory under `results`, once it exists.
fn exp_dir(results: &Path, exp: &str) -> Option<PathBuf> {
    let run = std::fs::read_dir(results).ok()?.flatten().next()?.path();
    Some(run.join(exp)).filter(|p| p.join("meta.json").exists())
}

/// `zclab run` with `args`, its results under `res`, and `exp_args` with `--workdir work` for
/// the experiments.
fn zclab_run(args: &[&str], res: &Path, exp_args: &str, work: &Path) -> Lab {
    Lab::new(ZCLAB)
        .args(&["run", "--no-plots"])
        .args(args)
        .arg("--results")
        .arg(res)
        .arg("--exp-args")
        .arg(format!("{exp_args} --workdir {}", work.display()))
}

fn meta_status(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["status"].as_str().map(String::from))
        .unwrap_or_default()
}

#[test]
fn sigterm_to_zclab_run_interrupts_the_running_experiment() {
    let (_t, res, work) = results_and_work();
    let exp_args = "--paths tcp-loopback --sizes 64MiB --chunks 4KiB --repeat 1000 --warmup 0";
    let mut run = zclab_run(&["file_to_socket"], &res, exp_args, &work).spawn();
    run.wait_until(Duration::from_secs(120), "a trial recorded", || {
        summary_with(&res, "file_to_socket", 1)
    });
    let dir = exp_dir(&res, "file_to_socket").unwrap();
    run.signal(Signal::SIGTERM);
    let t0 = Instant::now();
    while meta_status(&dir) != "interrupted" {
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the experiment still runs 2 s after SIGTERM: {}",
            meta_status(&dir)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = run.finish(Duration::from_secs(120), "zclab run did not stop");
    r.exits(143);
    let rows = read_rows(&dir.join("summary.jsonl"));
    assert_eq!(rows.last().unwrap().status, Status::Interrupted);
    let suite = read_json(&dir.parent().unwrap().join("suite.json"));
    assert_eq!(suite["status"], "interrupted");
    assert_eq!(suite["outcomes"][0]["status"], "interrupted");
    assert_sources_removed(&work);
}

#[test]
fn exp_args_override_the_presets_values() {
    let (_t, res, work) = results_and_work();
    // The full preset gives file_copy `--repeat auto` (common) and `--repeat 5` (its own).
    let exp_args = "--repeat 1 --warmup 0 --sizes 1MiB --bufs 64KiB";
    let r = zclab_run(&["--preset", "full", "file_copy"], &res, exp_args, &work)
        .within(Duration::from_secs(300))
        .run();
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert!(
        !r.stderr.contains("cannot be used multiple times"),
        "{}",
        r.stderr
    );
    let dir = exp_dir(&res, "file_copy").unwrap();
    let meta = read_json(&dir.join("meta.json"));
    assert_eq!(
        (meta["repeat"].as_u64(), meta["repeat_auto"].as_bool()),
        (Some(1), Some(false))
    );
    assert!(
        read_rows(&dir.join("summary.jsonl"))
            .iter()
            .all(|r| r.repeat == 0)
    );
}

// ---------------------------------------------------------------------------------------------
// Readers: compare, claims
// ---------------------------------------------------------------------------------------------

/// Two copies of a reference quick run (every experiment, real rows) in a temporary directory:
/// one left good, one to break.
fn good_and_bad() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference/quick-20261205T065743Z");
    let [good, bad] = ["good", "bad"].map(|name| {
        let to = t.path().join(name);
        let st = Command::new("cp").arg("-r").arg(&src).arg(&to).status();
        assert!(st.unwrap().success());
        to
    });
    (t, good, bad)
}

/// `zclab compare GOOD BAD` and `zclab claims BAD` both fail, within 60 s, with one error that
/// names `file` and contains each of `words`.
fn both_refuse(good: &Path, bad: &Path, file: &Path, words: &[&str]) {
    for args in [
        vec!["compare", good.to_str().unwrap(), bad.to_str().unwrap()],
        vec!["claims", bad.to_str().unwrap()],
    ] {
        let r = Lab::new(ZCLAB)
            .args(&args)
            .within(Duration::from_secs(60))
            .run();
        assert_eq!(r.code(), Some(1), "{args:?}: {}", r.text());
        let err = r.stderr.trim();
        assert!(
            err.contains(file.to_str().unwrap()),
            "{args:?} names the file: {err}"
        );
        for w in words {
            assert!(err.contains(w), "{args:?}: {err} lacks {w}");
        }
    }
}

#[test]
fn readers_refuse_meta_json_of_the_wrong_shape() {
    let (_t, good, bad) = good_and_bad();
    let meta = bad.join("net_send/meta.json");
    for (text, words) in [
        ("null", &["not a JSON object"][..]),
        ("[1,2,3]", &["not a JSON object"]),
        ("[\"net_send\"]", &["not a JSON object"]),
        ("{\"experiment\": \"\"}", &["experiment"]),
    ] {
        std::fs::write(&meta, text).unwrap();
        both_refuse(&good, &bad, &meta, words);
    }
}

/// What is put in a summary's place, how, and the words its error must hold.
type SpecialCase = (&'static str, fn(&Path), &'static [&'static str]);

#[test]
fn readers_take_only_bounded_regular_files() {
    let (_t, good, bad) = good_and_bad();
    let dir = bad.join("net_send");
    let summary = dir.join("summary.jsonl");
    std::fs::rename(&summary, dir.join("real.jsonl")).unwrap();
    // One link is followed.
    std::os::unix::fs::symlink("real.jsonl", &summary).unwrap();
    let r = Lab::new(ZCLAB)
        .args(&["claims", bad.to_str().unwrap()])
        .within(Duration::from_secs(60))
        .run();
    assert_eq!(r.code(), Some(0), "{}", r.text());
    let cases: [SpecialCase; 3] = [
        (
            "a link loop",
            |p| {
                std::os::unix::fs::symlink("loop", p.with_file_name("loop2")).unwrap();
                std::os::unix::fs::symlink("loop2", p.with_file_name("loop")).unwrap();
                std::os::unix::fs::symlink("loop", p).unwrap();
            },
            &["link"],
        ),
        (
            "a FIFO",
            |p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap(),
            &["FIFO"],
        ),
        (
            "/dev/zero",
            |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
            &["device"],
        ),
    ];
    for (what, make, words) in cases {
        for f in ["summary.jsonl", "loop", "loop2"] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        make(&summary);
        eprintln!("case: {what}");
        both_refuse(&good, &bad, &summary, words);
    }
}

#[test]
fn readers_refuse_numbers_out_of_range() {
    let (_t, good, bad) = good_and_bad();
    let summary = bad.join("net_send/summary.jsonl");
    let orig = std::fs::read_to_string(&summary).unwrap();
    let re_gbps = |line: &str, v: &str| {
        let i = line.find("\"gbps\":").unwrap() + 7;
        let j = i + line[i..].find(',').unwrap();
        format!("{}{v}{}", &line[..i], &line[j..])
    };
    for v in ["-1.5", "1.7e308", "-1.7e308"] {
        let text: Vec<String> = orig
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 2 && l.contains("\"gbps\":") {
                    re_gbps(l, v)
                } else {
                    l.into()
                }
            })
            .collect();
        assert!(
            text[2].contains(&format!("\"gbps\":{v}")),
            "line 3 has metrics"
        );
        std::fs::write(&summary, text.join("\n") + "\n").unwrap();
        both_refuse(&good, &bad, &summary, &["line 3", "gbps"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary files, failed runs, mappings
// ---------------------------------------------------------------------------------------------

#[test]
fn the_next_run_removes_temporary_files_of_a_killed_one() {
    let (_t, res, work) = results_and_work();
    let pid = Lab::new(F2S)
        .results(&res)
        .workdir(&work)
        .argv("--paths tcp-loopback --sizes 64MiB --chunks 64KiB --repeat 1000 --warmup 0")
        .signalled_after("file_to_socket", 1, Signal::SIGKILL)
        .pid;
    let left = work.join(format!("zclab-file_to_socket-{pid}-67108864.dat"));
    assert!(
        left.exists(),
        "a killed run cannot clean up: {:?}",
        files_under(&work)
    );
    let r = Lab::new(F2S)
        .tiny_tmp()
        .workdir(&work)
        .argv("--paths tcp-loopback --sizes 64KiB --chunks 64KiB")
        .within(Duration::from_secs(120))
        .run()
        .ok();
    assert!(!left.exists(), "the next run removes it");
    let said = format!(
        "removed {} left by process {pid}, which no longer exists",
        left.display()
    );
    assert!(r.stderr.contains(&said), "{}", r.stderr);
    assert_sources_removed(&work);
}

#[test]
fn a_failed_mapping_is_named() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        return skip_or_fail("prlimit (util-linux) is not installed");
    }
    let (_t, res, work) = results_and_work();
    // Address space for the process, not for a mapping of the 128 MiB source.
    let r = Lab::new("prlimit")
        .args(&["--as=100000000", F2S])
        .tiny(&res)
        .workdir(&work)
        .argv("--paths tcp-loopback --sizes 128MiB --chunks 64KiB --variants classic-mmap-write")
        .within(Duration::from_secs(120))
        .run();
    r.exits(1);
    assert!(
        r.stderr
            .contains("mmap of the 128MiB source file: Cannot allocate memory"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("sending to the peer at byte 0"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_suite_whose_plots_fail_is_not_complete() {
    let t = tempfile::tempdir().unwrap();
    let (res, scripts) = (t.path().join("r"), t.path().join("scripts"));
    std::fs::create_dir(&scripts).unwrap();
    // A plot.py that fails as one on a full disk does.
    std::fs::write(scripts.join("pyenv.sh"), "command -v python3\n").unwrap();
    std::fs::write(
        scripts.join("plot.py"),
        "import sys\nprint('plot.py: error: x/plots/index.json: cannot write: No space left on device', file=sys.stderr)\nsys.exit(1)\n",
    )
    .unwrap();
    let r = Lab::new(ZCLAB)
        .args(&["run", "syscall_floor", "--results"])
        .arg(&res)
        .args(&[
            "--exp-args",
            "--repeat 1 --warmup 0 --ops 1Ki --batches 1 --duration 1ms",
        ])
        .env("ZCLAB_SCRIPTS", scripts.to_str().unwrap())
        .within(Duration::from_secs(300))
        .run();
    r.exits(1);
    let suite = read_json(&first_run_dir(&res).join("suite.json"));
    assert_eq!(suite["status"], "failed", "{suite}");
    assert!(
        suite["error"].as_str().unwrap().contains("plots not drawn"),
        "{suite}"
    );
    assert_eq!(suite["outcomes"][0]["status"], "ok");
}
