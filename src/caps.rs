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

use std::ffi::CString;
use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys::perf;

/// Environment variable read by [`probe`]: comma-separated hide tokens.
pub const HIDE_ENV: &str = "ZCLAB_HIDE";

/// io_uring opcodes in opcode order: name as in `include/uapi/linux/io_uring.h`
/// without the `IORING_OP_` prefix, and the mainline release that added it.
const OPCODES: [(&str, &str); 63] = [
    ("NOP", "5.1"),
    ("READV", "5.1"),
    ("WRITEV", "5.1"),
    ("FSYNC", "5.1"),
    ("READ_FIXED", "5.1"),
    ("WRITE_FIXED", "5.1"),
    ("POLL_ADD", "5.1"),
    ("POLL_REMOVE", "5.1"),
    ("SYNC_FILE_RANGE", "5.2"),
    ("SENDMSG", "5.3"),
    ("RECVMSG", "5.3"),
    ("TIMEOUT", "5.4"),
    ("TIMEOUT_REMOVE", "5.5"),
    ("ACCEPT", "5.5"),
    ("ASYNC_CANCEL", "5.5"),
    ("LINK_TIMEOUT", "5.5"),
    ("CONNECT", "5.5"),
    ("FALLOCATE", "5.6"),
    ("OPENAT", "5.6"),
    ("CLOSE", "5.6"),
    ("FILES_UPDATE", "5.6"),
    ("STATX", "5.6"),
    ("READ", "5.6"),
    ("WRITE", "5.6"),
    ("FADVISE", "5.6"),
    ("MADVISE", "5.6"),
    ("SEND", "5.6"),
    ("RECV", "5.6"),
    ("OPENAT2", "5.6"),
    ("EPOLL_CTL", "5.6"),
    ("SPLICE", "5.7"),
    ("PROVIDE_BUFFERS", "5.7"),
    ("REMOVE_BUFFERS", "5.7"),
    ("TEE", "5.8"),
    ("SHUTDOWN", "5.11"),
    ("RENAMEAT", "5.11"),
    ("UNLINKAT", "5.11"),
    ("MKDIRAT", "5.15"),
    ("SYMLINKAT", "5.15"),
    ("LINKAT", "5.15"),
    ("MSG_RING", "5.18"),
    ("FSETXATTR", "5.19"),
    ("SETXATTR", "5.19"),
    ("FGETXATTR", "5.19"),
    ("GETXATTR", "5.19"),
    ("SOCKET", "5.19"),
    ("URING_CMD", "5.19"),
    ("SEND_ZC", "6.0"),
    ("SENDMSG_ZC", "6.1"),
    ("READ_MULTISHOT", "6.7"),
    ("WAITID", "6.7"),
    ("FUTEX_WAIT", "6.7"),
    ("FUTEX_WAKE", "6.7"),
    ("FUTEX_WAITV", "6.7"),
    ("FIXED_FD_INSTALL", "6.8"),
    ("FTRUNCATE", "6.9"),
    ("BIND", "6.11"),
    ("LISTEN", "6.11"),
    ("RECV_ZC", "6.15"),
    ("EPOLL_WAIT", "6.15"),
    ("READV_FIXED", "6.15"),
    ("WRITEV_FIXED", "6.15"),
    ("PIPE", "6.16"),
];

/// io_uring opcode names (`IORING_OP_` prefix dropped); the index is the
/// opcode number. Numbers past the end are reported as `OP_<n>`.
pub const OPCODE_NAMES: &[&str] = &opcode_names();

const fn opcode_names() -> [&'static str; OPCODES.len()] {
    let mut out = [""; OPCODES.len()];
    let mut i = 0;
    while i < OPCODES.len() {
        out[i] = OPCODES[i].0;
        i += 1;
    }
    out
}

/// `IORING_SETUP_*` flags: name without prefix, bit, mainline release.
pub const SETUP_FLAGS: &[(&str, u32, &str)] = &[
    ("IOPOLL", 1 << 0, "5.1"),
    ("SQPOLL", 1 << 1, "5.1"),
    ("SQ_AFF", 1 << 2, "5.1"),
    ("CQSIZE", 1 << 3, "5.5"),
    ("CLAMP", 1 << 4, "5.6"),
    ("ATTACH_WQ", 1 << 5, "5.6"),
    ("R_DISABLED", 1 << 6, "5.10"),
    ("SUBMIT_ALL", 1 << 7, "5.18"),
    ("COOP_TASKRUN", 1 << 8, "5.19"),
    ("TASKRUN_FLAG", 1 << 9, "5.19"),
    ("SQE128", 1 << 10, "5.19"),
    ("CQE32", 1 << 11, "5.19"),
    ("SINGLE_ISSUER", 1 << 12, "6.0"),
    ("DEFER_TASKRUN", 1 << 13, "6.1"),
    ("NO_MMAP", 1 << 14, "6.5"),
    ("REGISTERED_FD_ONLY", 1 << 15, "6.5"),
    ("NO_SQARRAY", 1 << 16, "6.6"),
    ("HYBRID_IOPOLL", 1 << 17, "6.13"),
    ("CQE_MIXED", 1 << 18, "6.18"),
    ("SQE_MIXED", 1 << 19, "6.19"),
];

/// `IORING_FEAT_*` bits of `io_uring_params.features`: name, bit, release.
pub const FEATURES: &[(&str, u32, &str)] = &[
    ("SINGLE_MMAP", 1 << 0, "5.4"),
    ("NODROP", 1 << 1, "5.5"),
    ("SUBMIT_STABLE", 1 << 2, "5.5"),
    ("RW_CUR_POS", 1 << 3, "5.6"),
    ("CUR_PERSONALITY", 1 << 4, "5.6"),
    ("FAST_POLL", 1 << 5, "5.7"),
    ("POLL_32BITS", 1 << 6, "5.9"),
    ("SQPOLL_NONFIXED", 1 << 7, "5.11"),
    ("EXT_ARG", 1 << 8, "5.11"),
    ("NATIVE_WORKERS", 1 << 9, "5.12"),
    ("RSRC_TAGS", 1 << 10, "5.13"),
    ("CQE_SKIP", 1 << 11, "5.17"),
    ("LINKED_FILE", 1 << 12, "5.17"),
    ("REG_REG_RING", 1 << 13, "6.3"),
    ("RECVSEND_BUNDLE", 1 << 14, "6.10"),
    ("MIN_TIMEOUT", 1 << 15, "6.12"),
    ("RW_ATTR", 1 << 16, "6.14"),
    ("NO_IOWAIT", 1 << 17, "6.15"),
];

