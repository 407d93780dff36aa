//! A run made while another CPU-bound process runs on the measured CPU is named noisy: in
//! meta.json, on the terminal and in report.md, with the figure that says why.

mod common;
use common::*;
use std::process::{Child, Command};

/// A shell busy loop pinned to CPU 0 (the measured CPU by default), killed on drop.
struct Hog(Child);

impl Hog {
    fn on_cpu0() -> Hog {
        let c = Command::new("taskset")
            .args(["-c", "0", "sh", "-c", "while :; do :; done"])
            .spawn()
            .expect("taskset (util-linux) runs");
        // Let it be seen by /proc/stat before the run samples the machine.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Hog(c)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_busy_measured_cpu_is_named() {
    let res = tempfile::tempdir().unwrap();
    let hog = Hog::on_cpu0();
    let ran = Lab::new(env!("CARGO_BIN_EXE_syscall_floor"))
        .tiny(res.path())
        .argv("--variants getppid --batches 1 --ops 4Ki")
        .run()
        .ok();
    let suite_res = tempfile::tempdir().unwrap();
    let suite = Lab::new(env!("CARGO_BIN_EXE_zclab"))
        .args(&["run", "--no-plots"])
        .results(suite_res.path())
        .args(&[
            "--exp-args",
            "--variants getppid --batches 1 --ops 4Ki --repeat 1 --warmup 0 --duration 10ms",
            "syscall_floor",
        ])
        .run()
        .ok();
    drop(hog);
    let noise = ran.exp("syscall_floor").meta()["noise"].clone();
    assert_eq!(noise["noisy"], true, "{noise}");
    let reasons = noise["reasons"].to_string();
    // The figure: the busy share of the measured CPUs, or the busy process by name.
    assert!(
        reasons.contains("busy") && reasons.contains('%'),
        "{reasons}"
    );
    assert!(
        ran.stdout.contains("warning: the machine was noisy") && ran.stdout.contains('%'),
        "{}",
        ran.text()
    );
    assert!(
        suite.stdout.contains("warning: noisy machine"),
        "{}",
        suite.text()
    );
    let report =
        std::fs::read_to_string(first_run_dir(suite_res.path()).join("report.md")).unwrap();
    assert!(report.contains("the machine was noisy"), "{report}");
}
