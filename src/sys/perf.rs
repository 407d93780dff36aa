//! Per-thread counters from perf_event_open(2).
//!
//! Only software events and tracepoints are used: the lab must work on
//! virtual machines without a hardware PMU. Every counter includes kernel
//! side activity (`exclude_kernel = 0`), because a syscall count that silently
//! leaves out the kernel would read as zero; when `perf_event_paranoid` forbids
//! that, the kernel refuses with `EACCES` and the error is returned as is.

use std::ffi::CStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `PERF_TYPE_SOFTWARE` from `<linux/perf_event.h>`.
pub(super) const PERF_TYPE_SOFTWARE: u32 = 1;
/// `PERF_TYPE_TRACEPOINT` from `<linux/perf_event.h>`.
const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `PERF_ATTR_SIZE_VER5`: the layout of [`PerfEventAttr`] below.
pub(super) const PERF_ATTR_SIZE_VER5: u32 = 112;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// `_IO('$', n)` ioctls from `<linux/perf_event.h>`.
pub(super) const PERF_EVENT_IOC_ENABLE: u32 = 0x2400;
pub(super) const PERF_EVENT_IOC_DISABLE: u32 = 0x2401;
pub(super) const PERF_EVENT_IOC_RESET: u32 = 0x2403;

/// Where tracefs is looked for, in order.
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER5` (112 bytes). The
/// kernel accepts this older size and zero-fills the newer fields.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PerfEventAttr {
    pub(super) type_: u32,
    pub(super) size: u32,
    pub(super) config: u64,
    pub(super) sample_period: u64,
    pub(super) sample_type: u64,
    pub(super) read_format: u64,
    pub(super) flags: u64,
    pub(super) wakeup_events: u32,
    pub(super) bp_type: u32,
    pub(super) config1: u64,
    pub(super) config2: u64,
    pub(super) branch_sample_type: u64,
    pub(super) sample_regs_user: u64,
    pub(super) sample_stack_user: u32,
    pub(super) clockid: i32,
    pub(super) sample_regs_intr: u64,
    pub(super) aux_watermark: u32,
    pub(super) sample_max_stack: u16,
    pub(super) reserved_2: u16,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == PERF_ATTR_SIZE_VER5 as usize);

/// Software events of perf_event_open(2) (`PERF_TYPE_SOFTWARE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwEvent {
    /// `PERF_COUNT_SW_TASK_CLOCK`: nanoseconds the thread was on a CPU.
    TaskClock,
    /// `PERF_COUNT_SW_CONTEXT_SWITCHES`.
    ContextSwitches,
    /// `PERF_COUNT_SW_PAGE_FAULTS`.
    PageFaults,
}

impl SwEvent {
    fn config(self) -> u64 {
        match self {
            SwEvent::TaskClock => 1,
            SwEvent::PageFaults => 2,
            SwEvent::ContextSwitches => 3,
        }
    }
}

/// One counter opened with perf_event_open(2). Owns the file descriptor,
/// which is closed on drop.
#[derive(Debug)]
pub struct PerfCounter {
    fd: OwnedFd,
}

impl PerfCounter {
    /// Current value of the counter (read(2) of the counter fd, no
    /// `read_format` extras).
    pub fn read(&self) -> io::Result<u64> {
        let mut value: u64 = 0;
        loop {
            // SAFETY: `value` is a live, writable 8-byte buffer and the length
            // passed matches its size.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut value as *mut u64).cast::<libc::c_void>(),
                    std::mem::size_of::<u64>(),
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if n as usize != std::mem::size_of::<u64>() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short read from perf counter: {n} bytes"),
                ));
            }
            return Ok(value);
        }
    }

    /// Starts counting (`PERF_EVENT_IOC_ENABLE`).
    pub fn enable(&self) -> io::Result<()> {
        perf_ioctl(self.fd.as_fd(), PERF_EVENT_IOC_ENABLE)
    }

    /// Stops counting; the value is kept (`PERF_EVENT_IOC_DISABLE`).
    pub fn disable(&self) -> io::Result<()> {
        perf_ioctl(self.fd.as_fd(), PERF_EVENT_IOC_DISABLE)
    }

    /// Sets the value back to zero (`PERF_EVENT_IOC_RESET`).
    pub fn reset(&self) -> io::Result<()> {
        perf_ioctl(self.fd.as_fd(), PERF_EVENT_IOC_RESET)
    }
}

