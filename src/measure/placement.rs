//! Where the host put the two measured CPUs: the round trip of one cache line between them.
//!
//! On a VM the two vCPUs the lab measures on may sit on host cores that share a cache, or not,
//! and the host may move them while the lab runs. On the 2-vCPU reference VMs the round trip
//! went from about 140 ns to about 420 ns for a minute or two at a time, and TCP over loopback
//! between the two CPUs ran at half its rate meanwhile (14 against 7 GB/s), while steal time,
//! the noise probe and a memcpy on either CPU did not move (2026-12-06). Any experiment whose
//! peer thread runs on the other CPU measures the host's placement as much as the path then.
//!
//! [`line_rtt`] measures the round trip; [`Placement`] keeps the lowest one seen on this boot
//! (in `~/.cache/zclab/placement.json`, so that a run started while the CPUs are apart still
//! knows) and calls a round trip over [`APART_FACTOR`] times that "apart". Sources: the boot id
//! is `/proc/sys/kernel/random/boot_id` (proc(5)); pinning is sched_setaffinity(2).

use serde::{Deserialize, Serialize};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A round trip over this many times the lowest seen means the host placed the CPUs apart
/// (the two states measured here differ by 2.5-3.5x; within a state by under 1.5x).
pub const APART_FACTOR: f64 = 2.0;

/// The other CPU's busy share (percent of the trial, interrupts and softirqs included) at or
/// under which a trial without a peer or SQPOLL thread ran on the measured CPU alone. /proc/stat
/// counts in ticks: one stray tick on the other CPU in a trial of a few hundred ms is already
/// a few percent, so the bound leaves a trial in the placement's reach rather than out of it.
pub const ONE_CPU_BUSY_PCT: f64 = 2.0;

/// Whether a trial ran on the measured CPU alone, out of the reach of where the host puts the
/// other: no peer thread (`peer`, local or remote), no SQPOLL thread time (`sqpoll_ns`), and
/// the other CPU at most [`ONE_CPU_BUSY_PCT`] busy meanwhile (`other_busy_pct`; io-wq workers
/// and interrupts that ran there count as busy). Unknown busy share: not alone.
pub fn one_cpu(peer: bool, sqpoll_ns: u64, other_busy_pct: Option<f64>) -> bool {
    !peer && sqpoll_ns == 0 && other_busy_pct.is_some_and(|b| b <= ONE_CPU_BUSY_PCT)
}

/// Round trips per batch, and batches per probe: about 0.1-0.5 ms of both CPUs.
const ROUNDS: u64 = 200;
const BATCHES: u32 = 5;

/// The peer gives up when the other side stops answering for this long (its CPU was taken).
const PATIENCE: Duration = Duration::from_millis(50);

/// A cache line of its own, so that the round trip moves this one line only.
#[repr(align(64))]
struct Line(AtomicU64);

/// Waits until `line` holds `want`; false when it did not within [`PATIENCE`].
fn spin_until(line: &AtomicU64, want: u64) -> bool {
    let mut spins = 0u32;
    let mut since: Option<Instant> = None;
    loop {
        let v = line.load(Ordering::Acquire);
        if v == want {
            return true;
        }
        if v == u64::MAX {
            return false; // the other side gave up
        }
        spins = spins.wrapping_add(1);
        if spins % 4096 == 0 {
            let t = *since.get_or_insert_with(Instant::now);
            if t.elapsed() > PATIENCE {
                return false;
            }
        }
        std::hint::spin_loop();
    }
}

