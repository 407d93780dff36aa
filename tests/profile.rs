//! `--profile`: buckets that sum to the sampled total, "unknown" with a reason where sampling is
//! refused or hidden (and the timed figures still there), and copies that land in the copy
//! bucket.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use zclab::measure::profile::{
    self, COPY, Kallsyms, OTHER, Profile, USER, bucket_keys, reference_copy,
};
use zclab::sys::perf_sample::Sample;

const FLOOR: &str = env!("CARGO_BIN_EXE_syscall_floor");
const F2S: &str = env!("CARGO_BIN_EXE_file_to_socket");

fn pct_sum(extra: &std::collections::BTreeMap<String, f64>) -> f64 {
    bucket_keys()
        .iter()
        .map(|k| extra[&format!("prof_{k}_pct")])
        .sum()
}

#[test]
fn buckets_sum_to_the_sampled_total() {
    let syms = Kallsyms::parse(
        "ffffffff81000000 T _copy_to_iter\nffffffff81000100 T csum_partial\n\
         ffffffff81000200 T tcp_sendmsg\nffffffff81000300 T kmem_cache_alloc\n\
         ffffffff81000400 T perf_ioctl\n",
    );
    let mut p = Profile::new(1000);
    let k = |chain: &[u64]| Sample {
        tid: 1,
        ip: chain[0],
        user: false,
        kernel_chain: chain.to_vec(),
    };
    for chain in [
        &[0xffffffff81000010u64, 0xffffffff81000210][..],
        &[0xffffffff81000110],
        &[0xffffffff81000210],
        &[0xffffffff81000310],
        &[0xffffffff80000000], // below every symbol: unknown, so other
    ] {
        p.add(&k(chain), &syms);
    }
    p.add(
        &Sample {
            tid: 1,
            ip: 0x5555_0000,
            user: true,
            kernel_chain: vec![],
        },
        &syms,
    );
    // The sampler's own ioctl is the profiler's cost, not a bucket's.
    p.add(&k(&[0xffffffff81000010, 0xffffffff81000410]), &syms);
    assert_eq!(p.samples, 6);
    assert_eq!(p.own, 1);
    assert_eq!(p.buckets.values().sum::<u64>(), p.samples);
    assert_eq!(p.buckets[COPY], 1);
    assert_eq!(p.buckets["checksum"], 1);
    assert_eq!(p.buckets["net"], 1);
    assert_eq!(p.buckets[USER], 1);
    assert_eq!(p.buckets[OTHER], 2);
    let total: f64 = bucket_keys().iter().map(|b| p.pct(b).unwrap()).sum();
    assert!((total - 100.0).abs() < 1e-9, "{total}");
    assert_eq!(p.folded.values().sum::<u64>(), p.samples);
    // The copy under tcp_sendmsg is one copy site.
    assert_eq!(p.copy_sites.get("tcp_sendmsg"), Some(&1));
    assert_eq!(p.copy_sites_over(1.0, 1000.0, 0.5), vec!["tcp_sendmsg"]);
    assert!(
        p.folded_text()
            .contains("[user];tcp_sendmsg;_copy_to_iter 1\n"),
        "{}",
        p.folded_text()
    );
    // Every pattern of the table names some bucket key once.
    let keys = bucket_keys();
    assert_eq!(keys.len(), profile::BUCKETS.len() + 2);
}

#[test]
fn hidden_perf_is_unknown_and_the_timed_figures_stay() {
    let res = tempfile::tempdir().unwrap();
    let ran = Lab::new(FLOOR)
        .tiny(res.path())
        .clean_env()
        .hide("perf")
        .argv("--variants getppid --ops 4Ki --profile")
        .run()
        .ok();
    let e = ran.exp("syscall_floor");
    let prof = e.meta()["profile"].clone();
    assert_eq!(prof["status"], "unknown", "{prof}");
    assert!(
        prof["reason"].as_str().unwrap().contains("ZCLAB_HIDE=perf"),
        "{prof}"
    );
    assert!(!e.rows.is_empty());
    for r in &e.rows {
        let m = r.metrics.as_ref().expect("timed figures");
        assert!(m.wall_ns > 0 && m.ops > 0);
        assert!(
            !m.extra
                .keys()
                .any(|k| k.starts_with("prof_") || k == "copies_per_byte"),
            "unknown is absent, never zero: {:?}",
            m.extra
        );
    }
    assert!(
        !files_under(&e.dir)
            .iter()
            .any(|p| p.extension().is_some_and(|x| x == "folded"))
    );
}

