//! What this kernel and this process can do: the probe behind `zclab probe`.
//!
//! Every answer is measured on the running kernel (io_uring_setup(2),
//! io_uring_register(2) `IORING_REGISTER_PROBE`, a real `SEND_ZC` over
//! loopback, a real `O_DIRECT` open, perf_event_open(2)) rather than guessed
//! from the release string, because distribution kernels backport features
//! and sysctls or seccomp policies take them away.
//!
//! `ZCLAB_HIDE` makes the probe report features as missing, so that the
//! fallbacks an older or locked-down kernel would take can be exercised here.
//!
//! The pieces: `tables` (io_uring names and releases), `uring`, `net`, `odirect` and `host`
//! (the probes), `hide` (`ZCLAB_HIDE`), `render` (the text report). The system calls they need
//! are safe wrappers in [`crate::sys`].

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod hide;
mod host;
mod net;
mod odirect;
mod render;
mod tables;
mod uring;

pub use hide::{HIDE_ENV, invalid_hide_tokens};
pub use odirect::{direct_io, probe_odirect};
pub use tables::{
    FEATURES, OPCODE_NAMES, SETUP_FLAGS, SetupFlag, feature_min_kernel, opcode_min_kernel,
    opcode_min_kernel_code, opcode_name, setup_flag_min_kernel,
};

use tables::{canonical, opcode_label};

/// Everything [`probe`] found out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub kernel: Kernel,
    pub hostname: String,
    pub io_uring: IoUring,
    pub net: Net,
    pub odirect: ODirect,
    pub memlock: Memlock,
    pub privileges: Privileges,
    pub counters: Counters,
    pub cpu: Cpu,
    /// `/sys/devices/system/clocksource/clocksource0/current_clocksource`.
    pub clocksource: String,
    /// `ZCLAB_HIDE` tokens as applied (canonical spelling), followed by any
    /// unrecognised tokens as given; see [`Caps::hide_tokens_invalid`].
    pub hidden: Vec<String>,
}

/// uname(2) of the running kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// `uname -r`, e.g. "6.18.0-1-amd64".
    pub release: String,
    /// `uname -v`, the build string.
    pub version: String,
    /// `uname -m`, e.g. "x86_64".
    pub machine: String,
    /// (major, minor) parsed from `release`; None if it does not start with
    /// "N.M". `Option` ordering makes `parsed >= Some((6, 0))` work.
    pub parsed: Option<(u32, u32)>,
}

/// io_uring support, probed with io_uring_setup(2) and io_uring_register(2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoUring {
    pub available: bool,
    /// Why not, e.g. "io_uring_setup: EPERM (kernel.io_uring_disabled=2)".
    pub unavailable_reason: Option<String>,
    /// `/proc/sys/kernel/io_uring_disabled` (absent before 6.6).
    pub io_uring_disabled_sysctl: Option<u32>,
    /// Supported opcodes by name ("NOP", ..., "PIPE"; `OP_<n>` for numbers
    /// newer than [`OPCODE_NAMES`]), in opcode order.
    pub opcodes: Vec<String>,
    /// Names from [`OPCODE_NAMES`] that this kernel lacks (or that are hidden).
    pub opcodes_unsupported: Vec<String>,
    /// Setup flags io_uring_setup(2) accepted, each tried alone (plus its
    /// prerequisite flag), in bit order.
    pub setup_flags: Vec<String>,
    /// Refused setup flags with the errno text.
    pub setup_flags_refused: Vec<(String, String)>,
    /// `IORING_FEAT_*` names reported in `io_uring_params.features`.
    pub features: Vec<String>,
    /// `IORING_REGISTER_RING_FDS` works.
    pub register_ring_fd: bool,
    /// A real SEND_ZC with `IORING_SEND_ZC_REPORT_USAGE` over TCP loopback
    /// was accepted and reported its copy; Some(false) when the kernel
    /// rejected the flag with EINVAL; None when it could not be tested.
    pub send_zc_report_usage: Option<bool>,
    /// Remarks about partial results (probe failures, hiding).
    pub notes: Vec<String>,
}

/// Network facts relevant to zero-copy sends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Net {
    /// setsockopt(SO_ZEROCOPY, 1) on a TCP socket succeeds (socket(7)).
    pub so_zerocopy: bool,
    /// `net.core.optmem_max`, which bounds MSG_ZEROCOPY's pending
    /// notifications per socket.
    pub optmem_max: Option<u64>,
    /// This process can create network namespaces with `ip netns`: root or
    /// CAP_SYS_ADMIN, and the `ip` binary exists.
    pub netns: bool,
    /// Path of the `ip` binary, if found.
    pub ip_binary: Option<String>,
}