/// The round trip of one cache line between CPU `a` (the calling thread, pinned there for the
/// duration and given its affinity back after) and a thread pinned to `b`, in ns: the fastest
/// of a few batches, so that an interrupt in one batch does not count. `None` when `a == b`
/// or when a side stopped answering (its CPU was busy with other work); an error when a CPU
/// cannot be pinned.
pub fn line_rtt(a: usize, b: usize) -> io::Result<Option<f64>> {
    if a == b {
        return Ok(None);
    }
    let me = nix::unistd::Pid::from_raw(0);
    let saved = nix::sched::sched_getaffinity(me).map_err(io::Error::from)?;
    crate::sys::cpu::pin_to(a)?;
    let line = Line(AtomicU64::new(0));
    let total = ROUNDS * u64::from(BATCHES);
    let best = std::thread::scope(|s| -> io::Result<Option<f64>> {
        let peer = s.spawn(|| -> io::Result<()> {
            crate::sys::cpu::pin_to(b)?;
            line.0.store(1, Ordering::Release); // here and pinned
            for i in 0..total {
                if !spin_until(&line.0, 4 * i + 2) {
                    line.0.store(u64::MAX, Ordering::Release);
                    return Ok(());
                }
                line.0.store(4 * i + 3, Ordering::Release);
            }
            Ok(())
        });
        let mut best: Option<f64> = None;
        let mut ok = spin_until(&line.0, 1);
        let mut i = 0u64;
        'batches: for _ in 0..BATCHES {
            if !ok {
                break;
            }
            let t = Instant::now();
            for _ in 0..ROUNDS {
                line.0.store(4 * i + 2, Ordering::Release);
                if !spin_until(&line.0, 4 * i + 3) {
                    ok = false;
                    break 'batches;
                }
                i += 1;
            }
            let ns = t.elapsed().as_nanos() as f64 / ROUNDS as f64;
            best = Some(best.map_or(ns, |x: f64| x.min(ns)));
        }
        if !ok {
            line.0.store(u64::MAX, Ordering::Release);
        }
        let peer = peer
            .join()
            .map_err(|_| io::Error::other("probe thread panicked"))?;
        peer?;
        Ok(if ok { best } else { None })
    });
    nix::sched::sched_setaffinity(me, &saved).map_err(io::Error::from)?;
    best
}

/// What one run learned of the placement, written to meta.json under `host_placement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementSummary {
    pub cpus: (usize, usize),
    /// The lowest round trip known on this boot when the run ended, ns.
    pub lowest_ns: Option<f64>,
    /// Measured trials probed, and of them those measured with the CPUs apart that used both
    /// CPUs ([`one_cpu`] trials are out of the placement's reach).
    pub trials: u32,
    pub trials_apart: u32,
    /// Trials measured with the CPUs apart that ran on the measured CPU alone.
    #[serde(default)]
    pub trials_apart_one_cpu: u32,
    /// The highest round trip of a measured trial, ns.
    pub highest_ns: Option<f64>,
    /// Time spent waiting for the CPUs to come back together (`--host-wait`), seconds.
    pub waited_s: f64,
    /// Waits that ran out with the CPUs still apart.
    pub waits_run_out: u32,
}

impl PlacementSummary {
    /// One line for the terminal when some trials were measured with the CPUs apart.
    pub fn warning(&self) -> Option<String> {
        if self.trials_apart == 0 {
            return None;
        }
        let (a, b) = self.cpus;
        let mut line = format!(
            "the host had CPUs {a} and {b} apart in {} of {} measured trials (a cache line's round trip up to {:.0} ns against {:.0} ns at best on this boot): traffic between them ran slower then",
            self.trials_apart,
            self.trials,
            self.highest_ns.unwrap_or(f64::NAN),
            self.lowest_ns.unwrap_or(f64::NAN),
        );
        if self.trials_apart_one_cpu > 0 {
            line.push_str(&format!(
                "; {} more measured apart ran on CPU {a} alone, out of its reach",
                self.trials_apart_one_cpu
            ));
        }
        if self.waited_s > 0.0 {
            line.push_str(&format!(
                "; waited {:.0} s for them ({} waits ran out)",
                self.waited_s, self.waits_run_out
            ));
        } else {
            line.push_str("; --host-wait makes trials wait for them");
        }
        Some(line)
    }
}

