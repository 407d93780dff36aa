//! The catalogue: every experiment's name, variant names and parameter names, in one place
//! the library exports, so that the experiment binaries' variant tables, the tests, the claims
//! (claims/claims.json) and `zclab versus` name the same things. A variant table whose names
//! differ from its entry here fails at start-up ([`crate::harness::run`] checks it), and a test
//! fails when claims.json names anything that is not here.

/// One experiment's names.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub experiment: &'static str,
    pub variants: &'static [&'static str],
    /// The parameters of its points (`Point` keys, the `params` of every row).
    pub params: &'static [&'static str],
}

/// `file_copy`.
pub mod file_copy {
    pub const NAME: &str = "file_copy";
    pub const CLASSIC_READ_WRITE: &str = "classic-read-write";
    pub const CLASSIC_MMAP_WRITE: &str = "classic-mmap-write";
    pub const CLASSIC_MMAP_MMAP: &str = "classic-mmap-mmap";
    pub const CLASSIC_SENDFILE: &str = "classic-sendfile";
    pub const CLASSIC_SPLICE: &str = "classic-splice";
    pub const CLASSIC_COPY_FILE_RANGE: &str = "classic-copy-file-range";
    pub const URING_READ_WRITE: &str = "uring-read-write";
    pub const URING_READ_WRITE_FIXED: &str = "uring-read-write-fixed";
    pub const URING_SPLICE: &str = "uring-splice";
    pub const VARIANTS: &[&str] = &[
        CLASSIC_READ_WRITE,
        CLASSIC_MMAP_WRITE,
        CLASSIC_MMAP_MMAP,
        CLASSIC_SENDFILE,
        CLASSIC_SPLICE,
        CLASSIC_COPY_FILE_RANGE,
        URING_READ_WRITE,
        URING_READ_WRITE_FIXED,
        URING_SPLICE,
    ];
    pub const PARAMS: &[&str] = &["buf", "cache", "fsync", "size"];
}

/// `file_to_socket`.
pub mod file_to_socket {
    pub const NAME: &str = "file_to_socket";
    pub const CLASSIC_READ_WRITE: &str = "classic-read-write";
    pub const CLASSIC_MMAP_WRITE: &str = "classic-mmap-write";
    pub const CLASSIC_SENDFILE: &str = "classic-sendfile";
    pub const CLASSIC_SPLICE: &str = "classic-splice";
    pub const URING_READ_SEND: &str = "uring-read-send";
    pub const URING_READ_FIXED_SEND: &str = "uring-read-fixed-send";
    pub const URING_SPLICE: &str = "uring-splice";
    pub const URING_SEND_ZC_FIXED: &str = "uring-send-zc-fixed";
    pub const URING_SEND_ZC_MMAP: &str = "uring-send-zc-mmap";
    pub const VARIANTS: &[&str] = &[
        CLASSIC_READ_WRITE,
        CLASSIC_MMAP_WRITE,
        CLASSIC_SENDFILE,
        CLASSIC_SPLICE,
        URING_READ_SEND,
        URING_READ_FIXED_SEND,
        URING_SPLICE,
        URING_SEND_ZC_FIXED,
        URING_SEND_ZC_MMAP,
    ];
    pub const PARAMS: &[&str] = &["chunk", "path", "size"];
}

/// `gather_write`.
pub mod gather_write {
    pub const NAME: &str = "gather_write";
    pub const CLASSIC_CONCAT_WRITE: &str = "classic-concat-write";
    pub const CLASSIC_WRITEV: &str = "classic-writev";
    pub const CLASSIC_SENDMSG_IOV: &str = "classic-sendmsg-iov";
    pub const URING_WRITEV: &str = "uring-writev";
    pub const URING_SENDMSG_ZC: &str = "uring-sendmsg-zc";
    pub const VARIANTS: &[&str] = &[
        CLASSIC_CONCAT_WRITE,
        CLASSIC_WRITEV,
        CLASSIC_SENDMSG_IOV,
        URING_WRITEV,
        URING_SENDMSG_ZC,
    ];
    pub const PARAMS: &[&str] = &["part_size", "parts"];
}

/// `mmap_read`.
pub mod mmap_read {
    pub const NAME: &str = "mmap_read";
    pub const CLASSIC_READ: &str = "classic-read";
    pub const CLASSIC_MMAP: &str = "classic-mmap";
    pub const CLASSIC_MMAP_POPULATE: &str = "classic-mmap-populate";
    pub const CLASSIC_MMAP_SEQUENTIAL: &str = "classic-mmap-sequential";
    pub const URING_READ: &str = "uring-read";
    pub const VARIANTS: &[&str] = &[
        CLASSIC_READ,
        CLASSIC_MMAP,
        CLASSIC_MMAP_POPULATE,
        CLASSIC_MMAP_SEQUENTIAL,
        URING_READ,
    ];
    pub const PARAMS: &[&str] = &["buf", "size"];
}

