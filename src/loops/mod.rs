//! The measured loops of the experiments that are more than a call or two: each experiment's
//! variant functions set up, call one of these inside `Trial::measure`, and record what it
//! returns. Kept in the library so that new experiments (and tests) reuse them.

pub mod blocks;
pub mod busy;
pub mod common;
pub mod copies;
pub mod file_socket;
pub mod files;
pub mod flows;
pub mod gather;
pub mod net_paths;
pub mod netsend_crossover;
pub mod packet_io;
pub mod proxy_crossover;
pub mod recv;
pub mod recv_table;
pub mod recv_trial;
pub mod relay;
pub mod rr;
pub mod rr_table;
pub mod rr_trial;
pub mod rr_udp;
pub mod send;
pub mod sock_file;
pub mod tcp;
