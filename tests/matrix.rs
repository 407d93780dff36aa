//! The VM and the kernel matrix: the Vagrantfile validates (and a broken one does not),
//! provision.sh's dry run, Debian's 6.1 kernel boots under QEMU, probes, runs the plan, and its
//! results feed `zclab compare`; a file that is no kernel and a kernel that panics and hangs end
//! with clear errors and leave no QEMU process behind.
//!
//! The tools come from `scripts/matrix/deps.sh` (QEMU, busybox-static, cpio, vagrant): with
//! `CI` set a missing tool is installed; without it the test says what is missing and returns.
//! The kernel package is downloaded once (`apt-get download`) into ~/.cache/zclab/kernels.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zclab::results::Status;

/// The guests run one at a time: two TCG guests on 2 CPUs would only slow each other.
static QEMU: Mutex<()> = Mutex::new(());
/// One installation at a time (apt holds a lock).
static DEPS: Mutex<()> = Mutex::new(());

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// True when `tools` are present; installs them with deps.sh `group` under CI. Without CI,
/// prints why the test is skipped and returns false.
fn ensure(group: &str, tools: &[&str]) -> bool {
    let _guard = DEPS.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if missing.is_empty() {
        return true;
    }
    if !in_ci() {
        eprintln!(
            "skipped: {} not installed (scripts/matrix/deps.sh {group} installs it)",
            missing.join(", ")
        );
        return false;
    }
    let o = Command::new("bash")
        .arg(repo().join("scripts/matrix/deps.sh"))
        .arg(group)
        .output()
        .expect("run deps.sh");
    assert!(
        o.status.success(),
        "deps.sh {group} failed:\n{}",
        stderr(&o)
    );
    let still: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    assert!(still.is_empty(), "deps.sh {group} left {still:?} missing");
    true
}

fn vagrant(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("vagrant")
        .args(args)
        .current_dir(dir)
        .env("VAGRANT_HOME", home.join("vagrant.d"))
        .env("VAGRANT_DOTFILE_PATH", home.join("dot"))
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .output()
        .expect("run vagrant")
}

fn libvirt_plugin(home: &Path) -> bool {
    let o = vagrant(repo(), home, &["plugin", "list"]);
    String::from_utf8_lossy(&o.stdout).contains("vagrant-libvirt")
}

#[test]
fn vagrantfile_validates_and_a_broken_one_does_not() {
    if !ensure("vagrant", &["vagrant"]) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let o = vagrant(repo(), home.path(), &["validate", "--ignore-provider"]);
    assert!(o.status.success(), "vagrant validate: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for m in ["bookworm", "noble", "trixie", "sender", "receiver"] {
        assert!(out.contains(m), "machine {m} not defined:\n{out}");
    }
    // With vagrant-libvirt present, the libvirt provider block is checked too.
    let libvirt = libvirt_plugin(home.path());
    if libvirt {
        let o = vagrant(repo(), home.path(), &["validate"]);
        assert!(
            o.status.success(),
            "vagrant validate (libvirt): {}",
            text(&o)
        );
    } else {
        eprintln!("note: vagrant-libvirt not installed: the libvirt provider block is not checked");
    }
    // The check can fail: an unknown setting in a copy is refused.
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("scripts")).unwrap();
    std::fs::copy(
        repo().join("scripts/provision.sh"),
        t.path().join("scripts/provision.sh"),
    )
    .unwrap();
    let vf = std::fs::read_to_string(repo().join("Vagrantfile")).unwrap();
    let broken = vf.replace(
        "config.vm.box_check_update = false",
        "config.vm.box_check_update = false\n  config.vm.no_such_setting = 1",
    );
    assert_ne!(broken, vf);
    std::fs::write(t.path().join("Vagrantfile"), broken).unwrap();
    let o = vagrant(t.path(), home.path(), &["validate", "--ignore-provider"]);
    assert!(!o.status.success(), "a broken Vagrantfile validated");
    assert!(
        text(&o).contains("no_such_setting"),
        "error does not name the setting: {}",
        text(&o)
    );
    if libvirt {
        let vf = std::fs::read_to_string(repo().join("Vagrantfile")).unwrap();
        let broken = vf.replace(
            "lv.cpus = VCPUS",
            "lv.cpus = VCPUS\n    lv.no_such_knob = 1",
        );
        std::fs::write(t.path().join("Vagrantfile"), broken).unwrap();
        let o = vagrant(t.path(), home.path(), &["validate"]);
        assert!(!o.status.success(), "a broken libvirt block validated");
    }
}

