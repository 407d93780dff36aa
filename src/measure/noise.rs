//! Is the machine quiet? What else ran while the lab measured: load average, the busiest other
//! processes, steal time (these are often VMs), the CPU frequency governor, transparent huge
//! pages, SMT siblings of the measured CPUs, other runs of this lab, and a short noise probe
//! (a fixed loop timed many times; its coefficient of variation).
//!
//! Sources: proc(5) (`/proc/loadavg`, `/proc/stat`, `/proc/PID/stat`, `/proc/PID/exe`), sysfs
//! (`cpufreq/scaling_governor`, `scaling_cur_freq`, `topology/thread_siblings_list`,
//! `mm/transparent_hugepage/enabled`). Everything that cannot be read is `None` ("unknown"),
//! never 0.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Thresholds above which a run is called noisy (documented in docs/method.md).
pub mod limits {
    /// Steal time over a window, percent of the measured CPUs' time.
    pub const STEAL_PCT: f64 = 2.0;
    /// Time the measured CPUs spent on other work, percent, beyond what this process used.
    pub const OTHER_BUSY_PCT: f64 = 10.0;
    /// The noise probe's coefficient of variation, percent.
    pub const PROBE_CV_PCT: f64 = 5.0;
}

/// Per-CPU time from /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTimes {
    pub busy: u64,
    pub idle: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.busy + self.idle + self.steal
    }
}

/// The times of the given CPUs (all CPUs summed for `None`), or None when /proc/stat is
/// unreadable or a CPU is missing.
pub fn cpu_times(cpus: &[usize]) -> Option<Vec<CpuTimes>> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    cpus.iter()
        .map(|c| {
            let tag = format!("cpu{c} ");
            let line = text.lines().find(|l| l.starts_with(&tag))?;
            parse_cpu_line(line)
        })
        .collect()
}

fn parse_cpu_line(line: &str) -> Option<CpuTimes> {
    // user nice system idle iowait irq softirq steal guest guest_nice
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 8 {
        return None;
    }
    Some(CpuTimes {
        busy: v[0] + v[1] + v[2] + v[5] + v[6],
        idle: v[3] + v[4],
        steal: v[7],
    })
}

/// What the measured CPUs did over a window: steal and busy shares, percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuShare {
    pub busy_pct: f64,
    pub steal_pct: f64,
}

/// The share of busy and stolen time between two readings of the same CPUs.
pub fn share(before: &[CpuTimes], after: &[CpuTimes]) -> Option<CpuShare> {
    let (mut busy, mut steal, mut total) = (0u64, 0u64, 0u64);
    for (a, b) in before.iter().zip(after) {
        busy += b.busy.saturating_sub(a.busy);
        steal += b.steal.saturating_sub(a.steal);
        total += b.total().saturating_sub(a.total());
    }
    (total > 0).then(|| CpuShare {
        busy_pct: 100.0 * busy as f64 / total as f64,
        steal_pct: 100.0 * steal as f64 / total as f64,
    })
}

/// Another process that used CPU during the sampling window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Busy {
    pub pid: u32,
    pub comm: String,
    /// Percent of one CPU over the window.
    pub cpu_pct: f64,
    /// Whether it is another run of this lab (a zclab or experiment binary not in this
    /// process's own tree).
    pub lab: bool,
}

/// Everything recorded about the machine's quiet, in meta.json under `noise`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub loadavg: Option<[f64; 3]>,
    pub cpus_online: usize,
    /// Over the sampling window, on the measured CPUs.
    pub window_ms: u64,
    pub measured: Option<CpuShare>,
    pub busiest: Vec<Busy>,
    pub governor: Option<String>,
    pub cur_freq_khz: Option<u64>,
    pub thp: Option<String>,
    /// SMT siblings of each measured CPU (itself included), as the kernel lists them.
    pub smt_siblings: Vec<(usize, String)>,
    /// The noise probe: a fixed loop timed `probe_samples` times.
    pub probe_samples: usize,
    pub probe_median_ns: Option<f64>,
    pub probe_cv_pct: Option<f64>,
    /// Empty on a quiet machine; else one line per reason, with the figure.
    pub reasons: Vec<String>,
    pub noisy: bool,
}

fn read_trim(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The bracketed choice of a sysfs mode file (`always [madvise] never` -> `madvise`).
fn bracketed(s: &str) -> Option<String> {
    let a = s.find('[')?;
    let b = s[a..].find(']')?;
    Some(s[a + 1..a + b].to_string())
}

fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let v: Vec<f64> = s
        .split_whitespace()
        .take(3)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    Some([v[0], v[1], v[2]])
}

