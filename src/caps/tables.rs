//! The io_uring names the probe speaks: opcodes, setup flags and features as named in
//! `include/uapi/linux/io_uring.h` (prefix dropped), each with the mainline release that added
//! it, and lookups by name or by number.

use serde::Serialize;

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

/// Flags whose probe needs another flag, which hiding must follow: (flag, prerequisite).
pub(super) const FLAG_PREREQ: &[(&str, &str)] = &[
    ("SQ_AFF", "SQPOLL"),
    ("TASKRUN_FLAG", "COOP_TASKRUN"),
    ("DEFER_TASKRUN", "SINGLE_ISSUER"),
    ("REGISTERED_FD_ONLY", "NO_MMAP"),
    ("HYBRID_IOPOLL", "IOPOLL"),
];

/// An `IORING_SETUP_*` flag the probe tries, in bit order (the discriminant is the bit number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SetupFlag {
    IoPoll,
    SqPoll,
    SqAff,
    CqSize,
    Clamp,
    AttachWq,
    RDisabled,
    SubmitAll,
    CoopTaskrun,
    TaskrunFlag,
    Sqe128,
    Cqe32,
    SingleIssuer,
    DeferTaskrun,
    NoMmap,
    RegisteredFdOnly,
    NoSqArray,
    HybridIopoll,
    CqeMixed,
    SqeMixed,
}

impl SetupFlag {
    /// Every flag, in bit order (the order of [`SETUP_FLAGS`]).
    pub const ALL: [SetupFlag; 20] = [
        SetupFlag::IoPoll,
        SetupFlag::SqPoll,
        SetupFlag::SqAff,
        SetupFlag::CqSize,
        SetupFlag::Clamp,
        SetupFlag::AttachWq,
        SetupFlag::RDisabled,
        SetupFlag::SubmitAll,
        SetupFlag::CoopTaskrun,
        SetupFlag::TaskrunFlag,
        SetupFlag::Sqe128,
        SetupFlag::Cqe32,
        SetupFlag::SingleIssuer,
        SetupFlag::DeferTaskrun,
        SetupFlag::NoMmap,
        SetupFlag::RegisteredFdOnly,
        SetupFlag::NoSqArray,
        SetupFlag::HybridIopoll,
        SetupFlag::CqeMixed,
        SetupFlag::SqeMixed,
    ];

    /// Kernel name without `IORING_SETUP_`, e.g. "SQPOLL".
    pub fn name(&self) -> &'static str {
        SETUP_FLAGS[*self as usize].0
    }

    /// The flag's bit in `io_uring_params.flags`.
    pub fn bit(&self) -> u32 {
        SETUP_FLAGS[*self as usize].1
    }

    /// Mainline release that introduced the flag.
    pub fn min_kernel(&self) -> &'static str {
        SETUP_FLAGS[*self as usize].2
    }

    /// The flag of a name (case and an `IORING_SETUP_` prefix ignored).
    pub fn from_name(name: &str) -> Option<SetupFlag> {
        let name = canonical(name, "IORING_SETUP_");
        SetupFlag::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// Kernel name of opcode number `code` without `IORING_OP_` (e.g. "SEND_ZC" for
/// `io_uring::opcode::SendZc::CODE`); None past the opcodes this build knows.
pub fn opcode_name(code: u8) -> Option<&'static str> {
    OPCODE_NAMES.get(usize::from(code)).copied()
}

/// Name of an opcode number as the probe lists it: the kernel's name or `OP_<n>`.
pub(super) fn opcode_label(code: u8) -> String {
    opcode_name(code).map_or_else(|| format!("OP_{code}"), str::to_string)
}

/// Mainline release that introduced an opcode (name as in [`OPCODE_NAMES`],
/// `IORING_OP_` prefix and case ignored).
pub fn opcode_min_kernel(name: &str) -> Option<&'static str> {
    let idx = opcode_index(name)?;
    OPCODES.get(idx).map(|(_, v)| *v)
}

/// Mainline release that introduced opcode number `code`.
pub fn opcode_min_kernel_code(code: u8) -> Option<&'static str> {
    OPCODES.get(usize::from(code)).map(|(_, v)| *v)
}

/// Mainline release that introduced a setup flag (name as in
/// [`SETUP_FLAGS`], `IORING_SETUP_` prefix and case ignored).
pub fn setup_flag_min_kernel(name: &str) -> Option<&'static str> {
    SetupFlag::from_name(name).map(|f| f.min_kernel())
}

