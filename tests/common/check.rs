//! Assertions on the rows and meta.json an experiment wrote.

use serde_json::Value;
use zclab::results::{Integrity, Metrics, Row, Status, ZcCounts};

/// "variant point", to name a row in a message.
pub fn what(r: &Row) -> String {
    format!("{} {}", r.variant, r.point)
}

/// The row's `path` parameter.
pub fn path_of(r: &Row) -> &str {
    r.params["path"].as_str().unwrap()
}

/// Status ok and the integrity check recorded and passed; returns the metrics.
pub fn assert_ok(r: &Row) -> &Metrics {
    assert_eq!(r.status, Status::Ok, "{}: {:?}", what(r), r.error);
    let i = r.integrity.as_ref().expect("integrity recorded");
    assert!(i.ok, "{}: {i:?}", what(r));
    r.metrics.as_ref().expect("metrics")
}

/// As `assert_ok`, and every byte expected arrived.
pub fn assert_intact(r: &Row) -> &Metrics {
    let m = assert_ok(r);
    let i = integrity(r);
    assert_eq!(i.bytes_got, i.bytes_expected, "{}: {i:?}", what(r));
    m
}

pub fn integrity(r: &Row) -> &Integrity {
    r.integrity.as_ref().expect("integrity recorded")
}

pub fn metrics(r: &Row) -> &Metrics {
    r.metrics.as_ref().expect("metrics")
}

/// The zero-copy accounting of a row that must have it.
pub fn zc(r: &Row) -> &ZcCounts {
    metrics(r).zc.as_ref().expect("zero-copy accounting")
}

/// Every rows is ok or interrupted, and there is at least one.
pub fn assert_ok_or_interrupted(rows: &[Row], context: &str) {
    assert!(!rows.is_empty(), "no rows: {context}");
    assert!(
        rows.iter()
            .all(|r| r.status == Status::Ok || r.status == Status::Interrupted),
        "{context}"
    );
}

/// At least one row for each variant.
pub fn assert_variants(rows: &[Row], variants: &[&str]) {
    for v in variants {
        assert!(rows.iter().any(|r| r.variant == *v), "no row for {v}");
    }
}

/// At least one row for each variant on each path.
pub fn assert_variants_on(rows: &[Row], variants: &[&str], paths: &[&str]) {
    for v in variants {
        for p in paths {
            assert!(
                rows.iter().any(|r| r.variant == *v && path_of(r) == *p),
                "no row for {v} on {p}"
            );
        }
    }
}

/// The entry of `variant` in meta.json's `variants`.
pub fn variant_meta<'a>(meta: &'a Value, variant: &str) -> &'a Value {
    meta["variants"]
        .as_array()
        .expect("variants in meta.json")
        .iter()
        .find(|v| v["name"] == variant)
        .unwrap_or_else(|| panic!("{variant} not in meta.json"))
}

/// (variant, point, reason) of every skip recorded: whole variants (point "*") and points.
pub fn skips(meta: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in meta["variants"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_string();
        if v["status"] == "skipped" {
            let why = v["reason"].as_str().unwrap_or("");
            out.push((name.clone(), "*".into(), why.into()));
        }
        for p in v["points_skipped"].as_array().into_iter().flatten() {
            let (point, why) = (p[0].as_str().unwrap(), p[1].as_str().unwrap_or(""));
            out.push((name.clone(), point.into(), why.into()));
        }
    }
    out
}

/// (variant, reason) of every variant skipped as a whole; each is a failure in CI.
pub fn skipped_variants(meta: &Value) -> Vec<(String, String)> {
    skipped_variants_except(meta, &[])
}

/// The same, where the variants in `expected` are skipped on every machine the tests run on
/// (zero copy that the test device cannot do, say): those are returned, not failed in CI.
pub fn skipped_variants_except(meta: &Value, expected: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in meta["variants"].as_array().expect("variants") {
        if v["status"] == "skipped" {
            let name = v["name"].as_str().unwrap_or("").to_string();
            let why = v["reason"].as_str().unwrap_or("").to_string();
            if !expected.contains(&name.as_str()) {
                super::skip_or_fail(&format!("{name} was skipped: {why}"));
            }
            out.push((name, why));
        }
    }
    out
}

/// No variant failed, and none was skipped in CI.
pub fn assert_nothing_skipped_or_failed(meta: &Value) {
    skipped_variants(meta);
    for v in meta["variants"].as_array().unwrap() {
        assert_ne!(v["status"], "failed", "{v}");
    }
}

/// In CI, meta.json's `skipped` list is empty.
pub fn assert_none_skipped_in_ci(meta: &Value) {
    if super::in_ci() {
        let s = meta["skipped"].as_array().unwrap();
        assert!(s.is_empty(), "skipped in CI: {s:?}");
    }
}

/// A trial of `flows` flows in which flow 0 failed: variant `bad`'s row names it ("1 of N
/// flows failed: flow 0:") and keeps the other flows' rates; variant `good`'s row is intact.
pub fn assert_only_flow_0_failed(rows: &[Row], bad: &str, good: &str, flows: usize) {
    let row = |v: &str| {
        rows.iter()
            .find(|r| r.variant == v)
            .unwrap_or_else(|| panic!("no row of {v}"))
    };
    let b = row(bad);
    let err = b.error.as_deref().unwrap_or("");
    let needle = format!("1 of {flows} flows failed: flow 0:");
    assert!(err.contains(&needle), "{err}");
    let m = b.metrics.as_ref().expect("the other flows are recorded");
    assert_eq!(m.extra["flows_failed"], 1.0, "{m:?}");
    for i in 1..flows {
        assert!(m.extra[&format!("flow{i}_gbps")] > 0.0, "flow {i}: {m:?}");
    }
    assert_eq!(assert_intact(row(good)).extra["flows_failed"], 0.0);
}
