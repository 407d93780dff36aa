//! Kernel probe and perf counters against the running kernel (Linux 6.18,
//! root, in CI). Tests that need root skip outside CI and fail inside it.

mod common;

use common::need_root;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use zclab::caps::{self, Caps, OPCODE_NAMES};
use zclab::sys::perf::{self, SwEvent};

/// Selects a child mode when this binary re-executes itself.
const CHILD_ENV: &str = "ZCLAB_CAPS_TEST_CHILD";
/// The unprivileged identity used for refusal tests.
const NOBODY: u32 = 65534;

fn probe_in_tmp(hide: &str) -> Caps {
    let dir = tempfile::tempdir().expect("tempdir");
    caps::probe_with_hide(dir.path(), hide)
}

fn getppid_n(n: usize) {
    for _ in 0..n {
        zclab::sys::proc::getppid_raw();
    }
}

#[test]
fn probe_lists_all_63_opcodes() {
    let c = probe_in_tmp("");
    assert!(c.io_uring.available, "{:?}", c.io_uring.unavailable_reason);
    assert_eq!(c.io_uring.opcodes.len(), 63, "{:?}", c.io_uring.opcodes);
    assert_eq!(c.io_uring.opcodes, OPCODE_NAMES);
    assert!(c.io_uring.opcodes_unsupported.is_empty());
    for op in ["NOP", "SEND_ZC", "SENDMSG_ZC", "PIPE"] {
        assert!(c.has_op(op), "{op}");
    }
    assert!(c.has_op("iorING_OP_send_zc"), "prefix and case are ignored");
    assert!(!c.has_op("NOPE"));
    assert_eq!(c.io_uring.io_uring_disabled_sysctl, Some(0));
    assert!(c.io_uring.register_ring_fd);
    assert!(c.io_uring.features.iter().any(|f| f == "NODROP"));
    assert!(c.io_uring.features.iter().any(|f| f == "REG_REG_RING"));
}

#[test]
fn probe_setup_flags() {
    let c = probe_in_tmp("");
    for f in [
        "IOPOLL",
        "SQPOLL",
        "SQ_AFF",
        "CQSIZE",
        "COOP_TASKRUN",
        "TASKRUN_FLAG",
        "SINGLE_ISSUER",
        "DEFER_TASKRUN",
        "NO_SQARRAY",
        "NO_MMAP",
        "REGISTERED_FD_ONLY",
    ] {
        assert!(
            c.has_setup_flag(f),
            "{f} refused: {:?}",
            c.io_uring.setup_flags_refused
        );
    }
    // Every known flag is either accepted or refused with a reason.
    assert_eq!(
        c.io_uring.setup_flags.len() + c.io_uring.setup_flags_refused.len(),
        caps::SETUP_FLAGS.len()
    );
    assert!(!c.has_setup_flag("NOT_A_FLAG"));
}

#[test]
fn send_zc_reports_usage_and_so_zerocopy_works() {
    let c = probe_in_tmp("");
    assert_eq!(
        c.io_uring.send_zc_report_usage,
        Some(true),
        "notes: {:?}",
        c.io_uring.notes
    );
    assert!(c.net.so_zerocopy);
    assert_eq!(c.net.optmem_max, Some(131072));
}

/// A scratch directory in `parent` and its O_DIRECT probe.
fn odirect_in(parent: &str) -> (tempfile::TempDir, caps::ODirect) {
    let dir = tempfile::Builder::new()
        .prefix("zclab-odirect")
        .tempdir_in(parent)
        .unwrap_or_else(|e| panic!("tempdir in {parent}: {e}"));
    let d = caps::probe_odirect(dir.path());
    (dir, d)
}

#[test]
fn odirect_is_real_under_tmp() {
    let (dir, d) = odirect_in("/tmp");
    assert_eq!(d.path, dir.path().display().to_string());
    assert_eq!(d.fs_type, "ext4/ext3/ext2", "{d:?}");
    assert!(d.open_ok && d.real, "{d:?}");
    assert!(d.mem_align.is_some() && d.offset_align.is_some(), "{d:?}");
    // The scratch file is unlinked at once.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn odirect_is_not_real_on_dev_shm() {
    let (_dir, d) = odirect_in("/dev/shm");
    assert_eq!(d.fs_type, "tmpfs");
    assert!(!d.real, "{d:?}");
    assert!(d.note.is_some());
}

