//! The one ring-setup module every io_uring variant uses (io_uring_setup(2),
//! io_uring_register(2)).
//!
//! A [`RingConfig`] says, flag by flag, whether the variant merely *tunes* with it (dropped and
//! recorded when the kernel refuses it) or *exists to measure* it (never dropped: the variant is
//! skipped with the reason). The flags actually in force, and those dropped, are recorded in
//! [`RingFlags`], which every run writes to its metadata.
//!
//! Registered buffers live in the [`Ring`] (page-aligned anonymous mappings) and are released
//! only after the ring is closed, so the kernel never sees freed memory.

use crate::sys::uring_cq::CqRing;
use io_uring::IoUring;
use serde::Serialize;
use std::io;

/// How a variant wants one setup flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Want {
    /// Not set.
    #[default]
    Off,
    /// Set if the kernel accepts it; dropped and recorded otherwise.
    Tune,
    /// The variant exists to measure it: refused means the variant is skipped.
    Require,
}

/// SQPOLL parameters: the kernel thread's idle time before it sleeps, and its CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SqPoll {
    pub idle_ms: u32,
    pub cpu: Option<u32>,
}

/// What a variant asks of its ring.
#[derive(Debug, Clone, Serialize)]
pub struct RingConfig {
    /// Submission queue entries (rounded up to a power of two by the kernel).
    pub entries: u32,
    /// Completion queue entries (IORING_SETUP_CQSIZE) when set.
    pub cq_entries: Option<u32>,
    pub sqpoll: Want,
    pub sqpoll_params: SqPoll,
    pub coop_taskrun: Want,
    /// IORING_SETUP_SINGLE_ISSUER; DEFER_TASKRUN needs it and pulls it in.
    pub single_issuer: Want,
    pub defer_taskrun: Want,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            entries: 64,
            cq_entries: None,
            sqpoll: Want::Off,
            sqpoll_params: SqPoll {
                idle_ms: 1000,
                cpu: None,
            },
            coop_taskrun: Want::Off,
            single_issuer: Want::Off,
            defer_taskrun: Want::Off,
        }
    }
}

impl RingConfig {
    /// The lab's usual ring for a single-threaded variant: COOP_TASKRUN, SINGLE_ISSUER and
    /// DEFER_TASKRUN as tuning (completions are processed when the issuer waits for them).
    pub fn tuned(entries: u32) -> RingConfig {
        RingConfig {
            entries,
            coop_taskrun: Want::Tune,
            single_issuer: Want::Tune,
            defer_taskrun: Want::Tune,
            ..Default::default()
        }
    }

    /// An SQPOLL ring: the kernel thread polls the submission queue on `cpu`; SQPOLL required.
    pub fn sqpoll(entries: u32, idle_ms: u32, cpu: Option<u32>) -> RingConfig {
        RingConfig {
            entries,
            sqpoll: Want::Require,
            sqpoll_params: SqPoll { idle_ms, cpu },
            single_issuer: Want::Tune,
            ..Default::default()
        }
    }
}

/// A flag the kernel refused and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dropped {
    pub flag: String,
    pub reason: String,
}

/// The setup flags requested, in force, and dropped, as recorded in the run's metadata.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RingFlags {
    pub requested: Vec<String>,
    pub in_force: Vec<String>,
    pub dropped: Vec<Dropped>,
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub sqpoll_cpu: Option<u32>,
    pub sqpoll_idle_ms: Option<u32>,
    pub registered_buffers: Option<(usize, usize)>,
    pub registered_files: usize,
    /// The ring's own fd was registered (IORING_REGISTER_RING_FDS) for the measured loop, so
    /// io_uring_enter skipped the fd lookup (IORING_ENTER_REGISTERED_RING).
    #[serde(default)]
    pub registered_ring_fd: bool,
}

