//! zclab: a lab that measures how Linux moves bytes — classic syscalls against io_uring,
//! copies against zero copy — with one clock, one accounting and one result format.
//!
//! - [`ring`]: the one ring-setup module every io_uring variant uses.
//! - [`caps`]: the kernel probe (`zclab probe`), recorded with every run.
//! - [`measure`]: the clock, latency histograms, CPU and OS counters.
//! - [`results`]: run directories, summaries, `.hgrm` files; loading a run back, typed.
//! - [`analysis`]: statistics over repeats, the ratio and crossover rules, claim verdicts.
//! - [`report`]: renderers (terminal table, Markdown, CSV).
//! - [`catalog`]: every experiment's variant and parameter names.
//! - [`harness`]: variants, parameter points, trials; what every experiment binary runs on.
//! - [`sys`], [`uring`], [`net`]: safe wrappers and op patterns.
//!
//! `unsafe` code is denied crate-wide (`[lints.rust] unsafe_code = "deny"` in Cargo.toml) and
//! allowed only in [`sys`] and [`uring`], so the compiler holds every raw call to those two.

pub mod analysis;
pub mod caps;
pub mod catalog;
pub mod harness;
pub mod hash;
pub mod loops;
pub mod measure;
pub mod net;
pub mod report;
pub mod results;
pub mod ring;
pub mod serve;
// Raw system calls and io_uring submissions: the only modules allowed `unsafe`.
#[allow(unsafe_code)]
pub mod sys;
pub mod units;
// io_uring op patterns push SQEs whose buffers the kernel reads later (unsafe by contract).
#[allow(unsafe_code)]
pub mod uring;
pub mod zc;

// For `harness::variants!` rows that name io_uring opcodes.
#[doc(hidden)]
pub use io_uring;