const SETUP_SQPOLL: u32 = 1 << 1;
const SETUP_SQ_AFF: u32 = 1 << 2;
const SETUP_CQSIZE: u32 = 1 << 3;
const SETUP_ATTACH_WQ: u32 = 1 << 5;
const SETUP_NO_MMAP: u32 = 1 << 14;
const SETUP_REGISTERED_FD_ONLY: u32 = 1 << 15;

/// `IORING_SEND_ZC_REPORT_USAGE` (zc_flags of SEND_ZC, since 6.2).
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in the notification's `res` when the
/// kernel had to copy after all.
const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// `IORING_UNREGISTER_RING_FDS` and `IORING_REGISTER_USE_REGISTERED_RING`.
const UNREGISTER_RING_FDS: u32 = 21;
const REGISTER_USE_REGISTERED_RING: u32 = 1 << 31;

/// Capability numbers from `<linux/capability.h>`.
const CAP_NET_ADMIN: u32 = 12;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;

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
/// [`perf::tracepoint_id`]).
pub fn probe(results_dir: &Path) -> Caps {
    let spec = std::env::var_os(HIDE_ENV)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    probe_with_hide(results_dir, &spec)
}

/// [`probe`] with the hide tokens given explicitly (same syntax as
/// `ZCLAB_HIDE`); the environment is not read.
pub fn probe_with_hide(results_dir: &Path, hide: &str) -> Caps {
    let hide = Hide::parse(hide);
    let uts = uname();
    let euid = nix::unistd::geteuid().as_raw();
    let cap_eff = effective_caps();
    let cap = |n: u32| cap_eff.map_or(euid == 0, |c| c & (1u64 << n) != 0);

    let mut privileges = Privileges {
        euid,
        root: euid == 0,
        cap_net_admin: cap(CAP_NET_ADMIN),
        cap_sys_admin: cap(CAP_SYS_ADMIN),
    };
    let mut memlock = probe_memlock(cap(CAP_IPC_LOCK));
    let mut net = probe_net(privileges.root || privileges.cap_sys_admin);
    let mut io_uring = if hide.io_uring {
        hidden_io_uring()
    } else {
        probe_io_uring()
    };
    let mut odirect = probe_odirect(results_dir);
    let mut counters = probe_counters();

    // Hiding is applied after measuring so that the report of what is left
    // stays the real one.
    apply_op_hides(&mut io_uring, &hide.ops);
    apply_flag_hides(&mut io_uring, &hide.flags);
    if hide.send_zc_report_usage && io_uring.send_zc_report_usage.is_some() {
        io_uring.send_zc_report_usage = Some(false);
    }
    if hide.so_zerocopy {
        net.so_zerocopy = false;
    }
    if hide.odirect {
        odirect.open_ok = false;
        odirect.real = false;
        odirect.mem_align = None;
        odirect.offset_align = None;
        odirect.note = Some("O_DIRECT hidden by ZCLAB_HIDE".to_string());
    }
    if hide.root {
        privileges.root = false;
        privileges.cap_net_admin = false;
        privileges.cap_sys_admin = false;
        memlock.cap_ipc_lock = false;
        net.netns = false;
        // What an unprivileged process would get: tracefs is root-only, and
        // kernel-side counting needs perf_event_paranoid <= 1.
        let paranoid = read_trimmed("/proc/sys/kernel/perf_event_paranoid")
            .and_then(|s| s.parse::<i32>().ok());
        counters.syscall_tracepoint = false;
        counters.perf_software &= paranoid.is_some_and(|p| p <= 1);
        counters.note = Some("privileges hidden by ZCLAB_HIDE=root".to_string());
    }

    Caps {
        kernel: Kernel {
            parsed: parse_release(&uts.release),
            release: uts.release,
            version: uts.version,
            machine: uts.machine,
        },
        hostname: uts.nodename,
        io_uring,
        net,
        odirect,
        memlock,
        privileges,
        counters,
        cpu: probe_cpu(),
        clocksource: read_trimmed(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .unwrap_or_else(|| "unknown".to_string()),
        hidden: hide.applied,
    }
}

/// Hide tokens in `spec` (same syntax as `ZCLAB_HIDE`) that are not
/// recognised, as given, so that a caller can reject them before probing.
pub fn invalid_hide_tokens(spec: &str) -> Vec<String> {
    Hide::parse(spec).invalid
}

/// Mainline release that introduced an opcode (name as in [`OPCODE_NAMES`],
/// `IORING_OP_` prefix and case ignored).
pub fn opcode_min_kernel(name: &str) -> Option<&'static str> {
    let idx = opcode_index(name)?;
    OPCODES.get(idx).map(|(_, v)| *v)
}

/// Mainline release that introduced a setup flag (name as in
/// [`SETUP_FLAGS`], `IORING_SETUP_` prefix and case ignored).
pub fn setup_flag_min_kernel(name: &str) -> Option<&'static str> {
    let name = canonical(name, "IORING_SETUP_");
    SETUP_FLAGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, v)| *v)
}

/// Mainline release that introduced an `IORING_FEAT_*` bit.
pub fn feature_min_kernel(name: &str) -> Option<&'static str> {
    let name = canonical(name, "IORING_FEAT_");
    FEATURES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, v)| *v)
}

/// Name of an opcode number: the kernel's name or `OP_<n>`.
pub fn opcode_name(op: u8) -> String {
    OPCODE_NAMES
        .get(usize::from(op))
        .map_or_else(|| format!("OP_{op}"), |n| (*n).to_string())
}

