//! Running a binary (an experiment, `zclab`) and reading the run directory it wrote.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use zclab::results::{Row, hgrm, row::parse_jsonl};

/// Runs `bin` with `args` and `env`, returning its output.
pub fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status, stdout and stderr in one string, for failure messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One run of a binary, built up as its command line.
pub struct Lab {
    cmd: Command,
    line: String,
    results: Option<PathBuf>,
    scratch: Scratch,
    limit: Option<Duration>,
}

/// The temporary results directory of [`Lab::tiny_tmp`], held by the run and by every [`Exp`]
/// read from it, so that it outlives the last of them.
type Scratch = Option<Arc<TempDir>>;

impl Lab {
    pub fn new(bin: &str) -> Lab {
        Lab {
            cmd: Command::new(bin),
            line: Path::new(bin).file_name().unwrap().to_string_lossy().into(),
            results: None,
            scratch: None,
            limit: None,
        }
    }

    /// `bin` inside the network namespace `ns` (`ip netns exec`).
    pub fn in_netns(ns: &str, bin: &str) -> Lab {
        let mut l = Lab::new("ip").args(&["netns", "exec", ns, bin]);
        l.line = Lab::new(bin).line;
        l
    }

    /// One measured repeat, no warm-up, results under `results`: the run most tests want.
    pub fn tiny(self, results: &Path) -> Lab {
        self.argv("--repeat 1 --warmup 0").results(results)
    }

    /// As [`Lab::tiny`], into a new temporary directory that lives as long as the run and the
    /// results read from it.
    pub fn tiny_tmp(self) -> Lab {
        let t = tempfile::tempdir().unwrap();
        let mut l = self.tiny(t.path());
        l.scratch = Some(Arc::new(t));
        l
    }

    pub fn results(mut self, dir: &Path) -> Lab {
        self.results = Some(dir.to_path_buf());
        self.arg("--results").arg(dir)
    }

    pub fn workdir(self, dir: &Path) -> Lab {
        self.arg("--workdir").arg(dir)
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Lab {
        self.cmd.arg(a);
        self
    }

    pub fn args(mut self, a: &[&str]) -> Lab {
        self.cmd.args(a);
        self
    }

    /// Arguments written as one line, split at white space.
    pub fn argv(self, line: &str) -> Lab {
        let words: Vec<&str> = line.split_whitespace().collect();
        self.args(&words)
    }

    pub fn env(mut self, k: &str, v: &str) -> Lab {
        self.cmd.env(k, v);
        self
    }

    pub fn envs(mut self, env: &[(&str, &str)]) -> Lab {
        for (k, v) in env {
            self.cmd.env(k, v);
        }
        self
    }

    /// `ZCLAB_HIDE`: the lab acts as if `what` were missing.
    pub fn hide(self, what: &str) -> Lab {
        self.env("ZCLAB_HIDE", what)
    }

    /// `ZCLAB_FAULT`: a fault injected on purpose.
    pub fn fault(self, what: &str) -> Lab {
        self.env("ZCLAB_FAULT", what)
    }

    /// Neither `ZCLAB_FAULT` nor `ZCLAB_HIDE` from the environment the tests run in.
    pub fn clean_env(mut self) -> Lab {
        self.cmd.env_remove("ZCLAB_FAULT").env_remove("ZCLAB_HIDE");
        self
    }

    /// Kills the run, failing the test, when it takes longer than `limit`.
    pub fn within(mut self, limit: Duration) -> Lab {
        self.limit = Some(limit);
        self
    }

    /// Starts the run; stdout is dropped, stderr collected.
    pub fn spawn(self) -> Running {
        self.start(Stdio::null())
    }

    /// Runs to the end (or the limit) and collects what it printed.
    pub fn run(self) -> Ran {
        let limit = self.limit;
        let mut r = self.start(Stdio::piped());
        let status = r.wait(limit.unwrap_or(Duration::MAX), "still running");
        r.ran(status)
    }

    /// Starts the run, waits until `trials` rows of `exp` are written under its results, sends
    /// `sig` and waits for the end.
    pub fn signalled_after(self, exp: &str, trials: usize, sig: nix::sys::signal::Signal) -> Ran {
        let res = self.results.clone().expect("a run given --results");
        let mut child = self.spawn();
        child.wait_until(Duration::from_secs(120), "trials recorded", || {
            summary_with(&res, exp, trials)
        });
        child.signal(sig);
        child.finish(
            Duration::from_secs(600),
            &format!("did not stop after {sig}"),
        )
    }

    fn start(mut self, stdout: Stdio) -> Running {
        let t0 = Instant::now();
        let mut child = self
            .cmd
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.line));
        let out = child.stdout.take().map(reader);
        let err = reader(child.stderr.take().unwrap());
        Running {
            pid: child.id(),
            child,
            line: self.line,
            results: self.results,
            scratch: self.scratch,
            out,
            err,
            t0,
        }
    }
}

