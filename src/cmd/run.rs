//! The suite runner behind `zclab run`: presets, one process per experiment into one run
//! directory, a progress display, the final summary and `report.md`.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zclab::results::{self, Outcome, Status, SuiteMeta, load_experiment, load_meta, load_rows};
use zclab::sys::signal::Cancel;

/// A preset: how much of the parameter space each experiment covers.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Every experiment at small sizes: the whole suite in under 5 minutes on 2 cores.
    Quick,
    /// The seeds' sizes and more repeats.
    Full,
    /// Exactly the points the published claims need (claims/claims.json), quick-style trials:
    /// at most 15 minutes on 2 cores; `zclab claims` judges the run.
    Claims,
}

/// Arguments every experiment gets in the claims preset: the quick preset's 200 ms trials, at
/// least 13 of them per point, more until the interval is within +-3% or 3 s of measured time
/// per point is spent. 6 is the fewest an interval decides on (`analysis::MIN_DECIDING`), but
/// with 6 to 8 the 95% interval of a median is the whole range, so one stray trial (an
/// interrupt, a page-cache hiccup) undecides a claim; with 13 it runs from the 3rd to the 11th
/// repeat, narrow enough that a claim a few percent from its threshold gets the same verdict
/// in two runs (two 9-repeat runs differed on 2 of 21 claims).
pub const CLAIMS_COMMON: &[&str] = &[
    "--duration",
    "200ms",
    "--repeat",
    "auto:13",
    "--point-budget",
    "3s",
];

/// The claims preset: the experiments the claims use and, per experiment, the options that
/// give every point a claim compares (the claim ids in the comments). Where an experiment's
/// points are cheap (its share of the run under a minute), 21 repeats: the interval
/// then runs from the 6th to the 16th; 30 (the most `auto` takes) for the O_DIRECT reads, whose virtual disk varies
/// most. Experiments with a peer thread on the other CPU wait up to a minute per trial for the
/// host to have the two CPUs together (`--host-wait`, docs/method.md "Host placement").
#[rustfmt::skip]
pub const CLAIMS_PRESET: &[(&str, &[&str])] = &[
    // seeds-copies (udp-sink, 63488 B datagrams), ibm-transferto (4 KiB read+write against
    // 256 KiB sendfile)
    ("file_to_socket", &["--host-wait", "60s", "--repeat", "auto:21", "--point-budget", "5s", "--paths", "tcp-loopback,udp-sink", "--sizes", "64MiB", "--chunks", "4KiB,256KiB",
        "--datagram", "63488", "--variants", "classic-read-write,classic-mmap-write,classic-sendfile,classic-splice",
        // seeds-copies counts the copies in each sender's profile.
        "--profile", "--profile-for", "100ms"]),
    // zc-loopback-copies, zc-10k (a size sweep), sendzc-rfc, sendzc-sizes (4000, 8000 B),
    // sendzc-veth, zc-batch-notif (reap 1 against 32)
    ("net_send", &["--host-wait", "60s", "--paths", "tcp-loopback,tcp-veth,udp-sink", "--sizes", "4000,8000,16KiB,32KiB,65507",
        "--reap-every", "1,32", "--bytes", "64MiB",
        "--variants", "classic-send,classic-send-msg-zerocopy,uring-send,uring-send-zc,uring-send-zc-fixed"]),
    // seeds-copyfile (3.8 MB and 394 MB, 1 B to 1 MiB), cfr-tmpfs (>= 256 MiB)
    ("file_copy", &["--sizes", "3.8MB,394MB", "--bufs", "1B,1KiB,64KiB,1MiB",
        "--variants", "classic-read-write,classic-mmap-write,classic-sendfile,classic-copy-file-range"]),
    // fixedbuf-direct (qd 32, O_DIRECT and buffered)
    ("storage_read", &["--repeat", "auto:30", "--point-budget", "7s", "--pattern", "rand", "--qd", "32", "--bs", "4KiB", "--runtime", "200ms",
        "--variants", "uring-read,uring-read-fixed"]),
    // splice-4k (a streaming size sweep)
    ("proxy", &["--host-wait", "60s", "--mode", "stream", "--sizes", "512,1KiB,2KiB,4KiB,8KiB,16KiB,64KiB", "--stream-bytes", "16MiB",
        "--variants", "classic-read-write,classic-splice"]),
    // tcp-mmap-4.18 (>= 256 KiB, a MSG_ZEROCOPY sender), multishot-recv-6.0 (64 KiB)
    ("net_recv", &["--host-wait", "60s", "--repeat", "auto:21", "--point-budget", "5s", "--paths", "tcp-loopback", "--sizes", "64KiB,256KiB", "--sender", "zerocopy", "--bytes", "64MiB",
        "--variants", "classic-recv,classic-recv-zerocopy,uring-recv,uring-recv-multishot"]),
    // afxdp-rx-vs-udp, afxdp-tx-vs-af-packet (64 B frames)
    ("packet_io", &["--host-wait", "60s", "--frame-sizes", "64", "--frames", "100000", "--duration", "1us", "--repeat", "13",
        "--variants", "classic-udp-recvmmsg,xdp-rx-native-busy-poll,classic-af-packet-tx-ring,xdp-tx-copy"]),
    // nop-rate
    ("syscall_floor", &["--batches", "1,32", "--ops", "64Ki", "--variants", "getppid,uring-nop"]),
];

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Quick => "quick",
            Preset::Full => "full",
            Preset::Claims => "claims",
        }
    }

    /// The preset's common arguments and `e`'s own; None when `e` is not part of it.
    fn args(self, e: &Entry) -> Option<(&'static [&'static str], &'static [&'static str])> {
        match self {
            Preset::Quick => Some((QUICK_COMMON, e.quick)),
            Preset::Full => Some((FULL_COMMON, e.full)),
            Preset::Claims => CLAIMS_PRESET
                .iter()
                .find(|(n, _)| *n == e.name)
                .map(|(_, a)| (CLAIMS_COMMON, *a)),
        }
    }
}