#[test]
fn odirect_missing_dir_probes_nearest_ancestor() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not/yet/there");
    let d = caps::probe_odirect(&missing);
    assert_eq!(d.path, dir.path().display().to_string());
    assert!(d.note.unwrap().contains("does not exist yet"));
    assert!(!missing.exists(), "the probe must not create the directory");
}

#[test]
fn hide_io_uring() {
    let c = probe_in_tmp("io_uring");
    assert!(!c.io_uring.available);
    let reason = c.io_uring.unavailable_reason.as_deref().unwrap();
    assert!(reason.contains("hidden by ZCLAB_HIDE"), "{reason}");
    assert!(!c.has_op("NOP") && !c.has_op("SEND_ZC"));
    assert!(!c.has_setup_flag("SQPOLL"));
    assert!(c.io_uring.opcodes.is_empty());
    assert_eq!(c.io_uring.opcodes_unsupported.len(), OPCODE_NAMES.len());
    assert_eq!(c.io_uring.send_zc_report_usage, None);
    assert_eq!(c.hidden, vec!["io_uring"]);
    assert!(c.hide_tokens_invalid().is_empty());
    assert!(c.render_text().contains("hidden by ZCLAB_HIDE"));
}

#[test]
fn hide_individual_features() {
    let c = probe_in_tmp(
        "op:SEND_ZC, flag:sqpoll,flag:SINGLE_ISSUER,so_zerocopy,odirect,root,bogus,op:NOPE",
    );
    assert!(c.io_uring.available);
    assert!(!c.has_op("SEND_ZC"));
    assert!(c.has_op("SENDMSG_ZC"));
    assert_eq!(c.io_uring.opcodes.len(), 62);
    assert_eq!(c.io_uring.opcodes_unsupported, vec!["SEND_ZC"]);
    assert_eq!(c.io_uring.send_zc_report_usage, None);
    // Flags that need a hidden flag go with it.
    for f in ["SQPOLL", "SQ_AFF", "SINGLE_ISSUER", "DEFER_TASKRUN"] {
        assert!(!c.has_setup_flag(f), "{f}");
        assert!(
            c.io_uring
                .setup_flags_refused
                .iter()
                .any(|(n, why)| n == f && why.contains("ZCLAB_HIDE")),
            "{f}"
        );
    }
    assert!(c.has_setup_flag("COOP_TASKRUN"));
    assert!(!c.net.so_zerocopy);
    assert!(!c.odirect.open_ok && !c.odirect.real && c.odirect.mem_align.is_none());
    assert!(!c.privileges.root && !c.privileges.cap_sys_admin && !c.privileges.cap_net_admin);
    assert!(!c.memlock.cap_ipc_lock && !c.net.netns && !c.counters.syscall_tracepoint);
    assert_eq!(
        c.hidden,
        vec![
            "op:SEND_ZC",
            "flag:SQPOLL",
            "flag:SINGLE_ISSUER",
            "so_zerocopy",
            "odirect",
            "root",
            "bogus",
            "op:NOPE"
        ]
    );
    assert_eq!(c.hide_tokens_invalid(), vec!["bogus", "op:NOPE"]);
    assert_eq!(
        caps::invalid_hide_tokens("io_uring,flag:NOPE,root"),
        vec!["flag:NOPE"]
    );

    let c = probe_in_tmp("send_zc_report_usage");
    assert!(c.has_op("SEND_ZC"));
    assert_eq!(c.io_uring.send_zc_report_usage, Some(false));
}

#[test]
fn json_round_trip() {
    let c = probe_in_tmp("flag:SQPOLL,junk");
    let json = serde_json::to_string_pretty(&c).unwrap();
    let back: Caps = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
}

#[test]
fn render_text_mentions_everything() {
    let c = probe_in_tmp("");
    let text = c.render_text();
    let words: Vec<&str> = text.split_whitespace().collect();
    for op in OPCODE_NAMES {
        assert!(words.contains(op), "{op} missing from:\n{text}");
    }
    assert!(text.contains("63 of 63 known opcodes"), "{text}");
    assert!(text.contains("SQPOLL") && text.contains("DEFER_TASKRUN"));
    assert!(text.contains(&c.kernel.release));
    assert!(text.lines().all(|l| l.len() <= 100), "{text}");
    let hidden = probe_in_tmp("io_uring,root,odirect").render_text();
    assert!(hidden.lines().all(|l| l.len() <= 100), "{hidden}");
}

