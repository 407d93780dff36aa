//! Set-up that the experiments' variant functions share: rings whose flags the trial records.

use crate::harness::{self, Trial};
use crate::ring::{Ring, RingConfig};
use anyhow::Result;

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
