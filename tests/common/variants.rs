//! The variant lists of the experiments the tests check by name.

pub const FILE_TO_SOCKET_VARIANTS: &[&str] = &[
    "classic-read-write",
    "classic-mmap-write",
    "classic-sendfile",
    "classic-splice",
    "uring-read-send",
    "uring-read-fixed-send",
    "uring-splice",
    "uring-send-zc-fixed",
    "uring-send-zc-mmap",
];

pub const NET_SEND_VARIANTS: &[&str] = &[
    "classic-send",
    "classic-send-msg-zerocopy",
    "uring-send",
    "uring-send-zc",
    "uring-send-zc-fixed",
    "uring-sendmsg-zc",
];

/// net_send's variants that send with zero copy.
pub const NET_SEND_ZC_VARIANTS: &[&str] = &[
    "classic-send-msg-zerocopy",
    "uring-send-zc",
    "uring-send-zc-fixed",
    "uring-sendmsg-zc",
];
