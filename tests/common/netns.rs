//! Network namespaces and links that an experiment creates, and runs interrupted mid-trial.

use super::{Lab, Ran, assert_ok_or_interrupted, read_json, read_rows, summary_with};
use std::process::Command;
use std::time::Duration;

/// Namespaces (`zcsend-PID-*`) and links (`zsPID*`) of process `pid` still present.
pub fn ns_leftovers(pid: u32) -> Vec<String> {
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

pub fn assert_no_leftovers(pid: u32) {
    let left = ns_leftovers(pid);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Runs `lab` to success and checks that none of its namespaces or links is left.
pub fn run_clean(lab: Lab) -> Ran {
    let r = lab.run().ok();
    assert_no_leftovers(r.pid);
    r
}

/// Starts `lab` with its results in a new temporary directory, waits until its namespaces
/// exist and a trial of `exp` is written, lets `settle` pass (mid-trial, most likely), sends
/// `sig` and expects exit `code` with nothing left behind, every row ok or interrupted, and
/// the run recorded as interrupted in meta.json.
pub fn interrupt_mid_trial(
    lab: Lab,
    exp: &str,
    sig: nix::sys::signal::Signal,
    code: i32,
    settle: Duration,
) {
    let t = tempfile::tempdir().unwrap();
    let mut child = lab.results(t.path()).spawn();
    let pid = child.pid;
    let summary = child.wait_until(Duration::from_secs(30), "namespaces and a trial", || {
        summary_with(t.path(), exp, 0).filter(|_| !ns_leftovers(pid).is_empty())
    });
    std::thread::sleep(settle);
    child.signal(sig);
    let ran = child.finish(
        Duration::from_secs(30),
        &format!("did not stop after {sig}"),
    );
    ran.exits(code);
    assert_no_leftovers(pid);
    assert_ok_or_interrupted(&read_rows(&summary), &ran.stderr);
    let meta = read_json(&summary.with_file_name("meta.json"));
    assert_eq!(meta["status"], "interrupted", "{}", ran.text());
}
