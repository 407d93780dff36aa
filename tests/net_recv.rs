//! net_recv end to end: every variant on tiny inputs with integrity, with either sender; the
//! provided buffer ring running dry survived and counted; a sender that dies mid-stream fails
//! only its variant; zcrx skipped with the kernel's errno; the lab's namespaces gone after a
//! run and after SIGINT; bad input. Root-only tests skip outside CI and fail inside it.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;
use zclab::results::{Row, Status};

const BIN: &str = env!("CARGO_BIN_EXE_net_recv");

const VARIANTS: &[&str] = &[
    "classic-recv",
    "classic-recv-zerocopy",
    "uring-recv",
    "uring-recv-multishot",
    "uring-recv-bundle",
];

/// The busy-polling receivers: tcp-veth only (loopback has no NAPI context), as root.
const BUSY: &[&str] = &["classic-recv-busy-poll", "uring-recv-multishot-napi"];

/// Every row intact, with the figures its variant must carry.
fn check_rows(e: &Exp, paths: &[&str]) {
    assert_variants_on(&e.rows, VARIANTS, paths);
    check_histograms(&e.dir, &e.rows);
    for r in &e.rows {
        let m = assert_intact(r);
        assert!(m.bytes > 0 && m.latency.count > 0, "{}", what(r));
        assert!(
            m.peer_sys_ns.is_some(),
            "the sender's CPU time: {}",
            what(r)
        );
        let x = &m.extra;
        assert!(x["completions_per_mib"] > 0.0, "{}", what(r));
        assert!(x["receive_calls_per_mib"] > 0.0, "{}", what(r));
        assert!(x.contains_key("sender_cpu_ns_per_mib"), "{}", what(r));
        if r.variant == "classic-recv-zerocopy" {
            let sum = x["mapped_pct"] + x["copybuf_copied_pct"] + x["recv_copied_pct"];
            assert!((sum - 100.0).abs() < 1e-6, "shares add up: {x:?}");
        }
        if r.variant.contains("multishot") || r.variant.contains("bundle") {
            assert!(x.contains_key("rearms") && x.contains_key("ring_dry"));
            assert!(x["buffers_per_completion"] >= 1.0, "{x:?}");
        }
    }
}