impl Caps {
    /// The opcode is supported and not hidden. `name` like "SEND_ZC" (case
    /// and an `IORING_OP_` prefix ignored).
    pub fn has_op(&self, name: &str) -> bool {
        let name = canonical(name, "IORING_OP_");
        self.io_uring.available && self.io_uring.opcodes.contains(&name)
    }

    /// io_uring_setup(2) accepts the flag and it is not hidden. `name` like
    /// "SQPOLL" (case and an `IORING_SETUP_` prefix ignored).
    pub fn has_setup_flag(&self, name: &str) -> bool {
        let name = canonical(name, "IORING_SETUP_");
        self.io_uring.available && self.io_uring.setup_flags.contains(&name)
    }

    /// Entries of `hidden` that were not recognised, so a caller can refuse
    /// to run with a misspelt `ZCLAB_HIDE`.
    pub fn hide_tokens_invalid(&self) -> Vec<String> {
        self.hidden
            .iter()
            .filter(|t| parse_token(t).is_none())
            .cloned()
            .collect()
    }

    /// Human-readable report for `zclab probe`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let yn = |b: bool| if b { "yes" } else { "no" };

        line("kernel".to_string());
        let parsed = self
            .kernel
            .parsed
            .map_or_else(|| "unparsed".to_string(), |(a, b)| format!("{a}.{b}"));
        line(format!(
            "  release      {} ({parsed}), {}",
            self.kernel.release, self.kernel.machine
        ));
        line(format!("  build        {}", self.kernel.version));
        line(format!("  hostname     {}", self.hostname));
        line(format!("  clocksource  {}", self.clocksource));
        line(format!("  cpu          {}", self.cpu.model));
        line(format!(
            "  cpus         {} online, allowed {}, invariant TSC {}",
            self.cpu.count,
            cpu_list(&self.cpu.allowed),
            yn(self.cpu.invariant_tsc)
        ));

        line(String::new());
        let u = &self.io_uring;
        let sysctl = u
            .io_uring_disabled_sysctl
            .map_or_else(|| "absent".to_string(), |v| v.to_string());
        if u.available {
            line(format!(
                "io_uring: available (kernel.io_uring_disabled={sysctl})"
            ));
        } else {
            let why = u.unavailable_reason.as_deref().unwrap_or("unknown reason");
            let words: Vec<String> =
                format!("io_uring: UNAVAILABLE: {why} (kernel.io_uring_disabled={sysctl})")
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
            wrap_lines(&mut line, "", "    ", &words);
        }
        if u.available {
            let known_supported = u
                .opcodes
                .iter()
                .filter(|o| OPCODE_NAMES.contains(&o.as_str()))
                .count();
            let extra = u.opcodes.len() - known_supported;
            let extra = if extra > 0 {
                format!(", plus {extra} newer than this build knows")
            } else {
                String::new()
            };
            line(format!(
                "  opcodes: {known_supported} of {} known opcodes supported{extra}",
                OPCODE_NAMES.len()
            ));
            wrap_into(&mut line, "    ", &u.opcodes);
            if u.opcodes_unsupported.is_empty() {
                line("  opcodes missing: none".to_string());
            } else {
                line(format!(
                    "  opcodes missing ({}), with the release that added them:",
                    u.opcodes_unsupported.len()
                ));
                let missing: Vec<String> = u
                    .opcodes_unsupported
                    .iter()
                    .map(|o| match opcode_min_kernel(o) {
                        Some(v) => format!("{o}({v})"),
                        None => o.clone(),
                    })
                    .collect();
                wrap_into(&mut line, "    ", &missing);
            }
            line(format!(
                "  setup flags accepted ({} of {}):",
                u.setup_flags.len(),
                SETUP_FLAGS.len()
            ));
            wrap_into(&mut line, "    ", &u.setup_flags);
            if u.setup_flags_refused.is_empty() {
                line("  setup flags refused: none".to_string());
            } else {
                line(format!(
                    "  setup flags refused ({}):",
                    u.setup_flags_refused.len()
                ));
                for (flag, why) in &u.setup_flags_refused {
                    // The release matters only when the kernel itself refused.
                    let since = match setup_flag_min_kernel(flag) {
                        Some(v) if !why.starts_with("hidden") => format!(" [since {v}]"),
                        _ => String::new(),
                    };
                    line(format!("    {flag}: {why}{since}"));
                }
            }
            line(format!("  features ({}):", u.features.len()));
            wrap_into(&mut line, "    ", &u.features);
            line(format!("  register ring fd: {}", yn(u.register_ring_fd)));
            line(format!(
                "  SEND_ZC usage reporting: {}",
                match u.send_zc_report_usage {
                    Some(b) => yn(b),
                    None => "not tested",
                }
            ));
        } else {
            line(format!(
                "  none of the {} known opcodes can be used",
                OPCODE_NAMES.len()
            ));
        }
        for n in &u.notes {
            note_into(&mut line, n);
        }

        line(String::new());
        line("network".to_string());
        line(format!(
            "  SO_ZEROCOPY          {}",
            yn(self.net.so_zerocopy)
        ));
        line(format!(
            "  net.core.optmem_max  {}",
            self.net
                .optmem_max
                .map_or_else(|| "unknown".to_string(), |v| v.to_string())
        ));
        line(format!(
            "  network namespaces   {} (ip binary: {})",
            yn(self.net.netns),
            self.net.ip_binary.as_deref().unwrap_or("not found")
        ));

        line(String::new());
        let d = &self.odirect;
        line(format!("O_DIRECT in {}", d.path));
        line(format!("  filesystem  {}", d.fs_type));
        line(format!(
            "  open {}, real {}, alignment: memory {}, offset {}",
            yn(d.open_ok),
            yn(d.real),
            opt_num(d.mem_align),
            opt_num(d.offset_align)
        ));
        if let Some(n) = &d.note {
            note_into(&mut line, n);
        }

