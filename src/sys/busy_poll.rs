//! Busy polling of a socket's receive queue (socket(7): SO_BUSY_POLL, SO_PREFER_BUSY_POLL,
//! SO_INCOMING_NAPI_ID; Documentation/networking/napi.rst). What busy polling brought in is
//! counted per namespace: `crate::net::netns::busy_poll_rx_packets`.
//!
//! A blocking receive on such a socket first runs the device's NAPI poll itself, for up to the
//! socket's busy-poll time, before it sleeps. That needs a NAPI context: the socket's NAPI id
//! (the one its last packet came through) is 0 on loopback, and on veth until an XDP program
//! is attached to the receiving end.

use super::xsk::{getsockopt, setsockopt};
use std::io;
use std::os::fd::AsRawFd;

/// SO_BUSY_POLL `usecs` (the busy-poll time of a blocking receive; above
/// net.core.busy_read it needs CAP_NET_ADMIN) and SO_PREFER_BUSY_POLL.
pub fn enable(sock: &impl AsRawFd, usecs: u32) -> io::Result<()> {
    let (us, one) = (usecs as i32, 1i32);
    setsockopt(
        sock,
        libc::SOL_SOCKET,
        libc::SO_BUSY_POLL,
        &us,
        "SO_BUSY_POLL",
    )?;
    setsockopt(
        sock,
        libc::SOL_SOCKET,
        libc::SO_PREFER_BUSY_POLL,
        &one,
        "SO_PREFER_BUSY_POLL",
    )
}

/// The NAPI id of the queue the socket's last packet came from (SO_INCOMING_NAPI_ID, Linux
/// 4.12); 0 when there is none to poll.
pub fn napi_id(sock: &impl AsRawFd) -> io::Result<u32> {
    getsockopt::<u32>(
        sock,
        libc::SOL_SOCKET,
        libc::SO_INCOMING_NAPI_ID,
        "SO_INCOMING_NAPI_ID",
    )
}
