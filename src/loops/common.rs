//! What the experiments' variant functions and loops share: rings whose flags the trial
//! records, a [`Mover`] stepped to the end, and the check of datagrams counted on the peer host.

use crate::harness::{self, Trial};
use crate::measure::{Recorder, Stamp};
use crate::net::remote::{self, Report};
use crate::results::Integrity;
use crate::ring::{Ring, RingConfig};
use crate::uring::sock::Mover;
use anyhow::{Context, Result};

/// A ring of `cfg` (io_uring_setup(2)), its flags recorded in the trial's row; a ring the
/// kernel refuses skips the variant (see [`harness::ring_err`]).
pub fn ring(t: &mut Trial, cfg: &RingConfig) -> Result<Ring> {
    let r = Ring::new(cfg).map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    Ok(r)
}

/// [`ring`] with `count` registered buffers of `size` bytes (IORING_REGISTER_BUFFERS, see
/// io_uring_register(2)), recorded in the trial's ring flags.
pub fn ring_with_buffers(
    t: &mut Trial,
    cfg: &RingConfig,
    count: usize,
    size: usize,
) -> Result<Ring> {
    let mut r = ring(t, cfg)?;
    register_buffers(t, &mut r, count, size)?;
    Ok(r)
}

/// Registers `count` buffers of `size` bytes on `r` and records the ring flags again.
pub fn register_buffers(t: &mut Trial, r: &mut Ring, count: usize, size: usize) -> Result<()> {
    r.register_buffers(count, size).map_err(harness::ring_err)?;
    t.set_ring(r.flags());
    Ok(())
}

/// The integrity of datagrams sent to a receiver on the peer host (`zclab serve`, report
/// `r`): `sent` datagrams of `bytes` bytes in all, whose xxh3-64 values sum to `want`, each
/// received exactly once intact. `method` says what the row checked; `failed`, when given,
/// names a failure on the sending side, which fails the check too.
pub fn remote_udp_integrity(
    r: &Report,
    sent: u64,
    bytes: u64,
    want: u64,
    method: &str,
    failed: Option<&str>,
) -> Integrity {
    let n = r.datagrams.unwrap_or(0);
    let sum = r.digest.as_deref();
    Integrity {
        ok: n == sent
            && r.bytes == bytes
            && sum.and_then(remote::parse_hex64) == Some(want)
            && failed.is_none(),
        method: method.into(),
        expected: format!("{sent} datagrams, {bytes} bytes, sum {want:016x}"),
        got: format!(
            "{n} datagrams{}, {} bytes, sum {}{}",
            if n < sent {
                r.lost_note(sent - n)
            } else {
                String::new()
            },
            r.bytes,
            sum.unwrap_or("none"),
            failed.map_or(String::new(), |f| format!(", {f}"))
        ),
        bytes_expected: bytes,
        bytes_got: r.bytes,
    }
}

/// Steps `m` until its source ends, one latency sample per step into `rec` (the first from
/// `start`); a failed step's error says `what` and how many bytes had come in.
pub fn move_to_end(
    m: &mut Mover,
    ring: &mut Ring,
    rec: &mut Recorder,
    start: Stamp,
    what: &str,
) -> Result<()> {
    let mut t = start;
    loop {
        let n = m
            .step(ring)
            .with_context(|| format!("{what} {} bytes", m.bytes_in))?;
        t = rec.record_since(t);
        if n == 0 {
            return Ok(());
        }
    }
}