        line(String::new());
        line("limits and privileges".to_string());
        line(format!(
            "  memlock     soft {}, hard {}, CAP_IPC_LOCK {}",
            limit_text(self.memlock.soft),
            limit_text(self.memlock.hard),
            yn(self.memlock.cap_ipc_lock)
        ));
        let p = &self.privileges;
        line(format!(
            "  euid        {}{}, CAP_NET_ADMIN {}, CAP_SYS_ADMIN {}",
            p.euid,
            if p.root { " (root)" } else { "" },
            yn(p.cap_net_admin),
            yn(p.cap_sys_admin)
        ));
        line(format!(
            "  counters    perf software {}, syscall tracepoint {}",
            yn(self.counters.perf_software),
            yn(self.counters.syscall_tracepoint)
        ));
        if let Some(n) = &self.counters.note {
            note_into(&mut line, n);
        }

        line(String::new());
        if self.hidden.is_empty() {
            line("hidden by ZCLAB_HIDE: nothing".to_string());
        } else {
            line(format!("hidden by ZCLAB_HIDE: {}", self.hidden.join(",")));
            let bad = self.hide_tokens_invalid();
            if !bad.is_empty() {
                line(format!("  UNRECOGNISED tokens: {}", bad.join(",")));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// ZCLAB_HIDE

/// Parsed hide tokens.
#[derive(Debug, Default)]
struct Hide {
    io_uring: bool,
    ops: Vec<String>,
    flags: Vec<String>,
    so_zerocopy: bool,
    send_zc_report_usage: bool,
    odirect: bool,
    root: bool,
    /// Canonical spelling of recognised tokens, then unrecognised ones.
    applied: Vec<String>,
    invalid: Vec<String>,
}

enum Token {
    IoUring,
    Op(String),
    Flag(String),
    SoZerocopy,
    SendZcReportUsage,
    ODirect,
    Root,
}

fn parse_token(t: &str) -> Option<Token> {
    let t = t.trim();
    if let Some(op) = t.strip_prefix("op:") {
        let op = canonical(op, "IORING_OP_");
        return OPCODE_NAMES.contains(&op.as_str()).then_some(Token::Op(op));
    }
    if let Some(flag) = t.strip_prefix("flag:") {
        let flag = canonical(flag, "IORING_SETUP_");
        return SETUP_FLAGS
            .iter()
            .any(|(n, _, _)| *n == flag)
            .then_some(Token::Flag(flag));
    }
    match t.to_ascii_lowercase().as_str() {
        "io_uring" => Some(Token::IoUring),
        "so_zerocopy" => Some(Token::SoZerocopy),
        "send_zc_report_usage" => Some(Token::SendZcReportUsage),
        "odirect" => Some(Token::ODirect),
        "root" => Some(Token::Root),
        _ => None,
    }
}

impl Hide {
    fn parse(spec: &str) -> Hide {
        let mut h = Hide::default();
        for raw in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let canon = match parse_token(raw) {
                None => {
                    h.invalid.push(raw.to_string());
                    continue;
                }
                Some(Token::IoUring) => {
                    h.io_uring = true;
                    "io_uring".to_string()
                }
                Some(Token::Op(op)) => {
                    let c = format!("op:{op}");
                    h.ops.push(op);
                    c
                }
                Some(Token::Flag(f)) => {
                    let c = format!("flag:{f}");
                    h.flags.push(f);
                    c
                }
                Some(Token::SoZerocopy) => {
                    h.so_zerocopy = true;
                    "so_zerocopy".to_string()
                }
                Some(Token::SendZcReportUsage) => {
                    h.send_zc_report_usage = true;
                    "send_zc_report_usage".to_string()
                }
                Some(Token::ODirect) => {
                    h.odirect = true;
                    "odirect".to_string()
                }
                Some(Token::Root) => {
                    h.root = true;
                    "root".to_string()
                }
            };
            if !h.applied.contains(&canon) {
                h.applied.push(canon);
            }
        }
        h.applied.extend(h.invalid.iter().cloned());
        h
    }
}

fn hidden_io_uring() -> IoUring {
    IoUring {
        available: false,
        unavailable_reason: Some("hidden by ZCLAB_HIDE".to_string()),
        io_uring_disabled_sysctl: read_u32("/proc/sys/kernel/io_uring_disabled"),
        opcodes_unsupported: OPCODE_NAMES.iter().map(|s| s.to_string()).collect(),
        ..IoUring::default()
    }
}

fn apply_op_hides(u: &mut IoUring, ops: &[String]) {
    for op in ops {
        let Some(pos) = u.opcodes.iter().position(|o| o == op) else {
            continue;
        };
        u.opcodes.remove(pos);
        // Keep the unsupported list in opcode order.
        u.opcodes_unsupported.push(op.clone());
        u.opcodes_unsupported
            .sort_by_key(|o| opcode_index(o).unwrap_or(usize::MAX));
        if op == "SEND_ZC" {
            u.send_zc_report_usage = None;
        }
    }
}

/// Flags whose probe needs another flag, which hiding must follow.
const FLAG_PREREQ: &[(&str, &str)] = &[
    ("SQ_AFF", "SQPOLL"),
    ("TASKRUN_FLAG", "COOP_TASKRUN"),
    ("DEFER_TASKRUN", "SINGLE_ISSUER"),
    ("REGISTERED_FD_ONLY", "NO_MMAP"),
    ("HYBRID_IOPOLL", "IOPOLL"),
];

fn apply_flag_hides(u: &mut IoUring, flags: &[String]) {
    let mut hidden: Vec<(String, String)> = Vec::new();
    for f in flags {
        hidden.push((f.clone(), "hidden by ZCLAB_HIDE".to_string()));
    }
    for (dep, pre) in FLAG_PREREQ {
        if flags.iter().any(|f| f == pre) && !flags.iter().any(|f| f == dep) {
            hidden.push((
                dep.to_string(),
                format!("hidden by ZCLAB_HIDE (needs {pre})"),
            ));
        }
    }
    for (flag, why) in hidden {
        if let Some(pos) = u.setup_flags.iter().position(|f| *f == flag) {
            u.setup_flags.remove(pos);
            u.setup_flags_refused.push((flag, why));
        }
    }
    u.setup_flags_refused
        .sort_by_key(|(f, _)| flag_bit(f).unwrap_or(u32::MAX));
}

// ---------------------------------------------------------------------------
// io_uring

/// `struct io_sqring_offsets` from `<linux/io_uring.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_cqring_offsets` from `<linux/io_uring.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct CqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

/// `struct io_uring_params` from `<linux/io_uring.h>` (120 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct UringParams {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqringOffsets,
    cq_off: CqringOffsets,
}

const _: () = assert!(std::mem::size_of::<UringParams>() == 120);

/// `struct io_uring_rsrc_update` from `<linux/io_uring.h>`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// io_uring_setup(2). The returned value is a ring fd, or with
/// `IORING_SETUP_REGISTERED_FD_ONLY` a registered-ring index.
fn uring_setup(entries: u32, params: &mut UringParams) -> io::Result<i32> {
    // SAFETY: `params` is a valid, writable io_uring_params of the size the
    // kernel expects; any user_addr it carries is the caller's concern (see
    // `try_setup_flag`).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            entries as libc::c_uint,
            params as *mut UringParams,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        i32::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
    }
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: only called on an fd io_uring_setup just returned, which
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn probe_io_uring() -> IoUring {
    let mut u = IoUring {
        io_uring_disabled_sysctl: read_u32("/proc/sys/kernel/io_uring_disabled"),
        ..IoUring::default()
    };

    let mut params = UringParams::default();
    let base = match uring_setup(8, &mut params) {
        Ok(fd) => owned(fd),
        Err(e) => {
            u.unavailable_reason = Some(unavailable_reason(&e, u.io_uring_disabled_sysctl));
            u.opcodes_unsupported = OPCODE_NAMES.iter().map(|s| s.to_string()).collect();
            return u;
        }
    };
    u.available = true;
    u.features = bit_names(params.features, FEATURES, "FEAT");

    match io_uring::IoUring::new(8) {
        Ok(mut ring) => {
            probe_opcodes(&ring, &mut u);
            let mut sub = ring.submitter();
            match sub.register_ring_fd() {
                Ok(()) => {
                    u.register_ring_fd = true;
                    // The registration holds a reference to the ring for the
                    // life of the thread; drop it now.
                    let _ = sub.unregister_ring_fd();
                }
                Err(e) => u
                    .notes
                    .push(format!("IORING_REGISTER_RING_FDS: {}", errno_text(&e))),
            }
            if u.opcodes.iter().any(|o| o == "SEND_ZC") {
                match send_zc_usage(&mut ring) {
                    Ok((v, remark)) => {
                        u.send_zc_report_usage = Some(v);
                        u.notes.extend(remark);
                    }
                    Err(e) => u
                        .notes
                        .push(format!("SEND_ZC usage test: {}", errno_text(&e))),
                }
            }
        }
        Err(e) => u
            .notes
            .push(format!("opening a ring for probing: {}", errno_text(&e))),
    }

    probe_setup_flags(&base, &mut u);
    u
}

fn unavailable_reason(e: &io::Error, sysctl: Option<u32>) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "ENOSYS: kernel built without io_uring".to_string(),
        Some(libc::EPERM) => match sysctl {
            Some(v @ 1) => format!(
                "io_uring_setup: EPERM (kernel.io_uring_disabled={v}: only root and kernel.io_uring_group may use it)"
            ),
            Some(v @ 2..) => format!("io_uring_setup: EPERM (kernel.io_uring_disabled={v})"),
            _ => "io_uring_setup: EPERM (refused by a security policy such as seccomp)".to_string(),
        },
        _ => format!("io_uring_setup: {}", errno_text(e)),
    }
}