/// user+system ticks and comm of a process, from /proc/PID/stat.
fn proc_ticks(pid: u32) -> Option<(String, u64, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let rest: Vec<&str> = s[close + 2..].split_whitespace().collect();
    // Fields after the comm: state(3) ppid(4) ... utime(14) stime(15): 0-based 0 and 1, 11, 12.
    let ppid = rest.get(1)?.parse().ok()?;
    let ut: u64 = rest.get(11)?.parse().ok()?;
    let st: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, ut + st, ppid))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// This process, its ancestors and its descendants: the lab's own tree.
fn own_tree(parents: &[(u32, u32)]) -> Vec<u32> {
    let me = std::process::id();
    let mut tree = vec![me];
    let mut p = me;
    while let Some(&(_, pp)) = parents.iter().find(|(c, _)| *c == p) {
        if pp <= 1 || tree.contains(&pp) {
            break;
        }
        tree.push(pp);
        p = pp;
    }
    let mut grew = true;
    while grew {
        grew = false;
        for &(c, pp) in parents {
            if tree.contains(&pp) && !tree.contains(&c) {
                tree.push(c);
                grew = true;
            }
        }
    }
    tree
}

fn is_lab_binary(pid: u32) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let name = exe
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .trim_end_matches(" (deleted)")
        .to_string();
    name == "zclab" || crate::catalog::find(&name).is_some()
}