impl AsFd for PerfCounter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PerfCounter {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Opens a counter of every entry into a system call by one thread: the
/// tracepoint `raw_syscalls:sys_enter` through perf_event_open(2).
///
/// `tid` is a thread id; 0 means the calling thread. Children are not
/// included (`inherit = 0`), kernel side is (`exclude_kernel = 0`, which is
/// where the tracepoint fires), and the counter starts enabled.
///
/// The tracepoint id comes from tracefs (see [`tracepoint_id`], which mounts
/// tracefs when running as root and it is not mounted). Without privilege
/// (`perf_event_paranoid` >= 2 and no `CAP_PERFMON`) the kernel refuses with
/// `EACCES`/`EPERM` and that error is returned: it never yields a counter
/// that silently stays at zero.
pub fn syscalls_for_thread(tid: i32) -> io::Result<PerfCounter> {
    let id = tracepoint_id("raw_syscalls/sys_enter")?;
    open_counter(PERF_TYPE_TRACEPOINT, id, tid)
}

/// Opens a software counter (perf_event_open(2), `PERF_TYPE_SOFTWARE`) for
/// one thread (`tid` 0 = calling thread), kernel side included, not
/// inherited, started enabled. Refusal by the kernel is returned as the error.
pub fn software_for_thread(kind: SwEvent, tid: i32) -> io::Result<PerfCounter> {
    open_counter(PERF_TYPE_SOFTWARE, kind.config(), tid)
}

/// The numeric id of a tracepoint such as `"raw_syscalls/sys_enter"`, read
/// from `events/<system>/<event>/id` under tracefs (see tracefs docs and
/// perf_event_open(2), `PERF_TYPE_TRACEPOINT`).
///
/// Looks in `/sys/kernel/tracing` then `/sys/kernel/debug/tracing`. When
/// neither has tracefs and the process is root, tracefs is mounted at
/// `/sys/kernel/tracing` (mounting enables no tracing); otherwise `EPERM`.
pub fn tracepoint_id(name: &str) -> io::Result<u64> {
    let (system, event) = name.split_once('/').ok_or_else(|| invalid_name(name))?;
    if !valid_component(system) || !valid_component(event) {
        return Err(invalid_name(name));
    }
    let root = tracefs_root()?;
    let text = fs::read_to_string(root.join("events").join(system).join(event).join("id"))?;
    text.trim().parse::<u64>().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("tracepoint id of {name} is not a number ({e}): {text:?}"),
        )
    })
}

fn invalid_name(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("tracepoint name must look like \"system/event\", got {name:?}"),
    )
}

/// Tracepoint names are C identifiers; refusing anything else keeps the name
/// from walking out of tracefs.
fn valid_component(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Serialises the mount so that two threads probing at once do not stack
/// two tracefs mounts.
static MOUNT_LOCK: Mutex<()> = Mutex::new(());

fn tracefs_root() -> io::Result<PathBuf> {
    if let Some(found) = find_tracefs()? {
        return Ok(found);
    }
    let _guard = MOUNT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Another thread may have mounted it while this one waited.
    if let Some(found) = find_tracefs()? {
        return Ok(found);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // mount(2) would refuse too; say so rather than "not found".
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    mount_tracefs(Path::new(TRACEFS_ROOTS[0]))?;
    find_tracefs()?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "tracefs mounted but has no events directory",
        )
    })
}

/// Returns the first tracefs root whose `events` directory is visible.
/// Permission errors are returned: they are the unprivileged case.
fn find_tracefs() -> io::Result<Option<PathBuf>> {
    let mut denied = None;
    for root in TRACEFS_ROOTS {
        let root = Path::new(root);
        match fs::metadata(root.join("events")) {
            Ok(m) if m.is_dir() => return Ok(Some(root.to_path_buf())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => denied = Some(e),
            Err(_) => {}
        }
    }
    match denied {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

fn mount_tracefs(target: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let target = std::ffi::CString::new(target.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let source: &CStr = c"nodev";
    let fstype: &CStr = c"tracefs";
    // SAFETY: all strings are NUL-terminated and outlive the call; tracefs
    // takes no mount data, so a null data pointer is valid.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn open_counter(type_: u32, config: u64, tid: i32) -> io::Result<PerfCounter> {
    let attr = PerfEventAttr {
        type_,
        size: PERF_ATTR_SIZE_VER5,
        config,
        // Counting only (no sampling, no ring buffer). All bitfield flags
        // clear: enabled from open, not inherited, kernel side included.
        flags: 0,
        ..PerfEventAttr::default()
    };
    Ok(PerfCounter {
        fd: perf_event_open(&attr, tid, -1)?,
    })
}

/// One of the perf ioctls that take an integer argument (`PERF_EVENT_IOC_ENABLE`, `_DISABLE`,
/// `_RESET`), on the event `fd` only (argument 0, not its group).
pub(super) fn perf_ioctl(fd: BorrowedFd, request: u32) -> io::Result<()> {
    // SAFETY: these perf ioctls take an integer argument and touch no user memory.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// perf_event_open(2) of `attr` for thread `tid` (0: the caller) on `cpu` (-1: any), with no
/// group leader, close-on-exec.
pub(super) fn perf_event_open(attr: &PerfEventAttr, tid: i32, cpu: i32) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a fully initialised perf_event_attr whose `size` field matches its
    // layout; the kernel only reads it during the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            tid as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "fd out of range"))?;
    // SAFETY: perf_event_open just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_names_are_validated() {
        for bad in [
            "",
            "sys_enter",
            "../x/id",
            "a/b/c",
            "raw_syscalls/",
            "/sys_enter",
        ] {
            let err = tracepoint_id(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn software_task_clock_counts_when_allowed() {
        match software_for_thread(SwEvent::TaskClock, 0) {
            Ok(c) => {
                let a = c.read().unwrap();
                let mut x = 0u64;
                for i in 0..100_000u64 {
                    x = x.wrapping_add(std::hint::black_box(i));
                }
                std::hint::black_box(x);
                assert!(c.read().unwrap() > a);
                c.disable().unwrap();
                c.reset().unwrap();
                assert_eq!(c.read().unwrap(), 0);
                c.enable().unwrap();
            }
            Err(e) => {
                let code = e.raw_os_error();
                assert!(
                    code == Some(libc::EACCES) || code == Some(libc::EPERM),
                    "unexpected error {e}"
                );
            }
        }
    }
}
