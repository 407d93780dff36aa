//! Thin safe wrappers over system calls: CPU pinning, files with known content, pipes, sockets,
//! raw io_uring setup for the kernel probe. Every `unsafe` block of the lab lives here or in
//! [`crate::uring`], each with a `// SAFETY:` comment; the compiler enforces it
//! (`unsafe_code = "deny"` in Cargo.toml, allowed only on these two modules in lib.rs).

pub mod blocksum;
pub mod consts;
pub mod cpu;
pub mod direct;
pub mod errqueue;
pub mod file;
pub mod filemap;
pub mod fsinfo;
pub mod host;
pub mod mapping;
pub mod perf;
pub mod pipe;
pub mod proc;
pub mod signal;
pub mod threads;
pub mod tsc;
pub mod uring_probe;
pub mod uring_setup;
pub mod zc_ledger;
