//! Who and where the process runs: uname(2), online CPUs (sysconf(3)), the user's cache
//! directory.

/// uname(2) fields; "unknown" each when the call fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uname {
    pub nodename: String,
    /// `uname -r`.
    pub release: String,
    /// `uname -v`.
    pub version: String,
    /// `uname -m`.
    pub machine: String,
}

/// uname(2) of the running kernel.
pub fn uname() -> Uname {
    // SAFETY: an all-zero utsname is a valid value of this plain C struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a writable utsname.
    let rc = unsafe { libc::uname(&mut u) };
    let field = |f: &[libc::c_char]| -> String {
        if rc < 0 {
            return "unknown".to_string();
        }
        // The kernel NUL-terminates each field; stop at the array end anyway.
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Uname {
        nodename: field(&u.nodename),
        release: field(&u.release),
        version: field(&u.version),
        machine: field(&u.machine),
    }
}

/// Online CPUs of the machine (sysconf(3) `_SC_NPROCESSORS_ONLN`), whatever this process's
/// affinity; 0 when unknown.
pub fn online_cpus() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
}

/// The lab's cache directory: `$XDG_CACHE_HOME/zclab`, else `$HOME/.cache/zclab`; None when
/// neither variable is set.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("zclab"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn uname_and_cpus() {
        let u = super::uname();
        assert!(u.release.starts_with(|c: char| c.is_ascii_digit()), "{u:?}");
        assert!(super::online_cpus() >= 1);
    }
}
