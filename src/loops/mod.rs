//! The measured loops of the experiments that are more than a call or two: each experiment's
//! variant functions set up, call one of these inside `Trial::measure`, and record what it
//! returns. Kept in the library so that new experiments (and tests) reuse them.

pub mod copies;
pub mod file_socket;
pub mod net_paths;
