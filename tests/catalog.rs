//! claims/claims.json names only experiments, variants and parameters that exist
//! (`zclab::catalog`), and every experiment binary's variant table matches the catalogue.

mod common;

use common::assert_lists;
use serde_json::Value;
use zclab::catalog;

/// Every place in one claim check that names a variant, a parameter or a metric.
fn check_names(claim: &str, check: &Value, errors: &mut Vec<String>) {
    let Some(exp) = check.get("experiment").and_then(Value::as_str) else {
        if check.get("kind").and_then(Value::as_str) != Some("needs") {
            errors.push(format!("{claim}: a check without an experiment: {check}"));
        }
        return;
    };
    let Some(entry) = catalog::find(exp) else {
        errors.push(format!("{claim}: unknown experiment '{exp}'"));
        return;
    };
    if let Some(p) = check.get("param").and_then(Value::as_str) {
        if !entry.params.contains(&p) {
            errors.push(format!("{claim}: {exp} has no parameter '{p}'"));
        }
    }
    if let Some(points) = check.get("points").and_then(Value::as_object) {
        for k in points.keys() {
            if !entry.params.contains(&k.as_str()) {
                errors.push(format!("{claim}: {exp} has no parameter '{k}' (points)"));
            }
        }
    }
    for side in ["a", "b", "side"] {
        let Some(s) = check.get(side) else { continue };
        match s.get("variant").and_then(Value::as_str) {
            Some(v) if !entry.variants.contains(&v) => {
                errors.push(format!("{claim}: {exp} has no variant '{v}'"))
            }
            Some(_) => {}
            None => errors.push(format!("{claim}: side '{side}' names no variant")),
        }
        if let Some(w) = s.get("where").and_then(Value::as_object) {
            for k in w.keys() {
                if !entry.params.contains(&k.as_str()) {
                    errors.push(format!("{claim}: {exp} has no parameter '{k}' (where)"));
                }
            }
        }
    }
}

fn claims_errors(text: &str) -> Vec<String> {
    let claims: Vec<Value> = serde_json::from_str(text).expect("claims.json is a JSON array");
    let mut errors = Vec::new();
    for c in &claims {
        let id = c.get("id").and_then(Value::as_str).unwrap_or("?");
        for check in c
            .get("checks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            check_names(id, check, &mut errors);
        }
    }
    errors
}

#[test]
fn claims_name_only_what_exists() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/claims/claims.json");
    let errors = claims_errors(&std::fs::read_to_string(path).unwrap());
    assert!(errors.is_empty(), "claims.json:\n{}", errors.join("\n"));
}

#[test]
fn the_check_catches_a_wrong_name() {
    let bad = r#"[{"id": "x", "checks": [
        {"kind": "ratio", "experiment": "net_send", "metric": "gbps",
         "a": {"variant": "classic-sendd", "where": {"path": "udp-sink"}},
         "b": {"variant": "classic-send", "where": {"pth": "udp-sink"}},
         "points": {"size": {"min": 1}}},
        {"kind": "value", "experiment": "net_sendd", "metric": "gbps"}]}]"#;
    let errors = claims_errors(bad);
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn every_binary_matches_the_catalogue() {
    for e in catalog::ALL {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/release")
            .join(e.experiment);
        assert!(
            bin.is_file(),
            "no {} (build with cargo build --release)",
            bin.display()
        );
        assert_lists(bin.to_str().unwrap(), e.variants);
    }
}
