//! The `zclab` subcommands that act on the machine or on run directories: they load with
//! [`zclab::results`], conclude with [`zclab::analysis`], render with [`zclab::report`], and
//! do the I/O (processes, packages, files, the terminal). They live in the binary, so the
//! library has no command code and nothing in it reaches up to a command.

pub mod claims;
pub mod compare;
pub mod flame;
pub mod placement;
pub mod report;
pub mod run;
pub mod soak;
pub mod versus;
