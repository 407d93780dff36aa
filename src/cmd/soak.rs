//! `zclab soak`: long runs that prove nothing is lost. Each experiment runs as one process for
//! the given time (ended with SIGINT, which the lab records as an interrupt and flushes), its
//! resident memory sampled every few seconds; afterwards every row must be intact: zero
//! corrupted bytes (integrity), zero missing zero-copy notifications, and memory flat.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zclab::results::{Status, row::parse_jsonl};
use zclab::sys::signal::Cancel;

/// Options of `zclab soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Minutes per experiment.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Where the run directory is created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 5.0)]
    pub sample_every: f64,
}

/// What one soaked experiment showed.
#[derive(Debug, Clone, Serialize)]
pub struct SoakOutcome {
    pub experiment: String,
    pub args: Vec<String>,
    pub seconds: f64,
    pub trials_ok: usize,
    pub trials_failed: usize,
    pub bytes_checked: u64,
    pub zc_sends: u64,
    pub zc_notifications_missing: i64,
    /// Resident set size samples (KiB), after the first minute's growth.
    pub rss_first_kib: u64,
    pub rss_last_kib: u64,
    pub rss_max_kib: u64,
    pub rss_samples: usize,
    pub verdict: String,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn soak_one(
    bin_dir: &Path,
    run_dir: &Path,
    experiment: &str,
    args: &[&str],
    secs: f64,
    sample: f64,
    cancel: Cancel,
) -> Result<SoakOutcome> {
    let mut child = Command::new(bin_dir.join(experiment))
        .args(args)
        .arg("--run-dir")
        .arg(run_dir)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {experiment}"))?;
    let pid = child.id();
    let t0 = Instant::now();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    while t0.elapsed().as_secs_f64() < secs {
        if let Some(st) = child.try_wait()? {
            bail!("{experiment} ended early with {st}");
        }
        if cancel.is_cancelled() {
            break;
        }
        if let Some(r) = rss_kib(pid) {
            samples.push((t0.elapsed().as_secs_f64(), r));
        }
        std::thread::sleep(Duration::from_secs_f64(
            sample.min(secs - t0.elapsed().as_secs_f64()).max(0.05),
        ));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let st = child.wait()?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    if st.code() != Some(130) && !st.success() {
        bail!(
            "{experiment} exited with {st}: {}",
            err.lines().last().unwrap_or("")
        );
    }
    let dir = run_dir.join(experiment);
    let rows = parse_jsonl(&std::fs::read_to_string(dir.join("summary.jsonl"))?)
        .map_err(|e| anyhow::anyhow!(e))?;
    let ok: Vec<_> = rows.iter().filter(|r| r.status == Status::Ok).collect();
    let failed = rows.iter().filter(|r| r.status == Status::Error).count();
    let bytes: u64 = ok
        .iter()
        .filter_map(|r| r.integrity.as_ref())
        .map(|i| i.bytes_got)
        .sum();
    // One MSG_ZEROCOPY notification can cover a range of sends: compare ids, not messages.
    let (sends, notifs) = ok
        .iter()
        .filter_map(|r| r.metrics.as_ref()?.zc.as_ref())
        .fold((0u64, 0u64), |a, z| (a.0 + z.sends, a.1 + z.ids_completed));
    // Memory after the first minute (allocator and page-cache warm-up) to the end.
    let steady: Vec<u64> = samples
        .iter()
        .filter(|(t, _)| *t >= 60f64.min(secs / 4.0))
        .map(|s| s.1)
        .collect();
    let (first, last, max) = (
        steady.first().copied().unwrap_or(0),
        steady.last().copied().unwrap_or(0),
        steady.iter().copied().max().unwrap_or(0),
    );
    let flat = first > 0 && (last as f64) <= first as f64 * 1.05 + 1024.0;
    let good = failed == 0 && !ok.is_empty() && sends == notifs && flat;
    Ok(SoakOutcome {
        experiment: experiment.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        seconds: t0.elapsed().as_secs_f64(),
        trials_ok: ok.len(),
        trials_failed: failed,
        bytes_checked: bytes,
        zc_sends: sends,
        zc_notifications_missing: sends as i64 - notifs as i64,
        rss_first_kib: first,
        rss_last_kib: last,
        rss_max_kib: max,
        rss_samples: samples.len(),
        verdict: if good {
            "pass".into()
        } else {
            format!(
                "FAIL (failed trials {failed}, missing notifications {}, rss {first} -> {last} KiB)",
                sends as i64 - notifs as i64
            )
        },
    })
}

/// Runs the soak; returns the outcomes and a Markdown table.
pub fn run(args: &SoakArgs) -> Result<(Vec<SoakOutcome>, String)> {
    if args.minutes.is_nan() || args.minutes <= 0.0 {
        bail!("--minutes must be greater than 0");
    }
    let cancel = Cancel::install();
    let caps = zclab::caps::probe(Path::new("."));
    let run_dir = zclab::results::create_run_dir(
        &args.results,
        &caps.hostname,
        &format!("{}-soak", caps.kernel.release),
    )?;
    let secs = args.minutes * 60.0;
    let bin = super::run::bin_dir();
    let root = caps.privileges.root;
    let paths = if root {
        "tcp-loopback,udp-sink"
    } else {
        "tcp-loopback"
    };
    let plan: Vec<(&str, Vec<&str>)> = vec![
        (
            "net_send",
            vec![
                "--variants",
                "classic-send-msg-zerocopy,uring-send-zc,uring-send-zc-fixed",
                "--paths",
                paths,
                "--sizes",
                "4KiB,64KiB",
                "--pool",
                "2",
                "--inflight",
                "2",
                "--repeat",
                "2",
                "--warmup",
                "0",
                "--rounds",
                "1000000",
            ],
        ),
        (
            "file_to_socket",
            vec![
                "--sizes",
                "64MiB",
                "--chunks",
                "4KiB,256KiB",
                "--pool",
                "2",
                "--repeat",
                "1",
                "--warmup",
                "0",
                "--rounds",
                "1000000",
            ],
        ),
    ];
    let mut out = Vec::new();
    for (exp, a) in &plan {
        eprintln!("soak: {exp} for {:.1} min", args.minutes);
        out.push(soak_one(
            &bin,
            &run_dir,
            exp,
            a,
            secs,
            args.sample_every,
            cancel,
        )?);
        if cancel.is_cancelled() {
            break;
        }
    }
    let mut md = format!(
        "zclab soak, {:.1} min per experiment, on {} ({}): `{}`\n\n",
        args.minutes,
        caps.hostname,
        caps.kernel.release,
        run_dir.display()
    );
    md.push_str("| experiment | trials ok | failed | bytes checked | zero-copy sends | notifications missing | RSS after 1 min -> end (max) | verdict |\n|---|---|---|---|---|---|---|---|\n");
    for o in &out {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} GiB | {} | {} | {} -> {} KiB ({}) | {} |",
            o.experiment,
            o.trials_ok,
            o.trials_failed,
            o.bytes_checked as f64 / (1u64 << 30) as f64,
            o.zc_sends,
            o.zc_notifications_missing,
            o.rss_first_kib,
            o.rss_last_kib,
            o.rss_max_kib,
            o.verdict
        );
    }
    zclab::results::atomic_write(&run_dir.join("soak.md"), md.as_bytes())?;
    zclab::results::atomic_write(
        &run_dir.join("soak.json"),
        serde_json::to_string_pretty(&out)?.as_bytes(),
    )?;
    Ok((out, md))
}
