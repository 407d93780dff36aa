//! `zclab claims RUN_DIR...`: each published claim's verdict on the runs.

use anyhow::Result;
use std::path::PathBuf;
use zclab::analysis::claims::{CLAIMS_JSON, Verdict, load, verdicts as judge};
use zclab::results::{Run, load_run};

/// Loads the runs and gives every shipped claim its verdict.
pub fn verdicts(dirs: &[PathBuf]) -> Result<Vec<Verdict>> {
    let claims = load(CLAIMS_JSON)?;
    let runs: Vec<Run> = dirs.iter().map(|d| load_run(d)).collect::<Result<_>>()?;
    Ok(judge(&claims, &runs))
}

/// Prints the verdicts as a table, or as JSON.
pub fn run(dirs: &[PathBuf], json: bool) -> Result<i32> {
    let v = verdicts(dirs)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", zclab::report::claims_table(&v));
    }
    Ok(0)
}
