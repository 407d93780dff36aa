//! One experiment shape: what an experiment binary implements, and the one entry point that
//! runs it.
//!
//! An experiment is a type that implements [`Experiment`]: its own options (`clap::Args`), a
//! validation step that turns them into parameter points and the variants' context
//! ([`Experiment::plan`], usage errors exit 2), its variant table, and optional set-up
//! ([`Experiment::prepare`]: namespaces, files), analyses that receive the rows in memory and
//! return typed results ([`Experiment::analyse`]) and clean-up ([`Experiment::finish`]). Its
//! `main` is one line: `harness::run::<MyExperiment>()`.
//!
//! [`run`] owns everything else, the same for every experiment: argument parsing (a clap error
//! is one line and exit 2), `--list`, unknown variant names (exit 2), the peer connection
//! (`--peer`, `zclab serve` on another host), the run directory, the trials, the analyses'
//! files, and the exit status: 0 ran; 1 a variant failed or a requested one cannot run here;
//! 2 bad usage; 77 nothing requested could run here; 130/143 interrupted by SIGINT/SIGTERM.

use super::{CommonArgs, Lab, Point, Variant};
use crate::caps::Caps;
use crate::net::remote::{Peer, PeerAddr};
use crate::results::Row;
use clap::{CommandFactory, FromArgMatches};
use serde::Serialize;
use serde_json::Value;
use std::process::ExitCode;

/// Exit status of bad usage.
pub const EXIT_USAGE: u8 = 2;

/// Bad usage found after clap's own parsing (a size over a limit, options that contradict
/// each other): one line, exit status 2, no run directory created.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error as an `anyhow::Error` (exit status 2 wherever it is returned).
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// What [`Experiment::plan`] returns: the variants' context, the parameter points in the order
/// they run, and the experiment's parameters as recorded in meta.json.
pub struct Plan<E> {
    pub ctx: E,
    pub points: Vec<Point>,
    pub parameters: Value,
}

impl<E> Plan<E> {
    pub fn new(ctx: E, points: Vec<Point>, parameters: Value) -> Self {
        Plan {
            ctx,
            points,
            parameters,
        }
    }
}

/// A typed result of an analysis, written as `<experiment dir>/<file>` (JSON) and printed as
/// `text` unless `--quiet`. A document ([`Analysis::document`]: a JSON string) is written as
/// its text, and its printed text is followed by the file's path.
pub struct Analysis {
    pub file: String,
    pub json: Value,
    pub text: String,
}

impl Analysis {
    /// An analysis result from any serialisable value.
    pub fn new(file: &str, value: &impl Serialize, text: String) -> anyhow::Result<Analysis> {
        Ok(Analysis {
            file: file.into(),
            json: serde_json::to_value(value)?,
            text,
        })
    }

    /// The flows table of rows that ran several flows (`flows.md`, printed after the run's
    /// table); None when no row did.
    pub fn flows(rows: &[crate::results::Row]) -> Option<Analysis> {
        let t = crate::report::flows_table(rows)?;
        let text = format!("flows (each row above is their aggregate):\n{t}");
        Some(Analysis::document("flows.md", t, text))
    }

    /// A document (Markdown) rather than a value: written as `body` itself; `text` is printed
    /// followed by `<file stem>: <path written>`.
    pub fn document(file: &str, body: String, text: String) -> Analysis {
        Analysis {
            file: file.into(),
            json: Value::String(body),
            text,
        }
    }
}

/// What the harness knows when an experiment prepares: the kernel's capabilities and the peer.
pub struct Env<'a> {
    pub caps: &'a Caps,
    pub common: &'a CommonArgs,
    /// The other host's `zclab serve`, when the user gave `--peer`.
    pub peer: Option<&'a Peer>,
}

/// An experiment: options, points, variant table, optional set-up, analyses and clean-up.
pub trait Experiment: Sized + 'static {
    /// The experiment's own options, beside [`CommonArgs`].
    type Args: clap::Args + std::fmt::Debug;
    /// The experiment's entry in [`crate::catalog`]: its name, question, variant and parameter
    /// names.
    const ENTRY: &'static crate::catalog::Entry;
    /// The binary's name, the experiment directory's name and the `experiment` of every row.
    const NAME: &'static str = Self::ENTRY.experiment;

    /// The variant table ([`crate::harness::variants!`]): one row per way of doing the
    /// experiment's job.
    const VARIANTS: &'static [Variant<Self>];

    /// Checks the options (return [`usage`] errors for bad input) and builds the context, the
    /// parameter points and the parameters recorded in meta.json. Runs before anything is
    /// created on disk.
    fn plan(args: Self::Args, common: &CommonArgs) -> anyhow::Result<Plan<Self>>;

    /// The host running `zclab serve` that the peer side should run on (`--peer`), if any.
    fn peer_addr(&self) -> Option<&PeerAddr> {
        None
    }

    /// Set-up once the capabilities are known and the peer is connected (network namespaces,
    /// files): before the first trial.
    fn prepare(&mut self, _env: &Env) -> anyhow::Result<()> {
        Ok(())
    }

    /// Analyses over the run's rows (all variants, all points, in memory), written beside the
    /// summary. Runs only when the run was not interrupted.
    fn analyse(&self, _rows: &[Row], _common: &CommonArgs) -> anyhow::Result<Vec<Analysis>> {
        Ok(Vec::new())
    }

    /// Clean-up after the run, also after a failure or an interruption (namespaces, files).
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Extra lines for `--list` (e.g. which paths run here).
    fn list_notes(_caps: &Caps) -> Vec<String> {
        Vec::new()
    }
}