/// Whether O_DIRECT (open(2)) really bypasses the page cache in the results
/// directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ODirect {
    /// Directory probed: the results directory, or its nearest existing
    /// ancestor when it does not exist yet.
    pub path: String,
    /// From statfs(2) `f_type`: "ext4/ext3/ext2", "tmpfs", "xfs", "btrfs",
    /// "overlayfs", ..., else the magic number in hex.
    pub fs_type: String,
    /// A file could be created there with O_DIRECT.
    pub open_ok: bool,
    /// O_DIRECT reaches a block device. False on tmpfs (which accepts the
    /// flag but only has the page cache) and whatever sits on it.
    pub real: bool,
    /// statx(2) `STATX_DIOALIGN`: required buffer alignment.
    pub mem_align: Option<u32>,
    /// statx(2) `STATX_DIOALIGN`: required file offset/length alignment.
    pub offset_align: Option<u32>,
    pub note: Option<String>,
}

/// `RLIMIT_MEMLOCK` (getrlimit(2)), which bounds registered buffers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memlock {
    /// Bytes; None = unlimited.
    pub soft: Option<u64>,
    /// Bytes; None = unlimited.
    pub hard: Option<u64>,
    /// CAP_IPC_LOCK is effective, so the limit does not apply.
    pub cap_ipc_lock: bool,
}

/// Who the process is (credentials(7), capabilities(7)).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privileges {
    /// The real effective uid, even when `root` is hidden.
    pub euid: u32,
    /// euid 0 (false when hidden by `ZCLAB_HIDE=root`).
    pub root: bool,
    pub cap_net_admin: bool,
    pub cap_sys_admin: bool,
}

/// Which perf_event_open(2) counters work for this process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Per-thread software counters (task clock etc.).
    pub perf_software: bool,
    /// Per-thread `raw_syscalls:sys_enter` counting, verified to count.
    pub syscall_tracepoint: bool,
    /// Why one of them does not work.
    pub note: Option<String>,
}

/// The CPUs this process runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// `model name` from /proc/cpuinfo.
    pub model: String,
    /// Online CPUs (sysconf(3) `_SC_NPROCESSORS_ONLN`).
    pub count: usize,
    /// CPUs in this process's affinity mask (sched_getaffinity(2)).
    pub allowed: Vec<usize>,
    /// `constant_tsc` and `nonstop_tsc` both present.
    pub invariant_tsc: bool,
}

/// Probes the running kernel, reading hide tokens from `ZCLAB_HIDE`.
/// Never fails: whatever cannot be determined becomes None/false with a note.
///
/// Side effects, all short-lived except the last: a few io_uring instances,
/// a TCP loopback connection, a scratch file in `results_dir` (unlinked at
/// once), and, as root, mounting tracefs if it is not mounted (see
/// [`crate::sys::perf::tracepoint_id`]).
pub fn probe(results_dir: &Path) -> Caps {
    let spec = std::env::var_os(HIDE_ENV)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    probe_with_hide(results_dir, &spec)
}

