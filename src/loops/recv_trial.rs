//! One of net_recv's receivers, whatever its kind: its state (buffers, ring, provided buffer
//! ring) built before the clock, the receive of one whole stream from a [`Link`], and the
//! counts and hash it leaves. A trial of one flow runs one receiver on the measured thread; a
//! trial of several flows runs one per flow, each on its own thread.

use super::recv::{self as rx, ClassicCounts, Link, SendSpec};
use crate::harness::{self, Trial};
use crate::hash::Xxh3;
use crate::measure::Recorder;
use crate::results::Integrity;
use crate::ring::{Ring, RingConfig, RingFlags};
use crate::sys::signal::Cancel;
use crate::uring::recv::{self as urx, Multishot, ProvidedRecv, RecvCounts};
use anyhow::Result;
use std::os::fd::AsRawFd;

/// How a receiver receives.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Classic,
    Zerocopy,
    Uring,
    Multishot(Multishot),
    Zcrx,
}

impl Kind {
    /// What one latency sample is.
    pub fn step(self) -> &'static str {
        match self {
            Kind::Classic => "one read(2) call",
            Kind::Zerocopy => {
                "one getsockopt(TCP_ZEROCOPY_RECEIVE) with the recv(2) reads of what it could not map"
            }
            Kind::Uring => "one IORING_OP_RECV: SQE pushed to CQE reaped",
            Kind::Multishot(_) => {
                "one completion: the io_uring_enter wait that returned it, shared among those it returned"
            }
            Kind::Zcrx => "one RECV_ZC completion",
        }
    }
}

/// The receive state built before the clock.
enum Rx {
    Buf(Vec<u8>),
    Zc { copybuf: Vec<u8>, buf: Vec<u8> },
    Single(Ring, Vec<u8>),
    Provided(ProvidedRecv, Multishot),
}

/// How to build a receiver.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The read size, the mapping, or each provided buffer.
    pub size: usize,
    /// The zero-copy receive's copy buffer.
    pub copybuf: usize,
    /// Buffers in the provided buffer ring.
    pub ring_bufs: u16,
    /// The ring busy-polls (IORING_REGISTER_NAPI, for the multishot forms).
    pub napi: bool,
}

/// One receiver: its state, the hash of what it received, and its counts.
pub struct Receiver {
    rx: Rx,
    size: usize,
    pub hash: Xxh3,
    pub classic: ClassicCounts,
    pub counts: RecvCounts,
}

impl Receiver {
    /// A receiver of `kind` (not zcrx, which has its own skip); a ring or feature the kernel
    /// (release `kernel`) refuses skips the variant with the reason.
    pub fn new(kind: Kind, o: Options, kernel: &str) -> Result<Receiver> {
        let size = o.size;
        let rx = match kind {
            Kind::Classic => Rx::Buf(vec![0u8; size]),
            Kind::Zerocopy => Rx::Zc {
                copybuf: vec![0u8; o.copybuf],
                buf: vec![0u8; size.max(64 << 10)],
            },
            Kind::Uring => {
                let ring = Ring::new(&RingConfig::tuned(8)).map_err(harness::ring_err)?;
                Rx::Single(ring, vec![0u8; size])
            }
            Kind::Multishot(how) => {
                // A CQ that holds a completion per buffer: a full CQ ends a multishot receive.
                let cfg = RingConfig {
                    cq_entries: Some((o.ring_bufs as u32 * 2).max(64)),
                    ..RingConfig::tuned(8)
                };
                let mut ring = Ring::new(&cfg).map_err(harness::ring_err)?;
                if o.napi {
                    ring.register_napi(super::busy::BUSY_POLL_US)
                        .map_err(|e| match e.raw_os_error() {
                            Some(libc::EINVAL) => harness::skip_variant(format!(
                                "IORING_REGISTER_NAPI needs Linux 6.9; this kernel ({kernel}) refused it: {e}"
                            )),
                            _ => anyhow::Error::new(e).context("IORING_REGISTER_NAPI"),
                        })?;
                }
                if how == Multishot::Bundle && !ProvidedRecv::bundles_supported(&mut ring) {
                    return Err(harness::skip_variant(format!(
                        "receive bundles (IORING_FEAT_RECVSEND_BUNDLE) need Linux 6.10; this kernel ({kernel}) lacks them"
                    )));
                }
                let p = ProvidedRecv::new(ring, o.ring_bufs, size).map_err(|e| {
                    harness::skip_variant(format!("provided buffer ring refused: {e}"))
                })?;
                Rx::Provided(p, how)
            }
            Kind::Zcrx => anyhow::bail!("zcrx has no receiver here"),
        };
        Ok(Receiver {
            rx,
            size,
            hash: Xxh3::new(),
            classic: ClassicCounts::default(),
            counts: RecvCounts::default(),
        })
    }

    /// The ring's flags, for the io_uring receivers.
    pub fn ring_flags(&self) -> Option<RingFlags> {
        match &self.rx {
            Rx::Single(r, _) => Some(r.flags().clone()),
            Rx::Provided(p, _) => Some(p.ring().flags().clone()),
            _ => None,
        }
    }

