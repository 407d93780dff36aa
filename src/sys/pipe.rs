//! Pipes for splice(2), sized with F_SETPIPE_SZ.

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use std::io;
use std::os::fd::OwnedFd;

/// A pipe (read end, write end) whose capacity is set to `size` bytes with F_SETPIPE_SZ (the
/// kernel rounds up to a power-of-two number of pages); returns the capacity in force.
pub fn pipe_with_size(size: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let got = fcntl(&w, FcntlArg::F_SETPIPE_SZ(size as i32)).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("F_SETPIPE_SZ({size}): {e} (unprivileged users are limited by /proc/sys/fs/pipe-max-size)"),
        )
    })?;
    Ok((r, w, got as usize))
}
