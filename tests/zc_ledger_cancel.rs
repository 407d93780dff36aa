//! The zero-copy ledger's drain stops on SIGTERM. A test binary of its own: the signal flag is
//! process-wide and cannot be cleared, so it must not share a process with other tests.

use std::io;
use std::time::Duration;
use zclab::measure::Clock;
use zclab::sys::signal::Cancel;
use zclab::zc::ledger::Ledger;

#[test]
fn a_signal_stops_a_drain() {
    let cancel = Cancel::install();
    let mut l = Ledger::new(1, 8, false, Clock::new(), cancel);
    let id = l.next_id().unwrap();
    let t = l.now();
    l.begin(0, 0, 1, t, true);
    l.result(id, 1, true, l.now()).unwrap();
    let mut waits = 0;
    let e = l
        .drain(Duration::from_secs(5), |_, _| {
            waits += 1;
            if waits == 2 {
                nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
            }
            // A blocking wait answers a signal with EINTR.
            Err(io::Error::from_raw_os_error(libc::EINTR))
        })
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Interrupted, "{e}");
    assert_eq!(waits, 2, "the first EINTR (no signal yet) is retried");
    assert!(
        !l.is_free(0),
        "the buffer stays busy: its notification never came"
    );
}