/// Why a ring could not be given.
#[derive(Debug)]
pub enum RingError {
    /// The kernel or the permissions cannot give what the variant exists to measure: skip it
    /// with this reason.
    Unsupported(String),
    /// Something failed that should not have.
    Io(io::Error),
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Unsupported(r) => write!(f, "{r}"),
            RingError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RingError {}

impl From<io::Error> for RingError {
    fn from(e: io::Error) -> Self {
        RingError::Io(e)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flag {
    SqPoll,
    CoopTaskrun,
    SingleIssuer,
    DeferTaskrun,
}

impl Flag {
    fn name(self) -> &'static str {
        match self {
            Flag::SqPoll => "SQPOLL",
            Flag::CoopTaskrun => "COOP_TASKRUN",
            Flag::SingleIssuer => "SINGLE_ISSUER",
            Flag::DeferTaskrun => "DEFER_TASKRUN",
        }
    }
}

/// An io_uring instance with its recorded flags and the buffers registered with it.
pub struct Ring {
    // Declared first so it is dropped (closed) before the buffers it may still reference.
    ring: IoUring,
    flags: RingFlags,
    buffers: Vec<memmap2::MmapMut>,
}

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EINVAL) => "EINVAL".into(),
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::ENOMEM) => "ENOMEM".into(),
        Some(libc::ENOSYS) => "ENOSYS".into(),
        Some(libc::EACCES) => "EACCES".into(),
        _ => e.to_string(),
    }
}

fn build(cfg: &RingConfig, set: &[Flag]) -> io::Result<IoUring> {
    let mut b = IoUring::builder();
    for f in set {
        match f {
            Flag::SqPoll => {
                b.setup_sqpoll(cfg.sqpoll_params.idle_ms);
                if let Some(cpu) = cfg.sqpoll_params.cpu {
                    b.setup_sqpoll_cpu(cpu);
                }
            }
            Flag::CoopTaskrun => {
                b.setup_coop_taskrun();
            }
            Flag::SingleIssuer => {
                b.setup_single_issuer();
            }
            Flag::DeferTaskrun => {
                b.setup_defer_taskrun();
            }
        }
    }
    if let Some(cq) = cfg.cq_entries {
        b.setup_cqsize(cq);
    }
    b.build(cfg.entries)
}

