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

/// The host's placement of the two measured CPUs: with a lowest round trip on record that no
/// probe can reach (1 ns, in a private cache directory), every measured trial is "apart":
/// each row says so with its round trip, meta.json tallies it, one `--host-wait` runs out and
/// later trials do not wait again, and the terminal warns. The trials with an SQPOLL thread on
/// the other CPU count as apart; getppid's, where the other CPU stayed idle, are tallied as
/// run on the measured CPU alone.
#[test]
fn cpus_the_host_placed_apart_are_named() {
    if std::fs::read_to_string("/sys/devices/system/cpu/online").is_ok_and(|s| s.trim() == "0") {
        return skip_or_fail("one CPU online: there is no pair to place");
    }
    let cache = seeded_cache(1.0);
    let ran = Lab::new(env!("CARGO_BIN_EXE_syscall_floor"))
        .tiny_tmp()
        .env("XDG_CACHE_HOME", cache.path().to_str().unwrap())
        .argv("--variants getppid,uring-nop-sqpoll --batches 1 --ops 4Ki --duration 100ms --host-wait 300ms")
        .run()
        .ok();
    let exp = ran.exp("syscall_floor");
    let ok: Vec<_> = exp.rows.iter().filter(|r| r.metrics.is_some()).collect();
    assert!(!ok.is_empty());
    let n = ok.len();
    let mut alone = 0;
    for r in &ok {
        let x = &r.metrics.as_ref().unwrap().extra;
        assert!(x["xcpu_rtt_ns"] > 2.0, "{x:?}");
        assert_eq!(x["cpus_apart"], 1.0, "{x:?}");
        let busy = x.get("other_cpu_busy_pct").copied();
        let one = x["one_cpu"] == 1.0;
        if r.variant == "uring-nop-sqpoll" {
            assert!(!one, "an SQPOLL thread polls on the other CPU: {x:?}");
            assert!(busy.is_some_and(|b| b > 20.0), "{x:?}");
        } else {
            assert_eq!(one, busy.is_some_and(|b| b <= 2.0), "{x:?}");
        }
        alone += usize::from(one);
    }
    let p = exp.meta()["host_placement"].clone();
    assert_eq!(p["trials"], n, "{p}");
    assert_eq!(p["trials_apart"], n - alone, "{p}");
    assert_eq!(p["trials_apart_one_cpu"], alone, "{p}");
    assert_eq!(p["waits_run_out"], 1, "{p}");
    let waited = p["waited_s"].as_f64().unwrap();
    assert!((0.3..5.0).contains(&waited), "{p}");
    assert!(
        ran.stdout
            .contains(&format!("apart in {} of {n} measured trials", n - alone)),
        "{}",
        ran.text()
    );
}

/// A cache directory whose placement store says CPUs 0 and 1 were once `lowest_ns` apart on
/// this boot: 1 ns, no real round trip, makes every probe "apart".
fn seeded_cache(lowest_ns: f64) -> tempfile::TempDir {
    let cache = tempfile::tempdir().unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    std::fs::create_dir(cache.path().join("zclab")).unwrap();
    std::fs::write(
        cache.path().join("zclab/placement.json"),
        serde_json::json!([{"boot_id": boot.trim(), "cpus": [0, 1], "lowest_ns": lowest_ns}])
            .to_string(),
    )
    .unwrap();
    cache
}

#[test]
fn placement_says_together_or_apart_and_watches() {
    if std::fs::read_to_string("/sys/devices/system/cpu/online").is_ok_and(|s| s.trim() == "0") {
        return skip_or_fail("one CPU online: there is no pair to place");
    }
    let zclab = env!("CARGO_BIN_EXE_zclab");
    // `zclab ARGS` with a placement store that knows `lowest_ns` as this boot's lowest.
    let placement = |args: &str, lowest_ns: f64| {
        let cache = seeded_cache(lowest_ns);
        Lab::new(zclab)
            .argv(args)
            .env("XDG_CACHE_HOME", cache.path().to_str().unwrap())
            .run()
    };
    // Against a lowest of 1 ns every probe is apart: exit 2, and the watch counts it all so.
    let r = placement("placement --watch 600ms", 1.0);
    assert_eq!(r.code(), Some(2), "{}", r.text());
    assert!(
        r.stdout.contains("lowest this boot 1 ns: apart")
            && r.stdout.contains("together 0% of the time, apart 100%"),
        "{}",
        r.text()
    );
    // Against a lowest far above any real round trip, together: exit 0.
    let r = placement("placement", 1e9);
    assert_eq!(r.code(), Some(0), "{}", r.text());
    assert!(r.stdout.contains(": together"), "{}", r.text());
    // One CPU has no round trip: a clear error.
    let r = Lab::new(zclab).argv("placement --cpus 0,0").run();
    assert_eq!(r.code(), Some(1));
    assert!(
        r.stderr.contains("one CPU has no round trip"),
        "{}",
        r.stderr
    );
}
