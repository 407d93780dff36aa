//! Threads of this process: io_uring's kernel helper threads (the SQPOLL thread `iou-sqp-*`,
//! workers `iou-wrk-*`) and exact per-thread CPU time (clock_gettime(2) on a thread's CPU
//! clock).
//!
//! Why exact: while a thread runs on another CPU, its time in getrusage(2) and in
//! /proc/*/schedstat advances only at scheduler ticks (4 ms at HZ=250), so a 20 ms trial can
//! be off by a fifth. A thread CPU clock read (`CPUCLOCK_SCHED`) brings the running thread's
//! runtime up to date first.

use std::io;
use std::time::{Duration, Instant};

/// Thread ids of this process whose name (`/proc/self/task/TID/comm`) starts with `prefix`.
pub fn named(prefix: &str) -> io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task")?.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)) {
            out.push(tid);
        }
    }
    Ok(out)
}

/// Waits until exactly `n` threads are named `prefix*` (a new SQPOLL thread names itself when
/// it first runs, shortly after io_uring_setup returns), up to `limit`; returns their ids.
pub fn wait_named(prefix: &str, n: usize, limit: Duration) -> io::Result<Vec<i32>> {
    let start = Instant::now();
    loop {
        let found = named(prefix)?;
        if found.len() == n {
            return Ok(found);
        }
        if start.elapsed() > limit {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "expected {n} thread(s) named {prefix}*, found {} after {limit:?}",
                    found.len()
                ),
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Waits until no thread named `prefix*` is left (an SQPOLL thread exits asynchronously after
/// its ring is closed), up to `limit`.
pub fn wait_gone(prefix: &str, limit: Duration) -> io::Result<()> {
    let start = Instant::now();
    while !named(prefix)?.is_empty() {
        if start.elapsed() > limit {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("thread {prefix}* still present after {limit:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn clock_ns(id: libc::clockid_t) -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// CPU time (ns) of thread `tid` of this process, exact even while it runs on another CPU:
/// clock_gettime on `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)` (include/linux/posix-timers.h),
/// which the kernel allows for threads of the caller's own thread group.
pub fn thread_cpu_ns(tid: i32) -> io::Result<u64> {
    const CPUCLOCK_SCHED: libc::clockid_t = 2;
    const CPUCLOCK_PERTHREAD: libc::clockid_t = 4;
    clock_ns((!tid << 3) | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED)
}

/// CPU time (ns) of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn self_cpu_ns() -> io::Result<u64> {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_threads_clock_advances_while_it_spins() {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw()).unwrap();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let tid = rx.recv().unwrap();
        let a = thread_cpu_ns(tid).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let b = thread_cpu_ns(tid).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        h.join().unwrap();
        assert!(b > a, "{a} -> {b}");
        assert!(self_cpu_ns().unwrap() > 0);
        assert!(
            thread_cpu_ns(1).is_err(),
            "another process's thread is refused"
        );
    }
}