/// One experiment of the suite and its arguments per preset.
pub struct Entry {
    pub name: &'static str,
    pub quick: &'static [&'static str],
    pub full: &'static [&'static str],
}

/// Arguments every experiment gets in the quick preset: trials of at least 200 ms of measured
/// time, repeated until the headline figure's 95% interval is within +-3% or 1.2 s of measured
/// time per point is spent.
pub const QUICK_COMMON: &[&str] = &[
    "--duration",
    "200ms",
    "--repeat",
    "auto",
    "--point-budget",
    "1200ms",
    // Flame graphs and CPU buckets for every variant and point: ~500 samples each.
    "--profile",
    "--profile-for",
    "100ms",
];
/// The same for the full preset: 2 s trials, up to 12 of them per point.
pub const FULL_COMMON: &[&str] = &[
    "--duration",
    "2s",
    "--repeat",
    "auto",
    "--point-budget",
    "24s",
];

/// The suite, in the order it runs: one row per experiment (its question is in zclab::catalog)
/// and its options per
/// preset (after the preset's common arguments; the user's `--exp-args` override both). The
/// quick preset shows few points, each one trustworthy; the full preset sweeps.
#[rustfmt::skip]
pub const SUITE: &[Entry] = &[
    Entry {
        name: "file_to_socket",
        quick: &["--paths", "tcp-loopback,udp-sink", "--sizes", "64MiB", "--chunks", "64KiB"],
        // With a flow sweep sized to the CPUs present, one thread serving the flows in turn.
        full: &["--sizes", "1MiB,64MiB,1GiB", "--chunks", "4KiB,64KiB,256KiB,1MiB", "--flows", "sweep"],
    },
    Entry {
        name: "net_send",
        quick: &["--paths", "tcp-loopback,udp-sink", "--sizes", "4KiB,64KiB", "--reap-every", "1", "--bytes", "64MiB"],
        // A flow sweep sized to the CPUs present: 1, 2, 4, ... flows, one thread each.
        full: &["--sizes", "600,1200,4000,8000,1KiB,4KiB,8KiB,16KiB,32KiB,64KiB", "--bytes", "64MiB", "--flows", "sweep", "--threads", "flows"],
    },
    Entry {
        name: "net_recv",
        // 20 points: half the common point budget keeps its share of the suite near 20 s.
        quick: &["--paths", "tcp-loopback,tcp-veth", "--sizes", "64KiB,1MiB", "--bytes", "64MiB", "--point-budget", "600ms"],
        // With a flow sweep sized to the CPUs present: one receiving thread per flow.
        full: &["--sizes", "4KiB,16KiB,64KiB,256KiB,1MiB", "--copybuf", "4095,64KiB", "--bytes", "256MiB", "--flows", "sweep", "--threads", "flows"],
    },
    Entry {
        name: "file_copy",
        quick: &["--sizes", "64MiB", "--bufs", "64KiB"],
        // The seeds' three files, each copied once per trial: fixed sizes, not trials by time.
        full: &["--sizes", "3.8MB,394MB,800MB", "--duration", "1us", "--repeat", "5"],
    },
    Entry {
        name: "storage_read",
        quick: &["--pattern", "rand", "--runtime", "200ms"],
        full: &["--bs", "4KiB,64KiB", "--qd", "1,32", "--file-size", "1GiB"],
    },
    Entry {
        name: "mmap_read",
        quick: &["--sizes", "1MiB,64MiB", "--bufs", "64KiB"],
        full: &["--sizes", "5KB,1MiB,64MiB,1GiB", "--cache", "warm,cold"],
    },
    Entry {
        name: "socket_to_file",
        quick: &["--chunks", "64KiB", "--fsync", "none"],
        full: &["--sizes", "64MiB,1GiB", "--chunks", "4KiB,64KiB,1MiB", "--fsync", "none,end,every:16"],
    },
    Entry {
        name: "proxy",
        quick: &["--sizes", "4KiB,64KiB", "--requests", "3000", "--stream-bytes", "16MiB"],
        full: &["--sizes", "512,1KiB,2KiB,4KiB,8KiB,16KiB,32KiB,64KiB", "--requests", "50000"],
    },
    Entry {
        name: "rr",
        quick: &["--paths", "tcp-loopback", "--sizes", "64,4KiB", "--transactions", "500", "--rate", "10000", "--duration", "100ms", "--point-budget", "600ms"],
        full: &["--sizes", "64,1KiB,4KiB,16KiB", "--transactions", "5000", "--rate", "10000"],
    },
    Entry {
        name: "gather_write",
        quick: &["--parts", "8", "--part-size", "64,16KiB"],
        full: &["--parts", "2,4,8,16,32,64", "--part-size", "64,256,1KiB,4KiB,16KiB"],
    },
    Entry {
        name: "packet_io",
        // One pass of 100k frames per trial, 3 trials: ~20 s of the quick suite's 5 minutes.
        quick: &["--frame-sizes", "64", "--frames", "100000", "--duration", "1us", "--repeat", "3"],
        full: &["--frame-sizes", "64,512,1500", "--batches", "16,64,256", "--frames", "2000000"],
    },
    Entry {
        name: "syscall_floor",
        quick: &["--batches", "1,32", "--ops", "64Ki"],
        full: &["--batches", "1,2,4,8,16,32,64,128,256", "--ops", "1Mi"],
    },
];

