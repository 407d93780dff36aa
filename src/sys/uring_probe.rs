//! One-shot io_uring requests for the kernel probe, where the request itself is the question
//! (does this kernel accept these flags on this opcode?).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// What one SEND_ZC request posted (io_uring_enter(2), `IORING_OP_SEND_ZC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendZcOnce {
    /// `res` of the request's completion.
    pub res: i32,
    /// The completion carried `IORING_CQE_F_MORE`: a notification is to follow.
    pub more: bool,
    /// `res` of the notification (`IORING_CQE_F_NOTIF`), a bit set, if it arrived.
    pub notif: Option<u32>,
}

/// Submits one SEND_ZC of `buf` on `sock` with `zc_flags` and waits (up to `limit`) until the
/// request failed, completed without `IORING_CQE_F_MORE`, or completed and posted its
/// notification. No completion within `limit` is `ErrorKind::TimedOut`.
///
/// The buffer is owned here so that it can outlive a request still in flight: when the kernel
/// may yet read it, it is leaked rather than freed.
pub fn send_zc_once(
    ring: &mut io_uring::IoUring,
    sock: BorrowedFd<'_>,
    buf: Box<[u8]>,
    zc_flags: u16,
    limit: Duration,
) -> io::Result<SendZcOnce> {
    let sqe = io_uring::opcode::SendZc::new(
        io_uring::types::Fd(sock.as_raw_fd()),
        buf.as_ptr(),
        buf.len() as u32,
    )
    .zc_flags(zc_flags)
    .build()
    .user_data(0x5e4d);
    // SAFETY: the buffer is owned by this function and is freed only once the kernel is done
    // with it (below: leaked otherwise); the socket is borrowed across the call, and a socket
    // closed later merely fails or completes the request.
    unsafe {
        ring.submission()
            .push(&sqe)
            .map_err(|_| io::Error::other("submission queue full"))?;
    }

    // (res, more) of the request's completion, then res of the notification.
    let mut result: Option<(i32, bool)> = None;
    let mut notif: Option<u32> = None;
    let deadline = Instant::now() + limit;
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
                notif = Some(cqe.result() as u32);
            } else {
                result = Some((cqe.result(), io_uring::cqueue::more(cqe.flags())));
            }
        }
        match result {
            Some((res, more)) if res < 0 || !more || notif.is_some() => {
                break Ok(SendZcOnce { res, more, notif });
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no SEND_ZC completion within {} s", limit.as_secs()),
            ));
        }
    };
    let in_flight = match result {
        None => true,
        Some((res, more)) => res >= 0 && more && notif.is_none(),
    };
    if in_flight {
        // The kernel may still read the buffer: never hand it back.
        std::mem::forget(buf);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    #[test]
    fn loopback_send_zc_completes_and_notifies() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let mut ring = io_uring::IoUring::new(4).unwrap();
        let buf = vec![7u8; 4096].into_boxed_slice();
        let got = send_zc_once(&mut ring, client.as_fd(), buf, 0, Duration::from_secs(2)).unwrap();
        assert_eq!(got.res, 4096);
        assert!(got.more && got.notif.is_some(), "{got:?}");
    }
}
