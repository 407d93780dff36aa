//! Busy-polling trials, shared by net_recv's receivers and rr's server: the NAPI context a
//! veth end needs (an XDP program, [`VethLab::napi_on_b`]), the count of packets busy polling
//! brought in (the namespace's `TcpExt: BusyPollRxPackets`), and the figures a busy-polling
//! row carries. The socket options themselves are `crate::sys::busy_poll`.

use crate::harness::{self, Trial};
use crate::net::netns::{self, NapiXdp, VethLab};
use anyhow::{Result, bail};
use std::io;

/// How long a busy-polling socket or ring polls before it sleeps (SO_BUSY_POLL, the ring's
/// NAPI busy-poll time), in µs: the value Documentation/networking/napi.rst suggests first.
pub const BUSY_POLL_US: u32 = 50;

/// The skip of a busy-polling variant on loopback.
pub fn loopback_skip() -> anyhow::Error {
    harness::skip_point(
        "loopback has no NAPI context: busy polling would have nothing to poll (the socket's NAPI id is 0)",
    )
}

/// One busy-polling trial: the XDP program that gives veth's B end its NAPI context (dropped,
/// so detached, with this), and the busy-polled packet count at the start.
pub struct BusyPoll {
    _xdp: Option<NapiXdp>,
    /// Namespace B on veth; None: the calling thread's namespace (a real NIC).
    ns: Option<String>,
    polled0: Option<u64>,
}

impl BusyPoll {
    /// On the lab's veth pair when `veth` is given (the receiving end in B gets the XDP
    /// program), else in this thread's namespace.
    pub fn start(veth: Option<&VethLab>) -> io::Result<BusyPoll> {
        let xdp = veth.map(VethLab::napi_on_b).transpose()?;
        let ns = veth.map(|v| v.ns_b.clone());
        let polled0 = polled(ns.as_deref());
        Ok(BusyPoll {
            _xdp: xdp,
            ns,
            polled0,
        })
    }

    /// After the trial: records `busy_poll_us`, `busy_poll_rx_packets` and the socket's
    /// `napi_id` (when it was read); a NAPI id of 0 fails the trial, as busy polling then had
    /// nothing to poll.
    pub fn finish(self, t: &mut Trial, napi: Option<u32>) -> Result<()> {
        t.set_extra("busy_poll_us", BUSY_POLL_US as f64);
        if let (Some(a), Some(b)) = (self.polled0, polled(self.ns.as_deref())) {
            t.set_extra("busy_poll_rx_packets", b.saturating_sub(a) as f64);
        }
        if let Some(id) = napi {
            t.set_extra("napi_id", id as f64);
            if id == 0 {
                bail!("the socket has no NAPI id: busy polling had nothing to poll");
            }
        }
        Ok(())
    }
}

/// Packets busy polling brought in so far, in namespace `ns` or this thread's.
fn polled(ns: Option<&str>) -> Option<u64> {
    match ns {
        Some(ns) => netns::in_netns(ns, || Ok(netns::busy_poll_rx_packets()))
            .ok()
            .flatten(),
        None => netns::busy_poll_rx_packets(),
    }
}
