//! zclab: a lab that measures how Linux moves bytes — classic syscalls against io_uring,
//! copies against zero copy — with one clock, one accounting and one result format.
//!
//! - [`ring`]: the one ring-setup module every io_uring variant uses.
//! - [`caps`]: the kernel probe (`zclab probe`), recorded with every run.
//! - [`measure`]: the clock, latency histograms, CPU and OS counters.
//! - [`results`]: run directories, summaries, `.hgrm` files.
//! - [`harness`]: variants, parameter points, trials; what every experiment binary runs on.
//! - [`sys`], [`uring`], [`net`]: safe wrappers and op patterns; the lab's `unsafe` lives there.

pub mod caps;
pub mod catalog;
pub mod claims;
pub mod compare;
pub mod harness;
pub mod loops;
pub mod measure;
pub mod net;
pub mod results;
pub mod ring;
pub mod serve;
pub mod soak;
pub mod suite;
pub mod sys;
pub mod units;
pub mod uring;
pub mod versus;
