//! Network facts relevant to zero-copy sends: `SO_ZEROCOPY`, `net.core.optmem_max`, and
//! whether this process can build network namespaces.

use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

use super::{Net, read_trimmed};
use crate::sys::errqueue::enable_zerocopy;

/// `may_admin`: root or CAP_SYS_ADMIN, which `ip netns` needs.
pub(super) fn probe_net(may_admin: bool) -> Net {
    let ip_binary = find_ip_binary();
    Net {
        so_zerocopy: so_zerocopy_works(),
        optmem_max: read_trimmed("/proc/sys/net/core/optmem_max").and_then(|s| s.parse().ok()),
        netns: may_admin && ip_binary.is_some(),
        ip_binary,
    }
}

/// setsockopt(SO_ZEROCOPY, 1) on a fresh TCP socket succeeds (socket(7)).
fn so_zerocopy_works() -> bool {
    let Ok(sock) = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    enable_zerocopy(sock.as_fd()).is_ok()
}

fn find_ip_binary() -> Option<String> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join("ip"))
        .find(|p| is_executable(p))
        .map(|p| p.display().to_string())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
