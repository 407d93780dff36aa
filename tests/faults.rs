//! Faults: a full results filesystem, SIGINT/SIGTERM mid-run, an unprivileged user, the memlock
//! limit. Each checks that nothing measured is lost and the message names the problem.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;
use zclab::results::Status;

const F2S: &str = env!("CARGO_BIN_EXE_file_to_socket");
const NET_SEND: &str = env!("CARGO_BIN_EXE_net_send");
const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");

#[test]
fn a_full_results_filesystem_is_a_clear_error_and_loses_nothing() {
    if !need_root("a full results filesystem (mounting a small tmpfs)") {
        return;
    }
    // Room for the metadata and the first histograms, not for the whole run.
    let fs = SmallFs::new("160k");
    let work = tempfile::tempdir().unwrap();
    let r = Lab::new(F2S)
        .results(&fs.0)
        .argv("--sizes 64KiB,128KiB,256KiB,512KiB --chunks 4KiB,8KiB --repeat 3 --warmup 0")
        .workdir(work.path())
        .within(Duration::from_secs(300))
        .run();
    r.exits(1);
    assert!(
        r.stderr.contains("No space left on device") && r.stderr.contains(fs.0.to_str().unwrap()),
        "names the problem and the directory: {}",
        r.stderr
    );
    assert_no_tmp_files(&fs.0);
    // What was written before the disk filled is intact, and the run is recorded as failed.
    let e = r.exp_checked("file_to_socket");
    assert!(!e.rows.is_empty(), "earlier results kept");
    assert!(e.rows.iter().all(|r| r.status == Status::Ok));
    let meta = e.meta();
    assert_eq!(meta["status"], "failed", "{meta}");
    let why = meta["error"].as_str().unwrap_or("");
    assert!(why.contains("No space left on device"), "{why}");
    assert!(
        std::fs::read_dir(work.path()).unwrap().next().is_none(),
        "source file removed"
    );
}

fn interrupt_midway(sig: Signal, expect: i32) {
    let (_t, res, work) = results_and_work();
    let r = Lab::new(F2S)
        .results(&res)
        .workdir(&work)
        .argv("--sizes 64MiB --chunks 4KiB --repeat 1000 --warmup 0")
        .signalled_after("file_to_socket", 2, sig);
    r.exits(expect);
    assert!(r.stderr.contains("interrupted by signal"), "{}", r.stderr);
    let e = r.exp_checked("file_to_socket");
    let ok = e.rows.iter().filter(|r| r.status == Status::Ok).count();
    assert!(ok >= 2, "measured trials kept");
    assert_eq!(e.meta()["status"], "interrupted");
    assert_no_tmp_files(&res);
    assert!(
        std::fs::read_dir(&work).unwrap().next().is_none(),
        "temporary source file removed"
    );
}

#[test]
fn sigint_mid_run_flushes_and_exits_130() {
    interrupt_midway(Signal::SIGINT, 130);
}

#[test]
fn sigterm_mid_run_flushes_and_exits_143() {
    interrupt_midway(Signal::SIGTERM, 143);
}