/// Mainline release that introduced an `IORING_FEAT_*` bit.
pub fn feature_min_kernel(name: &str) -> Option<&'static str> {
    let name = canonical(name, "IORING_FEAT_");
    FEATURES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, v)| *v)
}

/// Upper-case, prefix-stripped spelling of an opcode or flag name.
pub(super) fn canonical(name: &str, prefix: &str) -> String {
    let up = name.trim().to_ascii_uppercase();
    up.strip_prefix(prefix).map(str::to_string).unwrap_or(up)
}

pub(super) fn opcode_index(name: &str) -> Option<usize> {
    let name = canonical(name, "IORING_OP_");
    OPCODE_NAMES.iter().position(|n| *n == name)
}

/// Bit of a setup flag given by its canonical name.
pub(super) fn flag_bit(name: &str) -> Option<u32> {
    SETUP_FLAGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, b, _)| *b)
}

/// Names of the bits set in `bits`; a bit missing from `table` is `<unknown>_BIT<n>`.
pub(super) fn bit_names(bits: u32, table: &[(&str, u32, &str)], unknown: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::opcode;

    fn release(v: &str) -> (u32, u32) {
        let (a, b) = v.split_once('.').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    }

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
        assert_eq!(setup_flag_min_kernel("iORING_SETUP_sqpoll"), Some("5.1"));
        assert_eq!(setup_flag_min_kernel("NOPE"), None);
        assert_eq!(opcode_label(200), "OP_200");
        assert_eq!(opcode_name(200), None);
        // 6.1 knew opcodes up to SENDMSG_ZC, 6.12 up to LISTEN.
        let upto = |v: (u32, u32)| {
            OPCODE_NAMES
                .iter()
                .filter(|n| release(opcode_min_kernel(n).unwrap()) <= v)
                .count()
        };
        assert_eq!(upto((6, 1)), 49);
        assert_eq!(upto((6, 12)), 58);
    }

    #[test]
    fn io_uring_crate_codes_map_to_kernel_names() {
        let codes: &[(u8, &str)] = &[
            (opcode::Nop::CODE, "NOP"),
            (opcode::Readv::CODE, "READV"),
            (opcode::Writev::CODE, "WRITEV"),
            (opcode::Fsync::CODE, "FSYNC"),
            (opcode::ReadFixed::CODE, "READ_FIXED"),
            (opcode::WriteFixed::CODE, "WRITE_FIXED"),
            (opcode::PollAdd::CODE, "POLL_ADD"),
            (opcode::PollRemove::CODE, "POLL_REMOVE"),
            (opcode::SyncFileRange::CODE, "SYNC_FILE_RANGE"),
            (opcode::SendMsg::CODE, "SENDMSG"),
            (opcode::RecvMsg::CODE, "RECVMSG"),
            (opcode::RecvMsgMulti::CODE, "RECVMSG"),
            (opcode::Timeout::CODE, "TIMEOUT"),
            (opcode::TimeoutRemove::CODE, "TIMEOUT_REMOVE"),
            (opcode::TimeoutUpdate::CODE, "TIMEOUT_REMOVE"),
            (opcode::Accept::CODE, "ACCEPT"),
            (opcode::AcceptMulti::CODE, "ACCEPT"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
            (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL"),
            (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
            (opcode::Connect::CODE, "CONNECT"),
            (opcode::Fallocate::CODE, "FALLOCATE"),
            (opcode::OpenAt::CODE, "OPENAT"),
            (opcode::Close::CODE, "CLOSE"),
            (opcode::FilesUpdate::CODE, "FILES_UPDATE"),
            (opcode::Statx::CODE, "STATX"),
            (opcode::Read::CODE, "READ"),
            (opcode::Write::CODE, "WRITE"),
            (opcode::Fadvise::CODE, "FADVISE"),
            (opcode::Madvise::CODE, "MADVISE"),
            (opcode::Send::CODE, "SEND"),
            (opcode::SendBundle::CODE, "SEND"),
            (opcode::Recv::CODE, "RECV"),
            (opcode::RecvMulti::CODE, "RECV"),
            (opcode::RecvBundle::CODE, "RECV"),
            (opcode::RecvMultiBundle::CODE, "RECV"),
            (opcode::OpenAt2::CODE, "OPENAT2"),
            (opcode::EpollCtl::CODE, "EPOLL_CTL"),
            (opcode::Splice::CODE, "SPLICE"),
            (opcode::ProvideBuffers::CODE, "PROVIDE_BUFFERS"),
            (opcode::RemoveBuffers::CODE, "REMOVE_BUFFERS"),
            (opcode::Tee::CODE, "TEE"),
            (opcode::Shutdown::CODE, "SHUTDOWN"),
            (opcode::RenameAt::CODE, "RENAMEAT"),
            (opcode::UnlinkAt::CODE, "UNLINKAT"),
            (opcode::MkDirAt::CODE, "MKDIRAT"),
            (opcode::SymlinkAt::CODE, "SYMLINKAT"),
            (opcode::LinkAt::CODE, "LINKAT"),
            (opcode::MsgRingData::CODE, "MSG_RING"),
            (opcode::MsgRingSendFd::CODE, "MSG_RING"),
            (opcode::FSetXattr::CODE, "FSETXATTR"),
            (opcode::SetXattr::CODE, "SETXATTR"),
            (opcode::FGetXattr::CODE, "FGETXATTR"),
            (opcode::GetXattr::CODE, "GETXATTR"),
            (opcode::Socket::CODE, "SOCKET"),
            (opcode::UringCmd16::CODE, "URING_CMD"),
            (opcode::UringCmd80::CODE, "URING_CMD"),
            (opcode::SetSockOpt::CODE, "URING_CMD"),
            (opcode::SendZc::CODE, "SEND_ZC"),
            (opcode::SendMsgZc::CODE, "SENDMSG_ZC"),
            (opcode::ReadMulti::CODE, "READ_MULTISHOT"),
            (opcode::WaitId::CODE, "WAITID"),
            (opcode::FutexWait::CODE, "FUTEX_WAIT"),
            (opcode::FutexWake::CODE, "FUTEX_WAKE"),
            (opcode::FutexWaitV::CODE, "FUTEX_WAITV"),
            (opcode::FixedFdInstall::CODE, "FIXED_FD_INSTALL"),
            (opcode::Ftruncate::CODE, "FTRUNCATE"),
            (opcode::Bind::CODE, "BIND"),
            (opcode::Listen::CODE, "LISTEN"),
            (opcode::RecvZc::CODE, "RECV_ZC"),
            (opcode::EpollWait::CODE, "EPOLL_WAIT"),
            (opcode::ReadvFixed::CODE, "READV_FIXED"),
            (opcode::WritevFixed::CODE, "WRITEV_FIXED"),
            (opcode::Pipe::CODE, "PIPE"),
        ];
        for &(code, name) in codes {
            assert_eq!(opcode_name(code), Some(name), "opcode {code}");
            assert_eq!(opcode_min_kernel_code(code), opcode_min_kernel(name));
        }
        // Every opcode this build knows has a type in the io-uring crate.
        for (i, n) in OPCODE_NAMES.iter().enumerate() {
            assert!(codes.iter().any(|&(c, _)| usize::from(c) == i), "{n}");
        }
        assert_eq!(opcode_min_kernel_code(opcode::SendZc::CODE), Some("6.0"));
        assert_eq!(opcode_min_kernel_code(250), None);
    }

    #[test]
    fn setup_flag_enum_matches_table() {
        assert_eq!(SetupFlag::ALL.len(), SETUP_FLAGS.len());
        for (i, f) in SetupFlag::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
            let (name, bit, since) = SETUP_FLAGS[i];
            assert_eq!((f.name(), f.bit(), f.min_kernel()), (name, bit, since));
            assert_eq!(bit, 1 << i);
            assert_eq!(SetupFlag::from_name(name), Some(*f));
        }
        assert_eq!(SetupFlag::SqPoll.name(), "SQPOLL");
        assert_eq!(SetupFlag::DeferTaskrun.name(), "DEFER_TASKRUN");
        assert_eq!(SetupFlag::RegisteredFdOnly.bit(), 1 << 15);
        assert_eq!(
            SetupFlag::from_name("ioring_setup_single_issuer"),
            Some(SetupFlag::SingleIssuer)
        );
        assert_eq!(
            serde_json::to_string(&SetupFlag::SqPoll).unwrap(),
            "\"SqPoll\""
        );
        for (dep, pre) in FLAG_PREREQ {
            assert!(flag_bit(dep).is_some() && flag_bit(pre).is_some());
        }
    }
}