/// The flag a token starts, if it is one (`--sizes`, `--sizes=1MiB` -> `--sizes`).
fn flag_of(t: &str) -> Option<&str> {
    t.starts_with("--")
        .then(|| t.split_once('=').map_or(t, |(f, _)| f))
}

/// The arguments an experiment gets: the preset's common ones, then its own, then the user's
/// (`--exp-args`); a flag given later replaces the same flag given earlier, values and all, so
/// `--exp-args "--repeat 1"` overrides the preset's `--repeat auto`.
pub fn merge_args(layers: &[&[&str]], user: &[&str]) -> Vec<String> {
    let mut groups: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for layer in layers.iter().copied().chain(std::iter::once(user)) {
        let mut mine: Vec<(Option<String>, Vec<String>)> = Vec::new();
        for t in layer {
            match flag_of(t) {
                Some(f) => mine.push((Some(f.to_string()), vec![t.to_string()])),
                None => match mine.last_mut() {
                    Some((_, toks)) => toks.push(t.to_string()),
                    None => mine.push((None, vec![t.to_string()])),
                },
            }
        }
        for (f, toks) in mine {
            if f.is_some() {
                groups.retain(|(g, _)| *g != f);
            }
            groups.push((f, toks));
        }
    }
    groups.into_iter().flat_map(|(_, t)| t).collect()
}