/// Reads a pipe to its end on a thread, so that a chatty child never blocks on it.
fn reader(mut p: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = p.read_to_end(&mut b);
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// A run in progress.
pub struct Running {
    pub pid: u32,
    child: Child,
    line: String,
    results: Option<PathBuf>,
    scratch: Scratch,
    out: Option<std::thread::JoinHandle<String>>,
    err: std::thread::JoinHandle<String>,
    t0: Instant,
}

impl Running {
    /// Polls `ready` until it gives a value; fails when the run ends first or `limit` passes.
    pub fn wait_until<T>(
        &mut self,
        limit: Duration,
        what: &str,
        mut ready: impl FnMut() -> Option<T>,
    ) -> T {
        let t0 = Instant::now();
        loop {
            if let Some(v) = ready() {
                return v;
            }
            assert!(
                t0.elapsed() < limit,
                "{}: {what} within {limit:?}",
                self.line
            );
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "{} ended early",
                self.line
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig).unwrap();
    }

    /// Waits for the end, killing the run and failing the test after `limit`.
    pub fn finish(mut self, limit: Duration, what: &str) -> Ran {
        let status = self.wait(limit, what);
        self.ran(status)
    }

    fn wait(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{}: {what} after {limit:?}", self.line);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ran(self, status: ExitStatus) -> Ran {
        Ran {
            status,
            stdout: self.out.map(|h| h.join().unwrap()).unwrap_or_default(),
            stderr: self.err.join().unwrap(),
            pid: self.pid,
            elapsed: self.t0.elapsed(),
            line: self.line,
            results: self.results,
            scratch: self.scratch,
        }
    }
}

/// A finished run.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub pid: u32,
    pub elapsed: Duration,
    line: String,
    results: Option<PathBuf>,
    scratch: Scratch,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// What it printed, for failure messages.
    pub fn text(&self) -> String {
        format!(
            "{}: exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.line,
            self.code(),
            self.stdout,
            self.stderr
        )
    }

    /// Asserts the run succeeded.
    pub fn ok(self) -> Ran {
        assert!(self.status.success(), "{}", self.text());
        self
    }

    /// Asserts exit `code`, without a panic.
    pub fn exits(&self, code: i32) -> &Ran {
        assert_eq!(self.code(), Some(code), "{}", self.text());
        assert!(!self.stderr.contains("panicked"), "{}", self.text());
        self
    }

    /// Asserts stderr holds `needle`.
    pub fn says(&self, needle: &str) -> &Ran {
        assert!(
            self.stderr.contains(needle),
            "{needle:?} not in {}",
            self.text()
        );
        self
    }

    /// Asserts exit `code` with one line on stderr that holds every needle.
    pub fn one_error_line(&self, code: i32, needles: &[&str]) -> &Ran {
        self.exits(code);
        for n in needles {
            self.says(n);
        }
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "not one line: {}",
            self.text()
        );
        self
    }

    /// The experiment `exp` of the one run directory under the results.
    pub fn exp(&self, exp: &str) -> Exp {
        self.held(Exp::load(self.exp_dir(exp)))
    }

    /// As `exp`, also checking summary.csv and every histogram the rows name.
    pub fn exp_checked(&self, exp: &str) -> Exp {
        self.held(Exp::checked(self.exp_dir(exp)))
    }

    fn exp_dir(&self, exp: &str) -> PathBuf {
        let res = self.results.as_ref().expect("a run given --results");
        experiment_dir(res, exp)
    }

    fn held(&self, e: Exp) -> Exp {
        Exp {
            scratch: self.scratch.clone(),
            ..e
        }
    }
}

/// `bin --list` succeeds and names each of `variants` first on a line.
pub fn assert_lists(bin: &str, variants: &[&str]) {
    let r = Lab::new(bin).arg("--list").run().ok();
    for v in variants {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(*v)),
            "{bin} --list does not list {v}:\n{}",
            r.stdout
        );
    }
}

/// Each case (its arguments, a word the message must hold) is refused before anything runs:
/// exit 2, one line `NAME: error: ...`, and no run directory.
pub fn assert_bad_input_refused(bin: &str, cases: &[(&str, &str)]) {
    let t = tempfile::tempdir().unwrap();
    for (args, needle) in cases {
        let r = Lab::new(bin).tiny(t.path()).argv(args).run();
        r.one_error_line(2, &[needle]);
        let head = format!("{}: error: ", r.line);
        assert!(r.stderr.starts_with(&head), "{}", r.text());
        assert_no_run_dir(t.path());
    }
}