/// [`probe`] with the hide tokens given explicitly (same syntax as
/// `ZCLAB_HIDE`); the environment is not read.
pub fn probe_with_hide(results_dir: &Path, hide: &str) -> Caps {
    let hide = hide::Hide::parse(hide);
    let (kernel, hostname) = host::kernel();
    let euid = nix::unistd::geteuid().as_raw();
    let cap_eff = host::effective_caps();
    let cap = |n: u32| cap_eff.map_or(euid == 0, |c| c & (1u64 << n) != 0);

    let privileges = Privileges {
        euid,
        root: euid == 0,
        cap_net_admin: cap(host::CAP_NET_ADMIN),
        cap_sys_admin: cap(host::CAP_SYS_ADMIN),
    };
    let memlock = host::probe_memlock(cap(host::CAP_IPC_LOCK));
    let net = net::probe_net(privileges.root || privileges.cap_sys_admin);
    let io_uring = if hide.io_uring {
        hide::hidden_io_uring()
    } else {
        uring::probe_io_uring()
    };
    let odirect = probe_odirect(results_dir);
    let counters = host::probe_counters();

    let mut caps = Caps {
        kernel,
        hostname,
        io_uring,
        net,
        odirect,
        memlock,
        privileges,
        counters,
        cpu: host::probe_cpu(),
        clocksource: read_trimmed(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .unwrap_or_else(|| "unknown".to_string()),
        hidden: Vec::new(),
    };
    // Hiding is applied after measuring so that the report of what is left
    // stays the real one.
    hide.apply(&mut caps);
    caps
}

impl Caps {
    /// The opcode is supported and not hidden. `name` like "SEND_ZC" (case
    /// and an `IORING_OP_` prefix ignored).
    pub fn has_op(&self, name: &str) -> bool {
        let name = canonical(name, "IORING_OP_");
        self.io_uring.available && self.io_uring.opcodes.contains(&name)
    }

    /// Opcode number `code` (e.g. `io_uring::opcode::SendZc::CODE`) is supported and not hidden.
    pub fn has_opcode(&self, code: u8) -> bool {
        self.has_op(&opcode_label(code))
    }

    /// io_uring_setup(2) accepts the flag and it is not hidden. `name` like
    /// "SQPOLL" (case and an `IORING_SETUP_` prefix ignored).
    pub fn has_setup_flag(&self, name: &str) -> bool {
        let name = canonical(name, "IORING_SETUP_");
        self.io_uring.available && self.io_uring.setup_flags.contains(&name)
    }

    /// [`Caps::has_setup_flag`] for a typed flag.
    pub fn has_setup_flag_typed(&self, flag: SetupFlag) -> bool {
        self.has_setup_flag(flag.name())
    }

    /// Entries of `hidden` that were not recognised, so a caller can refuse
    /// to run with a misspelt `ZCLAB_HIDE`.
    pub fn hide_tokens_invalid(&self) -> Vec<String> {
        self.hidden
            .iter()
            .filter(|t| !hide::is_valid_token(t))
            .cloned()
            .collect()
    }
}

// ---------------------------------------------------------------------------
// helpers shared by the probes

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_u32(path: &str) -> Option<u32> {
    read_trimmed(path)?.parse().ok()
}

/// "EINVAL: Invalid argument", or the error's own text if it has no errno.
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let errno = nix::errno::Errno::from_raw(n);
            format!("{errno:?}: {}", errno.desc())
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_io_uring(opcodes: &[&str], flags: &[&str]) -> Caps {
        let mut c = probe_with_hide(Path::new("."), "io_uring");
        c.io_uring.available = true;
        c.io_uring.opcodes = opcodes.iter().map(|s| s.to_string()).collect();
        c.io_uring.setup_flags = flags.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn typed_and_named_lookups_agree() {
        let c = with_io_uring(&["NOP", "SEND_ZC", "OP_200"], &["SQPOLL", "DEFER_TASKRUN"]);
        assert!(c.has_opcode(io_uring::opcode::SendZc::CODE));
        assert!(c.has_opcode(io_uring::opcode::Nop::CODE));
        assert!(!c.has_opcode(io_uring::opcode::SendMsgZc::CODE));
        assert!(c.has_opcode(200));
        assert!(c.has_setup_flag_typed(SetupFlag::SqPoll));
        assert!(c.has_setup_flag_typed(SetupFlag::DeferTaskrun));
        assert!(!c.has_setup_flag_typed(SetupFlag::SingleIssuer));
        for f in SetupFlag::ALL {
            assert_eq!(c.has_setup_flag_typed(f), c.has_setup_flag(f.name()));
        }
        let mut off = c.clone();
        off.io_uring.available = false;
        assert!(!off.has_opcode(io_uring::opcode::Nop::CODE));
        assert!(!off.has_setup_flag_typed(SetupFlag::SqPoll));
    }

    #[test]
    fn json_keys_are_the_recorded_ones() {
        let c = probe_with_hide(Path::new("."), "io_uring");
        let v = serde_json::to_value(&c).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let mut top = keys(&v);
        top.sort();
        assert_eq!(
            top,
            [
                "clocksource",
                "counters",
                "cpu",
                "hidden",
                "hostname",
                "io_uring",
                "kernel",
                "memlock",
                "net",
                "odirect",
                "privileges"
            ]
        );
        let mut u = keys(&v["io_uring"]);
        u.sort();
        assert_eq!(
            u,
            [
                "available",
                "features",
                "io_uring_disabled_sysctl",
                "notes",
                "opcodes",
                "opcodes_unsupported",
                "register_ring_fd",
                "send_zc_report_usage",
                "setup_flags",
                "setup_flags_refused",
                "unavailable_reason"
            ]
        );
        let back: Caps = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }
}