/// The lowest round trip known for a pair of CPUs on this boot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Known {
    boot_id: String,
    cpus: (usize, usize),
    lowest_ns: f64,
}

/// The placement of the measured CPUs over a run: probes, the lowest round trip known on this
/// boot, and the tally of trials measured apart.
pub struct Placement {
    cpus: (usize, usize),
    boot_id: Option<String>,
    store: Option<PathBuf>,
    summary: PlacementSummary,
    /// A wait ran out: later trials do not wait until the CPUs are seen together again.
    given_up: bool,
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// `placement.json` in the lab's cache directory.
fn store_path() -> Option<PathBuf> {
    crate::sys::host::cache_dir().map(|d| d.join("placement.json"))
}

impl Placement {
    /// For the CPU pair `cpus`, with the lowest round trip an earlier run of this boot saw.
    pub fn new(cpus: (usize, usize)) -> Self {
        let boot_id = boot_id();
        let store = store_path();
        let lowest_ns = store
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<Vec<Known>>(&b).ok())
            .and_then(|v| {
                v.into_iter()
                    .find(|k| Some(&k.boot_id) == boot_id.as_ref() && k.cpus == cpus)
            })
            .map(|k| k.lowest_ns);
        Placement {
            cpus,
            boot_id,
            store,
            summary: PlacementSummary {
                cpus,
                lowest_ns,
                ..Default::default()
            },
            given_up: false,
        }
    }

    /// Whether a round trip of `ns` is "apart" against the lowest known (never before a lowest
    /// is known, nor when it is the lowest).
    pub fn is_apart(&self, ns: f64) -> bool {
        self.summary
            .lowest_ns
            .is_some_and(|low| ns > APART_FACTOR * low)
    }

    /// Probes the round trip now and lowers the known lowest if it is lower (saved for later
    /// runs of this boot; a cache that cannot be written is not an error). `None` when the
    /// CPUs are one or the probe got no answer.
    pub fn probe(&mut self) -> Option<f64> {
        let ns = line_rtt(self.cpus.0, self.cpus.1).ok()??;
        if self.summary.lowest_ns.is_none_or(|low| ns < low) {
            self.summary.lowest_ns = Some(ns);
            self.save(ns);
        }
        Some(ns)
    }

