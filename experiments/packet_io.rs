//! # packet_io: kernel bypass — AF_XDP against AF_PACKET, UDP sockets and io_uring
//!
//! **Question.** How many frames per second reach user space (receive) or leave it (transmit)
//! through AF_XDP, against the socket paths the kernel has always had — UDP recvmmsg/sendmmsg,
//! io_uring on a UDP socket, AF_PACKET with and without its mmap'd rings — on the same wire,
//! at what CPU cost per frame, and where frames are lost when the receiver cannot keep up?
//!
//! **Set-up.** Two anonymous network namespaces joined by one veth pair (`zclab::net::pktns`;
//! root needed, skipped with the reason otherwise). They are file descriptors only: when the
//! process ends, however it ends, the kernel removes them with the pair and every XDP program
//! on it. Frames go from A (10.203.0.1) to B (10.203.0.2).
//!
//! - Receive variants measure B. The load is the kernel's own frame generator: an XDP_TX
//!   program run by BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on A's end, on the peer
//!   CPU, which stamps a sequence number into every frame (the fastest load this machine can
//!   offer: ~6-7 M frames/s of 64 B), or with `--load xdp-tx` the lab's own fastest sender
//!   (AF_XDP copy mode on A). Socket and AF_PACKET receivers get a native XDP_PASS
//!   program on B (a veth peer drops XDP_TX frames without one); the AF_XDP receivers get the
//!   redirect program `bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS)` attached in
//!   native or generic mode (generic: GRO on instead, for the peer's NAPI).
//! - Transmit variants measure A, sending as fast as they can; B's sink is an AF_XDP socket
//!   (native, busy polling) on the peer CPU that checks every frame. On veth the peer's NAPI
//!   runs on the sender's CPU, so the sender's CPU per frame includes B's XDP program.
//!
//! The BPF programs are assembled by the lab (`zclab::sys::bpf`, every instruction commented),
//! loaded with BPF_PROG_LOAD and attached by bpf_link; the AF_XDP rings and UMEM are the lab's
//! own (`zclab::sys::xsk`), as are the AF_PACKET rings (`zclab::sys::pkt`). Loops, frame format
//! and integrity: `zclab::loops::packet_io`.
//!
//! **Integrity.** Every frame carries a sequence number and a checksum of its payload; the
//! receiver counts distinct, duplicated, reordered, corrupt and foreign frames. Corruption or
//! duplication fails the trial; loss is reported (`lost`, `loss_pct`) with its causes:
//! XDP_STATISTICS (`xdp_rx_dropped`, `xdp_rx_ring_full`, `xdp_rx_fill_ring_empty_descs`,
//! `xdp_tx_ring_empty_descs`), AF_PACKET's `tp_drops`, UDP's `udp_rcvbuf_errors`, and the
//! receiving device's `dev_rx_dropped`.
//!
//! **Variants.** See `VARIANTS`. Zero-copy AF_XDP is attempted and, on veth, skipped with the
//! kernel's errno (EOPNOTSUPP). One latency sample is one frame of a batch (batch time / frames).
//!
//! **Parameters.** `--frame-sizes` (whole Ethernet frames, 60 B to MTU + 14, at most 3408),
//! `--batches`, `--frames` per trial, `--ring` (RX/TX ring entries), `--mtu` of the pair,
//! `--load`, `--dev IFACE` and `--queue Q` (checked: a missing or down device, or a missing
//! queue, is refused; running on a real NIC is not implemented yet, so every variant is then
//! skipped with that reason). Rows carry `frames_per_s`, `gbit_per_s`, `cpu_ns_per_frame`,
//! `offered`, `offered_fps`, `delivered`, `lost`, `loss_pct` and the loss causes in `extra`.
//!
//! **Minimum kernel.** AF_XDP 4.18, need_wakeup 5.4, XDP bpf_link 5.9, busy polling on AF_XDP
//! (SO_PREFER_BUSY_POLL) 5.11, live-frames test runs 5.18.

