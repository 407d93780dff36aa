//! Many flows: `--flows N` TCP connections, each to a receiver of its own, sent over by
//! `--threads T` measured threads; flow `i` belongs to thread `i mod T`. A thread sends
//! message `seq` to each of its live flows in turn (a blocking send(2), a MSG_ZEROCOPY send,
//! or one io_uring send in flight per flow), so its flows advance together, as on a server
//! that serves its connections round-robin. A flow whose send fails (its receiver died) leaves
//! the rotation with its error; the other flows go on and the trial records them.
//!
//! Figures: the aggregate rate (every flow's bytes over the trial's wall time, as iperf3 -P
//! and neper sum), each flow's own rate (its bytes over the time from the start until its
//! receiver had all of them), and Jain's fairness index over those rates,
//! (sum x)^2 / (n * sum x^2): 1 when every flow got the same, 1/n when one got everything
//! (R. Jain, D. Chiu, W. Hawe, DEC-TR-301, 1984).

use super::send::Sender;
use crate::harness::{Done, Trial};
use crate::measure::{Recorder, Stamp, Usage};
use crate::net::{Conn, Got};
use crate::results::Integrity;
use crate::sys::signal::Cancel;
use anyhow::{Context, Result};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

/// The most flows one trial opens.
pub const MAX_FLOWS: u64 = 64;

/// The options of an experiment that runs many flows.
#[derive(clap::Args, Debug, Clone)]
pub struct FlowArgs {
    /// Connections per trial, comma-separated to sweep (1 to 64), or `sweep`: 1, 2, 4, ... up
    /// to the CPUs this machine has. Each flow has a receiver of its own and sends --bytes (at
    /// most --max-messages messages). Above 1, the points gain `flows` and `threads`, and the
    /// rows per-flow rates and their fairness.
    #[arg(long, default_value = "1", value_delimiter = ',', value_parser = flows_arg)]
    pub flows: Vec<Count>,
    /// Measured threads sending over the flows (flow i on thread i mod T), at most the fewest
    /// --flows; `flows`: one thread per flow. With io_uring each flow has its own ring.
    #[arg(long, default_value = "1", value_parser = threads_arg)]
    pub threads: Count,
    /// CPUs of the sending threads, comma-separated, thread j on the (j mod len)-th (default:
    /// every other CPU from the sender CPU of --cpus: thread j on sender + 2j, wrapping).
    #[arg(long, value_delimiter = ',', value_parser = cpu_arg)]
    pub flow_cpus: Vec<usize>,
    /// CPUs of the flows' receivers, comma-separated, flow i's on the (i mod len)-th (default:
    /// every other CPU from the peer CPU of --cpus: flow i's on peer + 2i, wrapping).
    #[arg(long, value_delimiter = ',', value_parser = cpu_arg)]
    pub peer_cpus: Vec<usize>,
}

/// A number of flows or threads, or the word that sizes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    N(u64),
    /// `--flows sweep`: 1, 2, 4, ... up to the CPUs present.
    Sweep,
    /// `--threads flows`: as many threads as flows.
    PerFlow,
}

fn count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_FLOWS).contains(&n) => Ok(n),
        _ => Err(format!("'{s}': expected a count from 1 to {MAX_FLOWS}")),
    }
}

fn flows_arg(s: &str) -> Result<Count, String> {
    match s.trim() {
        "sweep" => Ok(Count::Sweep),
        _ => count(s).map(Count::N).map_err(|e| format!("{e}, or sweep")),
    }
}

fn threads_arg(s: &str) -> Result<Count, String> {
    match s.trim() {
        "flows" => Ok(Count::PerFlow),
        _ => count(s).map(Count::N).map_err(|e| format!("{e}, or flows")),
    }
}

/// A CPU number this machine has.
fn cpu_arg(s: &str) -> Result<usize, String> {
    let n = crate::sys::cpu::online_count();
    match s.trim().parse::<usize>() {
        Ok(c) if c < n => Ok(c),
        Ok(c) => Err(format!("CPU {c} does not exist here ({n} CPUs)")),
        Err(_) => Err(format!("'{s}' is not a CPU number")),
    }
}

