//! MSG_ZEROCOPY (Documentation/networking/msg_zerocopy.rst): send(2) with `MSG_ZEROCOPY` on a
//! socket with `SO_ZEROCOPY` set, and completions read from the socket's error queue with
//! recvmsg(2) `MSG_ERRQUEUE`.
//!
//! Every successful zero-copy send(2) on a socket gets the next 32-bit id (0, 1, 2, ...; a
//! call that fails consumes none). The kernel reports completed ids as `sock_extended_err`
//! messages (`ee_origin == SO_EE_ORIGIN_ZEROCOPY`) covering the range `[ee_info ..= ee_data]`;
//! consecutive completions are merged into one message, and messages can arrive out of order.
//! `ee_code` has `SO_EE_CODE_ZEROCOPY_COPIED` when the kernel copied the data after all (always
//! on loopback).
//!
//! The pool of send buffers that uses these calls, with its account of every send, is
//! [`crate::zc::msg::ZcPool`].

use crate::sys::consts::{SO_EE_CODE_ZEROCOPY_COPIED, SO_EE_ORIGIN_ZEROCOPY};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Sets `SO_ZEROCOPY` on a socket (socket(7)); MSG_ZEROCOPY is ignored without it.
pub fn enable_zerocopy(fd: BorrowedFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// send(2) of `buf` with `flags`; returns the bytes the kernel accepted.
///
/// With `MSG_ZEROCOPY` the kernel may still read `buf` after this returns, until the send's
/// completion arrives on the error queue: use [`crate::zc::msg::ZcPool`], which keeps buffers from being
/// rewritten before then.
pub fn send(fd: BorrowedFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable slice for the duration of the call.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// poll(2) for `POLLERR` (a non-empty error queue), up to `timeout`. Returns whether the error
/// queue is readable.
pub fn wait_err(fd: BorrowedFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0, // POLLERR is always reported
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `p` is one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n > 0 && p.revents & libc::POLLERR != 0)
}

/// One message read from the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrMsg {
    /// Zero-copy sends `lo ..= hi` completed; `copied` when the kernel copied them.
    Zerocopy {
        /// First id (`ee_info`).
        lo: u32,
        /// Last id (`ee_data`).
        hi: u32,
        /// `ee_code` has SO_EE_CODE_ZEROCOPY_COPIED.
        copied: bool,
    },
    /// Any other extended error (e.g. an ICMP error when IP_RECVERR is set).
    Other {
        /// `ee_errno`.
        errno: u32,
        /// `ee_origin`.
        origin: u8,
    },
}

/// Reads one message from the error queue without blocking (recvmsg(2) with
/// `MSG_ERRQUEUE | MSG_DONTWAIT`); None when the queue is empty.
pub fn recv_err(fd: BorrowedFd) -> io::Result<Option<ErrMsg>> {
    // Room for one cmsghdr with a sock_extended_err and the offender's address; u64 for the
    // alignment cmsghdr needs.
    let mut ctrl = [0u64; 32];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
    // SAFETY: `msg` points to `ctrl`, which lives across the call; no data iovec is needed.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "error queue message truncated (MSG_CTRUNC)",
        ));
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a valid cmsghdr inside `ctrl` (checked non-null above).
        let (level, ty, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len) };
        let want = (level == libc::SOL_IP && ty == libc::IP_RECVERR)
            || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR);
        // SAFETY: CMSG_LEN is a pure computation.
        let need = unsafe { libc::CMSG_LEN(std::mem::size_of::<libc::sock_extended_err>() as u32) };
        #[allow(clippy::unnecessary_cast)] // cmsg_len is socklen_t on musl, size_t on glibc
        let enough = len as usize >= need as usize;
        if want && enough {
            // SAFETY: the cmsg holds at least a sock_extended_err (length checked); it may be
            // unaligned, hence read_unaligned.
            let ee: libc::sock_extended_err = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::sock_extended_err)
            };
            return Ok(Some(
                if ee.ee_errno == 0 && ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                    ErrMsg::Zerocopy {
                        lo: ee.ee_info,
                        hi: ee.ee_data,
                        copied: ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                    }
                } else {
                    ErrMsg::Other {
                        errno: ee.ee_errno,
                        origin: ee.ee_origin,
                    }
                },
            ));
        }
        // SAFETY: as above; returns null after the last header.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Err(io::Error::other(
        "error queue message without a sock_extended_err",
    ))
}