#[test]
fn probe_facts() {
    let c = probe_in_tmp("");
    let (major, minor) = c.kernel.parsed.expect("release parses");
    assert!((major, minor) >= (6, 18), "{}", c.kernel.release);
    assert!(c.kernel.parsed >= Some((6, 0)));
    assert!(!c.kernel.machine.is_empty() && !c.hostname.is_empty());
    assert_eq!(c.clocksource, "tsc");
    assert!(c.cpu.count >= 1);
    assert!(!c.cpu.allowed.is_empty());
    assert!(c.cpu.allowed.len() <= c.cpu.count);
    assert!(c.hidden.is_empty());
    assert_eq!(c.memlock.soft, Some(8 << 20));
    let root = nix::unistd::geteuid().is_root();
    assert_eq!(c.privileges.root, root);
    if root {
        assert!(c.privileges.cap_sys_admin && c.privileges.cap_net_admin);
        assert!(c.memlock.cap_ipc_lock);
        assert!(c.net.netns == c.net.ip_binary.is_some());
        assert!(c.counters.perf_software && c.counters.syscall_tracepoint);
    }
}

#[test]
fn probe_is_fast() {
    let dir = tempfile::tempdir().unwrap();
    let _ = caps::probe_with_hide(dir.path(), "");
    let t = Instant::now();
    let _ = caps::probe_with_hide(dir.path(), "");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "probe took {took:?}");
}

#[test]
fn syscall_counter_counts_exactly() {
    if !need_root("syscall_counter_counts_exactly") {
        return;
    }
    let c = perf::syscalls_for_thread(0).expect("syscall counter as root");
    let before = c.read().unwrap();
    getppid_n(1000);
    let after = c.read().unwrap();
    let delta = after - before;
    eprintln!("1000 getppid calls counted as {delta}");
    assert!(
        (1000..1100).contains(&delta),
        "1000 getppid calls counted as {delta}"
    );

    // Disabled: nothing counts, not even the reads. Reset: back to zero.
    c.disable().unwrap();
    let frozen = c.read().unwrap();
    getppid_n(100);
    assert_eq!(c.read().unwrap(), frozen);
    c.reset().unwrap();
    assert_eq!(c.read().unwrap(), 0);
    c.enable().unwrap();
    getppid_n(10);
    let v = c.read().unwrap();
    assert!((10..20).contains(&v), "{v}");
}

#[test]
fn syscall_counter_follows_only_its_thread() {
    if !need_root("syscall_counter_follows_only_its_thread") {
        return;
    }
    let c = perf::syscalls_for_thread(0).unwrap();
    let before = c.read().unwrap();
    std::thread::spawn(|| getppid_n(5000)).join().unwrap();
    let delta = c.read().unwrap() - before;
    // The spawn and join themselves take a handful of syscalls here.
    assert!(delta < 200, "other thread's syscalls leaked in: {delta}");
}

#[test]
fn tracepoint_id_reads_tracefs() {
    if !need_root("tracepoint_id_reads_tracefs") {
        return;
    }
    let id = perf::tracepoint_id("raw_syscalls/sys_enter").unwrap();
    assert!(id > 0);
    assert!(perf::tracepoint_id("raw_syscalls/no_such_event").is_err());
    assert!(perf::tracepoint_id("../../etc/passwd").is_err());
}

#[test]
fn software_counters() {
    if !need_root("software_counters") {
        return;
    }
    let clock = perf::software_for_thread(SwEvent::TaskClock, 0).unwrap();
    let faults = perf::software_for_thread(SwEvent::PageFaults, 0).unwrap();
    let switches = perf::software_for_thread(SwEvent::ContextSwitches, 0).unwrap();
    let (t0, f0, s0) = (
        clock.read().unwrap(),
        faults.read().unwrap(),
        switches.read().unwrap(),
    );
    // Touch fresh pages, spin, and sleep so each counter has something.
    let mut v = vec![0u8; 64 << 20];
    for i in (0..v.len()).step_by(4096) {
        v[i] = 1;
    }
    std::hint::black_box(&v);
    std::thread::sleep(Duration::from_millis(5));
    assert!(clock.read().unwrap() > t0);
    assert!(faults.read().unwrap() > f0);
    assert!(switches.read().unwrap() > s0);
}