/// `net_send`.
pub mod net_send {
    pub const NAME: &str = "net_send";
    pub const CLASSIC_SEND: &str = "classic-send";
    pub const CLASSIC_SEND_MSG_ZEROCOPY: &str = "classic-send-msg-zerocopy";
    pub const URING_SEND: &str = "uring-send";
    pub const URING_SEND_ZC: &str = "uring-send-zc";
    pub const URING_SEND_ZC_FIXED: &str = "uring-send-zc-fixed";
    pub const URING_SENDMSG_ZC: &str = "uring-sendmsg-zc";
    pub const VARIANTS: &[&str] = &[
        CLASSIC_SEND,
        CLASSIC_SEND_MSG_ZEROCOPY,
        URING_SEND,
        URING_SEND_ZC,
        URING_SEND_ZC_FIXED,
        URING_SENDMSG_ZC,
    ];
    pub const PARAMS: &[&str] = &["path", "reap", "size"];
}

/// `proxy`.
pub mod proxy {
    pub const NAME: &str = "proxy";
    pub const CLASSIC_READ_WRITE: &str = "classic-read-write";
    pub const CLASSIC_SPLICE: &str = "classic-splice";
    pub const URING_RECV_SEND: &str = "uring-recv-send";
    pub const URING_SPLICE: &str = "uring-splice";
    pub const VARIANTS: &[&str] = &[
        CLASSIC_READ_WRITE,
        CLASSIC_SPLICE,
        URING_RECV_SEND,
        URING_SPLICE,
    ];
    pub const PARAMS: &[&str] = &["mode", "msg"];
}

/// `socket_to_file`.
pub mod socket_to_file {
    pub const NAME: &str = "socket_to_file";
    pub const CLASSIC_RECV_WRITE: &str = "classic-recv-write";
    pub const CLASSIC_SPLICE: &str = "classic-splice";
    pub const CLASSIC_RECV_MMAP: &str = "classic-recv-mmap";
    pub const URING_RECV_WRITE: &str = "uring-recv-write";
    pub const URING_RECV_WRITE_FIXED: &str = "uring-recv-write-fixed";
    pub const URING_SPLICE: &str = "uring-splice";
    pub const VARIANTS: &[&str] = &[
        CLASSIC_RECV_WRITE,
        CLASSIC_SPLICE,
        CLASSIC_RECV_MMAP,
        URING_RECV_WRITE,
        URING_RECV_WRITE_FIXED,
        URING_SPLICE,
    ];
    pub const PARAMS: &[&str] = &["chunk", "fsync", "size"];
}

/// `storage_read`.
pub mod storage_read {
    pub const NAME: &str = "storage_read";
    pub const CLASSIC_PREAD: &str = "classic-pread";
    pub const URING_READ: &str = "uring-read";
    pub const URING_READ_FIXED: &str = "uring-read-fixed";
    pub const URING_READ_FIXED_FILES: &str = "uring-read-fixed-files";
    pub const URING_SQPOLL: &str = "uring-sqpoll";
    pub const VARIANTS: &[&str] = &[
        CLASSIC_PREAD,
        URING_READ,
        URING_READ_FIXED,
        URING_READ_FIXED_FILES,
        URING_SQPOLL,
    ];
    pub const PARAMS: &[&str] = &["bs", "io", "pattern", "qd"];
}

/// `syscall_floor`.
pub mod syscall_floor {
    pub const NAME: &str = "syscall_floor";
    pub const GETPPID: &str = "getppid";
    pub const URING_NOP: &str = "uring-nop";
    pub const URING_NOP_REGRING: &str = "uring-nop-regring";
    pub const URING_NOP_SQPOLL: &str = "uring-nop-sqpoll";
    pub const URING_NOP_SQPOLL_REGRING: &str = "uring-nop-sqpoll-regring";
    pub const VARIANTS: &[&str] = &[
        GETPPID,
        URING_NOP,
        URING_NOP_REGRING,
        URING_NOP_SQPOLL,
        URING_NOP_SQPOLL_REGRING,
    ];
    pub const PARAMS: &[&str] = &["batch"];
}

/// Every experiment of the lab.
pub const ALL: &[Entry] = &[
    Entry {
        experiment: file_copy::NAME,
        variants: file_copy::VARIANTS,
        params: file_copy::PARAMS,
    },
    Entry {
        experiment: file_to_socket::NAME,
        variants: file_to_socket::VARIANTS,
        params: file_to_socket::PARAMS,
    },
    Entry {
        experiment: gather_write::NAME,
        variants: gather_write::VARIANTS,
        params: gather_write::PARAMS,
    },
    Entry {
        experiment: mmap_read::NAME,
        variants: mmap_read::VARIANTS,
        params: mmap_read::PARAMS,
    },
    Entry {
        experiment: net_send::NAME,
        variants: net_send::VARIANTS,
        params: net_send::PARAMS,
    },
    Entry {
        experiment: proxy::NAME,
        variants: proxy::VARIANTS,
        params: proxy::PARAMS,
    },
    Entry {
        experiment: socket_to_file::NAME,
        variants: socket_to_file::VARIANTS,
        params: socket_to_file::PARAMS,
    },
    Entry {
        experiment: storage_read::NAME,
        variants: storage_read::VARIANTS,
        params: storage_read::PARAMS,
    },
    Entry {
        experiment: syscall_floor::NAME,
        variants: syscall_floor::VARIANTS,
        params: syscall_floor::PARAMS,
    },
];

/// The entry of an experiment, by name.
pub fn find(experiment: &str) -> Option<&'static Entry> {
    ALL.iter().find(|e| e.experiment == experiment)
}
