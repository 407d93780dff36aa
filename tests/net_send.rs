//! net_send end to end: every variant on tiny inputs, zero-copy truth per path, integrity with
//! the smallest buffer pool, clean-up of the lab's namespaces after SIGINT/SIGTERM, and bad
//! input. Root-only tests skip outside CI and fail inside it.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;
use zclab::results::Row;

const BIN: &str = env!("CARGO_BIN_EXE_net_send");

fn is_zc(r: &Row) -> bool {
    NET_SEND_ZC_VARIANTS.contains(&r.variant.as_str())
}

/// Runs every variant of net_send on `paths` with `args` after the tiny-run options,
/// expecting success, nothing of the lab's namespaces left and [`check_rows`] to hold.
fn every_variant_ok(paths: &[&str], args: &str) -> (Ran, Exp) {
    let lab = Lab::new(BIN)
        .tiny_tmp()
        .args(&["--paths", &paths.join(",")]);
    let r = run_clean(lab.argv(args));
    let e = r.exp("net_send");
    check_rows(&e, NET_SEND_VARIANTS, paths);
    (r, e)
}

/// Checks every row is ok with integrity ok and parseable histograms; zero-copy rows carry
/// complete accounting and a release histogram.
fn check_rows(e: &Exp, variants: &[&str], paths: &[&str]) {
    assert_variants_on(&e.rows, variants, paths);
    check_histograms(&e.dir, &e.rows);
    for r in &e.rows {
        let m = assert_intact(r);
        assert!(m.bytes > 0 && m.latency.count == m.ops, "{m:?}");
        if is_zc(r) {
            let z = zc(r);
            assert!(z.usage_reported);
            assert!(z.sends >= m.ops, "{z:?}");
            assert_eq!(z.ids_completed, z.sends, "every send completed: {z:?}");
            assert_eq!(z.bytes, m.bytes, "{z:?}");
            assert!(z.notifications >= 1 && z.notifications <= z.sends, "{z:?}");
            assert!(r.histograms.contains_key("release"), "{:?}", r.histograms);
            assert_eq!(
                m.extra_latency["release"].count, z.ids_completed,
                "one release sample per send: {z:?}"
            );
        } else {
            assert!(m.zc.is_none());
        }
    }
}

#[test]
fn list_and_bad_input() {
    assert_lists(BIN, NET_SEND_VARIANTS);
    assert_bad_input_refused(
        BIN,
        &[
            ("--sizes 0", "0"),
            ("--sizes 4KiB,0", "0"),
            ("--paths tcp-nowhere", "tcp-nowhere"),
            ("--variants classic-sendd", "classic-sendd"),
            ("--pool 0", "0"),
            ("--reap-every x", "x"),
            (
                "--flows 2 --threads 3",
                "--threads 3 is more than --flows 2",
            ),
            (
                "--flows 4,1 --threads 2",
                "--threads 2 is more than --flows 1",
            ),
            ("--flows 0", "0"),
            ("--flows 65", "65"),
            ("--flows 2 --flow-cpus 4096", "CPU 4096 does not exist"),
            ("--flows 2 --peer-cpus x", "'x' is not a CPU number"),
        ],
    );
}

/// The smallest pool (two buffers) on loopback TCP: no byte arrives corrupted, and every
/// zero-copy send is reported copied (the kernel copies on local delivery).
#[test]
fn loopback_all_variants_pool_of_two() {
    let args = "--sizes 1000B,64KiB --bytes 2MiB --pool 2 --reap-every 1,4";
    let (_, e) = every_variant_ok(&["tcp-loopback"], args);
    for r in e.rows.iter().filter(|r| is_zc(r)) {
        assert_eq!(zc(r).copied_pct, 100.0, "{}", what(r));
    }
    let mz = e
        .rows
        .iter()
        .filter(|r| r.variant == "classic-send-msg-zerocopy");
    assert_eq!(mz.count(), 4, "two sizes x two reap values");
    // The other variants run once per size, at the first reap value.
    assert_eq!(
        e.rows.iter().filter(|r| r.variant == "uring-send").count(),
        2
    );
    assert_nothing_skipped_or_failed(&e.meta());
}

/// `--flows 4 --threads 2` on loopback: every variant sends over four connections from two
/// threads, each flow's stream arrives intact, and the row is the aggregate with each flow's
/// rate and the fairness index.
#[test]
fn four_flows_on_two_threads() {
    let args = "--sizes 64KiB --bytes 1MiB --flows 4 --threads 2 --reap-every 1";
    let (_, e) = every_variant_ok(&["tcp-loopback"], args);
    for r in &e.rows {
        assert!(r.point.ends_with("flows=4,threads=2"), "{}", r.point);
        let m = metrics(r);
        assert_eq!(m.bytes, 4 << 20, "four flows of 1 MiB: {}", what(r));
        assert_eq!(m.extra["flows_failed"], 0.0);
        let rates: Vec<f64> = (0..4).map(|i| m.extra[&format!("flow{i}_gbps")]).collect();
        assert!(rates.iter().all(|&x| x > 0.0), "{rates:?}");
        let j = m.extra["jain_fairness"];
        assert!(j > 0.25 && j <= 1.0 + 1e-9, "{j}");
        assert!(integrity(r).method.starts_with("per flow, 4 flows"));
        assert!(m.peer_sys_ns.is_some(), "the receivers' CPU is set apart");
        // Every message is timed, on whichever thread sent it: two readings at least.
        assert!(m.extra["clock_reads_per_op"] >= 1.5, "{}", what(r));
    }
}

