//! `zclab serve` and `--peer`: two hosts played by two network namespaces joined by a veth
//! pair (created and removed by each test, also when it fails), the server in one, the
//! experiments in the other; a server killed mid-run; malformed, oversized and vanishing
//! clients; a second client refused while the first is served; protocol version mismatches
//! refused from both sides. The namespace tests need root: they skip outside CI without it,
//! and fail inside CI.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use zclab::net::remote::{self, Peer, PeerAddr};
use zclab::results::{Row, Status};

const ZCLAB: &str = env!("CARGO_BIN_EXE_zclab");
const NET_RECV: &str = env!("CARGO_BIN_EXE_net_recv");
const NET_SEND: &str = env!("CARGO_BIN_EXE_net_send");
const PROXY: &str = env!("CARGO_BIN_EXE_proxy");
const RR: &str = env!("CARGO_BIN_EXE_rr");
const SOCKET_TO_FILE: &str = env!("CARGO_BIN_EXE_socket_to_file");
const FILE_TO_SOCKET: &str = env!("CARGO_BIN_EXE_file_to_socket");

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

const NS_PREFIX: &str = "zsrvt-";

/// Removes namespaces of earlier test processes that were killed before their clean-up.
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// Two hosts: namespaces A (client, 10.214.0.1) and B (server, 10.214.0.2) joined by a veth
/// pair (MTU 1500, as an Ethernet link). Dropping it kills the server and removes both.
struct TwoHosts {
    a: String,
    b: String,
    server: Option<Server>,
}

const ADDR_A: &str = "10.214.0.1";
const ADDR_B: &str = "10.214.0.2";