fn probe_opcodes(ring: &io_uring::IoUring, u: &mut IoUring) {
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        u.notes.push(format!(
            "IORING_REGISTER_PROBE failed ({}): opcode list unknown",
            errno_text(&e)
        ));
        return;
    }
    for op in 0..=u8::MAX {
        if probe.is_supported(op) {
            u.opcodes.push(opcode_name(op));
        } else if let Some(name) = OPCODE_NAMES.get(usize::from(op)) {
            u.opcodes_unsupported.push((*name).to_string());
        }
    }
}

fn probe_setup_flags(base: &OwnedFd, u: &mut IoUring) {
    let first_cpu = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .ok()
        .and_then(|set| (0..nix::sched::CpuSet::count()).find(|&i| set.is_set(i).unwrap_or(false)))
        .unwrap_or(0);
    let prereq = |name: &str| -> u32 {
        FLAG_PREREQ
            .iter()
            .find(|(dep, _)| *dep == name)
            .and_then(|(_, pre)| flag_bit(pre))
            .unwrap_or(0)
    };
    for (name, bit, _) in SETUP_FLAGS {
        let mut p = UringParams {
            flags: bit | prereq(name),
            ..UringParams::default()
        };
        if p.flags & SETUP_SQPOLL != 0 {
            // Short idle so the poller thread goes to sleep at once.
            p.sq_thread_idle = 1;
        }
        if p.flags & SETUP_SQ_AFF != 0 {
            p.sq_thread_cpu = u32::try_from(first_cpu).unwrap_or(0);
        }
        if p.flags & SETUP_CQSIZE != 0 {
            p.cq_entries = 64;
        }
        if p.flags & SETUP_ATTACH_WQ != 0 {
            p.wq_fd = u32::try_from(base.as_raw_fd()).unwrap_or(u32::MAX);
        }
        match try_setup_flag(&mut p) {
            Ok(()) => u.setup_flags.push((*name).to_string()),
            Err(e) => u
                .setup_flags_refused
                .push(((*name).to_string(), errno_text(&e))),
        }
    }
}

/// Page-aligned anonymous memory for `IORING_SETUP_NO_MMAP`, unmapped on drop.
struct AnonPage {
    ptr: *mut libc::c_void,
    len: usize,
}

impl AnonPage {
    fn new(len: usize) -> io::Result<AnonPage> {
        // SAFETY: anonymous private mapping at a kernel-chosen address; no
        // existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            Err(io::Error::last_os_error())
        } else {
            Ok(AnonPage { ptr, len })
        }
    }
}