/// One flow's receiver resets its connection: that flow fails and is named, the other three
/// are delivered and recorded in the row; the variant fails (exit 1), the next one runs.
#[test]
fn a_dead_flow_fails_alone() {
    let r = Lab::new(BIN)
        .tiny_tmp()
        .argv("--paths tcp-loopback --sizes 64KiB --bytes 2MiB --flows 4 --threads 2")
        .args(&["--variants", "classic-send,uring-send"])
        .fault("peer-reset-after:64KiB@classic-send")
        .run();
    assert_eq!(r.code(), Some(1), "{}", r.text());
    let e = r.exp("net_send");
    assert_only_flow_0_failed(&e.rows, "classic-send", "uring-send", 4);
    let bad = e.rows.iter().find(|r| r.variant == "classic-send").unwrap();
    assert!(bad.error.as_deref().unwrap_or("").contains("reset"));
}

/// `--sink discard`: the peer thread drops the bytes with recv(MSG_TRUNC). Every variant still
/// delivers every byte, the rows say the byte count is all that was checked, and the peer's
/// CPU time is recorded.
#[test]
fn discarding_receiver_counts_every_byte() {
    let args = "--sizes 1000B,64KiB --bytes 4MiB --sink discard";
    let (_, e) = every_variant_ok(&["tcp-loopback"], args);
    for r in &e.rows {
        let i = integrity(r);
        assert!(i.method.starts_with("byte count only"), "{i:?}");
        assert!(i.ok && i.bytes_got == i.bytes_expected, "{i:?}");
        assert!(metrics(r).peer_sys_ns.is_some());
    }
    let meta = e.meta();
    assert_eq!(
        meta["parameters"]["sink"], "discard",
        "{}",
        meta["parameters"]
    );
}

/// tcp-veth copies (a local receiver in namespace B), udp-sink does not; two buffers suffice
/// for intact data; the sink's counters match; crossover.json is written; nothing is left.
#[test]
fn veth_paths_tell_the_truth() {
    if !need_root("veth_paths_tell_the_truth") {
        return;
    }
    let args = "--sizes 4KiB,64KiB --bytes 2MiB --pool 2 --inflight 2 --reap-every 1";
    let (r, e) = every_variant_ok(&["tcp-veth", "udp-sink"], args);
    for r in e.rows.iter().filter(|r| is_zc(r)) {
        let want = if path_of(r) == "udp-sink" { 0.0 } else { 100.0 };
        assert_eq!(zc(r).copied_pct, want, "{}", what(r));
    }
    for r in e.rows.iter().filter(|r| path_of(r) == "udp-sink") {
        let m = metrics(r);
        assert_eq!(m.extra["sink_rx_packets"], m.ops as f64, "{}", r.variant);
        assert_eq!(
            m.extra["sink_ip_in_addr_errors"], m.ops as f64,
            "{}",
            r.variant
        );
        assert!(
            r.point.contains("size=65507B") || r.point.contains("size=4KiB"),
            "{}",
            r.point
        );
    }
    let cross = e.json("crossover.json");
    let vs = cross["variants"].as_array().unwrap();
    assert_eq!(vs.len(), 4, "{cross}");
    for v in vs {
        assert!(v["conclusive"].is_boolean() && v["points"].as_array().unwrap().len() == 2);
        let uring = v["variant"].as_str().unwrap().starts_with("uring-");
        assert_eq!(v["vs_uring_send"].is_object(), uring, "{v}");
    }
    assert!(r.stdout.contains("crossover on udp-sink"), "{}", r.stdout);
    assert_nothing_skipped_or_failed(&e.meta());
}

#[test]
fn sigint_and_sigterm_leave_nothing_behind() {
    if !need_root("sigint_and_sigterm_leave_nothing_behind") {
        return;
    }
    for (sig, code) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let lab = Lab::new(BIN)
            .argv("--repeat 1000 --warmup 0 --paths udp-sink,tcp-veth --sizes 64KiB")
            .argv("--variants classic-send,uring-send-zc");
        interrupt_mid_trial(lab, "net_send", sig, code, Duration::from_millis(300));
    }
}

/// Without root the veth paths are skipped with the reason and loopback still runs.
#[test]
fn without_root_the_veth_paths_are_skipped() {
    let e = Lab::new(BIN)
        .hide("root")
        .tiny_tmp()
        .argv("--paths tcp-loopback,udp-sink --sizes 64KiB --bytes 1MiB")
        .argv("--variants classic-send --reap-every 1")
        .run()
        .ok()
        .exp("net_send");
    assert_eq!(e.rows.len(), 1, "{:?}", e.rows);
    assert_eq!(e.rows[0].params["path"], "tcp-loopback");
    let meta = e.meta();
    let v = &meta["variants"][0];
    let skipped = v["points_skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{v}");
    assert!(skipped[0][1].as_str().unwrap().contains("root"), "{v}");
}
