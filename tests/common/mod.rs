//! Helpers shared by the integration tests: the one rule for what CI must not skip, a builder
//! that runs an experiment binary and reads what it wrote, assertions on rows and meta.json,
//! checks for network namespaces left behind, and a `zclab serve` with a control connection.
#![allow(dead_code, unused_imports)]

pub mod check;
pub mod lab;
pub mod netns;
pub mod serve;
pub mod variants;

pub use check::*;
pub use lab::*;
pub use netns::*;
pub use serve::*;
pub use variants::*;

/// CI runs as root with `CI` set, on a kernel with every feature the lab uses.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// The one rule for what this machine lacks: outside CI the check is skipped and says why; in
/// CI (root, every feature) a skip is a failure.
pub fn skip_or_fail(why: &str) {
    assert!(!in_ci(), "{why}, and CI is set");
    eprintln!("skipping: {why}");
}

/// True when root; otherwise `test` is skipped outside CI and fails inside it.
pub fn need_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_or_fail(&format!("{test} needs root"));
    false
}

/// True when root, for checks that only hold as root; not being root fails in CI.
pub fn require_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    assert!(
        root || !in_ci(),
        "CI is set but the tests are not running as root"
    );
    root
}

/// A tmpfs of `size` mounted on a new directory (root only), unmounted on drop: a small
/// filesystem to fill. (The second field keeps the temporary directory alive.)
pub struct SmallFs(pub std::path::PathBuf, tempfile::TempDir);

impl SmallFs {
    pub fn new(size: &str) -> SmallFs {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("fs");
        std::fs::create_dir(&p).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "zclab-test"])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        SmallFs(p, t)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
