//! `zclab`: the lab's front door — probe the kernel, run the suite, compare runs, plot.
//!
//! The subcommands' code is in [`cmd`], on the binary's side: the library below it loads
//! results, analyses them and renders them, and never calls up into a command.

mod cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cmd::{compare, run as suite};
use std::path::PathBuf;
use std::process::ExitCode;
use zclab::caps;

#[derive(Parser)]
#[command(
    name = "zclab",
    version,
    about = "Measure how Linux moves bytes: classic syscalls against io_uring, copies against zero copy"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Report what this kernel and these permissions offer: io_uring opcodes and setup flags,
    /// zero-copy support and usage reporting, O_DIRECT, memlock, counters, CPU, clock.
    Probe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Directory whose filesystem is checked for O_DIRECT.
        #[arg(long, default_value = "results")]
        dir: PathBuf,
    },
    /// Whether the host has the two measured CPUs together now (a cache line's round trip
    /// against the lowest seen this boot); with --watch, how often it moves them. Exit 0
    /// together, 2 apart.
    Placement(cmd::placement::PlacementArgs),
    /// Run the suite (all experiments of a preset, or those named) into one new run directory,
    /// then draw the plots and write report.md.
    Run(suite::RunArgs),
    /// Compare two or more run directories: results side by side and kernel capability
    /// differences; with --stability, how far two runs' figures and claim verdicts agree.
    Compare(compare::CompareArgs),
    /// Draw the differential flame graph of two profiles (`<variant>@<point>.folded`, written
    /// with --profile): two variants of one point, or one variant in two runs.
    Flame(cmd::flame::FlameArgs),
    /// Give each published claim (claims/claims.json) a verdict from one run directory, or from
    /// several runs on different kernels for the claims that compare kernels.
    Claims {
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Run fio and iperf3 beside the matching zclab variants on identical workloads and print
    /// both figures with their ratio (fio and iperf3 are installed with apt-get when missing).
    Versus(cmd::versus::VersusArgs),
    /// Long runs that prove nothing is lost: net_send's zero-copy variants with a two-buffer
    /// pool and file_to_socket, each for --minutes, with integrity checks, notification
    /// accounting and resident memory sampled.
    Soak(cmd::soak::SoakArgs),
    /// Draw (or redraw) the plots of one or more run directories.
    Plot {
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output directory (required for several runs: their plots are overlaid).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Draw each plot as SVG too (PNG only by default).
        #[arg(long)]
        svg: bool,
    },
    /// List the experiments of the suite.
    List,
    /// Print a run's tables as Markdown or CSV, or regenerate the tables of Markdown files
    /// from the runs their `<!-- report: ARGS -->` markers name.
    Report(cmd::report::ReportArgs),
    /// Serve the peer side of the socket experiments to a client on another host (its
    /// experiments run with --peer HOST[:PORT]); see docs/serve-protocol.md.
    Serve(zclab::serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("zclab: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    if matches!(
        cli.cmd,
        Cmd::Probe { .. } | Cmd::Compare(_) | Cmd::Claims { .. } | Cmd::List | Cmd::Report(_)
    ) {
        zclab::sys::signal::sigpipe_default();
    }
    match cli.cmd {
        Cmd::Probe { json, dir } => {
            let bad = caps::invalid_hide_tokens(&std::env::var(caps::HIDE_ENV).unwrap_or_default());
            if !bad.is_empty() {
                anyhow::bail!("{} has unknown tokens: {}", caps::HIDE_ENV, bad.join(", "));
            }
            let probe_dir = if dir.exists() {
                dir
            } else {
                PathBuf::from(".")
            };
            let c = caps::probe(&probe_dir);
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", c.render_text());
            }
            Ok(0)
        }
        Cmd::Run(args) => suite::run(&args),
        Cmd::Placement(args) => cmd::placement::run(&args),
        Cmd::Compare(args) => compare::main(&args),
        Cmd::Flame(args) => cmd::flame::run(&args),
        Cmd::Claims { runs, json } => cmd::claims::run(&runs, json),
        Cmd::Versus(args) => {
            let (outcomes, md) = cmd::versus::run(&args)?;
            print!("{md}");
            Ok(
                if outcomes.iter().any(|o| o.verdict.starts_with("not run")) {
                    1
                } else {
                    0
                },
            )
        }
        Cmd::Soak(args) => {
            let (outcomes, md) = cmd::soak::run(&args)?;
            print!("{md}");
            Ok(if outcomes.iter().all(|o| o.verdict == "pass") {
                0
            } else {
                1
            })
        }
        Cmd::Plot { runs, out, svg } => {
            if runs.len() > 1 && out.is_none() {
                anyhow::bail!("plotting several runs overlays them: give --out DIR");
            }
            suite::draw_plots(&runs, out.as_deref(), svg)?;
            Ok(0)
        }
        Cmd::Serve(args) => zclab::serve::run(&args),
        Cmd::Report(args) => cmd::report::run(&args),
        Cmd::List => {
            for e in suite::SUITE {
                let about = zclab::catalog::find(e.name).map_or("", |c| c.about);
                println!("{:<16} {about}", e.name);
            }
            Ok(0)
        }
    }
}
