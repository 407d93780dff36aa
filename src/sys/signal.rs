//! SIGINT/SIGTERM as a cancellation token (sigaction(2), signal-safety(7)).
//!
//! The handler only stores the signal number in an atomic; everything that loops or blocks
//! takes a [`Cancel`] and asks it, so no low layer reaches up to the harness to learn that the
//! user pressed Ctrl-C. The handlers are installed without SA_RESTART: a blocking call returns
//! EINTR and the loop around it sees the token.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// A cancellation token: cancelled once SIGINT or SIGTERM has arrived (after
/// [`Cancel::install`]), or by [`Cancel::never`]'s opposite in tests. Copy it freely.
#[derive(Clone, Copy, Debug)]
pub struct Cancel {
    armed: bool,
}

impl Cancel {
    /// Installs the SIGINT/SIGTERM handlers (idempotent) and returns the token that reads them.
    pub fn install() -> Cancel {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let act = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        for s in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            let _ = unsafe { sigaction(s, &act) };
        }
        Cancel { armed: true }
    }

    /// A token that reads the process's signal flag without installing handlers (for code
    /// that runs under a caller who installed them).
    pub fn process() -> Cancel {
        Cancel { armed: true }
    }

    /// A token that is never cancelled (tests, tools that run outside the lab's signal set-up).
    pub fn never() -> Cancel {
        Cancel { armed: false }
    }

    /// The signal received so far (SIGINT or SIGTERM), if any.
    pub fn signal(&self) -> Option<i32> {
        if !self.armed {
            return None;
        }
        match SIGNAL.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Whether the run has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.signal().is_some()
    }

    /// What a loop does with a failed call: EINTR is retried (`Ok`) unless the run was
    /// cancelled, which ends it with an error naming the signal; any other error is returned.
    pub fn intr(self, e: io::Error) -> io::Result<()> {
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        match self.signal() {
            Some(sig) => Err(io::Error::new(
                io::ErrorKind::Interrupted,
                format!("interrupted by signal {sig}"),
            )),
            None => Ok(()),
        }
    }
}

/// Restores SIGPIPE's default action (the process ends quietly when the reader of its output
/// goes away, as `zclab compare ... | head` expects) for commands that only print. Rust's
/// runtime ignores SIGPIPE, so a print to a closed pipe would otherwise panic. Not for commands
/// that write to sockets or supervise children (serve, run): they handle EPIPE themselves.
pub fn sigpipe_default() {
    // SAFETY: signal(2) with SIG_DFL installs no handler; nothing else in the process depends
    // on SIGPIPE being ignored for the printing commands this is called from.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