impl Drop for AnonPage {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping created in `new`; the
        // kernel pins the pages it uses, so unmapping here is safe even if a
        // ring is still being torn down.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// Sets up and immediately tears down one ring with `p.flags`.
fn try_setup_flag(p: &mut UringParams) -> io::Result<()> {
    // With NO_MMAP the rings live in memory we provide; one page each is
    // plenty for a 1-entry ring (and older kernels need them single-page).
    let mem = if p.flags & SETUP_NO_MMAP != 0 {
        let page = page_size();
        let rings = AnonPage::new(page)?;
        let sqes = AnonPage::new(page)?;
        p.cq_off.user_addr = rings.ptr as u64;
        p.sq_off.user_addr = sqes.ptr as u64;
        Some((rings, sqes))
    } else {
        None
    };
    let rc = uring_setup(1, p)?;
    if p.flags & SETUP_REGISTERED_FD_ONLY != 0 {
        // `rc` is an index into this thread's registered rings, not an fd.
        unregister_ring_index(rc);
    } else {
        drop(owned(rc));
    }
    drop(mem);
    Ok(())
}

fn unregister_ring_index(index: i32) {
    let Ok(offset) = u32::try_from(index) else {
        return;
    };
    let up = RsrcUpdate {
        offset,
        ..RsrcUpdate::default()
    };
    // SAFETY: io_uring_register(2) reads one io_uring_rsrc_update from `up`,
    // which lives across the call; `index` names a ring registered by this
    // thread, so the registered-ring lookup is valid.
    unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            index as libc::c_uint,
            UNREGISTER_RING_FDS | REGISTER_USE_REGISTERED_RING,
            &up as *const RsrcUpdate,
            1 as libc::c_uint,
        );
    }
}

/// Sends 4 KiB with SEND_ZC and `IORING_SEND_ZC_REPORT_USAGE` over a TCP
/// loopback connection. Kernels without usage reporting fail the request
/// with EINVAL; loopback always ends up copying, so a kernel that reports
/// usage sets `IORING_NOTIF_USAGE_ZC_COPIED` in the notification.
/// Returns the verdict and a remark when the result looks odd.
fn send_zc_usage(ring: &mut io_uring::IoUring) -> io::Result<(bool, Option<String>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    let buf = vec![0x5au8; 4096].into_boxed_slice();

    let sqe = io_uring::opcode::SendZc::new(
        io_uring::types::Fd(client.as_raw_fd()),
        buf.as_ptr(),
        buf.len() as u32,
    )
    .zc_flags(SEND_ZC_REPORT_USAGE)
    .build()
    .user_data(0x5e4d);
    // SAFETY: the buffer and socket stay alive until both completions are
    // reaped below; if they are not, the buffer is leaked instead of freed.
    unsafe {
        ring.submission()
            .push(&sqe)
            .map_err(|_| io::Error::other("submission queue full"))?;
    }

    // (res, more) of the request's completion, then res of the notification.
    let mut result: Option<(i32, bool)> = None;
    let mut notif_res: Option<u32> = None;
    let deadline = Instant::now() + Duration::from_secs(2);
    let outcome = loop {
        let ts = io_uring::types::Timespec::new().nsec(50_000_000);
        let args = io_uring::types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => break Err(e),
        }
        for cqe in ring.completion() {
            if io_uring::cqueue::notif(cqe.flags()) {
                // `res` is a bit set here, not a signed result.
                notif_res = Some(cqe.result() as u32);
            } else {
                result = Some((cqe.result(), io_uring::cqueue::more(cqe.flags())));
            }
        }
        match (result, notif_res) {
            (Some((res, _)), _) if res == -libc::EINVAL => break Ok((false, None)),
            (Some((res, _)), _) if res < 0 => break Err(io::Error::from_raw_os_error(-res)),
            (Some((_, false)), _) => {
                break Ok((
                    true,
                    Some("SEND_ZC accepted the flag but posted no notification".to_string()),
                ));
            }
            (Some(_), Some(n)) if n & NOTIF_USAGE_ZC_COPIED != 0 => break Ok((true, None)),
            (Some(_), Some(n)) => {
                break Ok((
                    true,
                    Some(format!(
                        "SEND_ZC usage flag accepted but loopback reported no copy (notif res {n:#x})"
                    )),
                ));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no SEND_ZC completion within 2 s",
            ));
        }
    };
    let in_flight = match result {
        None => true,
        Some((res, more)) => res >= 0 && more && notif_res.is_none(),
    };
    if in_flight {
        // The kernel may still read the buffer: never hand it back.
        std::mem::forget(buf);
    }
    drop(server);
    outcome
}

// ---------------------------------------------------------------------------
// network, O_DIRECT, limits

fn probe_net(may_admin: bool) -> Net {
    let ip_binary = find_ip_binary();
    Net {
        so_zerocopy: so_zerocopy_works(),
        optmem_max: read_trimmed("/proc/sys/net/core/optmem_max").and_then(|s| s.parse().ok()),
        netns: may_admin && ip_binary.is_some(),
        ip_binary,
    }
}

fn so_zerocopy_works() -> bool {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    let sock = owned(fd);
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

fn find_ip_binary() -> Option<String> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join("ip"))
        .find(|p| is_executable(p))
        .map(|p| p.display().to_string())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Probes O_DIRECT in `dir` (or its nearest existing ancestor): creates and