    fn save(&self, ns: f64) {
        let (Some(path), Some(boot)) = (&self.store, &self.boot_id) else {
            return;
        };
        let mut all: Vec<Known> = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        // Entries of earlier boots say nothing about this one.
        all.retain(|k| &k.boot_id == boot && k.cpus != self.cpus);
        all.push(Known {
            boot_id: boot.clone(),
            cpus: self.cpus,
            lowest_ns: ns,
        });
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(b) = serde_json::to_vec_pretty(&all) {
            let tmp = path.with_extension("json.tmp");
            if std::fs::write(&tmp, b).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }

    /// Before a measured trial: probes, and while the CPUs are apart waits for them to come
    /// back, up to `wait` (probing every 250 ms; `should_stop` ends the wait early, for a
    /// signal). After a wait runs out, trials do not wait again until a probe finds the CPUs
    /// together. Returns the round trip the trial starts with.
    pub fn before_trial(&mut self, wait: Duration, should_stop: impl Fn() -> bool) -> Option<f64> {
        let mut ns = self.probe();
        let apart = ns.is_some_and(|x| self.is_apart(x));
        if !apart {
            self.given_up = false;
        }
        if wait.is_zero() || !apart || self.given_up {
            return ns;
        }
        let t = Instant::now();
        while ns.is_some_and(|x| self.is_apart(x)) && t.elapsed() < wait && !should_stop() {
            std::thread::sleep(Duration::from_millis(250));
            ns = self.probe().or(ns);
        }
        self.summary.waited_s += t.elapsed().as_secs_f64();
        if ns.is_some_and(|x| self.is_apart(x)) && t.elapsed() >= wait {
            self.summary.waits_run_out += 1;
            self.given_up = true;
        }
        ns
    }

    /// Tallies a measured trial that started with round trip `ns` (from [`before_trial`]) and
    /// returns its worst round trip and whether the CPUs were apart: at its start or at its
    /// end. A trial that ran on the measured CPU alone (`one_cpu`) is tallied apart from the
    /// others: the placement did not touch it.
    ///
    /// [`before_trial`]: Placement::before_trial
    pub fn after_trial(&mut self, start_ns: Option<f64>, one_cpu: bool) -> Option<(f64, bool)> {
        let end = self.probe();
        let worst = match (start_ns, end) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        let apart = self.is_apart(worst);
        self.summary.trials += 1;
        if one_cpu {
            self.summary.trials_apart_one_cpu += u32::from(apart);
        } else {
            self.summary.trials_apart += u32::from(apart);
        }
        self.summary.highest_ns = Some(self.summary.highest_ns.map_or(worst, |h| h.max(worst)));
        Some((worst, apart))
    }

    /// What the run learned so far.
    pub fn summary(&self) -> &PlacementSummary {
        &self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_cpu_has_no_round_trip() {
        assert_eq!(line_rtt(0, 0).unwrap(), None);
    }

    #[test]
    fn round_trip_between_two_cpus_is_measured() {
        if crate::sys::cpu::online_count() < 2 {
            return; // one CPU: nothing to measure between
        }
        let ns = line_rtt(0, 1).unwrap().expect("both CPUs answered");
        // A cache line crosses between cores in tens to hundreds of ns; a value outside
        // 5 ns..100 us means the loop timed something else.
        assert!((5.0..100_000.0).contains(&ns), "{ns} ns");
    }

    #[test]
    fn apart_is_relative_to_the_lowest_known() {
        let mut p = Placement {
            cpus: (0, 1),
            boot_id: None,
            store: None,
            summary: PlacementSummary::default(),
            given_up: false,
        };
        assert!(!p.is_apart(1000.0), "nothing known yet");
        p.summary.lowest_ns = Some(140.0);
        assert!(!p.is_apart(200.0));
        assert!(!p.is_apart(280.0));
        assert!(p.is_apart(420.0));
        let t = p.after_trial(Some(420.0), false);
        if crate::sys::cpu::online_count() >= 2 {
            let (worst, apart) = t.unwrap();
            assert!(worst >= 420.0 && apart);
            assert_eq!((p.summary.trials, p.summary.trials_apart), (1, 1));
            // Apart, but on the measured CPU alone: tallied on its own, and alone it warns of
            // nothing.
            let (_, apart) = p.after_trial(Some(420.0), true).unwrap();
            assert!(apart);
            let s = &p.summary;
            assert_eq!(
                (s.trials, s.trials_apart, s.trials_apart_one_cpu),
                (2, 1, 1)
            );
            assert!(
                s.warning()
                    .unwrap()
                    .contains("1 more measured apart ran on CPU 0 alone")
            );
            let alone = PlacementSummary {
                trials: 1,
                trials_apart_one_cpu: 1,
                ..Default::default()
            };
            assert_eq!(alone.warning(), None);
        }
    }

    #[test]
    fn a_trial_runs_on_one_cpu_only_without_peer_sqpoll_or_a_busy_other_cpu() {
        assert!(one_cpu(false, 0, Some(0.0)));
        assert!(one_cpu(false, 0, Some(ONE_CPU_BUSY_PCT)));
        assert!(!one_cpu(false, 0, Some(ONE_CPU_BUSY_PCT + 0.5)));
        assert!(!one_cpu(true, 0, Some(0.0)), "a peer thread");
        assert!(!one_cpu(false, 7, Some(0.0)), "an SQPOLL thread");
        assert!(!one_cpu(false, 0, None), "unknown: not alone");
    }
}