/// uring-recv-zc's skips: as root, the kernel's EOPNOTSUPP for each path; without root, the
/// need for root.
fn check_zcrx_skipped(meta: &serde_json::Value, root: bool) {
    let v = variant_meta(meta, "uring-recv-zc");
    if !root {
        assert!(v["reason"].as_str().unwrap_or("").contains("root"), "{v}");
        return;
    }
    let pts = v["points_skipped"].as_array().unwrap();
    let zcrx: Vec<&str> = pts
        .iter()
        .map(|p| p[1].as_str().unwrap())
        .filter(|why| !why.starts_with("copybuf applies"))
        .collect();
    assert!(!zcrx.is_empty(), "{v}");
    for why in zcrx {
        assert!(
            why.contains("IORING_REGISTER_ZCRX_IFQ") && why.contains("EOPNOTSUPP"),
            "{why}"
        );
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// net_recv on `path` with the tiny-run options and `args`.
fn on(path: &str, args: &str) -> Lab {
    Lab::new(BIN).tiny_tmp().args(&["--paths", path]).argv(args)
}

#[test]
fn list_and_bad_input() {
    assert_lists(BIN, &[VARIANTS, &["uring-recv-zc"]].concat());
    assert_bad_input_refused(
        BIN,
        &[
            ("--sizes 0", "0"),
            ("--paths udp-sink", "udp-sink"),
            ("--ring-bufs 3", "power of two"),
            ("--sender carrier-pigeon", "carrier-pigeon"),
            ("--dev zcnosuchdev0", "zcnosuchdev0"),
            ("--variants classic-recvv", "classic-recvv"),
            ("--paths remote-tcp", "path remote-tcp needs --peer"),
            ("--paths remote-udp", "remote-udp"),
            (
                "--peer 127.0.0.1:1 --paths tcp-loopback",
                "with --peer the path is remote-tcp",
            ),
            ("--flows 2 --threads 1", "its own thread"),
            ("--flows 4,2 --threads 2", "its own thread"),
            ("--flows 0", "0"),
        ],
    );
}

/// Every variant on loopback, small and page-sized buffers, a copy buffer and none, with a
/// MSG_ZEROCOPY sender and with a plain one: every byte arrives intact.
#[test]
fn loopback_every_variant_both_senders() {
    for sender in ["zerocopy", "plain"] {
        let e = on(
            "tcp-loopback",
            "--sizes 4KiB,64KiB --copybuf 4095,0 --bytes 2MiB",
        )
        .argv("--send-size 64KiB --pool 2")
        .args(&["--sender", sender])
        .run()
        .ok()
        .exp("net_recv");
        check_rows(&e, &["tcp-loopback"]);
        let zc: Vec<&Row> = e
            .rows
            .iter()
            .filter(|r| r.variant == "classic-recv-zerocopy")
            .collect();
        assert_eq!(zc.len(), 4, "two sizes x two copy buffers");
        assert_eq!(
            e.rows
                .iter()
                .filter(|r| r.variant == "classic-recv")
                .count(),
            2,
            "the other variants at the first copy buffer only"
        );
        for r in &zc {
            if r.params["copybuf"] == 0 {
                assert_eq!(metrics(r).extra["copybuf_copied_pct"], 0.0, "{}", what(r));
            }
        }
        check_zcrx_skipped(&e.meta(), is_root());
        assert_eq!(e.meta()["parameters"]["sender"], sender);
        for b in BUSY.iter().filter(|_| is_root()) {
            let why = variant_meta(&e.meta(), b)["points_skipped"][0][1].to_string();
            assert!(why.contains("no NAPI context"), "{b}: {why}");
        }
    }
}

/// A ring of one provided buffer runs dry while the sender streams: the receive is re-armed,
/// every byte arrives, and the dry spells are counted.
#[test]
fn buffer_ring_running_dry_is_survived_and_counted() {
    let e = on(
        "tcp-loopback",
        "--variants uring-recv-multishot,uring-recv-bundle",
    )
    .argv("--ring-bufs 1 --sizes 4KiB --bytes 4MiB --sender plain")
    .run()
    .ok()
    .exp("net_recv");
    assert_eq!(e.rows.len(), 2);
    for r in &e.rows {
        let x = &assert_intact(r).extra;
        assert!(x["ring_dry"] > 0.0, "{}: {x:?}", r.variant);
        assert!(x["rearms"] >= x["ring_dry"], "{x:?}");
    }
}

/// Three flows, each received on its own thread from its own sender: every variant (the
/// busy-polling ones are measured with one flow) gets every flow's stream intact, and the row
/// is the aggregate with each flow's rate and the fairness.
#[test]
fn three_flows_every_variant_intact() {
    let e = on(
        "tcp-loopback",
        "--sizes 64KiB --bytes 2MiB --flows 3 --threads flows",
    )
    .args(&["--variants", &VARIANTS.join(",")])
    .run()
    .ok()
    .exp_checked("net_recv");
    assert_variants(&e.rows, VARIANTS);
    for r in &e.rows {
        let m = assert_intact(r);
        assert_eq!(m.bytes, 3 * (2 << 20), "{}", what(r));
        assert_eq!(m.extra["flows"], 3.0, "{}", what(r));
        assert_eq!(m.extra["flows_failed"], 0.0, "{}", what(r));
        for i in 0..3 {
            assert!(m.extra[&format!("flow{i}_gbps")] > 0.0, "{}", what(r));
        }
    }
    assert!(e.dir.join("flows.md").exists());
}

/// A sender that dies in a trial of three flows fails its flow only: the row names it, the
/// other flows are recorded.
#[test]
fn a_dead_flow_fails_alone() {
    let r = on(
        "tcp-loopback",
        "--sizes 64KiB --bytes 2MiB --flows 3 --threads flows",
    )
    .argv("--variants classic-recv,uring-recv-multishot")
    .fault("peer-reset-after:256KiB@classic-recv")
    .run();
    assert_eq!(r.code(), Some(1), "{}", r.text());
    let e = r.exp("net_recv");
    assert_only_flow_0_failed(&e.rows, "classic-recv", "uring-recv-multishot", 3);
}

/// A sender that resets the connection mid-stream fails its variant only, with the reset
/// named; the others run and stay intact.
#[test]
fn a_sender_dying_mid_stream_fails_only_its_variant() {
    for victim in ["classic-recv-zerocopy", "uring-recv-bundle"] {
        let r = on("tcp-loopback", "--sizes 64KiB --bytes 4MiB")
            .argv("--variants classic-recv,classic-recv-zerocopy,uring-recv-bundle")
            .fault(&format!("peer-reset-after:256KiB@{victim}"))
            .run();
        assert_eq!(r.code(), Some(1), "{}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        let e = r.exp_checked("net_recv");
        for row in &e.rows {
            if row.variant == victim {
                assert_eq!(row.status, Status::Error, "{}", what(row));
                let err = row.error.as_deref().unwrap_or("").to_lowercase();
                assert!(err.contains("reset"), "{err}");
            } else {
                assert_intact(row);
            }
        }
        assert_eq!(variant_meta(&e.meta(), victim)["status"], "failed");
    }
}

/// tcp-veth: every variant intact across the lab's veth pair (the MTU set is recorded), zcrx
/// refused by the kernel on the veth device, and nothing of the lab left afterwards.
#[test]
fn veth_every_variant_and_nothing_left() {
    if !need_root("veth_every_variant_and_nothing_left") {
        return;
    }
    let r = run_clean(on("tcp-veth", "--sizes 64KiB --bytes 2MiB --veth-mtu 9000"));
    let e = r.exp("net_recv");
    check_rows(&e, &["tcp-veth"]);
    for row in &e.rows {
        assert_eq!(metrics(row).extra["veth_mtu"], 9000.0);
    }
    // The busy-polling receivers ran with a NAPI context (the XDP program gave veth one),
    // and say how many packets busy polling brought in.
    assert_variants_on(&e.rows, BUSY, &["tcp-veth"]);
    for row in e.rows.iter().filter(|r| BUSY.contains(&r.variant.as_str())) {
        let x = &metrics(row).extra;
        assert!(x["napi_id"] > 0.0 && x["busy_poll_us"] == 50.0, "{x:?}");
        assert!(x.contains_key("busy_poll_rx_packets"), "{x:?}");
    }
    let meta = e.meta();
    check_zcrx_skipped(&meta, true);
    let why = variant_meta(&meta, "uring-recv-zc")["points_skipped"][0][1].to_string();
    assert!(why.contains("veth"), "{why}");
}

#[test]
fn sigint_mid_trial_leaves_nothing_behind() {
    if !need_root("sigint_mid_trial_leaves_nothing_behind") {
        return;
    }
    let lab = Lab::new(BIN)
        .argv("--repeat 1000 --warmup 0 --paths tcp-veth --sizes 64KiB")
        .argv("--variants classic-recv-zerocopy,uring-recv-multishot");
    let ms = Duration::from_millis(300);
    interrupt_mid_trial(lab, "net_recv", Signal::SIGINT, 130, ms);
}
