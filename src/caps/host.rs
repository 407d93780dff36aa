//! The machine and the process: kernel release, CPUs, memlock limit, privileges, and which
//! perf counters work.

use std::fs;

use nix::sys::resource::{Resource, getrlimit};

use super::{Counters, Cpu, Kernel, Memlock, errno_text, read_trimmed};
use crate::sys::{host, perf, proc};

/// Capability numbers from `<linux/capability.h>`.
pub(super) const CAP_NET_ADMIN: u32 = 12;
pub(super) const CAP_IPC_LOCK: u32 = 14;
pub(super) const CAP_SYS_ADMIN: u32 = 21;

/// uname(2) of the running kernel, and the host name.
pub(super) fn kernel() -> (Kernel, String) {
    let uts = host::uname();
    let k = Kernel {
        parsed: parse_release(&uts.release),
        release: uts.release,
        version: uts.version,
        machine: uts.machine,
    };
    (k, uts.nodename)
}

/// (major, minor) of a release string starting "N.M".
pub(super) fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `CapEff` from /proc/self/status (capabilities(7)).
pub(super) fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// `RLIMIT_MEMLOCK` (getrlimit(2)).
pub(super) fn probe_memlock(cap_ipc_lock: bool) -> Memlock {
    let lim = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v);
    match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, hard)) => Memlock {
            soft: lim(soft),
            hard: lim(hard),
            cap_ipc_lock,
        },
        Err(_) => Memlock {
            soft: None,
            hard: None,
            cap_ipc_lock,
        },
    }
}

pub(super) fn probe_counters() -> Counters {
    let mut notes = Vec::new();
    let paranoid = read_trimmed("/proc/sys/kernel/perf_event_paranoid").unwrap_or_default();
    let perf_software = match perf::software_for_thread(perf::SwEvent::TaskClock, 0) {
        Ok(c) => c.read().is_ok(),
        Err(e) => {
            notes.push(format!(
                "software counters: {} (perf_event_paranoid={paranoid})",
                errno_text(&e)
            ));
            false
        }
    };
    let syscall_tracepoint = match perf::syscalls_for_thread(0) {
        Ok(c) => {
            // Check that it really counts rather than trusting the open.
            let before = c.read();
            proc::getppid_raw();
            match (before, c.read()) {
                (Ok(a), Ok(b)) if b > a => true,
                _ => {
                    notes.push("syscall tracepoint opened but did not count".to_string());
                    false
                }
            }
        }
        Err(e) => {
            notes.push(format!(
                "syscall tracepoint: {} (perf_event_paranoid={paranoid}; needs root or CAP_PERFMON, and tracefs)",
                errno_text(&e)
            ));
            false
        }
    };
    Counters {
        perf_software,
        syscall_tracepoint,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

pub(super) fn probe_cpu() -> Cpu {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let model = field("model name")
        .or_else(|| field("Hardware"))
        .or_else(|| field("cpu model"))
        .unwrap_or_else(|| "unknown".to_string());
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    Cpu {
        model,
        count: host::online_cpus(),
        allowed,
        invariant_tsc: has("constant_tsc") && has("nonstop_tsc"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn release_parsing() {
        use super::parse_release;
        assert_eq!(parse_release("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_release("5.15"), Some((5, 15)));
        assert_eq!(parse_release("weird"), None);
        assert_eq!(parse_release(""), None);
    }
}
