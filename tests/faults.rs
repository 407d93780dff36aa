//! Faults: a full results filesystem, SIGINT/SIGTERM mid-run, an unprivileged user, the memlock
//! limit. Each checks that nothing measured is lost and the message names the problem.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zclab::results::Status;

const F2S: &str = env!("CARGO_BIN_EXE_file_to_socket");
const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");

fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                v.extend(files_under(&e.path()));
            } else {
                v.push(e.path());
            }
        }
    }
    v
}

/// A tmpfs of `size` mounted on a new directory, unmounted on drop.
/// (The second field keeps the temporary directory alive.)
struct SmallFs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("fs");
        std::fs::create_dir(&p).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "zclab-test",
                p.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        SmallFs(p, t)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_results_filesystem_is_a_clear_error_and_loses_nothing() {
    if !require_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    // Room for the metadata and the first histograms, not for the whole run.
    let fs = SmallFs::new("160k");
    let work = tempfile::tempdir().unwrap();
    let o = run(
        F2S,
        &[
            "--results",
            fs.0.to_str().unwrap(),
            "--sizes",
            "64KiB,128KiB,256KiB,512KiB",
            "--chunks",
            "4KiB,8KiB",
            "--repeat",
            "3",
            "--warmup",
            "0",
            "--workdir",
            work.path().to_str().unwrap(),
        ],
        &[],
    );
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("No space left on device") && e.contains(fs.0.to_str().unwrap()),
        "names the problem and the directory: {e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    let files = files_under(&fs.0);
    assert!(
        files.iter().all(|f| !f.to_string_lossy().contains(".tmp-")),
        "no partial file left: {files:?}"
    );
    let dir = experiment_dir(&fs.0, "file_to_socket");
    // What was written before the disk filled is intact.
    let rows = rows_and_histograms(&dir);
    assert!(!rows.is_empty(), "earlier results kept");
    assert!(rows.iter().all(|r| r.status == Status::Ok));
    let _: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert!(
        std::fs::read_dir(work.path()).unwrap().next().is_none(),
        "source file removed"
    );
}