/// at once unlinks a scratch file opened with O_DIRECT (open(2)), asks
/// statx(2) for `STATX_DIOALIGN`, and classifies the filesystem with
/// statfs(2).
pub fn probe_odirect(dir: &Path) -> ODirect {
    let mut notes: Vec<String> = Vec::new();
    let mut target = dir.to_path_buf();
    while !target.is_dir() {
        match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => target = p.to_path_buf(),
            _ => {
                target = PathBuf::from(".");
                break;
            }
        }
    }
    if target != dir {
        notes.push(format!(
            "{} does not exist yet; probed {}",
            dir.display(),
            target.display()
        ));
    }
    let mut d = ODirect {
        path: target.display().to_string(),
        ..ODirect::default()
    };
    let magic = match fs_magic(&target) {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!("statfs: {}", errno_text(&e)));
            None
        }
    };
    d.fs_type = magic.map_or_else(|| "unknown".to_string(), fs_name);

    match open_direct_scratch(&target) {
        Ok(fd) => {
            d.open_ok = true;
            match dio_align(&fd) {
                Ok(Some((mem, off))) => {
                    d.mem_align = Some(mem);
                    d.offset_align = Some(off);
                }
                Ok(None) => {}
                Err(e) => notes.push(format!("statx: {}", errno_text(&e))),
            }
        }
        Err(e) => {
            let what = if e.raw_os_error() == Some(libc::EINVAL) {
                "filesystem refuses O_DIRECT".to_string()
            } else {
                format!("cannot create a scratch file: {}", errno_text(&e))
            };
            notes.push(what);
        }
    }

    let memory_backed = matches!(magic, Some(TMPFS_MAGIC | RAMFS_MAGIC));
    d.real = d.open_ok && !memory_backed && d.mem_align.is_some();
    if d.open_ok && !d.real {
        if memory_backed {
            notes.push(format!(
                "{} accepts O_DIRECT but it is memory: nothing bypasses a cache",
                d.fs_type
            ));
        } else if BLOCK_FS.contains(&magic.unwrap_or(0)) {
            // Kernels before 6.1 have no STATX_DIOALIGN; these filesystems
            // implement O_DIRECT on the block device.
            d.real = true;
            notes.push("alignment not reported (statx DIOALIGN needs 6.1)".to_string());
        } else {
            notes.push(
                "O_DIRECT accepted but no DIO alignment reported: likely not reaching a block device"
                    .to_string(),
            );
        }
    }
    d.note = (!notes.is_empty()).then(|| notes.join("; "));
    d
}

const TMPFS_MAGIC: u32 = 0x0102_1994;
const RAMFS_MAGIC: u32 = 0x8584_58f6;
const EXT4_MAGIC: u32 = 0xef53;
const XFS_MAGIC: u32 = 0x5846_5342;
const BTRFS_MAGIC: u32 = 0x9123_683e;
const F2FS_MAGIC: u32 = 0xf2f5_2010;
/// Filesystems whose O_DIRECT goes to the block device.
const BLOCK_FS: [u32; 4] = [EXT4_MAGIC, XFS_MAGIC, BTRFS_MAGIC, F2FS_MAGIC];

fn fs_name(magic: u32) -> String {
    match magic {
        EXT4_MAGIC => "ext4/ext3/ext2".to_string(),
        TMPFS_MAGIC => "tmpfs".to_string(),
        RAMFS_MAGIC => "ramfs".to_string(),
        XFS_MAGIC => "xfs".to_string(),
        BTRFS_MAGIC => "btrfs".to_string(),
        F2FS_MAGIC => "f2fs".to_string(),
        0x794c_7630 => "overlayfs".to_string(),
        0x6969 => "nfs".to_string(),
        0x2fc1_2fc1 => "zfs".to_string(),
        0x6573_5546 => "fuse".to_string(),
        0x0102_1997 => "9p".to_string(),
        0x9fa0 => "proc".to_string(),
        other => format!("{other:#x}"),
    }
}

fn path_cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn fs_magic(dir: &Path) -> io::Result<u32> {
    let c = path_cstring(dir)?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a writable statfs.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // f_type is a signed word; magic numbers are 32-bit.
    Ok((st.f_type as u64 & 0xffff_ffff) as u32)
}

static SCRATCH_SEQ: AtomicU32 = AtomicU32::new(0);

fn open_direct_scratch(dir: &Path) -> io::Result<OwnedFd> {
    let name = format!(
        ".zclab-odirect-{}-{}",
        std::process::id(),
        SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(name);
    let c = path_cstring(&path)?;
    // SAFETY: `c` is NUL-terminated; O_CREAT takes the mode argument given.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_DIRECT | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = owned(fd);
    // Unlink at once so that nothing is left behind; the open fd is enough
    // for statx.
    let _ = fs::remove_file(&path);
    Ok(fd)
}

/// statx(2) `STATX_DIOALIGN` of an open file; None if not reported or 0.
fn dio_align(fd: &OwnedFd) -> io::Result<Option<(u32, u32)>> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: empty path with AT_EMPTY_PATH refers to `fd` itself; `stx`
    // is writable and of the kernel's layout.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 || stx.stx_dio_mem_align == 0 {
        return Ok(None);
    }
    Ok(Some((stx.stx_dio_mem_align, stx.stx_dio_offset_align)))
}

fn probe_memlock(cap_ipc_lock: bool) -> Memlock {
    let lim = |v: libc::rlim_t| (v != libc::RLIM_INFINITY).then_some(v);
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) };
    if rc < 0 {
        return Memlock {
            soft: None,
            hard: None,
            cap_ipc_lock,
        };
    }
    Memlock {
        soft: lim(rl.rlim_cur),
        hard: lim(rl.rlim_max),
        cap_ipc_lock,
    }
}

// ---------------------------------------------------------------------------
// counters, cpu, identity