impl FlowArgs {
    /// The flow counts of the points, each once, in order (`sweep` expanded).
    pub fn counts(&self) -> Vec<u64> {
        let cpus = (crate::sys::cpu::online_count() as u64).clamp(1, MAX_FLOWS);
        let mut out = Vec::new();
        for c in &self.flows {
            let more: Vec<u64> = match c {
                Count::N(n) => vec![*n],
                _ => std::iter::successors(Some(1u64), |x| Some(x * 2))
                    .take_while(|&x| x <= cpus)
                    .collect(),
            };
            for n in more {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }

    /// The measured threads of a point with `flows` flows.
    pub fn threads_for(&self, flows: u64) -> u64 {
        match self.threads {
            Count::N(t) => t,
            _ => flows,
        }
    }

    /// Whether any point runs more than one flow or thread (the points then carry flows and
    /// threads).
    pub fn many(&self) -> bool {
        self.counts()
            .iter()
            .any(|&f| f > 1 || self.threads_for(f) > 1)
    }

    /// The bad combinations, as the one line the user sees.
    pub fn check(&self) -> Result<(), String> {
        let fewest = self.counts().into_iter().min().unwrap_or(1);
        if let Count::N(t) = self.threads {
            if t > fewest {
                return Err(format!(
                    "--threads {t} is more than --flows {fewest}: every thread needs a flow of its own"
                ));
            }
        }
        Ok(())
    }

    /// What meta.json records of these options.
    pub fn parameters(&self) -> serde_json::Value {
        serde_json::json!({
            "flows": self.counts(),
            "threads": match self.threads { Count::N(t) => t.to_string(), _ => "flows".into() },
            "flow_cpus": self.flow_cpus,
            "peer_cpus": self.peer_cpus,
            "cpus_online": crate::sys::cpu::online_count(),
        })
    }

    /// Sender thread `j`'s CPU: from --flow-cpus, else every other CPU from `sender`.
    pub fn thread_cpu(&self, j: usize, sender: usize) -> usize {
        pick(&self.flow_cpus, j).unwrap_or_else(|| spread(sender, j))
    }

    /// Flow `i`'s receiver CPU: from --peer-cpus, else every other CPU from `peer`.
    pub fn peer_cpu(&self, i: usize, peer: usize) -> usize {
        pick(&self.peer_cpus, i).unwrap_or_else(|| spread(peer, i))
    }
}

/// The `k`-th of every other CPU from `first`, wrapping at the CPUs present: on two CPUs it
/// is always `first`, so senders and receivers keep their own CPU.
fn spread(first: usize, k: usize) -> usize {
    (first + 2 * k) % crate::sys::cpu::online_count().max(1)
}

/// Runs `f` on `cpu`, then puts the calling thread back on `home`.
pub fn on_cpu<R>(cpu: usize, home: usize, f: impl FnOnce() -> Result<R>) -> Result<R> {
    if cpu == home {
        return f();
    }
    crate::sys::cpu::pin_to(cpu)?;
    let r = f();
    crate::sys::cpu::pin_to(home)?;
    r
}

fn pick(list: &[usize], i: usize) -> Option<usize> {
    (!list.is_empty()).then(|| list[i % list.len()])
}

/// One flow: its connection and its sender, both set up before the clock.
pub struct Flow {
    pub conn: Conn,
    pub sender: Sender,
}

/// How one flow ended inside the measured part.
pub struct FlowEnd {
    /// The receiver's account, or why the flow failed.
    pub got: Result<Option<Got>>,
    /// Messages the kernel accepted in full.
    pub sent: u64,
    /// Nanoseconds from the trial's start until the flow ended.
    pub ns: u64,
}

/// The flows of thread `which` of `threads`, as indices among `n` flows.
pub fn owned(n: usize, threads: usize, which: usize) -> impl Iterator<Item = usize> {
    (which..n).step_by(threads.max(1))
}

/// One thread's part: message `seq` to each of its live `flows` in turn, `msgs` messages each
/// (one latency sample per message into `rec`), then each flow's end (notifications drained,
/// stream ended, the receiver's account). Errors only when the run was cancelled: a failed
/// flow is an `Err` in its [`FlowEnd`].
pub fn run_thread(
    flows: &mut [&mut Flow],
    msgs: u64,
    rec: &mut Recorder,
    start: Stamp,
    cancel: Cancel,
) -> Result<Vec<FlowEnd>> {
    let clock = *rec.clock();
    let since = |c: &crate::measure::Clock| c.ns_between(start, c.now());
    let mut ends: Vec<Option<FlowEnd>> = flows.iter().map(|_| None).collect();
    let mut sent = vec![0u64; flows.len()];
    for seq in 0..msgs {
        let mut live = 0;
        for (i, f) in flows.iter_mut().enumerate() {
            if ends[i].is_some() {
                continue;
            }
            live += 1;
            match f.sender.send_one(&mut f.conn, seq, rec) {
                Ok(()) => sent[i] += 1,
                Err(e) => {
                    if cancel.is_cancelled() {
                        return Err(e);
                    }
                    let got = Err(e.context(format!("message {seq}")));
                    ends[i] = Some(FlowEnd {
                        got,
                        sent: sent[i],
                        ns: since(&clock),
                    });
                }
            }
        }
        if live == 0 {
            break;
        }
    }
    for (i, f) in flows.iter_mut().enumerate() {
        if ends[i].is_none() {
            let got = f.sender.end(&mut f.conn);
            if got.is_err() && cancel.is_cancelled() {
                return got.map(|_| Vec::new());
            }
            ends[i] = Some(FlowEnd {
                got,
                sent: sent[i],
                ns: since(&clock),
            });
        }
    }
    Ok(ends.into_iter().flatten().collect())
}

/// The measured part of a trial on `cpus.len()` threads: thread j (the calling thread for
/// j = 0, pinned to `cpus[j]` for the time of the trial) builds its state from `groups[j]`
/// with `make` (outside the clock, in the thread that will use it: a ring with SINGLE_ISSUER
/// takes submissions only from the thread that made it; `first` sees the calling thread's),
/// then all start together and each runs `work` on its state with its own recorder and the
/// common start. `done` sums what they did for [`Trial::measure`]; the threads' latency
/// samples are merged into the trial's histogram. Returns each thread's state and result, in
/// thread order. A thread that cannot set up stops the others before they start.
#[allow(clippy::too_many_arguments)]
pub fn measure_parallel<G: Send, S: Send, R: Send>(
    t: &mut Trial,
    step: &str,
    groups: Vec<G>,
    cpus: &[usize],
    make: impl Fn(G) -> Result<S> + Sync,
    first: impl FnOnce(&S, &mut Trial),
    work: impl Fn(&mut S, &mut Recorder, Stamp) -> Result<R> + Sync,
    done: impl Fn(&[(S, R)]) -> Done,
) -> Result<Vec<(S, R)>> {
    let (clock, home) = (t.clock, t.cpus.0);
    let mut groups = groups.into_iter();
    let mut mine = Some(make(groups.next().context("no thread")?)?);
    first(mine.as_ref().expect("made"), t);
    let ready = Barrier::new(cpus.len());
    let abort = AtomicBool::new(false);
    let mut out: Vec<(S, R)> = Vec::new();
    on_cpu(cpus[0], home, || {
        std::thread::scope(|s| -> Result<()> {
            let (ready, abort, make, work) = (&ready, &abort, &make, &work);
            let others: Vec<_> = groups
                .zip(&cpus[1..])
                .map(|(g, &cpu)| {
                    s.spawn(move || -> Result<_> {
                        let built = crate::sys::cpu::pin_to(cpu)
                            .map_err(anyhow::Error::from)
                            .and_then(|()| make(g));
                        if built.is_err() {
                            abort.store(true, Ordering::Release);
                        }
                        ready.wait(); // set up
                        ready.wait(); // the calling thread's clock started
                        let mut g = built?;
                        if abort.load(Ordering::Acquire) {
                            return Ok(None);
                        }
                        let reads0 = crate::measure::clock::readings();
                        let mut r = Recorder::new(clock);
                        let start = r.now();
                        let res = work(&mut g, &mut r, start)?;
                        let reads = crate::measure::clock::readings() - reads0;
                        Ok(Some((g, res, r.take(), reads)))
                    })
                })
                .collect();
            ready.wait();
            let go = !abort.load(Ordering::Acquire);
            let mut started = false;
            // The clock readings of the other threads: the harness counts the calling
            // thread's only.
            let mut other_reads = 0u64;
            let r = t.measure(step, |rec| {
                let start = rec.now();
                ready.wait();
                started = true;
                if !go {
                    anyhow::bail!("a thread of the trial could not set up");
                }
                let mut g = mine.take().expect("made once");
                let res = work(&mut g, rec, start)?;
                out.push((g, res));
                for h in others {
                    if let Some((g, res, hist, reads)) =
                        h.join().expect("a thread of the trial panicked")?
                    {
                        rec.absorb(&hist);
                        other_reads += reads;
                        out.push((g, res));
                    }
                }
                Ok(done(&out))
            });
            if !started {
                // The harness failed before the clock started: release the waiting threads.
                abort.store(true, Ordering::Release);
                ready.wait();
            }
            if let Some(m) = t.metrics().filter(|m| m.ops > 0) {
                let (ops, x) = (m.ops as f64, &m.extra);
                if let Some(&per_op) = x.get("clock_reads_per_op") {
                    let per_op = (per_op * ops + other_reads as f64) / ops;
                    t.set_extra("clock_reads_per_op", per_op);
                    t.set_extra("clock_ns_per_op", per_op * t.clock.read_ns());
                }
            }
            r
        })
    })?;
    Ok(out)
}

/// A sending thread's flows and how each ended.
type ThreadEnd = (Vec<(usize, Flow)>, Vec<FlowEnd>);

/// The measured part of a trial of several flows on `cpus.len()` threads ([`measure_parallel`]):
/// thread j makes its flows from `groups[j]` with `make`, then sends [`Trial::measure`]'s
/// messages round-robin over them ([`run_thread`]); `msg_bytes` per message. Returns every
/// flow with how it ended, in flow order.
pub fn measure_threads<C: Send>(
    t: &mut Trial,
    step: &str,
    groups: Vec<Vec<(usize, C)>>,
    cpus: &[usize],
    make: impl Fn(Vec<(usize, C)>) -> Result<Vec<(usize, Flow)>> + Sync,
    msgs: u64,
    msg_bytes: u64,
) -> Result<Vec<(Flow, FlowEnd)>> {
    let n: usize = groups.iter().map(Vec::len).sum();
    let cancel = t.cancel();
    let first = |g: &Vec<(usize, Flow)>, t: &mut Trial| {
        if let Some(flags) = g.first().and_then(|(_, f)| f.sender.ring_flags()) {
            t.set_ring(flags);
        }
    };
    let work = |g: &mut Vec<(usize, Flow)>, rec: &mut Recorder, start: Stamp| {
        let mut refs: Vec<&mut Flow> = g.iter_mut().map(|(_, f)| f).collect();
        run_thread(&mut refs, msgs, rec, start, cancel)
    };
    let done = |ends: &[ThreadEnd]| {
        let sent: u64 = ends.iter().flat_map(|(_, e)| e).map(|e| e.sent).sum();
        Done {
            bytes: sent * msg_bytes,
            ops: sent,
        }
    };
    let ran = measure_parallel(t, step, groups, cpus, make, first, work, done)?;
    let mut out: Vec<Option<(Flow, FlowEnd)>> = (0..n).map(|_| None).collect();
    for (g, e) in ran {
        for ((i, f), end) in g.into_iter().zip(e) {
            out[i] = Some((f, end));
        }
    }
    out.into_iter()
        .map(|f| f.context("a flow without an end"))
        .collect()
}

/// What a trial of several flows found, flow by flow, after the clock: gathered with
/// [`Tally::flow`], [`Tally::failed`] and [`Tally::receiver`], then turned into the row's
/// integrity and figures.
#[derive(Default)]
pub struct Tally {
    /// Each flow's own rate (GB/s), in flow order.
    rates: Vec<f64>,
    /// Each failed flow, as "flow i: why".
    failures: Vec<String>,
    /// The first delivered flow's check (all flows are checked the same way).
    first: Option<Integrity>,
    /// The receivers' CPU time, each measured in its own thread.
    peers: Vec<Usage>,
}

impl Tally {
    /// Flow `i` moved `bytes` in `ns` from the trial's start; `check` is its receiver's check,
    /// or why it failed.
    pub fn flow(&mut self, i: usize, bytes: u64, ns: u64, check: Result<Integrity, String>) {
        self.rates.push(crate::units::gbps(bytes, ns.max(1)));
        match check {
            Ok(c) => {
                if !c.ok {
                    let why = format!("expected {}, got {}", c.expected, c.got);
                    self.failures.push(format!("flow {i}: {why}"));
                }
                self.first.get_or_insert(c);
            }
            Err(why) => self.failures.push(format!("flow {i}: {why}")),
        }
    }

    /// A delivered flow's receiver used `u`.
    pub fn receiver(&mut self, u: Usage) {
        self.peers.push(u);
    }

    /// The receivers' CPU time together.
    pub fn receivers(&self) -> Usage {
        total_usage(self.peers.iter().copied())
    }

    /// The row's integrity: ok when every flow's stream arrived intact; otherwise the failed
    /// flows, each named with why. `bytes_expected`: all flows' bytes; `bytes_got`: what the
    /// flows sent in full.
    pub fn integrity(&self, bytes_expected: u64, bytes_got: u64) -> Integrity {
        let n = self.rates.len();
        let first = self.first.clone().unwrap_or_default();
        let f = &self.failures;
        Integrity {
            ok: f.is_empty() && self.first.is_some(),
            method: format!("per flow, {n} flows: {}", first.method),
            expected: format!("{n} flows, each {}", first.expected),
            got: if f.is_empty() {
                format!("{n} flows, each as expected")
            } else {
                format!("{} of {n} flows failed: {}", f.len(), f.join("; "))
            },
            bytes_expected,
            bytes_got,
        }
    }

    /// The row's figures: `flows`, `threads`, `flows_failed`, each flow's `flow<i>_gbps`, the
    /// slowest and fastest (`flow_gbps_min`, `flow_gbps_max`) and `jain_fairness`.
    pub fn figures(&self, threads: usize) -> Vec<(String, f64)> {
        let r = &self.rates;
        let mut x = vec![
            ("flows".to_string(), r.len() as f64),
            ("threads".to_string(), threads as f64),
            ("flows_failed".to_string(), self.failures.len() as f64),
            (
                "flow_gbps_min".to_string(),
                r.iter().copied().fold(f64::INFINITY, f64::min),
            ),
            (
                "flow_gbps_max".to_string(),
                r.iter().copied().fold(0.0, f64::max),
            ),
        ];
        x.extend(
            r.iter()
                .enumerate()
                .map(|(i, &g)| (format!("flow{i}_gbps"), g)),
        );
        if let Some(j) = jain(r) {
            x.push(("jain_fairness".to_string(), j));
        }
        x
    }
}

/// Jain's fairness index of `xs`; None when there is nothing to compare (no flow, or none
/// moved anything).
pub fn jain(xs: &[f64]) -> Option<f64> {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    (squares > 0.0).then(|| sum * sum / (xs.len() as f64 * squares))
}

/// The sum of several receivers' usage (each measured in its own thread).
pub fn total_usage(us: impl IntoIterator<Item = Usage>) -> Usage {
    us.into_iter()
        .fold(Usage::default(), crate::net::peers::add_usage)
}

/// Adds one flow's peer-host figures (`peer_*` extras of its report) into `acc`: counts are
/// summed over the flows, `peer_wall_ns` is the longest, `peer_cpu` the first flow's.
pub fn add_peer_extras(
    acc: &mut std::collections::BTreeMap<&'static str, f64>,
    extras: &[(&'static str, f64)],
) {
    for &(k, v) in extras {
        match (k, acc.get_mut(k)) {
            (_, None) => {
                acc.insert(k, v);
            }
            ("peer_cpu", Some(_)) => {}
            ("peer_wall_ns", Some(a)) => *a = a.max(v),
            (_, Some(a)) => *a += v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Peer-host figures of several flows: counts summed, the longest wall time, the first
    /// flow's CPU.
    #[test]
    fn peer_extras_of_flows_add_up() {
        let mut acc = std::collections::BTreeMap::new();
        add_peer_extras(
            &mut acc,
            &[
                ("peer_vcsw", 3.0),
                ("peer_wall_ns", 10.0),
                ("peer_cpu", 1.0),
            ],
        );
        add_peer_extras(
            &mut acc,
            &[("peer_vcsw", 4.0), ("peer_wall_ns", 7.0), ("peer_cpu", 3.0)],
        );
        assert_eq!(acc["peer_vcsw"], 7.0);
        assert_eq!(acc["peer_wall_ns"], 10.0);
        assert_eq!(acc["peer_cpu"], 1.0);
    }

    #[test]
    fn jain_is_one_when_equal_and_one_over_n_when_one_takes_all() {
        assert_eq!(jain(&[2.0, 2.0, 2.0, 2.0]), Some(1.0));
        assert_eq!(jain(&[5.0, 0.0, 0.0, 0.0]), Some(0.25));
        let mid = jain(&[1.0, 3.0]).unwrap();
        assert!((mid - 0.8).abs() < 1e-12, "{mid}");
        assert_eq!(jain(&[]), None);
        assert_eq!(jain(&[0.0, 0.0]), None);
    }

    #[test]
    fn a_tally_names_the_failed_flows_and_keeps_the_others() {
        let ok = |h: &str| Integrity {
            ok: true,
            method: "xxh3".into(),
            expected: h.into(),
            got: h.into(),
            ..Default::default()
        };
        let mut t = Tally::default();
        t.flow(0, 1000, 1000, Err("reset by peer".into()));
        t.flow(1, 2000, 1000, Ok(ok("ab")));
        t.flow(
            2,
            2000,
            1000,
            Ok(Integrity {
                ok: false,
                got: "cd".into(),
                ..ok("ab")
            }),
        );
        let i = t.integrity(6000, 5000);
        assert!(!i.ok);
        assert_eq!(
            i.got,
            "2 of 3 flows failed: flow 0: reset by peer; flow 2: expected ab, got cd"
        );
        assert_eq!(i.method, "per flow, 3 flows: xxh3");
        let f: std::collections::BTreeMap<_, _> = t.figures(2).into_iter().collect();
        assert_eq!(
            (f["flows"], f["threads"], f["flows_failed"]),
            (3.0, 2.0, 2.0)
        );
        assert_eq!((f["flow_gbps_min"], f["flow_gbps_max"]), (1.0, 2.0));
        assert_eq!(f["flow1_gbps"], 2.0);
        let mut all = Tally::default();
        all.flow(0, 10, 10, Ok(ok("ab")));
        assert!(all.integrity(10, 10).ok);
        assert!(
            !Tally::default().integrity(0, 0).ok,
            "no flow delivered is no success"
        );
    }

    fn args(flows: &[Count], threads: Count) -> FlowArgs {
        FlowArgs {
            flows: flows.to_vec(),
            threads,
            flow_cpus: vec![],
            peer_cpus: vec![],
        }
    }

    #[test]
    fn sweeps_and_per_flow_threads() {
        let cpus = crate::sys::cpu::online_count() as u64;
        let a = args(&[Count::Sweep, Count::N(3)], Count::PerFlow);
        let c = a.counts();
        assert_eq!(c[0], 1);
        assert!(
            c.iter()
                .all(|&f| f == 3 || (f.is_power_of_two() && f <= cpus.max(1))),
            "{c:?}"
        );
        assert_eq!(a.threads_for(3), 3);
        assert!(a.check().is_ok() && a.many() == (cpus > 1 || c.contains(&3)));
        let one = args(&[Count::N(1)], Count::N(1));
        assert!(!one.many() && one.check().is_ok());
        let bad = args(&[Count::N(4), Count::N(2)], Count::N(3));
        assert_eq!(
            bad.check().unwrap_err(),
            "--threads 3 is more than --flows 2: every thread needs a flow of its own"
        );
        assert_eq!(bad.counts(), vec![4, 2]);
        assert!(flows_arg("sweep").is_ok() && flows_arg("0").is_err() && threads_arg("x").is_err());
    }

    #[test]
    fn flows_spread_over_threads_round_robin() {
        let t0: Vec<usize> = owned(5, 2, 0).collect();
        let t1: Vec<usize> = owned(5, 2, 1).collect();
        assert_eq!((t0, t1), (vec![0, 2, 4], vec![1, 3]));
        assert_eq!(owned(1, 1, 0).collect::<Vec<_>>(), vec![0]);
    }
}