impl Ring {
    /// Sets up a ring as `cfg` asks. Tuning flags the kernel refuses are dropped one at a time
    /// (last asked, first dropped) and recorded; a required flag refused, or io_uring itself
    /// unavailable, is [`RingError::Unsupported`].
    pub fn new(cfg: &RingConfig) -> Result<Ring, RingError> {
        let mut wanted: Vec<(Flag, Want)> = vec![
            (Flag::SqPoll, cfg.sqpoll),
            (Flag::CoopTaskrun, cfg.coop_taskrun),
            (Flag::SingleIssuer, cfg.single_issuer),
            (Flag::DeferTaskrun, cfg.defer_taskrun),
        ];
        // DEFER_TASKRUN is only valid with SINGLE_ISSUER; COOP_TASKRUN is meaningless with SQPOLL
        // (task work runs in the SQ thread) and refused by some kernels with it.
        if cfg.defer_taskrun != Want::Off {
            for w in wanted.iter_mut() {
                if w.0 == Flag::SingleIssuer && w.1 == Want::Off {
                    w.1 = cfg.defer_taskrun;
                }
            }
        }
        if cfg.sqpoll != Want::Off {
            wanted.retain(|(f, _)| *f != Flag::DeferTaskrun || cfg.defer_taskrun == Want::Require);
        }
        wanted.retain(|(_, w)| *w != Want::Off);
        let mut flags = RingFlags {
            requested: wanted.iter().map(|(f, _)| f.name().to_string()).collect(),
            ..Default::default()
        };
        let required: Vec<Flag> = wanted
            .iter()
            .filter(|(_, w)| *w == Want::Require)
            .map(|(f, _)| *f)
            .collect();
        let mut set: Vec<Flag> = wanted.iter().map(|(f, _)| *f).collect();
        let ring = loop {
            match build(cfg, &set) {
                Ok(r) => break r,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // Drop the last tuning flag still set; DEFER_TASKRUN goes with SINGLE_ISSUER.
                    let Some(pos) = set.iter().rposition(|f| !required.contains(f)) else {
                        let names: Vec<&str> = required.iter().map(|f| f.name()).collect();
                        return Err(RingError::Unsupported(format!(
                            "io_uring_setup refused IORING_SETUP_{} ({})",
                            names.join(" | IORING_SETUP_"),
                            errno_name(&e)
                        )));
                    };
                    let f = set.remove(pos);
                    flags.dropped.push(Dropped {
                        flag: f.name().into(),
                        reason: format!("io_uring_setup: {}", errno_name(&e)),
                    });
                    if f == Flag::SingleIssuer
                        && set.contains(&Flag::DeferTaskrun)
                        && !required.contains(&Flag::DeferTaskrun)
                    {
                        set.retain(|x| *x != Flag::DeferTaskrun);
                        flags.dropped.push(Dropped {
                            flag: "DEFER_TASKRUN".into(),
                            reason: "needs SINGLE_ISSUER".into(),
                        });
                    }
                }
                Err(e) => {
                    return Err(match e.raw_os_error() {
                        Some(libc::ENOSYS) => RingError::Unsupported("io_uring is not available: this kernel has no io_uring_setup (ENOSYS)".into()),
                        Some(libc::EPERM) => RingError::Unsupported(format!(
                            "io_uring is disabled for this process (EPERM; see /proc/sys/kernel/io_uring_disabled = {})",
                            std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into())
                        )),
                        Some(libc::ENOMEM) => RingError::Unsupported(
                            "io_uring_setup: ENOMEM: ring memory counts against RLIMIT_MEMLOCK; raise `ulimit -l` or run with CAP_IPC_LOCK".into(),
                        ),
                        _ => RingError::Io(io::Error::new(e.kind(), format!("io_uring_setup: {e}"))),
                    });
                }
            }
        };
        let p = ring.params();
        flags.in_force = set.iter().map(|f| f.name().to_string()).collect();
        flags.sq_entries = p.sq_entries();
        flags.cq_entries = p.cq_entries();
        if set.contains(&Flag::SqPoll) {
            flags.sqpoll_cpu = cfg.sqpoll_params.cpu;
            flags.sqpoll_idle_ms = Some(cfg.sqpoll_params.idle_ms);
        }
        Ok(Ring {
            ring,
            flags,
            buffers: Vec::new(),
        })
    }

    /// The flags requested, in force and dropped.
    pub fn flags(&self) -> &RingFlags {
        &self.flags
    }

    /// Whether the SQPOLL thread is running for this ring.
    pub fn is_sqpoll(&self) -> bool {
        self.ring.params().is_setup_sqpoll()
    }

    /// Registers `count` page-aligned buffers of `size` bytes (IORING_REGISTER_BUFFERS).
    ///
    /// Registered memory is locked: without CAP_IPC_LOCK it counts against RLIMIT_MEMLOCK
    /// (8 MiB on these machines, shared with ring memory and zero-copy send pages). A request
    /// over the limit, or ENOMEM from the kernel, is [`RingError::Unsupported`] with a message
    /// naming the limit and the fix.
    pub fn register_buffers(&mut self, count: usize, size: usize) -> Result<(), RingError> {
        let total = count.saturating_mul(size);
        let limit = memlock_limit();
        let privileged = has_cap_ipc_lock();
        let advice = |what: &str| {
            format!(
                "{what}: {count} registered buffers x {size} B = {total} B of locked memory; RLIMIT_MEMLOCK is {}{}. \
                 Fix: use fewer or smaller buffers (--pool/--chunk), raise the limit (`ulimit -l`, /etc/security/limits.conf), or run as root (CAP_IPC_LOCK)",
                limit.map_or("unlimited".to_string(), |l| format!("{l} B")),
                if privileged {
                    " (CAP_IPC_LOCK held)"
                } else {
                    " and this process lacks CAP_IPC_LOCK"
                },
            )
        };
        if !privileged && limit.is_some_and(|l| total as u64 > l) {
            return Err(RingError::Unsupported(advice("over the memlock limit")));
        }
        let mut maps = Vec::with_capacity(count);
        for _ in 0..count {
            let mut m = memmap2::MmapMut::map_anon(size.max(1))?;
            m.fill(0); // fault the pages in before registration pins them
            maps.push(m);
        }
        // The mappings are stored in `self.buffers` below, which outlives the ring (field order
        // in `Ring`), so the registered memory stays valid for as long as the kernel may use it.
        let r = crate::sys::uring_setup::register_buffers(&self.ring, &mut maps);
        match r {
            Ok(()) => {
                self.buffers = maps;
                self.flags.registered_buffers = Some((count, size));
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => Err(RingError::Unsupported(
                advice("io_uring_register(BUFFERS) failed with ENOMEM"),
            )),
            Err(e) => Err(RingError::Io(io::Error::new(
                e.kind(),
                format!("io_uring_register(BUFFERS): {e}"),
            ))),
        }
    }

    /// Registered buffer `i`, to fill or check; its index is what `*_FIXED` operations take.
    pub fn buffer(&self, i: usize) -> &[u8] {
        &self.buffers[i]
    }

    /// Registered buffer `i`, mutable.
    pub fn buffer_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.buffers[i]
    }

    /// Number of registered buffers.
    pub fn buffer_count(&self) -> usize {
        self.buffers.len()
    }

    /// Registers files (IORING_REGISTER_FILES); operations then name them by index.
    pub fn register_files(&mut self, fds: &[std::os::fd::RawFd]) -> io::Result<()> {
        self.ring.submitter().register_files(fds)?;
        self.flags.registered_files = fds.len();
        Ok(())
    }

    /// NAPI busy polling while this ring waits for completions (IORING_REGISTER_NAPI, Linux
    /// 6.9): up to `usecs` of polling the NAPI contexts of the sockets its requests use,
    /// preferring it over interrupts.
    pub fn register_napi(&mut self, usecs: u32) -> io::Result<()> {
        let mut napi = io_uring::types::Napi::new()
            .set_busy_poll_timeout(usecs)
            .set_prefer_busy_poll(true);
        self.ring.submitter().register_napi(&mut napi)
    }

    /// The completion queue mapped a second time and read in place ([`CqRing`]), for loops
    /// where the io-uring crate's per-completion copy shows in the figure. While it is in use,
    /// completions must not also be taken through [`Ring::inner`]'s queue.
    pub(crate) fn cq_in_place(&self) -> io::Result<CqRing> {
        CqRing::new(&self.ring)
    }

    /// The underlying ring, for the op patterns in [`crate::uring`].
    pub(crate) fn inner(&mut self) -> &mut IoUring {
        &mut self.ring
    }

    /// Raw pointer to registered buffer `i` (for SQEs that read or write it).
    pub(crate) fn buffer_ptr(&mut self, i: usize) -> *mut u8 {
        self.buffers[i].as_mut_ptr()
    }
}

