//! Measurement: the clock, per-operation latency histograms, and OS accounting.

pub mod clock;
pub mod noise;
pub mod placement;
pub mod profile;
pub mod recorder;
pub mod usage;

pub use clock::{Clock, ClockInfo, Stamp};
pub use recorder::{Recorder, Run};
pub use usage::Usage;