/// Runs `bin` as the unprivileged user `nobody` (uid 65534) with setpriv.
fn as_nobody(bin: &str) -> Lab {
    Lab::new("setpriv")
        .argv("--reuid=65534 --regid=65534 --clear-groups --inh-caps=-all")
        .arg(bin)
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
    if !need_root("switching to an unprivileged user") {
        return;
    }
    let t = public_dir();
    // 16 x 1 MiB registered buffers exceed the 8 MiB memlock limit without CAP_IPC_LOCK.
    let e = as_nobody(&public_copy(F2S, t.path()))
        .results(&t.path().join("r"))
        .workdir(t.path())
        .argv("--sizes 1MiB --chunks 1MiB --pool 16 --repeat 1 --warmup 0")
        .run()
        .ok()
        .exp_checked("file_to_socket");
    let all_ok = e.rows.iter().all(|r| r.status == Status::Ok);
    assert!(!e.rows.is_empty() && all_ok, "{:?}", e.rows);
    for r in &e.rows {
        let m = metrics(r);
        let known = m.syscalls.known();
        assert_eq!(
            known, None,
            "syscalls must be unknown, not 0, without privileges"
        );
        assert!(m.syscalls_per_mib.is_none());
    }
    let meta = e.meta();
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
    let r = as_nobody(&public_copy(ZCLAB, t.path()))
        .argv("probe --json --dir")
        .arg(t.path())
        .run();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
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
    if !need_root("lowering net.core.optmem_max") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let old = std::fs::read_to_string("/proc/sys/net/core/optmem_max").unwrap();
    let guard = OptmemGuard(old.trim().to_string());
    // Room for about one pending notification: sends beyond it get ENOBUFS.
    std::fs::write("/proc/sys/net/core/optmem_max", "2048").unwrap();
    let r = Lab::new(NET_SEND)
        .argv("--paths tcp-loopback --variants classic-send-msg-zerocopy --reap-every 32")
        .argv("--pool 32 --sizes 4KiB --repeat 1 --warmup 0")
        .results(&t.path().join("r"))
        .run();
    drop(guard);
    let e = r.ok().exp_checked("net_send");
    let z = zc(&e.rows[0]);
    assert_eq!(e.rows[0].status, Status::Ok);
    assert!(integrity(&e.rows[0]).ok);
    assert!(z.enobufs_retries > 0, "ENOBUFS provoked and counted: {z:?}");
    assert_eq!(z.ids_completed, z.sends, "every send completed");
}

/// A peer that resets its connection mid-transfer ends that variant with a recorded error; the
/// other variants still run and what was written stays intact.
fn peer_reset_case(bin: &str, args: &str, victim: &str, experiment: &str) {
    let t = tempfile::tempdir().unwrap();
    let r = Lab::new(bin)
        .argv(args)
        .tiny(&t.path().join("r"))
        .fault(&format!("peer-reset-after:256KiB@{victim}"))
        .run();
    assert_eq!(
        r.code(),
        Some(1),
        "a failed variant makes the exit 1: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    let e = r.exp_checked(experiment);
    let (bad, good): (Vec<_>, Vec<_>) = e.rows.iter().partition(|r| r.variant == victim);
    let all_error = bad.iter().all(|r| r.status == Status::Error);
    assert!(!bad.is_empty() && all_error, "{bad:?}");
    let says = |m: &str| m.to_lowercase().contains("reset") || m.contains("peer");
    assert!(
        bad.iter().all(|r| r.error.as_deref().is_some_and(says)),
        "{bad:?}"
    );
    let all_ok = good.iter().all(|r| r.status == Status::Ok);
    assert!(
        !good.is_empty() && all_ok,
        "the other variants ran: {good:?}"
    );
    let meta = e.meta();
    assert_eq!(meta["status"], "complete");
    assert_eq!(variant_meta(&meta, victim)["status"], "failed");
}

#[test]
fn peer_reset_in_file_to_socket() {
    let common = "--paths tcp-loopback,tcp-veth --sizes 4MiB --chunks 64KiB --variants";
    for (variants, victim) in [
        (
            "classic-read-write,classic-sendfile,uring-send-zc-fixed",
            "classic-sendfile",
        ),
        (
            "classic-read-write,uring-send-zc-fixed",
            "uring-send-zc-fixed",
        ),
    ] {
        let args = format!("{common} {variants}");
        peer_reset_case(F2S, &args, victim, "file_to_socket");
    }
}

#[test]
fn peer_reset_in_net_send() {
    peer_reset_case(
        NET_SEND,
        "--paths tcp-loopback --sizes 64KiB --bytes 4MiB \
         --variants classic-send,classic-send-msg-zerocopy,uring-send-zc",
        "classic-send-msg-zerocopy",
        "net_send",
    );
}