/// Options of `zclab run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Experiments to run (default: all of the preset).
    pub experiments: Vec<String>,
    /// How much to run.
    #[arg(long, value_enum, default_value_t = Preset::Quick)]
    pub preset: Preset,
    /// Where run directories are created.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Skip drawing plots (the report then lists none).
    #[arg(long)]
    pub no_plots: bool,
    /// Draw each plot as SVG too (PNG only by default).
    #[arg(long)]
    pub svg: bool,
    /// Extra arguments for every experiment, after the preset's, split on white space
    /// (e.g. `--exp-args "--repeat 1 --warmup 0"`).
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    pub exp_args: String,
    /// Check every selected experiment's arguments (the preset's and --exp-args) and print
    /// what each would measure; measure nothing and create no run directory.
    #[arg(long)]
    pub check: bool,
}

/// `zclab run --check`: each experiment checks its arguments (`--dry-run`) and says what it
/// would measure. Returns 0 when all of them accept theirs, 1 otherwise.
fn check(args: &RunArgs, selected: &[&Entry]) -> Result<i32> {
    let user: Vec<&str> = args.exp_args.split_whitespace().collect();
    let mut bad = Vec::new();
    for e in selected {
        let bin = bin_dir().join(e.name);
        let (common, own) = args.preset.args(e).expect("selected for this preset");
        let argv = merge_args(&[common, own], &user);
        let out = Command::new(&bin)
            .arg("--dry-run")
            .args(&argv)
            .output()
            .with_context(|| {
                format!(
                    "cannot start {}; build with `cargo build --release`",
                    bin.display()
                )
            })?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            eprintln!("  {} arguments: {}", e.name, argv.join(" "));
            bad.push(e.name);
        }
    }
    if bad.is_empty() {
        println!(
            "preset {}: the arguments of all {} experiments check",
            args.preset.name(),
            selected.len()
        );
        Ok(0)
    } else {
        eprintln!(
            "preset {}: {} refused their arguments",
            args.preset.name(),
            bad.join(", ")
        );
        Ok(1)
    }
}

/// Directory of the experiment binaries: beside the running `zclab`.
pub fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The repository's `scripts/` directory (`ZCLAB_SCRIPTS` overrides).
pub fn scripts_dir() -> PathBuf {
    std::env::var_os("ZCLAB_SCRIPTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"))
}