/// Copies this test binary where an unprivileged user can execute it.
fn world_executable_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("zclab-caps-child")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("caps-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, exe)
}

fn run_child(exe: &Path, mode: &str, unprivileged: bool, hide: Option<&str>) -> String {
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env_remove(caps::HIDE_ENV)
        .current_dir("/");
    if let Some(h) = hide {
        cmd.env(caps::HIDE_ENV, h);
    }
    if unprivileged {
        // std drops supplementary groups when root changes uid.
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The rest of the child's line after `key` (the harness may print its own
/// "test child_entry ... " before it on the same line).
fn child_line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.find(key).map(|i| &l[i + key.len()..]))
        .unwrap_or_else(|| panic!("no {key} in child output:\n{stdout}"))
}

#[test]
fn unprivileged_syscall_counter_is_refused_not_zero() {
    if !need_root("unprivileged_syscall_counter_is_refused_not_zero") {
        return;
    }
    // Make sure tracefs is there, so the refusal is perf's own.
    perf::tracepoint_id("raw_syscalls/sys_enter").unwrap();
    let (_dir, exe) = world_executable_copy();
    let out = run_child(&exe, "perf_unpriv", true, None);
    assert_eq!(child_line(&out, "CHILD euid="), NOBODY.to_string());
    let verdict = child_line(&out, "CHILD perf=");
    let paranoid: i32 = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if paranoid >= 2 {
        assert!(
            verdict == "EACCES" || verdict == "EPERM",
            "expected a refusal, got {verdict}"
        );
    } else if let Some(delta) = verdict.strip_prefix("ok ") {
        // Allowed: then it must really count.
        assert!(delta.parse::<u64>().unwrap() >= 1000, "{verdict}");
    }
    let probe = child_line(&out, "CHILD counters=");
    assert!(probe.starts_with("false"), "{probe}");
}

#[test]
fn probe_reads_hide_env() {
    let (_dir, exe) = world_executable_copy();
    let out = run_child(
        &exe,
        "probe_env",
        false,
        Some("io_uring,flag:SQPOLL,nonsense"),
    );
    let c: Caps = serde_json::from_str(child_line(&out, "CHILD json=")).unwrap();
    assert!(!c.io_uring.available);
    assert!(!c.has_op("NOP"));
    assert_eq!(c.hidden, vec!["io_uring", "flag:SQPOLL", "nonsense"]);
    assert_eq!(c.hide_tokens_invalid(), vec!["nonsense"]);

    let out = run_child(&exe, "probe_env", false, None);
    let c: Caps = serde_json::from_str(child_line(&out, "CHILD json=")).unwrap();
    assert!(c.io_uring.available && c.hidden.is_empty());
}

/// Entry point of the re-executed child; does nothing in a normal run.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    match mode.as_str() {
        "perf_unpriv" => {
            println!("CHILD euid={}", nix::unistd::geteuid());
            match perf::syscalls_for_thread(0) {
                Ok(c) => {
                    let a = c.read().unwrap();
                    getppid_n(1000);
                    println!("CHILD perf=ok {}", c.read().unwrap() - a);
                }
                Err(e) => {
                    let name = match e.raw_os_error() {
                        Some(libc::EACCES) => "EACCES".to_string(),
                        Some(libc::EPERM) => "EPERM".to_string(),
                        _ => format!("other {e}"),
                    };
                    println!("CHILD perf={name}");
                }
            }
            let dir = tempfile::tempdir().unwrap();
            let c = caps::probe(dir.path());
            println!(
                "CHILD counters={} {:?}",
                c.counters.syscall_tracepoint, c.counters.note
            );
        }
        "probe_env" => {
            let dir = tempfile::tempdir().unwrap();
            let c = caps::probe(dir.path());
            println!("CHILD json={}", serde_json::to_string(&c).unwrap());
        }
        other => panic!("unknown child mode {other}"),
    }
}
