//! CPU placement (sched_setaffinity(2)).

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use std::io;

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("sched_setaffinity(CPU {cpu}): {e}"),
        )
    })
}

/// Number of online CPUs (sysconf(_SC_NPROCESSORS_ONLN)).
pub fn online_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