use anyhow::{Context, Result};
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use zclab::caps::Caps;
use zclab::catalog::{Entry, packet_io as names};
use zclab::harness::{self, CommonArgs, Done, Env, Experiment, Plan, Point, Trial, Variant};
use zclab::loops::packet_io::{self as pio, GenRun, Generator, Receiver, Tracker, Wait};
use zclab::net::pktns::{self, PktNet};
use zclab::sys::bpf::XdpMode;

/// The variants: name, function, needs, what it does.
const VARIANTS: &[Variant<PacketIo>] = harness::variants![
    names::CLASSIC_UDP_RECVMMSG => |c, t| receive(c, t, Rx::Udp), [Root], "receive: recvmmsg(2) on a UDP socket in B (XDP_PASS on B's device)";
    names::URING_RECV_MULTISHOT => |c, t| receive(c, t, Rx::Uring), [Root, op(RecvMsg)], "receive: IORING_OP_RECV multishot on a UDP socket with a provided buffer ring";
    names::CLASSIC_AF_PACKET_RX_RING => |c, t| receive(c, t, Rx::Ring), [Root], "receive: AF_PACKET TPACKET_V3 mmap'd ring on B's device";
    names::XDP_RX_NATIVE_POLL => |c, t| receive(c, t, Rx::Xsk(XdpMode::Native, Wait::Poll)), [Root], "receive: AF_XDP copy mode, redirect program in native (driver) mode, consumer waits in poll(2)";
    names::XDP_RX_NATIVE_BUSY_POLL => |c, t| receive(c, t, Rx::Xsk(XdpMode::Native, Wait::BusyPoll)), [Root], "receive: AF_XDP copy mode, native XDP, consumer busy-polls (SO_PREFER_BUSY_POLL, SO_BUSY_POLL)";
    names::XDP_RX_GENERIC_POLL => |c, t| receive(c, t, Rx::Xsk(XdpMode::Generic, Wait::Poll)), [Root], "receive: AF_XDP copy mode, redirect program in generic (skb) mode, poll(2)";
    names::XDP_RX_GENERIC_BUSY_POLL => |c, t| receive(c, t, Rx::Xsk(XdpMode::Generic, Wait::BusyPoll)), [Root], "receive: AF_XDP copy mode, generic XDP, busy polling";
    names::XDP_RX_ZEROCOPY => |c, t| receive(c, t, Rx::XskZc), [Root], "receive: AF_XDP bound with XDP_ZEROCOPY (needs driver support; veth has none)";
    names::CLASSIC_UDP_SENDMMSG => |c, t| transmit(c, t, Tx::Udp), [Root], "transmit: sendmmsg(2) on a connected UDP socket in A";
    names::URING_SEND_UDP => |c, t| transmit(c, t, Tx::Uring), [Root, op(Send)], "transmit: IORING_OP_SEND on a connected UDP socket, a batch of SQEs per submit";
    names::CLASSIC_AF_PACKET_SENDMMSG => |c, t| transmit(c, t, Tx::Packet), [Root], "transmit: sendmmsg(2) of whole frames on an AF_PACKET socket";
    names::CLASSIC_AF_PACKET_TX_RING => |c, t| transmit(c, t, Tx::Ring(false)), [Root], "transmit: AF_PACKET TPACKET_V3 TX ring, send(2) per batch";
    names::CLASSIC_AF_PACKET_TX_RING_BYPASS => |c, t| transmit(c, t, Tx::Ring(true)), [Root], "transmit: AF_PACKET TX ring with PACKET_QDISC_BYPASS";
    names::XDP_TX_COPY => |c, t| transmit(c, t, Tx::Xsk(false)), [Root], "transmit: AF_XDP copy mode, sendto(2) kick per batch";
    names::XDP_TX_COPY_WAKEUP => |c, t| transmit(c, t, Tx::Xsk(true)), [Root], "transmit: AF_XDP copy mode with XDP_USE_NEED_WAKEUP: kick only when the kernel asks";
    names::XDP_TX_ZEROCOPY => |c, t| transmit(c, t, Tx::XskZc), [Root], "transmit: AF_XDP bound with XDP_ZEROCOPY (needs driver support)";
    names::XDP_LIVE_FRAMES => |c, t| transmit(c, t, Tx::Live), [Root], "transmit: the kernel's generator (BPF_PROG_TEST_RUN live frames, XDP_TX), the ceiling";
];

