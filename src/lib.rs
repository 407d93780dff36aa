//! zclab: a lab that measures how Linux moves bytes — classic syscalls against io_uring,
//! copies against zero copy — with one clock, one accounting and one result format.
//!
//! - [`ring`]: the one ring-setup module every io_uring variant uses.
//! - [`caps`]: the kernel probe (`zclab probe`), recorded with every run.
//! - [`measure`]: the clock, latency histograms, CPU and OS counters.
//! - [`results`]: run directories, summaries, `.hgrm` files; loading a run back, typed.
//! - [`analysis`]: statistics over repeats, the ratio and crossover rules, claim verdicts.
//! - [`report`]: renderers (terminal table, Markdown, CSV).
//! - [`harness`]: variants, parameter points, trials; what every experiment binary runs on.
//! - [`sys`], [`uring`], [`net`]: safe wrappers and op patterns; the lab's `unsafe` lives there.

pub mod analysis;
pub mod caps;
pub mod harness;
pub mod measure;
pub mod net;
pub mod report;
pub mod results;
pub mod ring;
pub mod serve;
pub mod sys;
pub mod units;
pub mod uring;