/// A fixed amount of integer work (about a microsecond), timed `n` times: the median and the
/// coefficient of variation (percent) of the fastest 99% of the samples.
pub fn probe(n: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(n);
    let mut acc = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..n {
        let t = Instant::now();
        for i in 0..512u64 {
            acc = std::hint::black_box(acc.rotate_left(7) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
        }
        samples.push(t.elapsed().as_nanos() as f64);
    }
    std::hint::black_box(acc);
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = samples[n / 2];
    // A robust spread (interquartile range scaled to a standard deviation, over the median):
    // an interrupt or a tick lands in a few samples on any machine and would dominate a plain
    // coefficient of variation; a competing thread moves the quartiles.
    let iqr = samples[3 * n / 4] - samples[n / 4];
    (median, 100.0 * 0.7413 * iqr / median)
}

/// Samples the machine for `window` on the measured `cpus` (the lab's threads should be idle
/// meanwhile), runs the noise probe on the calling thread, and says whether it is noisy.
pub fn sample(cpus: &[usize], window: Duration) -> Noise {
    let online = crate::sys::cpu::online_count();
    let pids = all_pids();
    let before: Vec<(u32, String, u64, u32)> = pids
        .iter()
        .filter_map(|&p| proc_ticks(p).map(|(c, t, pp)| (p, c, t, pp)))
        .collect();
    let cpu0 = cpu_times(cpus);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let cpu1 = cpu_times(cpus);
    let elapsed = t0.elapsed();
    let parents: Vec<(u32, u32)> = before.iter().map(|(p, _, _, pp)| (*p, *pp)).collect();
    let own = own_tree(&parents);
    let hz = 100.0; // USER_HZ: 100 on every Linux architecture the lab builds for
    let mut busiest: Vec<Busy> = before
        .iter()
        .filter(|(p, ..)| !own.contains(p))
        .filter_map(|(p, comm, t, _)| {
            let (_, t1, _) = proc_ticks(*p)?;
            let pct = 100.0 * (t1.saturating_sub(*t)) as f64 / hz / elapsed.as_secs_f64();
            let lab = is_lab_binary(*p);
            (pct >= 1.0 || lab).then(|| Busy {
                pid: *p,
                comm: comm.clone(),
                cpu_pct: pct,
                lab,
            })
        })
        .collect();
    busiest.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
    busiest.truncate(8);
    let first = cpus.first().copied().unwrap_or(0);
    let cpufreq = format!("/sys/devices/system/cpu/cpu{first}/cpufreq");
    let (probe_median, probe_cv) = probe(2000);
    let mut n = Noise {
        loadavg: loadavg(),
        cpus_online: online,
        window_ms: elapsed.as_millis() as u64,
        measured: match (cpu0, cpu1) {
            (Some(a), Some(b)) => share(&a, &b),
            _ => None,
        },
        busiest,
        governor: read_trim(&format!("{cpufreq}/scaling_governor")),
        cur_freq_khz: read_trim(&format!("{cpufreq}/scaling_cur_freq"))
            .and_then(|s| s.parse().ok()),
        thp: read_trim("/sys/kernel/mm/transparent_hugepage/enabled").and_then(|s| bracketed(&s)),
        smt_siblings: cpus
            .iter()
            .filter_map(|c| {
                read_trim(&format!(
                    "/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list"
                ))
                .map(|s| (*c, s))
            })
            .collect(),
        probe_samples: 2000,
        probe_median_ns: Some(probe_median),
        probe_cv_pct: Some(probe_cv),
        reasons: Vec::new(),
        noisy: false,
    };
    n.reasons = judge(&n);
    n.noisy = !n.reasons.is_empty();
    n
}

/// The reasons, with their figures, to call a sample noisy.
pub fn judge(n: &Noise) -> Vec<String> {
    let mut r = Vec::new();
    if let Some(s) = n.measured {
        if s.steal_pct > limits::STEAL_PCT {
            r.push(format!(
                "steal time {:.1}% on the measured CPUs (the hypervisor ran something else; limit {}%)",
                s.steal_pct,
                limits::STEAL_PCT
            ));
        }
        if s.busy_pct > limits::OTHER_BUSY_PCT {
            r.push(format!(
                "the measured CPUs were {:.0}% busy with other work before the run (limit {}%)",
                s.busy_pct,
                limits::OTHER_BUSY_PCT
            ));
        }
    }
    if let Some(cv) = n.probe_cv_pct {
        if cv > limits::PROBE_CV_PCT {
            r.push(format!(
                "noise probe varied {cv:.1}% (robust coefficient of variation; limit {}%)",
                limits::PROBE_CV_PCT
            ));
        }
    }
    // The load average is recorded but is no reason: it still counts the lab's own previous
    // experiment for a minute after it ended; the window's busy share measures the present.
    let others: Vec<String> = n
        .busiest
        .iter()
        .filter(|b| b.lab)
        .map(|b| format!("{} (pid {}, {:.0}% CPU)", b.comm, b.pid, b.cpu_pct))
        .collect();
    if !others.is_empty() {
        r.push(format!("another run of this lab: {}", others.join(", ")));
    }
    let hogs: Vec<String> = n
        .busiest
        .iter()
        .filter(|b| !b.lab && b.cpu_pct >= 20.0)
        .map(|b| format!("{} (pid {}, {:.0}% CPU)", b.comm, b.pid, b.cpu_pct))
        .collect();
    if !hogs.is_empty() {
        r.push(format!("busy processes: {}", hogs.join(", ")));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lines_and_shares() {
        let a = parse_cpu_line("cpu0 100 0 50 1000 10 0 5 20 0 0").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                busy: 155,
                idle: 1010,
                steal: 20
            }
        );
        let b = CpuTimes {
            busy: 255,
            idle: 1090,
            steal: 40,
        };
        let s = share(&[a], &[b]).unwrap();
        assert!((s.busy_pct - 50.0).abs() < 1e-9, "{s:?}");
        assert!((s.steal_pct - 10.0).abs() < 1e-9, "{s:?}");
        assert!(parse_cpu_line("cpu0 1 2").is_none());
    }

    #[test]
    fn bracketed_mode() {
        assert_eq!(
            bracketed("always [madvise] never").as_deref(),
            Some("madvise")
        );
        assert_eq!(bracketed("none"), None);
    }

    #[test]
    fn judges_with_figures() {
        let quiet = Noise {
            cpus_online: 2,
            loadavg: Some([0.1, 0.1, 0.1]),
            measured: Some(CpuShare {
                busy_pct: 1.0,
                steal_pct: 0.0,
            }),
            probe_cv_pct: Some(1.0),
            ..Default::default()
        };
        assert!(judge(&quiet).is_empty());
        let busy = Noise {
            measured: Some(CpuShare {
                busy_pct: 97.0,
                steal_pct: 3.5,
            }),
            busiest: vec![Busy {
                pid: 7,
                comm: "yes".into(),
                cpu_pct: 99.0,
                lab: false,
            }],
            ..quiet.clone()
        };
        let r = judge(&busy);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r[0].contains("3.5%") && r[1].contains("97%") && r[2].contains("yes"));
    }

    #[test]
    fn sample_sees_a_busy_loop() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let h = std::thread::spawn(move || {
            let mut x = 0u64;
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                x = std::hint::black_box(x + 1);
            }
        });
        // Our own thread is in our own tree, so it shows as busy CPU time, not as a process.
        let n = sample(&[0], Duration::from_millis(50));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        h.join().unwrap();
        assert!(n.probe_median_ns.unwrap() > 0.0);
        assert!(n.loadavg.is_some());
    }
}