#[derive(clap::Args, Debug)]
struct Args {
    /// Frame sizes: whole Ethernet frames without FCS, 60 B up to the MTU + 14 (at most 3408).
    #[arg(long, default_value = "64,512,1500", value_delimiter = ',', value_parser = harness::size_arg)]
    frame_sizes: Vec<u64>,
    /// Frames per batch: per receive call, per ring kick, per sendmmsg.
    #[arg(long, default_value = "64", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=1024))]
    batches: Vec<u64>,
    /// Frames offered per trial.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    frames: u64,
    /// RX and TX ring entries (AF_XDP, AF_PACKET TX ring): a power of two.
    #[arg(long, default_value_t = 2048, value_parser = parse_ring)]
    ring: u32,
    /// MTU of the lab's veth pair, at most 3394: native XDP on veth (without multi-buffer
    /// programs) and live-frames test runs need a frame to fit one page with its headroom.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=3394))]
    mtu: u32,
    /// The receive variants' load: the kernel's live-frames generator (the fastest this
    /// machine can offer), or the lab's fastest sender (AF_XDP copy mode on A, peer CPU).
    #[arg(long, value_enum, default_value_t = Load::Generator)]
    load: Load,
    /// A real NIC to run on instead of the veth pair (checked: it must exist and be up).
    #[arg(long, value_name = "IFACE")]
    dev: Option<String>,
    /// The NIC's queue for AF_XDP (with --dev).
    #[arg(long, value_name = "Q", default_value_t = 0)]
    queue: u32,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Load {
    Generator,
    XdpTx,
}

fn parse_ring(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && (64..=16384).contains(&n) => Ok(n),
        _ => Err(format!("'{s}': expected a power of two from 64 to 16384")),
    }
}

struct PacketIo {
    args: Args,
    net: Option<PktNet>,
    net_reason: Option<String>,
}

#[derive(Clone, Copy)]
enum Rx {
    Udp,
    Uring,
    Ring,
    Xsk(XdpMode, Wait),
    XskZc,
}

#[derive(Clone, Copy)]
enum Tx {
    Udp,
    Uring,
    Packet,
    Ring(bool),
    Xsk(bool),
    XskZc,
    Live,
}

impl Experiment for PacketIo {
    type Args = Args;
    const ENTRY: &'static Entry = &names::ENTRY;

    const VARIANTS: &'static [Variant<Self>] = VARIANTS;

    fn plan(args: Args, common: &CommonArgs) -> Result<Plan<Self>> {
        let mtu = match &args.dev {
            Some(d) => dev_mtu(d, args.queue)?,
            None => args.mtu,
        };
        for &f in &args.frame_sizes {
            if f < pio::MIN_FRAME as u64 {
                return Err(harness::usage(format!(
                    "frame size {f} B is below the {} B the lab's header needs",
                    pio::MIN_FRAME
                )));
            }
            if f > pio::MAX_FRAME as u64 {
                return Err(harness::usage(format!(
                    "frame size {f} B is above the {} B a live-frames run takes in one page",
                    pio::MAX_FRAME
                )));
            }
            if f > mtu as u64 + 14 {
                return Err(harness::usage(format!(
                    "frame size {f} B is above the MTU ({mtu}) + 14 B of Ethernet header"
                )));
            }
        }
        let mut points = Vec::new();
        for &f in &args.frame_sizes {
            for &b in &args.batches {
                points.push(Point::new().size("frame", f).int("batch", b));
            }
        }
        let parameters = json!({
            "frame_sizes": args.frame_sizes, "batches": args.batches, "frames_per_trial": args.frames,
            "ring": args.ring, "mtu": mtu, "dev": args.dev, "queue": args.queue,
            "wire": "veth pair between two anonymous namespaces (A 10.203.0.1 -> B 10.203.0.2)",
            "receive_load": match args.load {
                Load::Generator => "BPF_PROG_TEST_RUN live frames (XDP_TX) on A, peer CPU, 64 frames per batch",
                Load::XdpTx => "AF_XDP copy-mode sender on A, peer CPU, 64 frames per kick",
            },
            "transmit_sink": "AF_XDP on B, native XDP, busy polling, peer CPU",
            "umem_chunk": pio::BUF,
            "placement": {"measured_cpu": common.cpus.0, "peer_cpu": common.cpus.1},
        });
        Ok(Plan {
            ctx: PacketIo {
                args,
                net: None,
                net_reason: None,
            },
            points,
            parameters,
        })
    }

