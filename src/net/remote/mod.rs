//! Two hosts: the control protocol of `zclab serve`, and its client — a remote peer that looks
//! to an experiment like the local peer threads of [`super::peers`].
//!
//! The measured side stays in the experiment's process; the peer side (a TCP receiver that
//! hashes or only counts, a UDP receiver that counts, an echo server, a sender of pattern
//! bytes) runs in `zclab serve` on the other host. They talk over one TCP control connection:
//! newline-delimited JSON, one object per line, at most [`MAX_MESSAGE`] bytes per message
//! including its newline. Data connections use ephemeral ports that the server announces.
//! The messages, their order and what happens on a version mismatch are described in
//! `docs/serve-protocol.md` ("The control protocol"); [`PROTOCOL`] is the version both sides
//! must share.
//!
//! Clocks of the two hosts are never compared: the server reports counts, hashes, its own
//! thread's CPU usage and durations on its own clock, never timestamps.
//!
//! Every wait is bounded: connecting ([`CONNECT_TIMEOUT`]), the server's answers
//! ([`ANSWER_TIMEOUT`]), reports ([`REPORT_TIMEOUT`]), and data connections give up when sent
//! bytes stay unacknowledged for [`DATA_USER_TIMEOUT`] (TCP_USER_TIMEOUT, tcp(7)). When the
//! control connection breaks, [`Peer`] reconnects at the next request; after
//! [`MAX_RECONNECTS`] failed attempts in a row it answers at once with "peer unreachable".
//!
//! The pieces:
//! - [`protocol`]: the messages, their limits, parsing and printing (doc: "Messages", "Error
//!   codes and what happens", "Versions");
//! - [`wire`]: lines on a stream, control and data socket options, timeouts ("Transport");
//! - [`addr`]: `--peer HOST[:PORT]`;
//! - [`client`]: [`Peer`], the control connection of an experiment ("Sequence", "When the
//!   peer goes away");
//! - [`transfer`]: one transfer's data socket and report ([`RemoteTcp`], [`RemoteUdp`]).
//!
//! This module reports; it does not record. A [`Report`] is handed back to the experiment,
//! which puts its figures into its trial ([`Report::usage`], [`Report::peer_extras`]).

pub mod addr;
pub mod client;
pub mod protocol;
pub mod transfer;
pub mod wire;

pub use addr::{PeerAddr, parse_peer, split_host_port};
pub use client::{BUSY_WAIT, MAX_RECONNECTS, Peer};
pub use protocol::{
    BadMsg, DEFAULT_PORT, Hello, LAB, MAX_BUFFER, MAX_MESSAGE, MAX_NAME, MAX_TEXT, MAX_TRANSFERS,
    Msg, PROTOCOL, RR_SERVERS, RR_SIZES, Report, Role, Setup, clip, hello, hex64, mismatch_text,
    msg_name, parse_hex64,
};
pub use transfer::{RemoteListen, RemoteTcp, RemoteUdp, pattern_hash};
pub use wire::{
    ABORT_TIMEOUT, ANSWER_TIMEOUT, CONNECT_TIMEOUT, DATA_USER_TIMEOUT, LineReader, REPORT_TIMEOUT,
    send_msg, set_user_timeout, tune_control,
};
