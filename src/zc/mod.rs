//! Zero-copy sends, accounted once: [`ledger`] keeps every send's id, buffer, result and
//! notification (the usage bit: copied or not) for MSG_ZEROCOPY and io_uring SEND_ZC /
//! SENDMSG_ZC alike; [`msg`] is the MSG_ZEROCOPY sender over it (the io_uring senders are in
//! [`crate::uring`]). Above `sys` and `measure`, below `uring`.

pub mod ledger;
pub mod msg;