    fn prepare(&mut self, env: &Env) -> Result<()> {
        if let Some(d) = &self.args.dev {
            self.net_reason = Some(format!(
                "--dev {d}: runs on a real NIC are not implemented yet (the device was checked: it exists and is up)"
            ));
            return Ok(());
        }
        if !env.caps.privileges.root {
            self.net_reason =
                Some("needs root (network namespaces, a veth pair, XDP programs)".into());
            return Ok(());
        }
        match pktns::find_ip() {
            Err(why) => self.net_reason = Some(why),
            Ok(ip) => {
                self.net =
                    Some(PktNet::create(&ip, self.args.mtu).context("creating the veth pair")?)
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.net = None; // closes the namespaces: the kernel removes them with the pair
        Ok(())
    }

    fn list_notes(_caps: &Caps) -> Vec<String> {
        vec!["runs on a veth pair between two namespaces the lab creates (root)".into()]
    }
}

/// The MTU of a real device, or a usage error when it does not exist, is down, or lacks the queue.
fn dev_mtu(dev: &str, queue: u32) -> Result<u32> {
    let base = std::path::Path::new("/sys/class/net").join(dev);
    if dev.contains('/') || !base.exists() {
        return Err(harness::usage(format!(
            "--dev {dev}: no such network device"
        )));
    }
    let state = std::fs::read_to_string(base.join("operstate")).unwrap_or_default();
    let flags = std::fs::read_to_string(base.join("flags")).unwrap_or_default();
    let up =
        u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).is_ok_and(|f| f & 1 != 0);
    if !up || state.trim() == "down" {
        return Err(harness::usage(format!("--dev {dev}: the device is down")));
    }
    if !base.join("queues").join(format!("rx-{queue}")).exists() {
        return Err(harness::usage(format!(
            "--dev {dev}: it has no receive queue {queue}"
        )));
    }
    let mtu = std::fs::read_to_string(base.join("mtu")).unwrap_or_default();
    mtu.trim()
        .parse()
        .map_err(|_| harness::usage(format!("--dev {dev}: cannot read its MTU")))
}

fn main() -> ExitCode {
    harness::run::<PacketIo>()
}

/// The wire, or the reason it is missing (skips the variant).
fn wire(c: &PacketIo) -> Result<&PktNet> {
    c.net.as_ref().ok_or_else(|| {
        harness::skip_variant(c.net_reason.clone().unwrap_or_else(|| "no wire".into()))
    })
}

/// A bind refused for lack of driver support is a skip naming the errno; anything else fails.
fn zc_refusal(e: std::io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) || e.kind() == std::io::ErrorKind::Unsupported {
        harness::skip_variant(format!(
            "XDP_ZEROCOPY refused (EOPNOTSUPP): the device's driver has no zero-copy AF_XDP: {e}"
        ))
    } else {
        anyhow::Error::new(e)
    }
}

/// B's device counters and UDP's RcvbufErrors, read in B.
fn b_counters(net: &PktNet) -> (Option<u64>, Option<u64>) {
    let ifname = net.b.ifname.clone();
    net.in_b(move || {
        Ok((
            pktns::dev_counters(&ifname).ok().map(|c| c.1),
            pktns::udp_rcvbuf_errors(),
        ))
    })
    .unwrap_or((None, None))
}

