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
use crate::measure::{Recorder, Stamp, Usage};
use crate::net::{Conn, Got};
use crate::sys::signal::Cancel;
use anyhow::Result;

/// The most flows one trial opens.
pub const MAX_FLOWS: u64 = 64;

/// The options of an experiment that runs many flows.
#[derive(clap::Args, Debug, Clone)]
pub struct FlowArgs {
    /// Connections per trial, comma-separated to sweep (1 to 64); each flow has a receiver of
    /// its own and sends --bytes (at most --max-messages messages). Above 1, the points gain
    /// `flows` and `threads`, and the rows per-flow rates and their fairness.
    #[arg(long, default_value = "1", value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..=MAX_FLOWS))]
    pub flows: Vec<u64>,
    /// Measured threads sending over the flows (flow i on thread i mod T); at most the fewest
    /// --flows. With io_uring each flow has its own ring.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_FLOWS))]
    pub threads: u64,
    /// CPUs of the sending threads, comma-separated, thread j on the (j mod len)-th (default:
    /// the sender CPU of --cpus).
    #[arg(long, value_delimiter = ',', value_parser = cpu_arg)]
    pub flow_cpus: Vec<usize>,
    /// CPUs of the flows' receivers, comma-separated, flow i's on the (i mod len)-th (default:
    /// the peer CPU of --cpus).
    #[arg(long, value_delimiter = ',', value_parser = cpu_arg)]
    pub peer_cpus: Vec<usize>,
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
    /// Whether any point runs more than one flow (the points then carry flows and threads).
    pub fn many(&self) -> bool {
        self.flows.iter().any(|&f| f > 1) || self.threads > 1
    }

    /// The bad combinations, as the one line the user sees.
    pub fn check(&self) -> Result<(), String> {
        let fewest = self.flows.iter().copied().min().unwrap_or(1);
        if self.threads > fewest {
            return Err(format!(
                "--threads {} is more than --flows {fewest}: every thread needs a flow of its own",
                self.threads
            ));
        }
        Ok(())
    }

    /// Sender thread `j`'s CPU (`sender` when --flow-cpus is not given).
    pub fn thread_cpu(&self, j: usize, sender: usize) -> usize {
        pick(&self.flow_cpus, j).unwrap_or(sender)
    }

    /// Flow `i`'s receiver CPU (`peer` when --peer-cpus is not given).
    pub fn peer_cpu(&self, i: usize, peer: usize) -> usize {
        pick(&self.peer_cpus, i).unwrap_or(peer)
    }
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

/// Jain's fairness index of `xs`; None when there is nothing to compare (no flow, or none
/// moved anything).
pub fn jain(xs: &[f64]) -> Option<f64> {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    (squares > 0.0).then(|| sum * sum / (xs.len() as f64 * squares))
}

/// The sum of several receivers' usage (each measured in its own thread).
pub fn total_usage(us: impl IntoIterator<Item = Usage>) -> Usage {
    us.into_iter().fold(Usage::default(), |a, b| Usage {
        user_ns: a.user_ns + b.user_ns,
        sys_ns: a.sys_ns + b.sys_ns,
        vcsw: a.vcsw + b.vcsw,
        ivcsw: a.ivcsw + b.ivcsw,
        minflt: a.minflt + b.minflt,
        majflt: a.majflt + b.majflt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn flows_spread_over_threads_round_robin() {
        let t0: Vec<usize> = owned(5, 2, 0).collect();
        let t1: Vec<usize> = owned(5, 2, 1).collect();
        assert_eq!((t0, t1), (vec![0, 2, 4], vec![1, 3]));
        assert_eq!(owned(1, 1, 0).collect::<Vec<_>>(), vec![0]);
    }
}
