//! Thin safe wrappers over classic calls: CPU pinning, files with known content, pipes,
//! sockets. The few `unsafe` blocks of the lab live here and in `ring`/`uring`.

pub mod blocksum;
pub mod consts;
pub mod cpu;
pub mod direct;
pub mod errqueue;
pub mod file;
pub mod filemap;
pub mod mapping;
pub mod perf;
pub mod pipe;
pub mod proc;
pub mod signal;
pub mod threads;
pub mod zc_ledger;