fn interrupt_midway(sig: nix::sys::signal::Signal, expect: i32) {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let work = t.path().join("w");
    std::fs::create_dir(&work).unwrap();
    let mut child = Command::new(F2S)
        .args([
            "--results",
            res.to_str().unwrap(),
            "--workdir",
            work.to_str().unwrap(),
            "--sizes",
            "64MiB",
            "--chunks",
            "4KiB",
            "--repeat",
            "1000",
            "--warmup",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some trials are recorded, then interrupt.
    let t0 = Instant::now();
    loop {
        let done = std::fs::read_dir(&res)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| {
                std::fs::read_to_string(e.ok()?.path().join("file_to_socket/summary.jsonl")).ok()
            })
            .is_some_and(|s| s.lines().count() >= 2);
        if done {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no trial recorded in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
    let st = child.wait().unwrap();
    let mut e = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut e).unwrap();
    assert_eq!(st.code(), Some(expect), "{e}");
    assert!(e.contains("interrupted by signal"), "{e}");
    let dir = experiment_dir(&res, "file_to_socket");
    let rows = rows_and_histograms(&dir);
    assert!(
        rows.iter().filter(|r| r.status == Status::Ok).count() >= 2,
        "measured trials kept"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "interrupted");
    assert!(
        files_under(&res)
            .iter()
            .all(|f| !f.to_string_lossy().contains(".tmp-"))
    );
    assert!(
        std::fs::read_dir(&work).unwrap().next().is_none(),
        "temporary source file removed"
    );
}

#[test]
fn sigint_mid_run_flushes_and_exits_130() {
    interrupt_midway(nix::sys::signal::Signal::SIGINT, 130);
}

#[test]
fn sigterm_mid_run_flushes_and_exits_143() {
    interrupt_midway(nix::sys::signal::Signal::SIGTERM, 143);
}

/// Runs `bin args` as the unprivileged user `nobody` (uid 65534) with setpriv.
fn as_nobody(bin: &str, args: &[&str]) -> std::process::Output {
    let mut a = vec![
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        bin,
    ];
    a.extend_from_slice(args);
    Command::new("setpriv")
        .args(&a)
        .output()
        .expect("setpriv (util-linux) is installed by scripts/setup.sh")
}

/// A copy of a test binary that `nobody` may execute (target/ may sit under /root).
fn public_copy(bin: &str, dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dst = dir.join(Path::new(bin).file_name().unwrap());
    std::fs::copy(bin, &dst).unwrap();
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    dst.to_string_lossy().into_owned()
}

fn public_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::Builder::new()
        .prefix("zclab-nobody")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    t
}

#[test]
fn unprivileged_user_gets_unknown_counters_and_the_memlock_message() {
    if !require_root() {
        eprintln!("skipped: switching to an unprivileged user needs root");
        return;
    }
    let t = public_dir();
    let bin = public_copy(F2S, t.path());
    let res = t.path().join("r");
    // 16 x 1 MiB registered buffers exceed the 8 MiB memlock limit without CAP_IPC_LOCK.
    let o = as_nobody(
        &bin,
        &[
            "--results",
            res.to_str().unwrap(),
            "--workdir",
            t.path().to_str().unwrap(),
            "--sizes",
            "1MiB",
            "--chunks",
            "1MiB",
            "--pool",
            "16",
            "--repeat",
            "1",
            "--warmup",
            "0",
        ],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let dir = experiment_dir(&res, "file_to_socket");
    let rows = rows_and_histograms(&dir);
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.status == Status::Ok),
        "{rows:?}"
    );
    for r in &rows {
        let m = r.metrics.as_ref().unwrap();
        assert_eq!(
            m.syscalls.known(),
            None,
            "syscalls must be unknown, not 0, without privileges"
        );
        assert!(m.syscalls_per_mib.is_none());
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert!(meta["counters_note"].as_str().unwrap().contains("unknown"));
    let zc = meta["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["variant"] == "uring-send-zc-fixed")
        .expect("zc variant skipped over the memlock limit");
    let why = zc["reason"].as_str().unwrap();
    assert!(
        why.contains("RLIMIT_MEMLOCK") && why.contains("CAP_IPC_LOCK") && why.contains("ulimit -l"),
        "{why}"
    );
    // The probe says the same.
    let zb = public_copy(ZCLAB, t.path());
    let o = as_nobody(
        &zb,
        &["probe", "--json", "--dir", t.path().to_str().unwrap()],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["privileges"]["root"], false);
    assert_eq!(v["counters"]["syscall_tracepoint"], false);
}

/// Restores net.core.optmem_max when dropped.
struct OptmemGuard(String);

impl Drop for OptmemGuard {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/net/core/optmem_max", &self.0);
    }
}

#[test]
fn msg_zerocopy_enobufs_is_retried_and_counted() {
    if !require_root() {
        eprintln!("skipped: lowering net.core.optmem_max needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let old = std::fs::read_to_string("/proc/sys/net/core/optmem_max").unwrap();
    let guard = OptmemGuard(old.trim().to_string());
    // Room for about one pending notification: sends beyond it get ENOBUFS.
    std::fs::write("/proc/sys/net/core/optmem_max", "2048").unwrap();
    let o = run(
        env!("CARGO_BIN_EXE_net_send"),
        &[
            "--paths",
            "tcp-loopback",
            "--variants",
            "classic-send-msg-zerocopy",
            "--reap-every",
            "32",
            "--pool",
            "32",
            "--sizes",
            "4KiB",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--results",
            res.to_str().unwrap(),
        ],
        &[],
    );
    drop(guard);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = rows_and_histograms(&experiment_dir(&res, "net_send"));
    let z = rows[0].metrics.as_ref().unwrap().zc.as_ref().unwrap();
    assert_eq!(rows[0].status, Status::Ok);
    assert!(rows[0].integrity.as_ref().unwrap().ok);
    assert!(z.enobufs_retries > 0, "ENOBUFS provoked and counted: {z:?}");
    assert_eq!(z.ids_completed, z.sends, "every send completed");
}

/// A peer that resets its connection mid-transfer ends that variant with a recorded error; the
/// other variants still run and what was written stays intact.
fn peer_reset_case(bin: &str, args: &[&str], victim: &str, experiment: &str) {
    let t = tempfile::tempdir().unwrap();
    let res = t.path().join("r");
    let mut a: Vec<&str> = args.to_vec();
    a.extend_from_slice(&[
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--results",
        res.to_str().unwrap(),
    ]);
    let fault = format!("peer-reset-after:256KiB@{victim}");
    let o = run(bin, &a, &[("ZCLAB_FAULT", &fault)]);
    let e = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed variant makes the exit 1: {e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    let dir = experiment_dir(&res, experiment);
    let rows = rows_and_histograms(&dir);
    let (bad, good): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.variant == victim);
    assert!(
        !bad.is_empty() && bad.iter().all(|r| r.status == Status::Error),
        "{bad:?}"
    );
    assert!(
        bad.iter().all(|r| r
            .error
            .as_deref()
            .is_some_and(|m| m.to_lowercase().contains("reset") || m.contains("peer"))),
        "{bad:?}"
    );
    assert!(
        !good.is_empty() && good.iter().all(|r| r.status == Status::Ok),
        "the other variants ran: {good:?}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete");
    let v = meta["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == victim)
        .unwrap();
    assert_eq!(v["status"], "failed");
}

#[test]
fn peer_reset_in_file_to_socket() {
    peer_reset_case(
        F2S,
        &[
            "--paths",
            "tcp-loopback,tcp-veth",
            "--sizes",
            "4MiB",
            "--chunks",
            "64KiB",
            "--variants",
            "classic-read-write,classic-sendfile,uring-send-zc-fixed",
        ],
        "classic-sendfile",
        "file_to_socket",
    );
    peer_reset_case(
        F2S,
        &[
            "--paths",
            "tcp-loopback,tcp-veth",
            "--sizes",
            "4MiB",
            "--chunks",
            "64KiB",
            "--variants",
            "classic-read-write,uring-send-zc-fixed",
        ],
        "uring-send-zc-fixed",
        "file_to_socket",
    );
}

#[test]
fn peer_reset_in_net_send() {
    peer_reset_case(
        env!("CARGO_BIN_EXE_net_send"),
        &[
            "--paths",
            "tcp-loopback",
            "--sizes",
            "64KiB",
            "--bytes",
            "4MiB",
            "--variants",
            "classic-send,classic-send-msg-zerocopy,uring-send-zc",
        ],
        "classic-send-msg-zerocopy",
        "net_send",
    );
}