/// The figures every row carries beside the harness's own.
/// `moved`: the frames the measured side moved (received, or sent).
fn figures(
    t: &mut Trial,
    tr: &Tracker,
    moved: u64,
    offered: u64,
    offered_ns: u64,
    len: u64,
    losses: &[(&'static str, f64)],
) {
    let Some(m) = t.metrics() else { return };
    let (wall, cpu) = (m.wall_ns as f64, (m.user_ns + m.sys_ns) as f64);
    let got = tr.unique;
    let lost = offered.saturating_sub(got);
    let mut x = vec![
        ("frames_per_s", moved as f64 * 1e9 / wall),
        ("gbit_per_s", (moved * len * 8) as f64 / wall),
        ("delivered", got as f64),
        ("offered", offered as f64),
        ("lost", lost as f64),
        (
            "loss_pct",
            if offered > 0 {
                100.0 * lost as f64 / offered as f64
            } else {
                0.0
            },
        ),
        ("duplicates", tr.duplicates as f64),
        ("reordered", tr.reordered as f64),
        ("corrupt", tr.corrupt as f64),
        ("foreign", tr.foreign as f64),
    ];
    if moved > 0 {
        x.push(("cpu_ns_per_frame", cpu / moved as f64));
    }
    if offered_ns > 0 {
        x.push(("offered_fps", offered as f64 * 1e9 / offered_ns as f64));
    }
    x.extend_from_slice(losses);
    for (k, v) in x {
        t.set_extra(k, v);
    }
    t.set_integrity(tr.integrity(offered));
}

fn receive(c: &mut PacketIo, t: &mut Trial, kind: Rx) -> Result<()> {
    let net = wire(c)?;
    let (len, batch) = (t.point.num("frame") as usize, t.point.num("batch") as u32);
    let (frames, ring) = (c.args.frames, c.args.ring);
    let mut _pass = None;
    let mut rx = match kind {
        Rx::Udp | Rx::Uring | Rx::Ring => {
            _pass = Some(pio::pass_on_b(net)?);
            match kind {
                Rx::Udp => pio::udp_rx(net, batch as usize)?,
                Rx::Uring => pio::uring_rx(net, ring)?,
                _ => pio::ring_rx(net)?,
            }
        }
        Rx::Xsk(mode, wait) => {
            let r = pio::xsk_rx(net, mode, false, wait == Wait::Poll, ring)?;
            if wait == Wait::BusyPoll {
                r.xsk.busy_poll(20, batch as i32)?;
            }
            Receiver::Xsk(r, wait)
        }
        Rx::XskZc => Receiver::Xsk(
            pio::xsk_rx(net, XdpMode::Native, true, true, ring).map_err(zc_refusal)?,
            Wait::Poll,
        ),
    };
    let (generator, mut load_tx) = match c.args.load {
        Load::Generator => (Some(Generator::new(net, len)?), None),
        Load::XdpTx => (None, Some(pio::xsk_tx(net, false, false, ring)?)),
    };
    let (stop, done) = (AtomicBool::new(false), AtomicU64::new(0));
    let mut tr = Tracker::new(len);
    let peer_cpu = t.cpus.1;
    let before = b_counters(net);
    let mut gen_out = None;
    t.measure("frame received (batch time / frames)", |rec| {
        std::thread::scope(|s| -> Result<()> {
            let h = match &mut load_tx {
                Some(tx) => pio::spawn_load(s, tx, net, len, frames, peer_cpu, &done),
                None => {
                    let run = GenRun {
                        ifindex: net.a.ifindex,
                        cpu: peer_cpu,
                        frames,
                        batch: 64,
                    };
                    let g = generator.as_ref().expect("made for this load");
                    g.spawn(s, &net.a.ns, run, &stop, &done)
                }
            };
            let mut t0 = rec.now();
            let r = pio::drain(&mut rx, &mut tr, batch, &done, |n| {
                t0 = rec.record_batch_since(t0, n)
            });
            stop.store(true, Ordering::Relaxed);
            let g = h
                .join()
                .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
            r.context("receiving")?;
            gen_out = Some(g.context("load")?);
            Ok(())
        })?;
        Ok(Done {
            bytes: tr.unique * len as u64,
            ops: tr.unique,
        })
    })?;
    let g = gen_out.expect("set when measure succeeded");
    t.set_peer(g.usage);
    let mut losses = Vec::new();
    rx.losses(&mut losses);
    let after = b_counters(net);
    if let (Some(a), Some(b)) = (before.0, after.0) {
        losses.push(("dev_rx_dropped", b.saturating_sub(a) as f64));
    }
    if let (Some(a), Some(b)) = (before.1, after.1) {
        losses.push(("udp_rcvbuf_errors", b.saturating_sub(a) as f64));
    }
    figures(
        t,
        &tr,
        tr.unique,
        g.frames,
        g.elapsed.as_nanos() as u64,
        len as u64,
        &losses,
    );
    Ok(())
}

fn transmit(c: &mut PacketIo, t: &mut Trial, kind: Tx) -> Result<()> {
    let net = wire(c)?;
    let (len, batch) = (t.point.num("frame") as usize, t.point.num("batch") as u32);
    let (frames, ring) = (c.args.frames, c.args.ring);
    let mut sender = match kind {
        Tx::Udp => Some(pio::udp_tx(net)?),
        Tx::Uring => Some(pio::uring_tx(net, batch)?),
        Tx::Packet => Some(pio::packet_tx(net)?),
        Tx::Ring(bypass) => Some(pio::ring_tx(net, bypass, ring)?),
        Tx::Xsk(wake) => Some(pio::xsk_tx(net, wake, false, ring)?),
        Tx::XskZc => Some(pio::xsk_tx(net, true, true, ring).map_err(zc_refusal)?),
        Tx::Live => None,
    };
    let generator = match kind {
        Tx::Live => Some(Generator::new(net, len)?),
        _ => None,
    };
    let sink = pio::xsk_rx(net, XdpMode::Native, false, false, ring)?;
    sink.xsk.busy_poll(20, 64)?;
    let mut sink = Receiver::Xsk(sink, Wait::BusyPoll);
    let (stop, done) = (AtomicBool::new(false), AtomicU64::new(0));
    let (cpus, before) = (t.cpus, b_counters(net));
    let mut offered = frames;
    let mut t_ns = 0;
    let (tracker, sink_usage) = std::thread::scope(|s| -> Result<(Tracker, _)> {
        let h = pio::spawn_sink(s, &mut sink, len, cpus.1, &done);
        let r = t.measure("frame sent (batch time / frames)", |rec| {
            let t_start = std::time::Instant::now();
            let mut t0 = rec.now();
            match (&mut sender, &generator) {
                (Some(tx), _) => tx.send(net, len, frames, batch, |n| {
                    t0 = rec.record_batch_since(t0, n)
                })?,
                (None, Some(g)) => {
                    let gdone = AtomicU64::new(0);
                    offered = std::thread::scope(|s2| {
                        let run = GenRun {
                            ifindex: net.a.ifindex,
                            cpu: cpus.0,
                            frames,
                            batch: batch.min(256),
                        };
                        let h = g.spawn(s2, &net.a.ns, run, &stop, &gdone);
                        h.join()
                            .map_err(|_| anyhow::anyhow!("generator thread panicked"))
                    })??
                    .frames;
                }
                (None, None) => unreachable!("a sender or the generator"),
            }
            t_ns = t_start.elapsed().as_nanos() as u64;
            Ok(Done {
                bytes: offered * len as u64,
                ops: offered,
            })
        });
        done.store(offered + 1, Ordering::Release);
        let sink = h
            .join()
            .map_err(|_| anyhow::anyhow!("sink thread panicked"))?;
        r?;
        sink.context("sink")
    })?;
    t.set_peer(sink_usage);
    let mut losses = Vec::new();
    if let Some(s) = &sender {
        s.losses(&mut losses);
    }
    let mut sink_losses = Vec::new();
    sink.losses(&mut sink_losses);
    for (k, v) in sink_losses {
        // The sink's own drops, named as such.
        let name: &'static str = match k {
            "xdp_rx_dropped" => "sink_xdp_rx_dropped",
            "xdp_rx_ring_full" => "sink_xdp_rx_ring_full",
            "xdp_rx_fill_ring_empty_descs" => "sink_xdp_rx_fill_ring_empty_descs",
            _ => continue,
        };
        losses.push((name, v));
    }
    let after = b_counters(net);
    if let (Some(a), Some(b)) = (before.0, after.0) {
        losses.push(("dev_rx_dropped", b.saturating_sub(a) as f64));
    }
    figures(t, &tracker, offered, offered, t_ns, len as u64, &losses);
    Ok(())
}
