//! Thin safe wrappers over system calls: CPU pinning, files with known content, pipes, sockets,
//! raw io_uring setup for the kernel probe. Every `unsafe` block of the lab lives here or in
//! [`crate::uring`], each with a `// SAFETY:` comment; the compiler enforces it
//! (`unsafe_code = "deny"` in Cargo.toml, allowed only on these two modules in lib.rs).

pub mod blocksum;
pub mod bpf;
pub mod busy_poll;
pub mod consts;
pub mod cpu;
pub mod direct;
pub mod errqueue;
pub mod file;
pub mod filemap;
pub mod fsinfo;
pub mod host;
mod mmap;
pub mod perf;
pub mod perf_sample;
pub mod pipe;
pub mod pkt;
pub mod proc;
pub mod signal;
pub mod tcp_zc;
pub mod threads;
pub mod tsc;
pub mod uring_cq;
pub mod uring_probe;
pub mod uring_setup;
pub mod xsk;

/// An I/O error that names what failed and on which path: "cannot create /x: No space left".
pub fn named(e: std::io::Error, what: &str, path: &std::path::Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}