impl TwoHosts {
    fn new(tag: u32) -> TwoHosts {
        remove_stale();
        let pid = std::process::id();
        let h = TwoHosts {
            a: format!("{NS_PREFIX}{pid}-{tag}-a"),
            b: format!("{NS_PREFIX}{pid}-{tag}-b"),
            server: None,
        };
        // The guard exists before anything is created: a failure below still cleans up.
        let (da, db) = (format!("zt{pid}{tag}a"), format!("zt{pid}{tag}b"));
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &h.a])?;
            ip(&["netns", "add", &h.b])?;
            ip(&[
                "link", "add", &da, "netns", &h.a, "type", "veth", "peer", "name", &db, "netns",
                &h.b,
            ])?;
            ip(&[
                "-n",
                &h.a,
                "addr",
                "add",
                &format!("{ADDR_A}/24"),
                "dev",
                &da,
            ])?;
            ip(&[
                "-n",
                &h.b,
                "addr",
                "add",
                &format!("{ADDR_B}/24"),
                "dev",
                &db,
            ])?;
            for (ns, d) in [(&h.a, &da), (&h.b, &db)] {
                ip(&["-n", ns, "link", "set", d, "up"])?;
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            panic!("cannot build the two namespaces: {e}");
        }
        h
    }
    /// Starts `zclab serve --listen ADDR_B:7878` inside B and waits until it listens.
    fn serve(&mut self) -> &Server {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.b, ZCLAB, "serve", "--listen"])
            .arg(format!("{ADDR_B}:7878"));
        self.server = Some(Server::start(c));
        self.server.as_ref().unwrap()
    }

    /// Two hosts with `zclab serve` running in B, where root is there (see `need_root`).
    fn serving(test: &str, tag: u32) -> Option<TwoHosts> {
        if !need_root(test) {
            return None;
        }
        let mut h = TwoHosts::new(tag);
        h.serve();
        Some(h)
    }

    /// `bin` inside A with one repeat, writing into `results`.
    fn in_a(&self, bin: &str, results: &Path) -> Lab {
        Lab::in_netns(&self.a, bin).tiny(results)
    }

    /// Runs `bin args` inside A (bounded by two minutes), expecting success.
    fn run_in_a(&self, bin: &str, args: &str, results: &Path) -> Ran {
        let r = self.in_a(bin, results).argv(args);
        r.within(Duration::from_secs(120)).run().ok()
    }

    /// The server, after the runs: still alive.
    fn server_alive(&mut self) -> &mut Server {
        let s = self.server.as_mut().unwrap();
        assert!(s.alive(), "the server survived: {}", s.log());
        s
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        if let Some(s) = self.server.as_mut() {
            s.kill();
        }
        for ns in [&self.a, &self.b] {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// Every row ok, integrity ok, histograms readable, the receiver's accounting present; the
/// peer host recorded in meta.json; no variant skipped in CI. Returns the rows.
fn check_remote_run(ran: &Ran, exp: &str, variants: &[&str]) -> Vec<Row> {
    let e = ran.exp(exp);
    assert_variants(&e.rows, variants);
    check_histograms(&e.dir, &e.rows);
    for r in &e.rows {
        let m = assert_intact(r);
        assert!(m.peer_user_ns.is_some() && m.peer_sys_ns.is_some(), "{m:?}");
        for k in ["peer_vcsw", "peer_ivcsw", "peer_wall_ns", "peer_cpu"] {
            assert!(
                m.extra.contains_key(k),
                "{} lacks {k}: {:?}",
                r.variant,
                m.extra
            );
        }
        assert!(m.extra["peer_wall_ns"] > 0.0);
    }
    let m = e.meta();
    let peer = &m["peer"];
    assert_eq!(peer["address"], format!("{ADDR_B}:7878"), "{peer}");
    assert_eq!(peer["protocol"], remote::PROTOCOL);
    assert!(
        peer["host"].is_string() && peer["kernel"].is_string(),
        "{peer}"
    );
    assert!(peer["probe"]["io_uring"].is_object(), "peer probe recorded");
    assert!(m["probe"]["io_uring"].is_object(), "local probe recorded");
    skipped_variants(&m);
    e.rows
}

/// net_send's whole variant list on both remote paths.
fn net_send_across(hosts: &TwoHosts) {
    let t = tempfile::tempdir().unwrap();
    let r = hosts.run_in_a(
        NET_SEND,
        &format!("--peer {ADDR_B} --cpus 0,0 --sizes 4KiB,64KiB --bytes 1MiB --reap-every 1,8"),
        t.path(),
    );
    let rows = check_remote_run(&r, "net_send", NET_SEND_VARIANTS);
    assert_variants_on(&rows, NET_SEND_VARIANTS, &["remote-tcp", "remote-udp"]);
    for r in &rows {
        let m = metrics(r);
        if r.variant != "classic-send" && r.variant != "uring-send" {
            let z = zc(r);
            assert_eq!(z.ids_completed, z.sends, "{z:?}");
        }
        if r.params["path"] == "remote-udp" {
            assert!(m.extra.contains_key("peer_rcvbuf"), "{:?}", m.extra);
            assert_eq!(m.extra["peer_datagrams"], m.ops as f64);
        } else {
            // The hashing receiver on the peer host timed its hashing.
            assert!(
                m.extra.get("peer_hash_ns").is_some_and(|&n| n > 0.0),
                "{:?}",
                m.extra
            );
        }
    }
    assert!(r.stdout.contains("crossover on remote-udp"), "{}", r.stdout);
    let c = r.exp("net_send").json("crossover-remote-udp.json");
    assert_eq!(c["path"], "remote-udp");
}

/// Four flows on two threads to four tcp-sinks running at once on the peer host: every flow's
/// stream checked there, the receivers' CPU summed, fairness recorded; remote-udp's many-flow
/// points are skipped with the reason.
fn net_send_flows_across(hosts: &TwoHosts) {
    let t = tempfile::tempdir().unwrap();
    let variants = ["classic-send", "uring-send", "uring-send-zc"];
    let r = hosts.run_in_a(
        NET_SEND,
        &format!(
            "--peer {ADDR_B} --cpus 0,0 --sizes 64KiB --bytes 1MiB --flows 4 --threads 2 --variants {}",
            variants.join(",")
        ),
        t.path(),
    );
    let rows = check_remote_run(&r, "net_send", &variants);
    assert_variants_on(&rows, &variants, &["remote-tcp"]);
    for row in &rows {
        let m = metrics(row);
        assert_eq!(m.extra["flows"], 4.0, "{}", row.variant);
        assert_eq!(m.extra["flows_failed"], 0.0, "{}", row.variant);
        assert!(m.extra["jain_fairness"] > 0.0, "{}", row.variant);
        assert_eq!(m.bytes, 4 << 20, "{}", row.variant);
    }
    let skipped =
        variant_meta(&r.exp("net_send").meta(), "classic-send")["points_skipped"].to_string();
    assert!(
        skipped.contains("--flows runs on the TCP paths"),
        "{skipped}"
    );
}

/// A discarding receiver on the peer host (recv with MSG_TRUNC) counts the bytes, and the
/// rows say that the byte count is all that was checked.
fn net_send_discard_across(hosts: &TwoHosts) {
    let t = tempfile::tempdir().unwrap();
    let r = hosts.run_in_a(
        NET_SEND,
        &format!(
            "--peer {ADDR_B} --paths remote-tcp --sink discard \
             --variants classic-send,uring-send-zc --sizes 64KiB --bytes 4MiB"
        ),
        t.path(),
    );
    for row in check_remote_run(&r, "net_send", &["classic-send", "uring-send-zc"]) {
        let i = integrity(&row);
        assert!(i.method.starts_with("byte count only"), "{i:?}");
        assert_eq!((i.bytes_got, i.bytes_expected), (4 << 20, 4 << 20));
        // A discarding receiver hashes nothing, so it reports no hashing time.
        assert!(!metrics(&row).extra.contains_key("peer_hash_ns"));
    }
}

/// net_recv with the peer host's tcp-source as the sender: every receiver here gets the
/// pattern stream intact, checked against the pattern's hash and the one the peer host sent.
fn net_recv_across(hosts: &TwoHosts) {
    let t = tempfile::tempdir().unwrap();
    let variants = [
        "classic-recv",
        "classic-recv-zerocopy",
        "uring-recv",
        "uring-recv-multishot",
        "uring-recv-bundle",
    ];
    let r = hosts.run_in_a(
        NET_RECV,
        &format!(
            "--peer {ADDR_B} --sizes 64KiB --bytes 4MiB --send-size 64KiB --variants {}",
            variants.join(",")
        ),
        t.path(),
    );
    let rows = check_remote_run(&r, "net_recv", &variants);
    assert_variants_on(&rows, &variants, &["remote-tcp"]);
    for row in &rows {
        let i = integrity(row);
        assert!(i.method.contains("peer host's hash"), "{i:?}");
        assert_eq!(i.bytes_got, 4 << 20);
        assert_eq!(metrics(row).extra["sender_msg_zerocopy"], 0.0);
    }
    // Two flows: two tcp-sources at once on the peer host, each flow checked here.
    let t = tempfile::tempdir().unwrap();
    let two = ["classic-recv", "uring-recv-multishot"];
    let r = hosts.run_in_a(
        NET_RECV,
        &format!(
            "--peer {ADDR_B} --sizes 64KiB --bytes 2MiB --send-size 64KiB --flows 2 --threads flows --variants {}",
            two.join(",")
        ),
        t.path(),
    );
    for row in check_remote_run(&r, "net_recv", &two) {
        let m = metrics(&row);
        assert_eq!((m.extra["flows"], m.extra["flows_failed"]), (2.0, 0.0));
        assert_eq!(m.bytes, 4 << 20);
    }
}

/// rr with every server but the busy-polling one (the namespaces' veth has no NAPI context)
/// in the peer host's rr-server, the client measured here: one connection closed and open
/// loop, and a connection per transaction; every response checked, both sides' CPU per
/// transaction recorded.
fn rr_across(hosts: &TwoHosts) {
    let t = tempfile::tempdir().unwrap();
    let variants: Vec<&str> = zclab::catalog::rr::VARIANTS
        .iter()
        .copied()
        .filter(|v| *v != zclab::catalog::rr::CLASSIC_BUSY_POLL)
        .collect();
    let r = hosts.run_in_a(
        RR,
        &format!(
            "--peer {ADDR_B} --sizes 64,5000 --transactions 300 --rate 20000 --variants {}",
            variants.join(",")
        ),
        t.path(),
    );
    let rows = check_remote_run(&r, "rr", &variants);
    assert_variants_on(&rows, &variants, &["remote-tcp"]);
    // Two sizes: one connection closed and open loop, a connection per transaction.
    assert_eq!(rows.len(), variants.len() * 6);
    for mode in ["rr", "crr"] {
        assert!(rows.iter().any(|r| r.params["mode"] == mode));
    }
    for row in &rows {
        let m = metrics(row);
        assert_eq!(m.ops, 300, "{}", row.variant);
        assert_eq!(m.latency.count, 300, "{}", row.variant);
        for k in ["server_cpu_ns_per_tx", "client_cpu_ns_per_tx"] {
            assert!(m.extra[k] >= 0.0, "{k}: {}", row.variant);
        }
        assert!(m.peer_user_ns.is_some(), "{}", row.variant);
        assert_eq!(
            m.extra.contains_key("uring_enters_per_tx"),
            row.variant.starts_with("uring-"),
            "{}",
            row.variant
        );
    }
}

fn socket_to_file_and_proxy_across(hosts: &TwoHosts) {
    let t = tempfile::tempdir().unwrap();
    let r = hosts.run_in_a(
        SOCKET_TO_FILE,
        &format!(
            "--peer {ADDR_B}:7878 --sizes 1MiB --chunks 64KiB --fsync none --workdir {}",
            t.path().display()
        ),
        t.path(),
    );
    let variants = ["classic-recv-write", "classic-splice", "uring-splice"];
    check_remote_run(&r, "socket_to_file", &variants);

    let t = tempfile::tempdir().unwrap();
    let r = hosts.run_in_a(
        PROXY,
        &format!("--peer {ADDR_B} --sizes 4KiB --stream-bytes 1MiB --requests 50"),
        t.path(),
    );
    let variants = ["classic-read-write", "classic-splice", "uring-splice"];
    let rows = check_remote_run(&r, "proxy", &variants);
    assert!(rows.iter().any(|r| r.params["mode"] == "echo"));
}

/// The whole variant list of net_send (both remote paths) and of socket_to_file and proxy,
/// from namespace A to `zclab serve` in namespace B, integrity checked end to end.
///
/// `--cpus 0,0`: both "hosts" share one kernel here, and the kernel frees a consumed skb on
/// the CPU that allocated it (net.core.skb_defer_max), at that CPU's next network receive; a
/// lone UDP sender receives nothing, so with the receiver on the other CPU the last
/// MSG_ZEROCOPY completions can wait seconds for the next packet. Two real hosts do not share
/// this; one CPU for both sides avoids it here.
#[test]
fn two_namespaces_run_every_variant_across_the_link() {
    let Some(mut hosts) = TwoHosts::serving("two_namespaces_run_every_variant_across_the_link", 1)
    else {
        return;
    };
    net_send_across(&hosts);
    net_send_discard_across(&hosts);
    net_send_flows_across(&hosts);
    net_recv_across(&hosts);
    rr_across(&hosts);
    socket_to_file_and_proxy_across(&hosts);
    let s = hosts.server_alive();
    s.wait_log(&[
        "udp-sink: ok",
        "tcp-source: ok",
        "echo: ok",
        "tcp-sink: ok",
        "rr-server: ok",
    ]);
}

/// file_to_socket's whole variant list on both remote paths, from namespace A to `zclab
/// serve` in namespace B: the file's hash checked on the peer host for TCP, every datagram
/// counted and summed there for UDP. `--cpus 0,0` for the reason given above.
#[test]
fn file_to_socket_runs_every_variant_across_the_link() {
    let Some(mut hosts) = TwoHosts::serving("file_to_socket_runs_every_variant_across_the_link", 3)
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    // At most 16 pages at any file offset: larger spliced datagrams hit the kernel's
    // checksum fallback, whose losses are the README's to report, not this test's.
    let r = hosts.run_in_a(
        FILE_TO_SOCKET,
        &format!(
            "--peer {ADDR_B} --cpus 0,0 --sizes 1MiB --chunks 64KiB --datagram 63488 \
             --workdir {}",
            t.path().display()
        ),
        t.path(),
    );
    let rows = check_remote_run(&r, "file_to_socket", FILE_TO_SOCKET_VARIANTS);
    assert_variants_on(
        &rows,
        FILE_TO_SOCKET_VARIANTS,
        &["remote-tcp", "remote-udp"],
    );
    for r in rows.iter().filter(|r| r.params["path"] == "remote-udp") {
        let m = metrics(r);
        assert_eq!(
            m.extra["peer_datagrams"], m.extra["datagrams"],
            "{}",
            r.variant
        );
    }
    for r in rows
        .iter()
        .filter(|r| r.variant.starts_with("uring-send-zc"))
    {
        let z = zc(r);
        assert_eq!(z.ids_completed, z.sends, "{z:?}");
    }
    hosts.server_alive();
}

/// The rows of a run whose server was killed after the first: the trial in flight names the
/// peer, every later one says "peer unreachable", and every variant and point has its row.
fn check_rows_after_the_kill(rows: &[Row]) {
    assert_eq!(rows[0].status, Status::Ok, "{:?}", rows[0].error);
    let first_err = rows
        .iter()
        .position(|r| r.status == Status::Error)
        .expect("an error row after the kill");
    let e = rows[first_err].error.as_deref().unwrap();
    assert!(
        e.contains("peer lost") || e.contains("peer unreachable"),
        "the failing trial names the peer: {e}"
    );
    for r in &rows[first_err + 1..] {
        assert_eq!(r.status, Status::Error, "{}", what(r));
        let e = r.error.as_deref().unwrap();
        assert!(e.contains("peer unreachable"), "{e:?}");
    }
    // The run went on: every variant and point has its row (one per point once failed).
    for v in NET_SEND_VARIANTS {
        for size in ["4KiB", "16KiB", "64KiB"] {
            let at = format!("size={size}");
            assert!(
                rows.iter()
                    .any(|r| r.variant == *v && r.point.contains(&at)),
                "no row for {v} at {size}"
            );
        }
    }
}

/// The server is killed while net_send runs: the trial in flight is recorded as an error that
/// says the peer went away, and every later trial fails at once with "peer unreachable"; the
/// run still ends promptly with every variant and point accounted for.
#[test]
fn server_killed_mid_run_fails_fast() {
    let Some(mut hosts) = TwoHosts::serving("server_killed_mid_run_fails_fast", 2) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let mut child = Lab::in_netns(&hosts.a, NET_SEND)
        .argv("--repeat 2 --warmup 0")
        .results(t.path())
        .argv(&format!("--peer {ADDR_B} --paths remote-tcp --cpus 0,0"))
        .argv("--sizes 4KiB,16KiB,64KiB --bytes 48MiB --max-messages 100000")
        .spawn();
    // Kill the server once the first trial's row is written (mid-run).
    let summary = child.wait_until(Duration::from_secs(60), "a trial finished", || {
        summary_with(t.path(), "net_send", 1)
    });
    hosts.server.as_mut().unwrap().kill();
    let killed = Instant::now();
    let r = child.finish(
        Duration::from_secs(60),
        "net_send hangs after the server was killed",
    );
    r.exits(1);
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "took {took:?} after the kill"
    );
    check_rows_after_the_kill(&read_rows(&summary));
    let m = read_json(&summary.with_file_name("meta.json"));
    assert_eq!(m["status"], "complete");
    assert!(r.stderr.contains("peer unreachable"), "{}", r.stderr);
}

fn local_caps() -> zclab::caps::Caps {
    zclab::caps::probe(Path::new("."))
}

fn peer_addr(s: &Server) -> PeerAddr {
    remote::parse_peer(&s.addr).unwrap()
}

fn data_addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Clients vanishing in the handshake, malformed first messages, oversized and bad requests
/// after it: each closes its own connection with an error.
fn malformed_messages(addr: &str) {
    // Vanishing before and during the handshake.
    drop(TcpStream::connect(addr).unwrap());
    drop(Ctl::connect(addr));
    {
        let mut c = Ctl::connect(addr);
        c.send(b"{\"type\":\"hello\",\"lab\":\"zc");
    }
    // Malformed first messages.
    for (bytes, needle) in [
        (b"garbage\n".to_vec(), "not JSON"),
        (b"\xff\xfe\n".to_vec(), "not UTF-8"),
        (b"[1]\n".to_vec(), "not a JSON object"),
        (
            b"{\"type\":\"setup\",\"id\":1}\n".to_vec(),
            "expected a client hello",
        ),
        (
            b"{\"type\":\"hello\",\"lab\":\"iperf3\",\"protocol\":1}\n".to_vec(),
            "not zclab",
        ),
        (vec![b'x'; 70 * 1024], "longer than 65536"),
    ] {
        let mut c = Ctl::connect(addr);
        c.send(&bytes);
        c.expect_error("bad-message", needle);
    }
    // Oversized, with a newline, after the handshake.
    {
        let mut c = Ctl::session(addr);
        let mut big = b"{\"type\":\"bye\",\"pad\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', 80 * 1024));
        big.extend(b"\"}\n");
        c.send(&big);
        c.expect_error("bad-message", "longer than 65536");
    }
    // Bad requests after the handshake.
    for (json, needle) in [
        (
            r#"{"type":"setup","id":1,"role":"shell","cmd":"rm -rf /"}"#,
            "bad setup",
        ),
        (
            r#"{"type":"setup","id":1,"role":"tcp-sink","recv_buf":1099511627776,"hash":true}"#,
            "out of range",
        ),
        (
            r#"{"type":"setup","id":1,"role":"tcp-sink","recv_buf":4096}"#,
            "hash is missing",
        ),
        (
            r#"{"type":"setup","id":1,"role":"echo","msg":100,"bytes":5}"#,
            "does not apply",
        ),
        (
            r#"{"type":"setup","id":1,"role":"tcp-source","bytes":1099511627776,"write_size":4096}"#,
            "out of range",
        ),
        (
            r#"{"type":"report","id":1,"ok":true,"bytes":0,"usage":{"user_ns":0,"sys_ns":0,"vcsw":0,"ivcsw":0,"minflt":0,"majflt":0},"wall_ns":0}"#,
            "unexpected report",
        ),
        (
            // This lab's protocol, but no other field.
            r#"{"type":"hello","lab":"zclab","protocol":PROTOCOL}"#,
            "bad hello",
        ),
    ] {
        let mut c = Ctl::session(addr);
        let json = json.replace("PROTOCOL", &remote::PROTOCOL.to_string());
        c.send(format!("{json}\n").as_bytes());
        c.expect_error("bad-message", needle);
    }
}

/// Transfers side by side: two sinks set up before either ends each get their report, in
/// the order they end; a setup with a running transfer's id, and one beyond 64 running, close
/// the session with bad-message.
fn transfers_side_by_side(addr: &str) {
    let sink = |id: u64| {
        format!(r#"{{"type":"setup","id":{id},"role":"tcp-sink","recv_buf":4096,"hash":false}}"#)
    };
    {
        let mut c = Ctl::session(addr);
        let p1 = c.setup(&sink(1));
        let p2 = c.setup(&sink(2));
        let mut d1 = std::net::TcpStream::connect(("127.0.0.1", p1)).unwrap();
        let mut d2 = std::net::TcpStream::connect(("127.0.0.1", p2)).unwrap();
        d2.write_all(&[7u8; 300]).unwrap();
        d1.write_all(&[7u8; 100]).unwrap();
        d2.shutdown(std::net::Shutdown::Write).unwrap();
        let r = c.line().expect("report 2");
        assert_eq!(
            (r["id"].as_u64(), r["bytes"].as_u64()),
            (Some(2), Some(300)),
            "{r}"
        );
        d1.shutdown(std::net::Shutdown::Write).unwrap();
        let r = c.line().expect("report 1");
        assert_eq!(
            (r["id"].as_u64(), r["bytes"].as_u64()),
            (Some(1), Some(100)),
            "{r}"
        );
    }
    {
        let mut c = Ctl::session(addr);
        c.setup(&sink(5));
        c.send(format!("{}\n", sink(5)).as_bytes());
        c.expect_error("bad-message", "transfer 5 is running");
    }
    {
        let mut c = Ctl::session(addr);
        for id in 1..=64 {
            c.setup(&sink(id));
        }
        c.send(format!("{}\n", sink(65)).as_bytes());
        c.expect_error("bad-message", "at most 64 at once");
    }
}

/// An rr-server waiting to accept its connections (each server's own accept: accept(2),
/// epoll, IORING_OP_ACCEPT) is given up by an abort: its report says so, and the session goes
/// on.
fn abort_of_a_waiting_crr_server(addr: &str) {
    let mut c = Ctl::session(addr);
    for (id, server) in [
        (1, "classic-blocking"),
        (2, "classic-epoll"),
        (3, "uring-oneshot"),
    ] {
        c.setup(&format!(
            r#"{{"type":"setup","id":{id},"role":"rr-server","server":"{server}","req":64,"resp":64,"connections":5}}"#
        ));
        c.send(format!("{{\"type\":\"abort\",\"id\":{id}}}\n").as_bytes());
        c.expect_failed_report("aborted by the client");
    }
    c.setup(r#"{"type":"setup","id":4,"role":"tcp-sink","recv_buf":4096,"hash":false}"#);
}

/// A well-formed request the server cannot meet: refused, the session goes on.
fn refused_request_then_served(addr: &str) {
    {
        let mut c = Ctl::session(addr);
        c.send(b"{\"type\":\"setup\",\"id\":1,\"role\":\"udp-sink\",\"cpu\":4000}\n");
        let e = c.line().unwrap();
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("refused")),
            "{e}"
        );
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("CPU 4000 does not exist")
        );
        let p = c.setup(r#"{"type":"setup","id":2,"role":"udp-sink"}"#);
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..5 {
            u.send_to(&[7u8; 100], data_addr(p)).unwrap();
        }
        c.send(b"{\"type\":\"finish\",\"id\":2,\"datagrams\":5}\n");
        let r = c.line().unwrap();
        assert_eq!(
            (r["type"].as_str(), r["datagrams"].as_u64()),
            (Some("report"), Some(5)),
            "{r}"
        );
        c.send(b"{\"type\":\"bye\"}\n");
        assert!(c.line().is_none());
    }
}

/// Clients vanishing at every stage of a transfer.
fn vanishing_mid_transfer(addr: &str) {
    {
        let mut c = Ctl::session(addr);
        c.setup(r#"{"type":"setup","id":1,"role":"tcp-sink","recv_buf":65536,"hash":true}"#);
    } // before connecting the data port
    {
        let mut c = Ctl::session(addr);
        let p =
            c.setup(r#"{"type":"setup","id":1,"role":"tcp-sink","recv_buf":65536,"hash":true}"#);
        let mut d = TcpStream::connect(data_addr(p)).unwrap();
        d.write_all(&[1u8; 100_000]).unwrap();
        drop(c); // the control connection goes first, the data connection stays open
        std::thread::sleep(Duration::from_millis(100));
        let _ = d.write_all(&[1u8; 1000]);
    }
    {
        let mut c = Ctl::session(addr);
        let p = c.setup(
            r#"{"type":"setup","id":1,"role":"tcp-source","bytes":67108864,"write_size":65536}"#,
        );
        let mut d = TcpStream::connect(data_addr(p)).unwrap();
        let mut buf = [0u8; 10_000];
        d.read_exact(&mut buf).unwrap();
        drop(d); // the source is blocked writing what nobody reads
        drop(c);
    }
    {
        let mut c = Ctl::session(addr);
        let p = c.setup(r#"{"type":"setup","id":1,"role":"echo","msg":1000}"#);
        let mut d = TcpStream::connect(data_addr(p)).unwrap();
        d.write_all(&[3u8; 500]).unwrap();
        d.shutdown(Shutdown::Both).unwrap(); // the stream ends inside a message
        c.expect_failed_report("inside a message");
        c.send(b"{\"type\":\"abort\",\"id\":1}\n"); // late: already reported, ignored
        c.send(b"{\"type\":\"bye\"}\n");
        assert!(c.line().is_none());
    }
    {
        let mut c = Ctl::session(addr);
        let p = c.setup(r#"{"type":"setup","id":1,"role":"udp-sink"}"#);
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(&[1u8; 10], data_addr(p)).unwrap();
    } // gone before finish
}

/// A transfer given up with abort while its data connection is open: reported as aborted,
/// and the session goes on.
fn abort_then_next_transfer(addr: &str) {
    {
        let mut c = Ctl::session(addr);
        let p = c.setup(r#"{"type":"setup","id":1,"role":"tcp-sink","recv_buf":4096,"hash":true}"#);
        let mut d = TcpStream::connect(data_addr(p)).unwrap();
        d.write_all(&[9u8; 5000]).unwrap();
        c.send(b"{\"type\":\"abort\",\"id\":1}\n");
        c.expect_failed_report("aborted by the client");
        let p = c.setup(r#"{"type":"setup","id":2,"role":"echo","msg":10}"#);
        let mut d = TcpStream::connect(data_addr(p)).unwrap();
        d.write_all(b"0123456789").unwrap();
        let mut back = [0u8; 10];
        d.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"0123456789");
        d.shutdown(Shutdown::Write).unwrap();
        let r = c.line().unwrap();
        assert_eq!(
            (r["ok"].as_bool(), r["requests"].as_u64()),
            (Some(true), Some(1)),
            "{r}"
        );
        c.send(b"{\"type\":\"bye\"}\n");
        assert!(c.line().is_none());
    }
}

/// A proper client is served, with hashes matching; a second client meanwhile is refused
/// with a message, and the first is unaffected.
fn proper_client_and_a_busy_second(srv: &Server) {
    let addr = srv.addr.as_str();
    let peer =
        Peer::connect(peer_addr(srv), &local_caps(), "test").expect("a proper client connects");
    let mut second = Ctl::connect_once(addr);
    second.expect_error("busy", "one client at a time");
    let busy = Peer::connect(peer_addr(srv), &local_caps(), "test")
        .err()
        .expect("refused");
    assert!(busy.to_string().contains("busy"), "{busy}");
    for hash in [true, false] {
        let mut sink = peer.tcp_sink(Some(0), 65536, hash).unwrap();
        let data = vec![0x5au8; 3_000_000];
        sink.stream.write_all(&data).unwrap();
        let r = sink.finish().unwrap();
        assert_eq!(r.bytes, 3_000_000);
        let want = zclab::hash::xxh3_64(&data);
        assert_eq!(
            r.hash.as_deref().and_then(remote::parse_hex64),
            hash.then_some(want)
        );
        // A hashing sink times its hashing (the row's `peer_hash_ns`); a counting one has none.
        assert_eq!(r.hash_ns.is_some_and(|n| n > 0), hash, "{r:?}");
        let extra = r.peer_extras().iter().any(|(k, _)| *k == "peer_hash_ns");
        assert_eq!(extra, hash);
    }
    let mut src = peer.tcp_source(None, 1 << 20, 4096).unwrap();
    let mut got = Vec::new();
    src.stream.read_to_end(&mut got).unwrap();
    let r = src.wait().unwrap();
    assert_eq!(r.bytes, 1 << 20);
    assert_eq!(zclab::hash::xxh3_64(&got), remote::pattern_hash(1 << 20));
    // A transfer given up half way: the next one still works.
    {
        let mut sink = peer.tcp_sink(None, 4096, true).unwrap();
        sink.stream.write_all(&[1u8; 1000]).unwrap();
    }
    let mut sink = peer.tcp_sink(None, 4096, true).unwrap();
    sink.stream.write_all(b"hello").unwrap();
    assert_eq!(sink.received().unwrap().bytes, 5);
    peer.bye();
}

/// Malformed and oversized messages close that connection with an error (logged); clients
/// vanishing at every stage only end their own session; a second client is refused while the
/// first is served; through all of it the server keeps serving a proper client.
#[test]
fn malformed_and_vanishing_clients_do_not_hurt_the_server() {
    let mut srv = Server::loopback(&["--idle-timeout", "30"]);
    let addr = srv.addr.clone();
    malformed_messages(&addr);
    transfers_side_by_side(&addr);
    abort_of_a_waiting_crr_server(&addr);
    refused_request_then_served(&addr);
    vanishing_mid_transfer(&addr);
    abort_then_next_transfer(&addr);
    assert!(srv.alive(), "{}", srv.log());
    proper_client_and_a_busy_second(&srv);
    assert!(srv.alive(), "{}", srv.log());
    srv.wait_log(&[
        "malformed message: message is not JSON",
        "longer than 65536",
        "refused: busy",
        "aborted by the client",
    ]);
}

/// A client and a server of different control protocol versions refuse each other, each
/// naming both versions.
#[test]
fn protocol_version_mismatch_is_refused_both_ways() {
    // A client of another version, against the real server.
    let mut srv = Server::loopback(&["--idle-timeout", "30"]);
    let mut c = Ctl::connect_once(&srv.addr);
    let h = c.line().unwrap();
    assert_eq!(h["protocol"], remote::PROTOCOL);
    c.send(&Ctl::hello(999, "test-client"));
    c.expect_error("protocol-mismatch", "protocol 999");
    assert!(srv.alive());
    srv.wait_log(&[
        "refused: client test-client speaks zclab control protocol 999",
        &format!("speaks protocol {}", remote::PROTOCOL),
    ]);

    // The real client, against a server of another version.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let fake = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut hello = serde_json::json!({
            "type": "hello", "lab": "zclab", "protocol": 999, "version": "9.0.0",
            "git_revision": "x", "role": "server", "host": "future", "kernel": "9.9",
            "probe": {}, "a_field_of_v999": true,
        })
        .to_string();
        hello.push('\n');
        w.write_all(hello.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line // the client's hello, sent so the server can log the refusal
    });
    let t = tempfile::tempdir().unwrap();
    let r = bounded(NET_SEND, t.path(), &format!("--peer 127.0.0.1:{port}"));
    r.one_error_line(
        1,
        &[
            "protocol 999",
            &format!("speaks protocol {}", remote::PROTOCOL),
            "run the same zclab version on both hosts",
        ],
    );
    let client_hello: serde_json::Value = serde_json::from_str(&fake.join().unwrap()).unwrap();
    assert_eq!(client_hello["protocol"], remote::PROTOCOL);
    assert_eq!(client_hello["role"], "client");
    // Refused input leaves no run directory behind.
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    assert!(r.elapsed < Duration::from_secs(30));
}

/// `bin` with one repeat into `results`, killed (failing the test) after 60 s.
fn bounded(bin: &str, results: &Path, args: &str) -> Ran {
    let lab = Lab::new(bin).tiny(results).argv(args);
    lab.within(Duration::from_secs(60)).run()
}

/// Remote paths without --peer, and a peer that is not there, are clear one-line errors.
#[test]
fn remote_paths_need_a_reachable_peer() {
    let t = tempfile::tempdir().unwrap();
    for bin in [NET_SEND, FILE_TO_SOCKET] {
        let r = bounded(bin, t.path(), "--paths remote-udp");
        r.exits(2);
        assert!(r.stderr.contains("needs --peer"), "{bin}: {}", r.stderr);
    }
    // A local path with --peer is refused by name rather than quietly left out.
    let r = bounded(
        FILE_TO_SOCKET,
        t.path(),
        "--paths tcp-loopback --peer 127.0.0.1:9",
    );
    r.exits(2).says("builds both ends on this host");
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for bin in [NET_SEND, FILE_TO_SOCKET, PROXY, SOCKET_TO_FILE] {
        bounded(bin, t.path(), &format!("--peer 127.0.0.1:{port}"))
            .one_error_line(1, &["cannot connect", "Connection refused"]);
    }
    let runs = std::fs::read_dir(t.path()).unwrap().count();
    assert_eq!(runs, 0, "no run directory");
}
