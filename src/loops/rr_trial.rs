//! One rr trial's account, wherever its server ran: the client's latency histogram, the
//! integrity of every transaction, CPU per transaction on each side, io_uring calls, losses
//! and the open-loop rate ([`record`]); and the trial whose server runs on another host, in
//! `zclab serve` (role rr-server), with the client measured here ([`remote`]).

use super::rr::{self, ClientJob, ClientReport, Mode, Shape};
use crate::harness::{self, Done, Trial};
use crate::net::remote::Peer;
use crate::results::Integrity;
use anyhow::{Context, Result};
use std::sync::Arc;

/// The step the client's histogram times.
pub fn step(open: bool) -> &'static str {
    if open {
        "one transaction, in the client: the request's intended send time (open loop) to its response read"
    } else {
        "one transaction, in the client: request written to response read"
    }
}

/// What the server side did in a trial.
pub struct ServerSide {
    /// Requests answered.
    pub served: u64,
    /// CPU time, ns (an SQPOLL thread included).
    pub cpu_ns: u64,
    /// io_uring_enter calls (0 for the classic servers).
    pub enters: u64,
    /// An SQPOLL thread's CPU time, ns.
    pub sqpoll_ns: Option<u64>,
}

/// Records the trial's account: `n` transactions of `shape` asked, the client's report `rep`
/// (its CPU time `client_cpu_ns`), the server's side `srv`; `udp` when over UDP (losses are
/// then counted rather than impossible).
pub fn record(
    t: &mut Trial,
    n: u64,
    shape: Shape,
    rep: &ClientReport,
    client_cpu_ns: u64,
    srv: &ServerSide,
    udp: bool,
) {
    t.set_histogram("step", step(rep.rate.is_some()), rep.hist.clone());
    let served = srv.served;
    // Over TCP nothing is lost (lost is 0), so both sides count all n; over UDP the server
    // answered what arrived, at least every response the client got.
    let ok = rep.bad == 0 && rep.done + rep.lost == n && (rep.done..=n).contains(&served);
    t.set_integrity(Integrity {
        ok,
        method: "every response carries its request's sequence number, the xxh3-64 of the request body as received, and the response pattern; server and client count the same transactions".into(),
        expected: format!("{n} transactions, every response intact"),
        got: format!(
            "client {} responses ({} bad{}{}), server answered {served}",
            rep.done,
            rep.bad,
            if udp {
                format!(", {} lost", rep.lost)
            } else {
                String::new()
            },
            rep.first_bad.as_deref().map_or(String::new(), |w| format!(": {w}"))
        ),
        bytes_expected: n * (shape.req + shape.resp) as u64,
        bytes_got: rep.done * shape.resp as u64 + served * shape.req as u64,
    });
    let per_tx = |v: u64| v as f64 / n as f64;
    t.set_extra("server_cpu_ns_per_tx", per_tx(srv.cpu_ns));
    if let Some(sq) = srv.sqpoll_ns {
        t.set_extra("sqpoll_ns_per_tx", per_tx(sq));
    }
    t.set_extra("client_cpu_ns_per_tx", per_tx(client_cpu_ns));
    t.set_extra("bytes_per_tx", (shape.req + shape.resp) as f64);
    t.set_extra("req_bytes", shape.req as f64);
    t.set_extra("resp_bytes", shape.resp as f64);
    if udp {
        t.set_extra("tx_lost", rep.lost as f64);
    }
    if srv.enters > 0 {
        t.set_extra("uring_enters_per_tx", per_tx(srv.enters));
    }
    if let Some(rate) = rep.rate {
        let achieved = rep.achieved_rate();
        t.set_extra("rate_target", rate);
        t.set_extra("rate_achieved", achieved);
        let ok = achieved >= rate * rr::ACHIEVED_SHARE;
        t.set_flag("rate_achieved_ok", ok);
    }
}

/// A trial of rr variant `variant` with its server on the peer host (pinned to the second CPU
/// of `--cpus` there) and the client measured here, on this thread: `n` transactions of
/// `shape`, on one connection (closed loop or at `rate`) or a connection each (`Mode::Crr`).
/// The client's CPU is the measured thread's; the server's comes from the peer's report.
/// classic-busy-poll is skipped when the peer is reached over loopback (no NAPI context).
pub fn remote(
    t: &mut Trial,
    peer: &Peer,
    variant: &str,
    (shape, mode): (Shape, Mode),
    n: u64,
    rate: Option<f64>,
) -> Result<()> {
    let cpu = Some(t.cpus.1 as u32);
    let sizes = (shape.req as u64, shape.resp as u64);
    // One connection: the data connection the setup made; per transaction: the address.
    let (mut one, mut each) = (None, None);
    match mode {
        Mode::Rr => one = Some(peer.rr_server(cpu, variant, sizes.0, sizes.1)?),
        Mode::Crr => each = Some(peer.rr_server_crr(cpu, variant, sizes, n)?),
    }
    let addr = match (&one, &each) {
        (Some(r), _) => r.stream.peer_addr()?,
        (_, Some(l)) => l.addr,
        _ => unreachable!("one of the two"),
    };
    let busy = variant == crate::catalog::rr::CLASSIC_BUSY_POLL;
    if busy && addr.ip().is_loopback() {
        return Err(harness::skip_point(
            "the --peer host is reached over loopback, which has no NAPI context: busy polling would have nothing to poll",
        ));
    }
    let stream = match &one {
        Some(r) => Some(Arc::new(r.stream.try_clone()?)),
        None => None,
    };
    let job = ClientJob {
        shape,
        n,
        mode,
        rate,
        addr,
        netns: None,
        clock: t.clock,
        udp: None,
        stream,
    };
    let mut report = None;
    t.measure(step(rate.is_some()), |_| {
        let c = rr::run_client(&job)?;
        let done = c.done;
        report = Some(c);
        // No bytes: the headline figure is transactions/s.
        Ok(Done {
            bytes: 0,
            ops: done,
        })
    })?;
    let rep = report.context("the client did not report")?;
    let srv = match (one.as_mut(), each.as_mut()) {
        (Some(r), _) => r.finish(),
        (_, Some(l)) => l.wait(),
        _ => unreachable!("one of the two"),
    }
    .context("the peer host's rr server")?;
    let m = t.metrics().context("measured")?.clone();
    let side = ServerSide {
        served: srv.requests.unwrap_or(0),
        cpu_ns: srv.usage.user_ns + srv.usage.sys_ns,
        enters: srv.uring_enters.unwrap_or(0),
        sqpoll_ns: srv.sqpoll_ns,
    };
    record(t, n, shape, &rep, m.user_ns + m.sys_ns, &side, false);
    for (k, v) in srv.peer_extras() {
        t.set_extra(k, v);
    }
    if let Some(id) = srv.napi_id {
        t.set_extra("napi_id", id as f64);
        if id == 0 {
            anyhow::bail!("the peer's connection has no NAPI id: busy polling polled nothing");
        }
    }
    // The server ran on another host: its CPU time is recorded beside, never subtracted.
    t.set_remote_peer(srv.usage);
    Ok(())
}