    /// Starts the sender and receives its whole stream from `link`, one latency sample per
    /// receive step into `rec`.
    pub fn receive(&mut self, link: &mut Link, rec: &mut Recorder, cancel: Cancel) -> Result<()> {
        link.start()?;
        let fd = link.sock.as_raw_fd();
        let (h, size) = (&mut self.hash, self.size);
        match &mut self.rx {
            Rx::Buf(b) => self.classic = rx::recv_classic(&mut link.sock, b, h, rec, cancel)?,
            Rx::Zc { copybuf, buf } => {
                self.classic =
                    rx::recv_zerocopy(&mut link.sock, size, copybuf, buf, h, rec, cancel)?
            }
            Rx::Single(ring, b) => {
                self.counts = urx::recv_single(ring, fd, b, rec, cancel, |d| h.update(d))?
            }
            Rx::Provided(p, how) => self.counts = p.run(fd, *how, rec, cancel, |d| h.update(d))?,
        }
        Ok(())
    }

    /// Bytes received.
    pub fn bytes(&self) -> u64 {
        self.counts.bytes.max(self.classic.bytes)
    }

    /// Receive steps: calls, or completions.
    pub fn ops(&self) -> u64 {
        self.counts.completions.max(self.classic.calls)
    }
}

/// What several receivers counted, together.
pub fn total(rs: &[&Receiver]) -> (ClassicCounts, RecvCounts) {
    let (mut c, mut u) = (ClassicCounts::default(), RecvCounts::default());
    for r in rs {
        let (a, b) = (&r.classic, &r.counts);
        c.bytes += a.bytes;
        c.calls += a.calls;
        c.mapped += a.mapped;
        c.copybuf += a.copybuf;
        c.recv_copied += a.recv_copied;
        c.zc_calls += a.zc_calls;
        c.polls += a.polls;
        u.bytes += b.bytes;
        u.completions += b.completions;
        u.enters += b.enters;
        u.submissions += b.submissions;
        u.rearms += b.rearms;
        u.enobufs += b.enobufs;
        u.dry += b.dry;
        u.with_data += b.with_data;
        u.buffers += b.buffers;
    }
    (c, u)
}

/// After a trial of several flows: each flow's sender finished with `finish(flow, link,
/// receiver)`, which returns the sender's account and the flow's check (a flow whose receive
/// or sender failed fails alone, named in the row's integrity); `bytes_expected` in all; the
/// flows' figures recorded; the senders' account together.
pub fn flows_sent(
    t: &mut Trial,
    ran: &mut [FlowRun],
    bytes_expected: u64,
    mut finish: impl FnMut(usize, &mut Link, &Receiver) -> anyhow::Result<(rx::Sent, Integrity)>,
) -> rx::Sent {
    let mut tally = super::flows::Tally::default();
    let mut sent = rx::Sent {
        bytes: 0,
        usage: Default::default(),
        mss: None,
        zc: None,
    };
    let mut usage = Vec::new();
    for ((i, link, r), (failed, ns)) in ran.iter_mut() {
        let check = match failed.take() {
            Some(why) => {
                let _ = finish(*i, link, r);
                Err(why)
            }
            None => match finish(*i, link, r) {
                Err(e) => Err(format!("the sender: {e:#}")),
                Ok((s, check)) => {
                    sent.bytes += s.bytes;
                    usage.push(s.usage);
                    sent.mss = sent.mss.or(s.mss);
                    sent.zc = sent.zc.take().or(s.zc);
                    Ok(check)
                }
            },
        };
        tally.flow(*i, r.bytes(), *ns, check);
    }
    sent.usage = super::flows::total_usage(usage);
    let got = t.metrics().map_or(0, |m| m.bytes);
    t.set_integrity(tally.integrity(bytes_expected, got));
    for (k, v) in tally.figures(ran.len()) {
        t.set_extra(&k, v);
    }
    sent
}

/// The check of a flow from the lab's own sender process: its account, and the stream
/// against the hash of what `spec` sends.
pub fn local_finish(
    spec: &SendSpec,
    link: &mut Link,
    r: &Receiver,
) -> Result<(rx::Sent, Integrity)> {
    let s = link.finish()?;
    Ok((s, rx::integrity(spec, r.bytes(), r.hash.digest())))
}

/// A remote sender's account, the flow's check, and the peer host's figures.
pub type RemoteFlow = (rx::Sent, Integrity, Vec<(&'static str, f64)>);

/// The check of a flow from a `zclab serve` tcp-source that sent `bytes`: its report (the
/// sender's account and `peer_*` figures), and the stream against the pattern's hash and the
/// one the peer reports.
pub fn remote_finish(
    bytes: u64,
    src: &mut crate::net::remote::RemoteTcp,
    r: &Receiver,
) -> Result<RemoteFlow> {
    let rep = src.wait()?;
    let check = rx::remote_integrity(bytes, r.bytes(), r.hash.digest(), &rep);
    let s = rx::Sent {
        bytes: rep.bytes,
        usage: rep.usage,
        mss: None,
        zc: None,
    };
    Ok((s, check, rep.peer_extras()))
}

/// One flow of a trial: its link and receiver, and how its receive ended (why it failed, ns
/// from the start).
pub type FlowRun = ((usize, Link, Receiver), (Option<String>, u64));
