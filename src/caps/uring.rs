//! The io_uring probe: io_uring_setup(2) for availability, features and each setup flag,
//! io_uring_register(2) `IORING_REGISTER_PROBE` for opcodes, and a real SEND_ZC over loopback
//! for usage reporting.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use super::tables::{FEATURES, FLAG_PREREQ, OPCODE_NAMES, SETUP_FLAGS, SetupFlag};
use super::tables::{bit_names, flag_bit, opcode_label};
use super::{IoUring, errno_text, read_u32};
use crate::sys::consts::{IORING_NOTIF_USAGE_ZC_COPIED, IORING_SEND_ZC_REPORT_USAGE};
use crate::sys::uring_probe::send_zc_once;
use crate::sys::uring_setup::{self, SetupParams};

pub(super) fn probe_io_uring() -> IoUring {
    let mut u = IoUring {
        io_uring_disabled_sysctl: read_u32("/proc/sys/kernel/io_uring_disabled"),
        ..IoUring::default()
    };

    let base = match uring_setup::setup(8, &SetupParams::default()) {
        Ok((fd, features)) => {
            u.features = bit_names(features, FEATURES, "FEAT");
            fd
        }
        Err(e) => {
            u.unavailable_reason = Some(unavailable_reason(&e, u.io_uring_disabled_sysctl));
            u.opcodes_unsupported = OPCODE_NAMES.iter().map(|s| s.to_string()).collect();
            return u;
        }
    };
    u.available = true;

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
            u.opcodes.push(opcode_label(op));
        } else if let Some(name) = OPCODE_NAMES.get(usize::from(op)) {
            u.opcodes_unsupported.push((*name).to_string());
        }
    }
}

/// Tries every flag of [`SETUP_FLAGS`] alone (plus its prerequisite), each on a fresh ring.
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
        let mut p = SetupParams {
            flags: bit | prereq(name),
            ..SetupParams::default()
        };
        if p.flags & SetupFlag::SqPoll.bit() != 0 {
            // Short idle so the poller thread goes to sleep at once.
            p.sq_thread_idle = 1;
        }
        if p.flags & SetupFlag::SqAff.bit() != 0 {
            p.sq_thread_cpu = u32::try_from(first_cpu).unwrap_or(0);
        }
        if p.flags & SetupFlag::CqSize.bit() != 0 {
            p.cq_entries = 64;
        }
        if p.flags & SetupFlag::AttachWq.bit() != 0 {
            p.wq_fd = u32::try_from(base.as_raw_fd()).unwrap_or(u32::MAX);
        }
        match uring_setup::try_setup(&p) {
            Ok(()) => u.setup_flags.push((*name).to_string()),
            Err(e) => u
                .setup_flags_refused
                .push(((*name).to_string(), errno_text(&e))),
        }
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
    let got = send_zc_once(
        ring,
        client.as_fd(),
        buf,
        IORING_SEND_ZC_REPORT_USAGE,
        Duration::from_secs(2),
    );
    drop(server);
    let got = got?;
    match (got.res, got.more, got.notif) {
        (res, _, _) if res == -libc::EINVAL => Ok((false, None)),
        (res, _, _) if res < 0 => Err(io::Error::from_raw_os_error(-res)),
        (_, false, _) => Ok((
            true,
            Some("SEND_ZC accepted the flag but posted no notification".to_string()),
        )),
        (_, _, Some(n)) if n & IORING_NOTIF_USAGE_ZC_COPIED != 0 => Ok((true, None)),
        (_, _, n) => Ok((
            true,
            Some(format!(
                "SEND_ZC usage flag accepted but loopback reported no copy (notif res {:#x})",
                n.unwrap_or(0)
            )),
        )),
    }
}