/// Runs the suite; returns the exit code (0 ok, 1 something failed, 130/143 interrupted).
pub fn run(args: &RunArgs) -> Result<i32> {
    for e in &args.experiments {
        if !SUITE.iter().any(|s| s.name == e) {
            let names: Vec<&str> = SUITE.iter().map(|s| s.name).collect();
            bail!("unknown experiment '{e}' (known: {})", names.join(", "));
        }
    }
    let selected: Vec<&Entry> = SUITE
        .iter()
        .filter(|e| args.experiments.is_empty() || args.experiments.iter().any(|x| x == e.name))
        .filter(|e| args.preset.args(e).is_some())
        .collect();
    if args.check {
        return check(args, &selected);
    }
    let cancel = Cancel::install();
    let caps = zclab::caps::probe(if args.results.exists() {
        &args.results
    } else {
        Path::new(".")
    });
    let run_dir = results::create_run_dir(&args.results, &caps.hostname, &caps.kernel.release)
        .context("cannot create the run directory")?;
    let (_, started) = results::utc_now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let git_revision = zclab::harness::git_revision();
    let write_suite = |outcomes: &[Outcome], status: &str, error: Option<String>| -> Result<()> {
        let (_, now) = results::utc_now();
        let meta = SuiteMeta {
            preset: args.preset.name().into(),
            experiments: selected.iter().map(|e| e.name.to_string()).collect(),
            started_utc: started.clone(),
            updated_utc: now,
            status: status.into(),
            error,
            outcomes: outcomes.to_vec(),
            argv: std::env::args().collect(),
            git_revision: git_revision.clone(),
            host: caps.hostname.clone(),
            kernel: caps.kernel.release.clone(),
            probe: caps.clone(),
        };
        let p = run_dir.join("suite.json");
        results::atomic_write(&p, meta.to_json()?.as_bytes())
            .or_else(|e| {
                // No room for a new file (a full disk): the same, compact, over the old one.
                let compact = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
                results::rewrite_in_place(&p, &compact).map_err(|_| e)
            })
            .with_context(|| format!("cannot write suite.json in {}", run_dir.display()))
    };
    write_suite(&outcomes, "running", None)?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let multi = indicatif::MultiProgress::new();
    if !tty {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let overall = multi.add(indicatif::ProgressBar::new(selected.len() as u64));
    overall.set_style(
        indicatif::ProgressStyle::with_template(
            "suite {pos}/{len} experiments [{elapsed_precise}] {msg}",
        )
        .expect("static template"),
    );
    let suite_start = Instant::now();
    let mut interrupted = None;
    for (i, e) in selected.iter().enumerate() {
        overall.set_message(e.name.to_string());
        let bin = bin_dir().join(e.name);
        if !bin.exists() {
            outcomes.push(Outcome {
                experiment: e.name.into(),
                status: "not-built".into(),
                exit_code: None,
                seconds: 0.0,
                note: Some(format!(
                    "{} not found; build with `cargo build --release`",
                    bin.display()
                )),
            });
            overall.inc(1);
            continue;
        }
        let mut cmd = Command::new(&bin);
        cmd.arg("--run-dir").arg(&run_dir);
        let (common, own) = args.preset.args(e).expect("selected for this preset");
        let user: Vec<&str> = args.exp_args.split_whitespace().collect();
        cmd.args(merge_args(&[common, own], &user));
        cmd.env("ZCLAB_PROGRESS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t0 = Instant::now();
        if !tty {
            eprintln!("[{}/{}] {} ...", i + 1, selected.len(), e.name);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let bar = multi.add(indicatif::ProgressBar::new(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "  {prefix:<16} [{bar:30}] {pos}/{len} trials, eta {eta}  {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(e.name.to_string());
        // The experiment shares our signal handling only when the signal went to the whole
        // process group (Ctrl-C); one sent to this process alone (SIGTERM from a service
        // manager, `kill PID`) is passed on at once, and we wait for its clean-up.
        let forwarder = Forwarder::start(child.id(), cancel);
        let stdout = child.stdout.take().expect("piped");
        let out_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
            s
        });
        let stderr = child.stderr.take().expect("piped");
        let mut log = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(p) = line.strip_prefix("@progress ") {
                if let Ok(v) = serde_json::from_str::<Value>(p) {
                    bar.set_length(v["total"].as_u64().unwrap_or(1).max(1));
                    bar.set_position(v["done"].as_u64().unwrap_or(0));
                    bar.set_message(format!(
                        "{} {}",
                        v["variant"].as_str().unwrap_or(""),
                        v["point"].as_str().unwrap_or("")
                    ));
                }
            } else {
                let _ = writeln!(log, "{line}");
                if tty {
                    multi.suspend(|| eprintln!("  {}: {line}", e.name));
                } else {
                    eprintln!("  {line}");
                }
            }
        }
        // Wait for the exit without reaping (WNOWAIT), so the forwarder never signals a pid
        // that could already belong to another process; then reap.
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let flags = nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT;
        while let Err(nix::errno::Errno::EINTR) =
            nix::sys::wait::waitid(nix::sys::wait::Id::Pid(pid), flags)
        {}
        forwarder.stop();
        let status = child.wait()?;
        let stdout_text = out_thread.join().unwrap_or_default();
        let _ = results::atomic_write(
            &run_dir.join(format!("{}.log", e.name)),
            format!("{stdout_text}\n--- stderr ---\n{log}").as_bytes(),
        );
        bar.finish_and_clear();
        multi.remove(&bar);
        overall.inc(1);
        let code = status.code();
        let st = match code {
            Some(0) => "ok",
            Some(77) => "nothing-ran",
            Some(130) | Some(143) => "interrupted",
            Some(2) => "usage-error",
            _ => "failed",
        };
        let note = (st != "ok")
            .then(|| {
                log.lines()
                    .rfind(|l| l.contains("error"))
                    .unwrap_or("")
                    .to_string()
            })
            .filter(|s| !s.is_empty());
        outcomes.push(Outcome {
            experiment: e.name.into(),
            status: st.into(),
            exit_code: code,
            seconds: t0.elapsed().as_secs_f64(),
            note,
        });
        write_suite(&outcomes, "running", None)?;
        if st == "interrupted" || cancel.is_cancelled() {
            interrupted = Some(cancel.signal().unwrap_or(libc::SIGINT));
            break;
        }
    }
    overall.finish_and_clear();
    let mut plot_note = None;
    if !args.no_plots && interrupted.is_none() {
        if let Err(e) = draw_plots(std::slice::from_ref(&run_dir), None, args.svg) {
            plot_note = Some(format!("{e:#}"));
            eprintln!("zclab: error: plots not drawn: {e:#}");
        }
    }
    let claims = match super::claims::verdicts(std::slice::from_ref(&run_dir)) {
        Ok(v) => {
            let t = zclab::report::claims_table(&v);
            let _ = results::atomic_write(
                &run_dir.join("claims.json"),
                serde_json::to_string_pretty(&v)?.as_bytes(),
            );
            Some(t)
        }
        Err(e) => {
            eprintln!("zclab: claims: {e:#}");
            None
        }
    };
    let report = report(&run_dir, &outcomes, plot_note.as_deref(), claims.as_deref())?;
    let report_note = results::atomic_write(&run_dir.join("report.md"), report.as_bytes())
        .with_context(|| format!("cannot write report.md in {}", run_dir.display()))
        .err()
        .map(|e| format!("{e:#}"));
    if let Some(e) = &report_note {
        eprintln!("zclab: error: {e}");
    }
    // The suite failed when its own outputs (plots, report) could not all be written.
    let failure = [
        plot_note.as_ref().map(|n| format!("plots not drawn: {n}")),
        report_note.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let status = match (interrupted, failure.is_empty()) {
        (Some(_), _) => "interrupted",
        (None, false) => "failed",
        (None, true) => "complete",
    };
    write_suite(
        &outcomes,
        status,
        (!failure.is_empty()).then(|| failure.join("; ")),
    )?;
    println!("{}", summary(&run_dir, &outcomes, suite_start.elapsed()));
    if let Some(t) = &claims {
        println!("Published claims, checked on this run:\n{t}");
    }
    println!("report: {}", run_dir.join("report.md").display());
    Ok(match interrupted {
        Some(sig) => 128 + sig,
        None if outcomes
            .iter()
            .all(|o| o.status == "ok" || o.status == "nothing-ran")
            && failure.is_empty() =>
        {
            0
        }
        None => 1,
    })
}

/// Passes SIGINT/SIGTERM, once received, on to the running experiment (once).
struct Forwarder {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(pid: u32, cancel: Cancel) -> Forwarder {
        use std::sync::atomic::{AtomicBool, Ordering};
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let thread = std::thread::Builder::new()
            .name("zclab-forward".into())
            .spawn(move || {
                while !d.load(Ordering::SeqCst) {
                    if let Some(sig) = cancel.signal() {
                        if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
                            // The child is not reaped before `done` is set (waitid WNOWAIT),
                            // so the pid is still the experiment's.
                            let _ =
                                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
                        }
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .ok();
        Forwarder { done, thread }
    }

    fn stop(mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Draws the plots of `runs` with `scripts/plot.py` in the project's virtual environment
/// (created on first use by `scripts/pyenv.sh`).
pub fn draw_plots(runs: &[PathBuf], out: Option<&Path>, svg: bool) -> Result<()> {
    let scripts = scripts_dir();
    let plot = scripts.join("plot.py");
    if !plot.exists() {
        bail!("{} is missing", plot.display());
    }
    let env = Command::new("bash")
        .arg(scripts.join("pyenv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run scripts/pyenv.sh")?;
    if !env.status.success() {
        bail!("scripts/pyenv.sh could not set up Python for the plots");
    }
    let py = String::from_utf8_lossy(&env.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    let mut cmd = Command::new(&py);
    cmd.arg(&plot).args(runs);
    if svg {
        cmd.arg("--svg");
    }
    if let Some(o) = out {
        cmd.arg("--out").arg(o);
    }
    let st = cmd.status().with_context(|| format!("cannot run {py}"))?;
    if !st.success() {
        bail!("plot.py exited with {st}");
    }
    Ok(())
}

fn summary(run_dir: &Path, outcomes: &[Outcome], took: Duration) -> String {
    let mut s = format!(
        "\nzclab suite: {} ({:.0} s)\n",
        run_dir.display(),
        took.as_secs_f64()
    );
    for o in outcomes {
        let dir = run_dir.join(&o.experiment);
        let (ok, failed) = load_rows(&dir).map_or((0, 0), |rows| {
            (
                rows.iter().filter(|r| r.status == Status::Ok).count(),
                rows.iter().filter(|r| r.status != Status::Ok).count(),
            )
        });
        let meta = load_meta(&dir).ok();
        let skipped = meta.as_ref().map_or(0, |m| m.skipped.len());
        let noisy = meta
            .as_ref()
            .and_then(|m| m.noise.as_ref())
            .filter(|n| n.noisy)
            .map(|n| {
                format!(
                    "\n  {:<16} warning: noisy machine: {}",
                    "",
                    n.reasons.join("; ")
                )
            })
            .unwrap_or_default()
            + &meta
                .as_ref()
                .and_then(|m| m.host_placement.as_ref()?.warning())
                .map(|w| format!("\n  {:<16} warning: {w}", ""))
                .unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:<16} {:<12} {:>5.1} s  {ok} trials ok, {failed} failed, {skipped} variants skipped{}",
            o.experiment,
            o.status,
            o.seconds,
            o.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
                + &noisy
        );
    }
    s
}

/// The Markdown report of a suite run ([`zclab::report::run_report`] over what it loads).
pub fn report(
    run_dir: &Path,
    outcomes: &[Outcome],
    plot_note: Option<&str>,
    claims: Option<&str>,
) -> Result<String> {
    let suite = results::load_suite(run_dir).ok();
    let loaded: Vec<Result<results::Experiment, String>> = outcomes
        .iter()
        .map(|o| load_experiment(&run_dir.join(&o.experiment)).map_err(|e| format!("{e:#}")))
        .collect();
    let sections: Vec<zclab::report::Section> = outcomes
        .iter()
        .zip(&loaded)
        .map(|(o, e)| zclab::report::Section {
            outcome: o,
            about: zclab::catalog::find(&o.experiment).map(|x| x.about),
            experiment: e.as_ref().map_err(Clone::clone),
            crossover: results::read_input(
                &run_dir.join(&o.experiment).join("crossover.txt"),
                results::META_LIMIT,
            )
            .ok(),
        })
        .collect();
    Ok(zclab::report::run_report(
        run_dir.file_name().and_then(|n| n.to_str()).unwrap_or(""),
        &run_dir.display().to_string(),
        suite.as_ref(),
        &sections,
        plot_note,
        claims,
    ))
}

#[cfg(test)]
mod merge_tests {
    use super::merge_args;

    #[test]
    fn later_flags_replace_earlier_ones() {
        let got = merge_args(
            &[
                &["--duration", "200ms", "--repeat", "auto"],
                &["--sizes", "1MiB,2MiB", "--fsync"],
            ],
            &["--repeat", "1", "--sizes=4KiB", "--quiet"],
        );
        assert_eq!(
            got,
            [
                "--duration",
                "200ms",
                "--fsync",
                "--repeat",
                "1",
                "--sizes=4KiB",
                "--quiet"
            ]
        );
        assert_eq!(merge_args(&[&["--a", "1"]], &[]), ["--a", "1"]);
    }
}
