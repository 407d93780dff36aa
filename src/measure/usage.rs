//! Resource accounting: getrusage(2) for the process and for single threads, and the CPU time
//! of io_uring's kernel helper threads (the SQPOLL thread `iou-sqp-*`, workers `iou-wrk-*`),
//! which run inside the process and are counted in its RUSAGE_SELF.

use nix::sys::resource::{UsageWho, getrusage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;

/// A getrusage(2) snapshot, times in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub user_ns: u64,
    pub sys_ns: u64,
    pub vcsw: u64,
    pub ivcsw: u64,
    pub minflt: u64,
    pub majflt: u64,
}

impl Usage {
    /// The difference `self - earlier`, saturating at zero per field.
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            user_ns: self.user_ns.saturating_sub(earlier.user_ns),
            sys_ns: self.sys_ns.saturating_sub(earlier.sys_ns),
            vcsw: self.vcsw.saturating_sub(earlier.vcsw),
            ivcsw: self.ivcsw.saturating_sub(earlier.ivcsw),
            minflt: self.minflt.saturating_sub(earlier.minflt),
            majflt: self.majflt.saturating_sub(earlier.majflt),
        }
    }

    /// `self - other` per field, saturating: the process's usage less a harness thread's.
    pub fn minus(&self, other: &Usage) -> Usage {
        self.since(other)
    }
}

fn rusage(who: UsageWho) -> io::Result<Usage> {
    let ru = *getrusage(who)?.as_ref();
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    Ok(Usage {
        user_ns: tv(ru.ru_utime),
        sys_ns: tv(ru.ru_stime),
        vcsw: ru.ru_nvcsw as u64,
        ivcsw: ru.ru_nivcsw as u64,
        minflt: ru.ru_minflt as u64,
        majflt: ru.ru_majflt as u64,
    })
}

/// getrusage(RUSAGE_SELF): every thread of the process, io_uring helper threads included.
pub fn process() -> io::Result<Usage> {
    rusage(UsageWho::RUSAGE_SELF)
}

/// getrusage(RUSAGE_CHILDREN): every child process that has ended and been waited for; the
/// difference around one child's run is that child's usage.
pub fn children() -> io::Result<Usage> {
    rusage(UsageWho::RUSAGE_CHILDREN)
}

/// getrusage(RUSAGE_THREAD): the calling thread only.
pub fn thread() -> io::Result<Usage> {
    rusage(UsageWho::RUSAGE_THREAD)
}

/// CPU time (ns, from /proc/self/task/TID/schedstat) of each of the process's io_uring kernel
/// helper threads whose name starts with `prefix` (`"iou-sqp"` for SQPOLL), by thread id. All of
/// it is system time.
pub fn helper_threads(prefix: &str) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let p = entry.path();
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(p.join("comm")) else {
            continue;
        };
        if !comm.starts_with(prefix) {
            continue;
        }
        if let Ok(s) = std::fs::read_to_string(p.join("schedstat")) {
            if let Some(ns) = s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                out.insert(tid, ns);
            }
        }
    }
    out
}

/// CPU time the helper threads alive at `after` spent since `before`, thread by thread: a thread
/// new since `before` counts from zero, and one that exited in between (a previous ring's SQPOLL
/// thread still winding down when the trial began) counts for nothing. None when no such
/// thread was alive at `after`.
pub fn helper_threads_since(
    before: &BTreeMap<u32, u64>,
    after: &BTreeMap<u32, u64>,
) -> Option<u64> {
    if after.is_empty() {
        return None;
    }
    Some(
        after
            .iter()
            .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_usage_grows_with_work() {
        // A fixed amount of work, not a fixed wall time: a busy machine stretches the wall
        // time, not the CPU time this thread needs. The thread's figure must show the work and
        // cannot exceed the whole process's.
        let a = thread().unwrap();
        let p0 = process().unwrap();
        let mut x = 0u64;
        for _ in 0..50_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let b = thread().unwrap();
        let p = process().unwrap().since(&p0);
        let d = b.since(&a);
        let (dt, pt) = (d.user_ns + d.sys_ns, p.user_ns + p.sys_ns);
        assert!(dt >= 5_000_000, "{d:?} {x}");
        assert!(dt <= pt + 4_000_000, "thread {dt} ns > process {pt} ns");
    }
}