#[test]
fn provision_dry_run_changes_nothing_and_knows_the_steps() {
    let o = Command::new("bash")
        .arg(repo().join("scripts/provision.sh"))
        .args(["--dry-run", "--memlock", "--matrix"])
        .output()
        .unwrap();
    assert!(o.status.success(), "provision --dry-run: {}", text(&o));
    let e = stderr(&o);
    assert!(e.contains("cargo build --release"), "{e}");
    assert!(e.contains("memlock"), "{e}");
    assert!(e.contains("deps.sh qemu"), "{e}");
    let o = Command::new("bash")
        .arg(repo().join("scripts/provision.sh"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn matrix_refuses_bad_usage() {
    let script = repo().join("scripts/kernel-matrix.sh");
    for args in [
        &[][..],
        &["--accel", "warp", "6.1"],
        &["--timeout", "x", "6.1"],
        &["--compare", "--probe-only", "6.1"],
    ] {
        let o = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(stderr(&o).starts_with("kernel-matrix: "), "{}", text(&o));
    }
}

/// Directory of the lab binaries this test run built (dynamically linked: the matrix copies
/// their libraries into the initramfs, which spares CI a second, static build).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_zclab"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn matrix(tmp: &Path, args: &[&str]) -> (Output, Duration) {
    let t0 = Instant::now();
    let o = Command::new("bash")
        .arg(repo().join("scripts/kernel-matrix.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--results")
        .arg(tmp.join("results"))
        .args(args)
        // Work files (and so every QEMU command line) live under tmp: the leak check greps it.
        .env("TMPDIR", tmp)
        .output()
        .expect("run kernel-matrix.sh");
    (o, t0.elapsed())
}

/// QEMU processes whose command line mentions `tmp`.
fn leftover_qemu(tmp: &Path) -> String {
    let o = Command::new("pgrep")
        .args(["-a", "-f", &format!("qemu-system.*{}", tmp.display())])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run_dirs(results: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(results)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn json(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn opcodes(probe: &Value) -> Vec<String> {
    probe["io_uring"]["opcodes"]
        .as_array()
        .expect("opcodes")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The QEMU tools present, the guest slot taken, and a fresh temporary directory; `None`
/// (skipped) when the tools are missing outside CI.
fn qemu() -> Option<(MutexGuard<'static, ()>, tempfile::TempDir)> {
    if !ensure("qemu", &["qemu-system-x86_64", "busybox", "cpio"]) {
        return None;
    }
    let guard = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    Some((guard, tempfile::tempdir().unwrap()))
}

#[test]
fn debian_6_1_boots_probes_runs_the_plan_and_compares() {
    let Some((_guard, tmp)) = qemu() else {
        return;
    };
    let (o, took) = matrix(
        tmp.path(),
        &["--timeout", "240", "--host", "--compare", "6.1"],
    );
    eprintln!(
        "kernel matrix (6.1 + host) took {:.0} s",
        took.as_secs_f64()
    );
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(leftover_qemu(tmp.path()).is_empty(), "QEMU left running");

    let dirs = run_dirs(&tmp.path().join("results"));
    let guest = dirs
        .iter()
        .find(|d| d.join("matrix.json").exists())
        .unwrap_or_else(|| panic!("no guest run came back: {dirs:?}\n{all}"));
    let host = dirs
        .iter()
        .find(|d| !d.join("matrix.json").exists())
        .expect("host run");

    // What the 6.1 kernel offers (NOTES.md: 49 opcodes, SEND_ZC, usage reporting backported).
    let probe = json(&guest.join("probe.json"));
    let release = probe["kernel"]["release"].as_str().unwrap();
    assert!(release.starts_with("6.1."), "release {release}");
    let ops = opcodes(&probe);
    assert_eq!(ops.len(), 49, "6.1 opcodes: {ops:?}");
    for op in ["SEND_ZC", "SENDMSG_ZC", "SPLICE", "READ_FIXED"] {
        assert!(ops.iter().any(|o| o == op), "6.1 lacks {op}");
    }
    for op in ["READ_MULTISHOT", "FUTEX_WAIT", "BIND"] {
        assert!(!ops.iter().any(|o| o == op), "6.1 claims {op}");
    }
    let m = json(&guest.join("matrix.json"));
    let accel = m["accelerator"].as_str().unwrap().to_string();
    assert!(accel == "tcg" || accel == "kvm", "accelerator {accel}");
    assert!(
        m["package"]
            .as_str()
            .unwrap()
            .starts_with("linux-image-6.1.")
    );
    assert!(guest.join("console.log").exists());

    // The plan ran in the guest: every file_to_socket row ok with its data intact.
    let exp = guest.join("file_to_socket");
    let meta = json(&exp.join("meta.json"));
    assert_eq!(meta["accelerator"], accel.as_str(), "meta.json accelerator");
    assert_eq!(meta["kernel"], release);
    let rows = rows_and_histograms(&exp);
    assert!(!rows.is_empty(), "no rows from the guest");
    for r in &rows {
        assert_eq!(
            r.status,
            Status::Ok,
            "{} {}: {:?}",
            r.variant,
            r.point,
            r.error
        );
        assert!(r.integrity.as_ref().is_some_and(|i| i.ok), "{}", r.variant);
    }
    // Nothing skipped on 6.1 under CI.
    assert_none_skipped_in_ci(&meta);

    // The compare names the runs, flags the emulation, and lists what differs.
    let host_ops = opcodes(&json(&host.join("probe.json")));
    check_compare(&o, release, &accel, &ops, &host_ops);
}

/// `--compare`'s output for the guest's `release` run under `accel` against the host's.
fn check_compare(o: &Output, release: &str, accel: &str, ops: &[String], host_ops: &[String]) {
    let all = text(o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("# zclab compare"), "{all}");
    assert!(out.contains(&format!("{release} [{accel}]")), "{all}");
    assert!(
        out.contains(&format!("[{accel}] has 49")),
        "opcode count not compared: {all}"
    );
    if accel == "tcg" {
        assert!(out.contains("software emulation"), "{all}");
    }
    let host_only: Vec<&String> = host_ops.iter().filter(|o| !ops.contains(o)).collect();
    if let Some(first) = host_only.first() {
        assert!(out.contains("  - only in "), "{all}");
        assert!(out.contains(first.as_str()), "{first} not listed: {all}");
    }
    assert!(out.contains("### file_to_socket"), "{all}");
}

#[test]
fn bogus_and_hanging_kernels_fail_clearly_and_leave_no_qemu() {
    let Some((_guard, tmp)) = qemu() else {
        return;
    };
    let garbage = tmp.path().join("garbage-bzImage");
    std::fs::write(&garbage, vec![0x5au8; 1 << 20]).unwrap();
    // The garbage first; then 6.1 with an init that exits: the kernel panics, and panic=0
    // makes it wait forever, so only the timeout ends it.
    let (o, took) = matrix(
        tmp.path(),
        &[
            "--probe-only",
            "--timeout",
            "15",
            "--append",
            "rdinit=/bin/false panic=0",
            garbage.to_str().unwrap(),
            "6.1",
        ],
    );
    let all = text(&o);
    eprintln!("bogus + hanging kernels took {:.0} s", took.as_secs_f64());
    assert_eq!(o.status.code(), Some(1), "{all}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("is not a bzImage"), "{all}");
    assert!(out.contains("timed out after 15 s"), "{all}");
    assert!(out.contains("Kernel panic"), "{all}");
    assert!(
        took < Duration::from_secs(120),
        "took {took:?}: the timeout did not end it"
    );
    assert!(leftover_qemu(tmp.path()).is_empty(), "QEMU left running");
    assert!(
        run_dirs(&tmp.path().join("results")).is_empty(),
        "a failed kernel left a run directory"
    );
}

#[test]
fn an_interrupted_matrix_leaves_no_qemu() {
    let Some((_guard, tmp)) = qemu() else {
        return;
    };
    let mut child = Command::new("bash")
        .arg(repo().join("scripts/kernel-matrix.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--results")
        .arg(tmp.path().join("results"))
        .args(["--probe-only", "--timeout", "120", "6.1"])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the guest to be running, then stop the script as a user's Ctrl-C or kill would.
    let t0 = Instant::now();
    while leftover_qemu(tmp.path()).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(90), "QEMU never started");
        if child.try_wait().unwrap().is_some() {
            panic!("the matrix ended before QEMU started");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", text(&o));
    assert!(stderr(&o).contains("terminated"), "{}", text(&o));
    assert!(
        leftover_qemu(tmp.path()).is_empty(),
        "QEMU left running after SIGTERM"
    );
}
