//! `zclab placement`: where the host has the two measured CPUs now, before a run that needs
//! them together (docs/method.md, "Host placement").

use anyhow::{Result, bail};
use std::time::{Duration, Instant};
use zclab::measure::placement::{APART_FACTOR, Placement};
use zclab::sys::signal::Cancel;

/// Options of `zclab placement`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlacementArgs {
    /// The CPU pair: the measured thread's and the peer's, as the experiments' --cpus.
    #[arg(long, default_value = "0,1", value_parser = zclab::harness::parse_cpus)]
    pub cpus: (usize, usize),
    /// Probe every 250 ms for this long and print each change and the share of time the CPUs
    /// were together (e.g. 60s); without it, one probe.
    #[arg(long, value_parser = zclab::units::parse_duration)]
    pub watch: Option<Duration>,
}

fn state(p: &Placement, ns: f64) -> &'static str {
    if p.is_apart(ns) { "apart" } else { "together" }
}

/// Returns 0 when the CPUs are together at the end, 2 when apart; an error where they cannot
/// be probed (one CPU, or one this process may not run on).
pub fn run(args: &PlacementArgs) -> Result<i32> {
    let (a, b) = args.cpus;
    if a == b {
        bail!("--cpus {a},{b}: one CPU has no round trip; name two");
    }
    let mut p = Placement::new(args.cpus);
    let Some(mut ns) = p.probe() else {
        bail!(
            "CPUs {a} and {b}: the probe got no answer (is each online and allowed to this process?)"
        );
    };
    let lowest = |p: &Placement| p.summary().lowest_ns.unwrap_or(f64::NAN);
    println!(
        "CPUs {a},{b}: cache-line round trip {ns:.0} ns, lowest this boot {:.0} ns: {} (apart above {APART_FACTOR}x the lowest)",
        lowest(&p),
        state(&p, ns)
    );
    if let Some(watch) = args.watch {
        let cancel = Cancel::install();
        let t0 = Instant::now();
        let (mut last, mut since) = (state(&p, ns), Instant::now());
        // Time apart, added up at each change and at the end; the rest of the watch was together.
        let mut apart = Duration::ZERO;
        let mut close = |last: &str, since: Instant| {
            if last == "apart" {
                apart += since.elapsed();
            }
        };
        while t0.elapsed() < watch && !cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(250));
            let Some(x) = p.probe() else { continue };
            ns = x;
            let now = state(&p, ns);
            if now != last {
                println!(
                    "{:7.1} s  {now:<8} {ns:.0} ns (was {last} for {:.1} s)",
                    t0.elapsed().as_secs_f64(),
                    since.elapsed().as_secs_f64()
                );
                close(last, since);
                (last, since) = (now, Instant::now());
            }
        }
        close(last, since);
        let all = t0.elapsed().as_secs_f64().max(1e-9);
        let apart = apart.as_secs_f64().min(all);
        println!(
            "over {all:.0} s: together {:.0}% of the time, apart {:.0}% (lowest {:.0} ns)",
            100.0 * (all - apart) / all,
            100.0 * apart / all,
            lowest(&p)
        );
        if cancel.is_cancelled() {
            return Ok(130);
        }
    }
    Ok(if p.is_apart(ns) { 2 } else { 0 })
}