/// A temporary directory with the paths of a run's results (`r`, left for the run to create)
/// and of its work files (`w`, created); both go with the directory.
pub fn results_and_work() -> (TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let (res, work) = (t.path().join("r"), t.path().join("w"));
    std::fs::create_dir(&work).unwrap();
    (t, res, work)
}

/// The single experiment directory created under `results` for `experiment`.
pub fn experiment_dir(results: &Path, experiment: &str) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(results)
        .expect("results dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "expected one run directory in {}: {runs:?}",
        results.display()
    );
    runs[0].join(experiment)
}

/// The first run directory under `results`.
pub fn first_run_dir(results: &Path) -> PathBuf {
    let mut runs = std::fs::read_dir(results).expect("results dir");
    runs.next().expect("a run directory").unwrap().path()
}

/// summary.jsonl of `exp` in the first run directory under `results`, once it holds at least
/// `min_rows` lines (0: once it exists).
pub fn summary_with(results: &Path, exp: &str, min_rows: usize) -> Option<PathBuf> {
    let run = std::fs::read_dir(results).ok()?.flatten().next()?;
    let p = run.path().join(exp).join("summary.jsonl");
    let n = std::fs::read_to_string(&p).ok()?.lines().count();
    (n >= min_rows).then_some(p)
}

/// The rows and the directory of one experiment's results.
pub struct Exp {
    pub dir: PathBuf,
    pub rows: Vec<Row>,
    scratch: Scratch,
}

impl Exp {
    /// Parses summary.jsonl.
    pub fn load(dir: PathBuf) -> Exp {
        let rows = read_rows(&dir.join("summary.jsonl"));
        Exp {
            dir,
            rows,
            scratch: None,
        }
    }

    /// Parses summary.jsonl, checks summary.csv has a line per row and that every `.hgrm`
    /// the rows name parses with samples in it.
    pub fn checked(dir: PathBuf) -> Exp {
        let rows = rows_and_histograms(&dir);
        Exp {
            dir,
            rows,
            scratch: None,
        }
    }

    pub fn meta(&self) -> serde_json::Value {
        self.json("meta.json")
    }

    /// Another JSON file of the experiment.
    pub fn json(&self, file: &str) -> serde_json::Value {
        read_json(&self.dir.join(file))
    }
}

pub fn read_rows(summary: &Path) -> Vec<Row> {
    let text =
        std::fs::read_to_string(summary).unwrap_or_else(|e| panic!("{}: {e}", summary.display()));
    parse_jsonl(&text).unwrap_or_else(|e| panic!("{}: {e}", summary.display()))
}

pub fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Reads and parses summary.jsonl, and parses every `.hgrm` the rows name.
pub fn rows_and_histograms(dir: &Path) -> Vec<Row> {
    let rows = read_rows(&dir.join("summary.jsonl"));
    let csv = std::fs::read_to_string(dir.join("summary.csv")).expect("summary.csv");
    assert_eq!(
        csv.lines().count(),
        rows.len() + 1,
        "csv has a header and one line per row"
    );
    check_histograms(dir, &rows);
    rows
}

/// Every `.hgrm` the rows name parses, with samples and lines in it.
pub fn check_histograms(dir: &Path, rows: &[Row]) {
    for r in rows {
        for f in r.histograms.values() {
            let text = std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("{f} of {} {}: {e}", r.variant, r.point));
            let h = hgrm::parse(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(h.total_count > 0 && !h.lines.is_empty(), "{f} is empty");
        }
    }
}

/// Every file below `p`.
pub fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                v.extend(files_under(&e.path()));
            } else {
                v.push(e.path());
            }
        }
    }
    v
}

/// No partial (`.tmp-`) file anywhere below `p`.
pub fn assert_no_tmp_files(p: &Path) {
    let files = files_under(p);
    assert!(
        files.iter().all(|f| !f.to_string_lossy().contains(".tmp-")),
        "partial file left: {files:?}"
    );
}

/// Nothing (no run directory) under `results`, which may not exist.
pub fn assert_no_run_dir(results: &Path) {
    assert!(
        !results.exists() || std::fs::read_dir(results).unwrap().count() == 0,
        "a run directory under {}",
        results.display()
    );
}

/// The source files an experiment creates in its work directory (`zclab-*`) were removed.
pub fn assert_sources_removed(work: &Path) {
    let left: Vec<_> = std::fs::read_dir(work)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("zclab-"))
        .collect();
    assert!(left.is_empty(), "source files left behind: {left:?}");
}