fn probe_counters() -> Counters {
    let mut notes = Vec::new();
    let paranoid = read_trimmed("/proc/sys/kernel/perf_event_paranoid").unwrap_or_default();
    let perf_software = match perf::software_for_thread(perf::SwEvent::TaskClock, 0) {
        Ok(c) => c.read().is_ok(),
        Err(e) => {
            notes.push(format!(
                "software counters: {} (perf_event_paranoid={paranoid})",
                errno_text(&e)
            ));
            false
        }
    };
    let syscall_tracepoint = match perf::syscalls_for_thread(0) {
        Ok(c) => {
            // Check that it really counts rather than trusting the open.
            let before = c.read();
            // SAFETY: getppid has no preconditions and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
            match (before, c.read()) {
                (Ok(a), Ok(b)) if b > a => true,
                _ => {
                    notes.push("syscall tracepoint opened but did not count".to_string());
                    false
                }
            }
        }
        Err(e) => {
            notes.push(format!(
                "syscall tracepoint: {} (perf_event_paranoid={paranoid}; needs root or CAP_PERFMON, and tracefs)",
                errno_text(&e)
            ));
            false
        }
    };
    Counters {
        perf_software,
        syscall_tracepoint,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

fn probe_cpu() -> Cpu {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let model = field("model name")
        .or_else(|| field("Hardware"))
        .or_else(|| field("cpu model"))
        .unwrap_or_else(|| "unknown".to_string());
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    Cpu {
        model,
        count: usize::try_from(online).unwrap_or(0),
        allowed,
        invariant_tsc: has("constant_tsc") && has("nonstop_tsc"),
    }
}

struct Uts {
    nodename: String,
    release: String,
    version: String,
    machine: String,
}

fn uname() -> Uts {
    // SAFETY: an all-zero utsname is a valid value of this plain C struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a writable utsname.
    let rc = unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| -> String {
        if rc < 0 {
            return "unknown".to_string();
        }
        // The kernel NUL-terminates each field; stop at the array end anyway.
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Uts {
        nodename: field(&u.nodename),
        release: field(&u.release),
        version: field(&u.version),
        machine: field(&u.machine),
    }
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `CapEff` from /proc/self/status (capabilities(7)).
fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

// ---------------------------------------------------------------------------
// helpers

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(v).ok().filter(|&v| v > 0).unwrap_or(4096)
}

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

/// Upper-case, prefix-stripped spelling of an opcode or flag name.
fn canonical(name: &str, prefix: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    up.strip_prefix(prefix).map(str::to_string).unwrap_or(up)
}

fn opcode_index(name: &str) -> Option<usize> {
    let name = canonical(name, "IORING_OP_");
    OPCODE_NAMES.iter().position(|n| *n == name)
}

fn flag_bit(name: &str) -> Option<u32> {
    SETUP_FLAGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, b, _)| *b)
}

fn bit_names(bits: u32, table: &[(&str, u32, &str)], unknown: &str) -> Vec<String> {
    (0..32)
        .map(|i| 1u32 << i)
        .filter(|b| bits & b != 0)
        .map(|b| {
            table.iter().find(|(_, v, _)| *v == b).map_or_else(
                || format!("{unknown}_BIT{}", b.trailing_zeros()),
                |(n, _, _)| (*n).to_string(),
            )
        })
        .collect()
}

/// Word-wraps `words` at 78 columns, every line indented by `indent`.
fn wrap_into(line: &mut impl FnMut(String), indent: &str, words: &[String]) {
    if words.is_empty() {
        line(format!("{indent}(none)"));
        return;
    }
    wrap_lines(line, indent, indent, words);
}

/// A free-text remark, wrapped under a "note:" label.
fn note_into(line: &mut impl FnMut(String), note: &str) {
    let words: Vec<String> = std::iter::once("note:")
        .chain(note.split_whitespace())
        .map(str::to_string)
        .collect();
    wrap_lines(line, "  ", "        ", &words);
}

fn wrap_lines(line: &mut impl FnMut(String), first: &str, rest: &str, words: &[String]) {
    const WIDTH: usize = 78;
    let mut cur = String::from(first);
    let mut indent_len = first.len();
    for w in words {
        if cur.len() > indent_len && cur.len() + 1 + w.len() > WIDTH {
            line(std::mem::replace(&mut cur, String::from(rest)));
            indent_len = rest.len();
        }
        if cur.len() > indent_len {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    line(cur);
}

fn cpu_list(cpus: &[usize]) -> String {
    if cpus.is_empty() {
        return "unknown".to_string();
    }
    // Collapse runs: [0,1,2,5] -> "0-2,5".
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

fn opt_num(v: Option<u32>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

fn limit_text(v: Option<u64>) -> String {
    match v {
        None => "unlimited".to_string(),
        Some(b) if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        Some(b) if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        Some(b) => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        assert_eq!(OPCODE_NAMES.len(), 63);
        assert_eq!(OPCODE_NAMES[47], "SEND_ZC");
        assert_eq!(OPCODE_NAMES[62], "PIPE");
        assert_eq!(opcode_min_kernel("send_zc"), Some("6.0"));
        assert_eq!(opcode_min_kernel("IORING_OP_SENDMSG_ZC"), Some("6.1"));
        assert_eq!(opcode_min_kernel("READ"), Some("5.6"));
        assert_eq!(opcode_min_kernel("TEE"), Some("5.8"));
        assert_eq!(opcode_min_kernel("LISTEN"), Some("6.11"));
        assert_eq!(opcode_min_kernel("NOPE"), None);
        assert_eq!(setup_flag_min_kernel("DEFER_TASKRUN"), Some("6.1"));
        assert_eq!(opcode_name(200), "OP_200");
        // 6.1 knew opcodes up to SENDMSG_ZC, 6.12 up to LISTEN.
        let upto = |v: (u32, u32)| {
            OPCODE_NAMES
                .iter()
                .filter(|n| parse_release(opcode_min_kernel(n).unwrap()).unwrap() <= v)
                .count()
        };
        assert_eq!(upto((6, 1)), 49);
        assert_eq!(upto((6, 12)), 58);
    }

    #[test]
    fn hide_parsing() {
        let h = Hide::parse(" io_uring, op:send_zc ,flag:IORING_SETUP_SQPOLL,bogus,op:NOPE,,root");
        assert!(h.io_uring && h.root);
        assert_eq!(h.ops, vec!["SEND_ZC"]);
        assert_eq!(h.flags, vec!["SQPOLL"]);
        assert_eq!(h.invalid, vec!["bogus", "op:NOPE"]);
        assert_eq!(
            h.applied,
            vec![
                "io_uring",
                "op:SEND_ZC",
                "flag:SQPOLL",
                "root",
                "bogus",
                "op:NOPE"
            ]
        );
        assert!(Hide::parse("").applied.is_empty());
    }

    #[test]
    fn release_parsing() {
        assert_eq!(parse_release("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(parse_release("5.15"), Some((5, 15)));
        assert_eq!(parse_release("weird"), None);
        assert_eq!(parse_release(""), None);
    }

    #[test]
    fn cpu_list_collapses_runs() {
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(cpu_list(&[3]), "3");
    }
}
