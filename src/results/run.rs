//! Loading a run directory: its experiments, each with `meta.json` as [`Meta`], the rows of
//! `summary.jsonl` and the plot index; and `suite.json` for suite runs.

use super::meta::{Meta, SuiteMeta};
use super::row::{Row, parse_jsonl};
use crate::caps::Caps;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One experiment directory, loaded.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub dir: PathBuf,
    pub meta: Meta,
    /// The rows of `summary.jsonl`; empty when there is none yet (killed before the first
    /// trial).
    pub rows: Vec<Row>,
}

impl Experiment {
    /// The figures `plot.py` listed in `plots/index.json` (none when it has not run).
    pub fn figures(&self) -> Vec<Figure> {
        load_figures(&self.dir)
    }

    /// The flame graphs of its profiling trials (`<variant>@<point>.svg`, written with
    /// `--profile`), by file name.
    pub fn flame_graphs(&self) -> Vec<String> {
        self.point_files(".svg")
    }

    /// The measured thread's profiles (`<variant>@<point>.folded`; not the other threads'
    /// `<variant>.threads@<point>.folded`), by file name.
    pub fn profiles(&self) -> Vec<String> {
        let mut v = self.point_files(".folded");
        v.retain(|n| !n.contains(".threads@"));
        v
    }

    /// Its `<variant>@<point><suffix>` files, sorted by name.
    fn point_files(&self, suffix: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(suffix) && n.contains('@'))
            .collect();
        v.sort();
        v
    }
}

/// A suite run directory (with experiment subdirectories) or a single experiment directory.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    /// By experiment name.
    pub experiments: BTreeMap<String, Experiment>,
    /// `suite.json`, for runs made by `zclab run`.
    pub suite: Option<SuiteMeta>,
}

impl Run {
    /// The first experiment's probe (all experiments of a run share the machine).
    pub fn probe(&self) -> &Caps {
        &self.first().meta.probe
    }

    /// `native`, `kvm` or `tcg`, from the first experiment.
    pub fn accelerator(&self) -> &str {
        &self.first().meta.accelerator
    }

    /// `host kernel` and the accelerator when it is not native: how tables name the run.
    pub fn label(&self) -> String {
        let p = self.probe();
        let acc = self.accelerator();
        format!(
            "{} {}{}",
            p.hostname,
            p.kernel.release,
            if acc == "native" {
                String::new()
            } else {
                format!(" [{acc}]")
            }
        )
    }

    /// The rows of `experiment`, if the run has it.
    pub fn rows(&self, experiment: &str) -> Option<&[Row]> {
        self.experiments.get(experiment).map(|e| e.rows.as_slice())
    }

    /// The metadata of `experiment`, if the run has it.
    pub fn meta(&self, experiment: &str) -> Option<&Meta> {
        self.experiments.get(experiment).map(|e| &e.meta)
    }

    fn first(&self) -> &Experiment {
        self.experiments
            .values()
            .next()
            .expect("a loaded run has an experiment")
    }
}

/// A directory with anything named `meta.json` in it (a file of the wrong kind is then an
/// error naming it, not a directory silently passed over).
fn is_experiment_dir(p: &Path) -> bool {
    p.is_dir() && p.join("meta.json").symlink_metadata().is_ok()
}

/// Loads a run directory (with experiment subdirectories) or one experiment directory. The
/// error names the directory or the file that is wrong; a run without any experiment is one.
pub fn load_run(dir: &Path) -> Result<Run> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let exp_dirs: Vec<PathBuf> = if is_experiment_dir(dir) {
        vec![dir.to_path_buf()]
    } else {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_experiment_dir(p))
            .collect();
        v.sort();
        v
    };
    if exp_dirs.is_empty() {
        bail!(
            "{} holds no experiment results (no meta.json in it or its subdirectories)",
            dir.display()
        );
    }
    let mut experiments = BTreeMap::new();
    for d in exp_dirs {
        let e = load_experiment(&d)?;
        experiments.insert(e.name.clone(), e);
    }
    Ok(Run {
        dir: dir.to_path_buf(),
        experiments,
        suite: load_suite(dir).ok(),
    })
}

/// Loads one experiment directory: `meta.json` and, when present, `summary.jsonl` (a summary
/// that does not parse is an error naming the line).
pub fn load_experiment(dir: &Path) -> Result<Experiment> {
    let meta = load_meta(dir)?;
    // Anything by that name is read (and refused when it is not a regular file); only a
    // summary that is not there at all means "no trial yet".
    let rows = if dir.join("summary.jsonl").symlink_metadata().is_ok() {
        load_rows(dir)?
    } else {
        Vec::new()
    };
    Ok(Experiment {
        name: meta.experiment.clone(),
        dir: dir.to_path_buf(),
        meta,
        rows,
    })
}

/// The rows of one experiment directory's `summary.jsonl`.
pub fn load_rows(exp_dir: &Path) -> Result<Vec<Row>> {
    let p = exp_dir.join("summary.jsonl");
    let text = super::read_input(&p, super::SUMMARY_LIMIT)?;
    parse_jsonl(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
}

/// `meta.json` of one experiment directory: a JSON object naming its experiment.
pub fn load_meta(exp_dir: &Path) -> Result<Meta> {
    let m: Meta = load_json(exp_dir, "meta.json")?;
    if m.experiment.trim().is_empty() {
        bail!(
            "{} is not a valid meta.json: \"experiment\" is empty",
            exp_dir.join("meta.json").display()
        );
    }
    Ok(m)
}

/// `suite.json` of a suite run directory.
pub fn load_suite(run_dir: &Path) -> Result<SuiteMeta> {
    load_json(run_dir, "suite.json")
}

/// `<dir>/<file>` (a bounded regular file, see [`super::read_input`]), which must hold one JSON
/// object, parsed; the errors name the file (and the line).
fn load_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<T> {
    let p = dir.join(file);
    let text = super::read_input(&p, super::META_LIMIT)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid {file}", p.display()))?;
    if !v.is_object() {
        bail!(
            "{} is not a valid {file}: it holds {}, not a JSON object",
            p.display(),
            json_kind(&v)
        );
    }
    serde_json::from_value(v).with_context(|| format!("{} is not a valid {file}", p.display()))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// One figure of `plots/index.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Figure {
    /// `latency`, `throughput`, `cpu_per_mib`, ...
    pub kind: Option<String>,
    pub title: Option<String>,
    pub png: Option<String>,
    pub file: Option<String>,
}

impl Figure {
    /// The image to link: the PNG, else the file named.
    pub fn image(&self) -> Option<&str> {
        self.png.as_deref().or(self.file.as_deref())
    }
}

/// The figures listed in `<exp_dir>/plots/index.json`; none when the file is missing or
/// unreadable (plots are optional).
pub fn load_figures(exp_dir: &Path) -> Vec<Figure> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(default)]
        figures: Vec<Figure>,
    }
    super::read_input(&exp_dir.join("plots").join("index.json"), super::META_LIMIT)
        .ok()
        .and_then(|t| serde_json::from_str::<Index>(&t).ok())
        .map(|i| i.figures)
        .unwrap_or_default()
}