#[derive(clap::Parser, Debug)]
struct Cli<A: clap::Args> {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    own: A,
}

/// Prints a clap error as one line (help and version as clap prints them) and gives the exit
/// status: 2 for bad usage, 0 for `--help`/`--version`.
fn usage_exit(name: &str, e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let line = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!(
        "{name}: error: {}",
        line.strip_prefix("error: ").unwrap_or(&line)
    );
    ExitCode::from(EXIT_USAGE)
}

/// Runs experiment `E` as a binary's `main`: parses the arguments, plans, prepares, runs every
/// variant at every point, analyses, cleans up, and returns the exit status.
pub fn run<E: Experiment>() -> ExitCode {
    run_from::<E>(std::env::args_os())
}

/// [`run`] with explicit arguments (the first is the program name).
pub fn run_from<E: Experiment>(argv: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cmd = Cli::<E::Args>::command()
        .name(E::NAME)
        .about(E::ENTRY.about);
    let cli = match cmd
        .try_get_matches_from(argv)
        .and_then(|m| Cli::<E::Args>::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => return usage_exit(E::NAME, e),
    };
    match run_parsed::<E>(cli.common, cli.own) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: error: {e:#}", E::NAME);
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Checks that an experiment's variant table names what the catalogue says it does (a bug in
/// the experiment otherwise, not bad input).
pub fn check_catalog<E: Experiment>() -> anyhow::Result<()> {
    let table: Vec<&str> = E::VARIANTS.iter().map(|v| v.name).collect();
    if table != E::ENTRY.variants {
        anyhow::bail!(
            "{}: the variant table ({}) differs from zclab::catalog ({}) (bug)",
            E::NAME,
            table.join(", "),
            E::ENTRY.variants.join(", ")
        );
    }
    Ok(())
}

fn run_parsed<E: Experiment>(common: CommonArgs, args: E::Args) -> anyhow::Result<ExitCode> {
    check_catalog::<E>()?;
    if common.list {
        let caps = crate::caps::probe(std::path::Path::new("."));
        print!("{}", super::list_variants(E::NAME, E::VARIANTS, &caps));
        for line in E::list_notes(&caps) {
            println!("  {line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(bad) = common
        .variants
        .iter()
        .find(|v| !E::VARIANTS.iter().any(|x| x.name == v.as_str()))
    {
        let names: Vec<&str> = E::VARIANTS.iter().map(|v| v.name).collect();
        return Err(usage(format!(
            "unknown variant '{bad}' (known: {})",
            names.join(", ")
        )));
    }
    let Plan {
        mut ctx,
        points,
        parameters,
    } = E::plan(args, &common)?;
    if points.is_empty() {
        return Err(usage("no parameter points to run"));
    }
    if common.dry_run {
        let chosen: Vec<&str> = E::VARIANTS
            .iter()
            .map(|v| v.name)
            .filter(|n| common.variants.is_empty() || common.variants.iter().any(|x| x == n))
            .collect();
        let repeats = if common.repeat.auto {
            format!(
                "{} to {} repeats each",
                common.repeat.min,
                super::AUTO_MAX.max(common.repeat.min)
            )
        } else {
            format!("{} repeats each", common.repeat.min)
        };
        println!(
            "{}: {} variants x {} points, {repeats}",
            E::NAME,
            chosen.len(),
            points.len(),
        );
        println!("  variants: {}", chosen.join(", "));
        for p in &points {
            println!("  point: {}", p.label());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut lab = Lab::open(E::NAME, &common, parameters)?;
    let peer = match ctx.peer_addr() {
        Some(a) => {
            let p = Peer::connect(a.clone(), &lab.caps, &super::git_revision())?;
            lab.set_peer_meta(p.meta());
            Some(p)
        }
        None => None,
    };
    lab.peer = peer.clone();
    let prepared = ctx.prepare(&Env {
        caps: &lab.caps,
        common: &common,
        peer: peer.as_ref(),
    });
    let outcome = prepared.and_then(|()| lab.run(E::VARIANTS, &points, &mut ctx));
    if let Some(p) = &peer {
        p.bye();
    }
    let analysed = match &outcome {
        Ok(_) if !lab.cancel.is_cancelled() => {
            write_analyses(&lab, ctx.analyse(lab.rows(), &common))
        }
        _ => Ok(()),
    };
    let finished = ctx.finish();
    let failure = [
        outcome.as_ref().err(),
        analysed.as_ref().err(),
        finished.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    .next();
    if let Some(e) = failure {
        lab.record_failure(&format!("{e:#}"));
    }
    let code = outcome?;
    analysed?;
    finished?;
    Ok(code)
}

fn write_analyses(lab: &Lab, analyses: anyhow::Result<Vec<Analysis>>) -> anyhow::Result<()> {
    for a in analyses? {
        let (text, path) = match &a.json {
            Value::String(doc) => (doc.clone(), Some(lab.dir.join(&a.file))),
            v => (serde_json::to_string_pretty(v)?, None),
        };
        lab.write_file(&a.file, text.as_bytes())?;
        if !lab.args.quiet && !a.text.is_empty() {
            print!("{}", a.text);
        }
        if let (false, Some(p)) = (lab.args.quiet, path) {
            let stem = a.file.split('.').next().unwrap_or(&a.file);
            println!("{stem}: {}", p.display());
        }
    }
    Ok(())
}