#[test]
fn unprivileged_profile_is_unknown_with_the_reason() {
    if !need_root("running as an unprivileged user") {
        return;
    }
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let res = tempfile::tempdir().unwrap();
    std::fs::set_permissions(res.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let ran = Lab::new("setpriv")
        .args(&[
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
            FLOOR,
        ])
        .tiny(res.path())
        .clean_env()
        .argv("--variants getppid --ops 4Ki --profile")
        .run();
    if ran.code() != Some(0) && ran.stderr.contains("Permission denied") {
        // The binary under the build tree is not reachable for uid 65534 here.
        skip_or_fail(&format!("uid 65534 cannot run {FLOOR}: {}", ran.stderr));
        return;
    }
    let ran = ran.ok();
    let e = ran.exp("syscall_floor");
    let prof = e.meta()["profile"].clone();
    // /proc/kallsyms shows no addresses to an unprivileged user whatever the paranoia level.
    assert_eq!(prof["status"], "unknown", "paranoid {paranoid:?}: {prof}");
    assert!(prof["reason"].as_str().is_some_and(|r| !r.is_empty()));
    for r in &e.rows {
        let m = r.metrics.as_ref().expect("timed figures");
        assert!(!m.extra.contains_key("prof_samples"));
    }
}

#[test]
fn a_read_of_a_cached_file_lands_in_the_copy_bucket() {
    if !need_root("sampling kernel call chains") {
        return;
    }
    let syms = Kallsyms::load().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = reference_copy(dir.path(), &syms).unwrap();
    let copy = r.profile.pct(COPY).unwrap();
    assert!(copy > 50.0, "{copy:.1}% in copy: {:?}", r.profile.buckets);
    assert!(r.copy_ns_per_mib > 0.0);
    assert_eq!(r.profile.buckets.values().sum::<u64>(), r.profile.samples);
}

#[test]
fn profiled_rows_carry_buckets_copies_and_folded_stacks() {
    if !need_root("sampling kernel call chains") {
        return;
    }
    let res = tempfile::tempdir().unwrap();
    let ran = Lab::new(F2S)
        .tiny(res.path())
        .clean_env()
        .argv(
            "--paths tcp-loopback --sizes 1MiB --chunks 64KiB \
             --variants classic-read-write,classic-sendfile --profile",
        )
        .run()
        .ok();
    let e = ran.exp("file_to_socket");
    assert_eq!(
        e.meta()["profile"]["status"],
        "taken",
        "{}",
        e.meta()["profile"]
    );
    let mut cpb = std::collections::BTreeMap::new();
    for r in &e.rows {
        let m = r.metrics.as_ref().unwrap();
        // 250 ms of passes give ~1250 samples when the thread has its CPU; a loaded machine
        // (the measured thread waiting for a CPU) can give under 100.
        assert!(m.extra["prof_samples"] > 20.0, "{:?}", m.extra);
        let s = pct_sum(&m.extra);
        assert!((s - 100.0).abs() < 1e-6, "buckets sum to {s}%");
        cpb.insert(r.variant.clone(), m.extra["copies_per_byte"]);
        let folded = e.dir.join(format!("{}@{}.folded", r.variant, r.point));
        let text = std::fs::read_to_string(&folded).unwrap();
        let n: u64 = text
            .lines()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(n as f64, m.extra["prof_samples"], "{}", folded.display());
    }
    // The receiver (the peer thread) copies what arrives, whatever the sender did.
    for r in &e.rows {
        let x = &r.metrics.as_ref().unwrap().extra;
        assert!(x["peer_prof_samples"] > 0.0, "{}: {x:?}", r.variant);
        assert!(x["peer_prof_copy_pct"] > 0.0, "{}: {x:?}", r.variant);
    }
    // read+write copies the payload twice on the sender, sendfile not at all.
    assert!(cpb["classic-read-write"] > 0.5, "{cpb:?}");
    assert!(
        cpb["classic-sendfile"] < cpb["classic-read-write"] / 2.0,
        "{cpb:?}"
    );
    let sites = |v: &str| {
        e.rows
            .iter()
            .find(|r| r.variant == v)
            .unwrap()
            .metrics
            .as_ref()
            .unwrap()
            .extra["copy_sites"]
    };
    assert!(sites("classic-read-write") >= 1.0);
    assert_eq!(sites("classic-sendfile"), 0.0);

    // Beside each profile, its flame graph, naming the copy read+write makes.
    let rw = |ext: &str| {
        let r = e
            .rows
            .iter()
            .find(|r| r.variant == "classic-read-write")
            .unwrap();
        e.dir.join(format!("{}@{}.{ext}", r.variant, r.point))
    };
    let svg = std::fs::read_to_string(rw("svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("copy"),
        "{}",
        &svg[..200]
    );
    // The differential graph of two variants of one point (`zclab flame`), and of one run
    // against itself (`zclab compare --flames`): one per profile the runs share.
    let sf = e.dir.join(
        std::fs::read_dir(&e.dir)
            .unwrap()
            .flatten()
            .map(|x| x.file_name().into_string().unwrap())
            .find(|n| n.starts_with("classic-sendfile@") && n.ends_with(".folded"))
            .unwrap(),
    );
    let out = res.path().join("rw-vs-sendfile.svg");
    let zclab = env!("CARGO_BIN_EXE_zclab");
    let st = std::process::Command::new(zclab)
        .arg("flame")
        .arg(rw("folded"))
        .arg(&sf)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let d = std::fs::read_to_string(&out).unwrap();
    assert!(d.contains("sendfile") && d.contains("a smaller one"));
    let flames = res.path().join("flames");
    let o = std::process::Command::new(zclab)
        .arg("compare")
        .arg(&e.dir)
        .arg(&e.dir)
        .arg("--flames")
        .arg(&flames)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let drawn = std::fs::read_dir(flames.join("file_to_socket"))
        .unwrap()
        .count();
    assert_eq!(
        drawn,
        e.rows
            .iter()
            .map(|r| (&r.variant, &r.point))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    // A file that is not a profile is refused by name.
    let bad = std::process::Command::new(zclab)
        .arg("flame")
        .arg(e.dir.join("meta.json"))
        .arg(&sf)
        .arg("-o")
        .arg(res.path().join("x.svg"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a folded-stack file"));
}