/// RLIMIT_MEMLOCK soft limit in bytes; None when unlimited.
pub fn memlock_limit() -> Option<u64> {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) if soft == libc::RLIM_INFINITY => None,
        Ok((soft, _)) => Some(soft),
        Err(_) => None,
    }
}

/// Whether the process holds CAP_IPC_LOCK (capability 14, a bit of CapEff), which lifts the
/// memlock limit.
pub fn has_cap_ipc_lock() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("CapEff:"))
                .and_then(|l| u64::from_str_radix(l[7..].trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuned_ring_records_flags() {
        let r = Ring::new(&RingConfig::tuned(32)).unwrap();
        let f = r.flags();
        assert_eq!(f.requested.len(), f.in_force.len() + f.dropped.len());
        assert!(f.sq_entries >= 32);
    }

    #[test]
    fn memlock_message_names_limit_and_fix() {
        if has_cap_ipc_lock() || memlock_limit().is_none() {
            return; // privileged: the limit does not apply; covered by the unprivileged test run
        }
        let mut r = Ring::new(&RingConfig::default()).unwrap();
        let e = r.register_buffers(64, 1 << 20).unwrap_err().to_string();
        assert!(
            e.contains("RLIMIT_MEMLOCK") && e.contains("ulimit -l"),
            "{e}"
        );
    }
}
