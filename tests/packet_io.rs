//! packet_io end to end: every variant on tiny inputs with integrity, zero-copy refused on veth
//! with the kernel's errno, nothing left behind (XDP programs, maps, links, namespaces, links
//! in the host's namespace) after a normal run, after SIGINT and after SIGKILL, and bad input.
//! Root-only tests skip outside CI and fail inside it. They run one at a time: the leftover
//! check sees every process's BPF objects.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zclab::catalog::packet_io as names;
use zclab::sys::bpf;

const BIN: &str = env!("CARGO_BIN_EXE_packet_io");
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The turn of a test that needs root; None when it is skipped ([`need_root`]).
fn root_turn() -> Option<MutexGuard<'static, ()>> {
    need_root("packet_io on a veth pair")
        .then(|| ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A tiny run of `args`, killed (failing the test) after `limit_s` seconds.
fn tiny(args: &str, limit_s: u64) -> Ran {
    let lab = Lab::new(BIN).tiny_tmp().argv(args);
    lab.within(Duration::from_secs(limit_s)).run()
}

/// Waits (the kernel frees programs and maps after an RCU grace period and a work item) until
/// no BPF object with the lab's name remains, and no veth of `pid` is in the host namespace.
fn assert_nothing_left(pid: u32) {
    let t0 = Instant::now();
    loop {
        let o = bpf::lab_objects().expect("bpf(2) enumeration as root");
        if o.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "BPF objects left by the lab: {o:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output();
    if let Ok(l) = links {
        let text = String::from_utf8_lossy(&l.stdout);
        assert!(!text.contains(&format!("zp{pid}")), "{text}");
    }
    let ns = std::fs::read_dir("/run/netns").map(|d| {
        d.flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(&pid.to_string()))
            .collect::<Vec<_>>()
    });
    if let Ok(ns) = ns {
        assert!(ns.is_empty(), "named namespaces of {pid}: {ns:?}");
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    assert_bad_input_refused(
        BIN,
        &[
            ("--frame-sizes 2000", "above the MTU"),
            ("--frame-sizes 40", "below"),
            ("--dev zcnosuchdev0", "zcnosuchdev0: no such network device"),
            ("--dev lo --queue 7", "no receive queue 7"),
            ("--mtu 3394 --frame-sizes 3409", "3408"),
            ("--ring 100", "power of two"),
            ("--variants xdp-nonsense", "unknown variant"),
        ],
    );
}

#[test]
fn every_variant_on_tiny_inputs_with_integrity() {
    let Some(_turn) = root_turn() else {
        return;
    };
    let args = "--mtu 3394 --frame-sizes 64,1500,3408 --frames 3000 --batches 32";
    let ran = tiny(args, 240).ok();
    let e = ran.exp("packet_io");
    let runnable: Vec<&str> = names::VARIANTS
        .iter()
        .copied()
        .filter(|v| !v.ends_with("zerocopy"))
        .collect();
    assert_variants(&e.rows, &runnable);
    for r in &e.rows {
        let m = assert_intact(r);
        for k in [
            "frames_per_s",
            "offered",
            "lost",
            "loss_pct",
            "delivered",
            "corrupt",
        ] {
            assert!(
                m.extra.contains_key(k),
                "{} lacks {k}: {:?}",
                r.variant,
                m.extra
            );
        }
        assert_eq!(m.extra["corrupt"], 0.0);
        assert!(m.extra["delivered"] > 0.0, "{}: nothing arrived", r.variant);
        assert!(m.ops > 0 && m.bytes > 0);
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.dir.join("meta.json")).unwrap()).unwrap();
    // veth has no zero-copy AF_XDP: those two are skipped everywhere the tests run.
    let zero_copy = [names::XDP_RX_ZEROCOPY, names::XDP_TX_ZEROCOPY];
    let skipped = skipped_variants_except(&meta, &zero_copy);
    for zc in zero_copy {
        let why = skipped
            .iter()
            .find(|(v, _)| v == zc)
            .unwrap_or_else(|| panic!("{zc} not skipped on veth: {skipped:?}"));
        assert!(why.1.contains("EOPNOTSUPP"), "{why:?}");
    }
    assert_nothing_left(ran.pid);
}

#[test]
fn zerocopy_by_name_on_veth_fails_with_the_errno() {
    let Some(_turn) = root_turn() else {
        return;
    };
    let args = "--frame-sizes 64 --frames 1000 --variants xdp-rx-zerocopy";
    let ran = tiny(args, 60);
    // The harness: 77 when nothing requested could run (the one variant asked for), 1 when
    // others ran; both name the reason.
    ran.exits(77).says("EOPNOTSUPP");
    assert_nothing_left(ran.pid);
}

/// Starts a long run, waits for its first row, sends `sig`, and checks that the kernel kept
/// nothing of it.
fn interrupted(sig: Signal, code: Option<i32>) {
    let Some(_turn) = root_turn() else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let mut child = Lab::new(BIN)
        .results(t.path())
        .argv("--frame-sizes 64 --frames 400000 --repeat 1000 --warmup 0")
        .argv("--variants xdp-rx-native-poll,xdp-tx-copy")
        .spawn();
    let pid = child.pid;
    child.wait_until(Duration::from_secs(60), "a first row", || {
        summary_with(t.path(), "packet_io", 1)
    });
    // Mid-trial: programs attached, sockets bound.
    child.wait_until(Duration::from_secs(10), "the lab's XDP link", || {
        bpf::lab_objects()
            .ok()
            .filter(|o| !o.links.is_empty())
            .map(|_| ())
    });
    child.signal(sig);
    let ran = child.finish(Duration::from_secs(30), "did not stop");
    match code {
        Some(c) => {
            ran.exits(c);
        }
        None => assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&ran.status),
            Some(9)
        ),
    }
    assert_nothing_left(pid);
}

#[test]
fn nothing_left_after_sigint() {
    interrupted(Signal::SIGINT, Some(130));
}

#[test]
fn nothing_left_after_sigkill() {
    interrupted(Signal::SIGKILL, None);
}
