//! The comparison tools that Debian does not package as programs, built from the Debian
//! archive's source of the installed version and kept in `$XDG_CACHE_HOME/zclab` (else
//! `~/.cache/zclab`): fio's t/io_uring and liburing's examples/send-zerocopy. Packages that
//! are missing are installed with apt-get (as root), as `zclab versus` promises.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Makes sure the command `name` exists, installing `package` with apt-get when it does not
/// (root only; otherwise the error says what to install).
pub(super) fn ensure_tool(name: &str, package: &str) -> Result<()> {
    if Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()?
        .success()
    {
        return Ok(());
    }
    apt_install(package, &format!("{name} is not installed"))
}

/// The installed version of a Debian package, without epoch or Debian revision
/// (`1:2.3-3` -> `2.3`), installing it first when missing.
fn ensure_package(package: &str) -> Result<String> {
    let query = || -> Option<String> {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f", "${Status} ${Version}", package])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let ver = text.strip_prefix("install ok installed ")?;
        Some(upstream_version(ver)).filter(|v| !v.is_empty())
    };
    if let Some(v) = query() {
        return Ok(v);
    }
    apt_install(package, &format!("package {package} is not installed"))?;
    query().with_context(|| format!("{package} is still not installed"))
}

/// `1:2.3-3` -> `2.3`; refuses anything but letters, digits, dots, `+` and `~`.
fn upstream_version(v: &str) -> String {
    let v = v.trim();
    let v = v.split_once(':').map_or(v, |(_, r)| r);
    let v = v.rsplit_once('-').map_or(v, |(u, _)| u);
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~'))
    {
        v.to_string()
    } else {
        String::new()
    }
}

fn apt_install(package: &str, why: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("{why}; install it with: sudo apt-get install {package}");
    }
    eprintln!("versus: installing {package}");
    let install = || -> Result<bool> {
        Ok(Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?
            .success())
    };
    let ok = install()?
        || (Command::new("apt-get")
            .args(["update", "-qq"])
            .status()?
            .success()
            && install()?);
    if !ok {
        bail!("could not install {package} with apt-get");
    }
    Ok(())
}

fn cache_dir() -> Result<PathBuf> {
    Ok(std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?
        .join("zclab"))
}

/// A binary named by environment variable `var`, if set (it must exist).
fn overridden(var: &str) -> Result<Option<PathBuf>> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_file() {
                bail!("{var}={} is not a file", p.display());
            }
            Ok(Some(p))
        }
    }
}

/// Downloads `<pool>/<src>_<ver>.orig.tar.gz` from deb.debian.org into the cache, unpacks it
/// as `<src>-<ver>/` and runs `build` (a shell command) there; returns `bin` (relative to the
/// source tree) once it exists. The build's output goes to `build.log` in the tree.
fn from_debian_source(pool: &str, src: &str, ver: &str, build: &str, bin: &str) -> Result<PathBuf> {
    let cache = cache_dir()?;
    let tree = cache.join(format!("{src}-{ver}"));
    let out = tree.join(bin);
    if out.is_file() {
        return Ok(out);
    }
    for (tool, package) in [("curl", "curl"), ("make", "make"), ("gcc", "gcc")] {
        ensure_tool(tool, package)?;
    }
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create {}", cache.display()))?;
    let url = format!("https://deb.debian.org/debian/pool/main/{pool}/{src}_{ver}.orig.tar.gz");
    eprintln!("versus: building {bin} from {src} {ver}'s source ({url})");
    let st = Command::new("sh")
        .arg("-c")
        .arg(
            "set -e; cd \"$1\"; rm -rf \"$2\"; curl -sSfL \"$3\" | tar xz; cd \"$2\"; \
             sh -c \"$4\" >build.log 2>&1",
        )
        .args([
            "sh",
            &cache.to_string_lossy(),
            &format!("{src}-{ver}"),
            &url,
            build,
        ])
        .status()
        .context("cannot run sh")?;
    if !st.success() || !out.is_file() {
        bail!(
            "could not build {bin} from {url} (log: {})",
            tree.join("build.log").display()
        );
    }
    Ok(out)
}

/// fio's t/io_uring (Debian's fio package does not ship it), from the source of the installed
/// fio. `ZCLAB_T_IO_URING` names a binary to use instead.
pub(super) fn t_io_uring() -> Result<PathBuf> {
    if let Some(p) = overridden("ZCLAB_T_IO_URING")? {
        return Ok(p);
    }
    ensure_tool("fio", "fio")?;
    let out = Command::new("fio")
        .arg("--version")
        .output()
        .context("cannot run fio --version")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ver = text
        .trim()
        .strip_prefix("fio-")
        .map(upstream_version)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("unexpected fio --version output {:?}", text.trim()))?;
    from_debian_source(
        "f/fio",
        "fio",
        &ver,
        "./configure && make -j2 t/io_uring",
        "t/io_uring",
    )
}

/// The ring setup flags t/io_uring uses, as syscall_floor's `--ring-flags` names them:
/// `tuned` when its source asks for DEFER_TASKRUN (fio 3.33's asks for it with COOP_TASKRUN and
/// SINGLE_ISSUER, and drops each the kernel refuses, as the lab does), `none` for a version that
/// asks for none. Read from the source next to the binary; `None` when it is not there (a
/// binary named by `ZCLAB_T_IO_URING`).
pub(super) fn t_io_uring_ring_flags(bin: &std::path::Path) -> Option<&'static str> {
    let src = std::fs::read_to_string(bin.with_file_name("io_uring.c")).ok()?;
    Some(if src.contains("IORING_SETUP_DEFER_TASKRUN") {
        "tuned"
    } else {
        "none"
    })
}

/// liburing's examples/send-zerocopy (not in Debian's packages), compiled against the
/// installed liburing-dev from the source of the same version. `ZCLAB_SEND_ZEROCOPY` names a
/// binary to use instead.
pub(super) fn send_zerocopy() -> Result<PathBuf> {
    if let Some(p) = overridden("ZCLAB_SEND_ZEROCOPY")? {
        return Ok(p);
    }
    let ver = ensure_package("liburing-dev")?;
    ensure_tool("gcc", "gcc")?;
    from_debian_source(
        "libu/liburing",
        "liburing",
        &ver,
        "gcc -O2 -o examples/send-zerocopy examples/send-zerocopy.c -luring",
        "examples/send-zerocopy",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions() {
        assert_eq!(upstream_version("2.3-3"), "2.3");
        assert_eq!(upstream_version("1:3.33-3+b1"), "3.33");
        assert_eq!(upstream_version("3.33"), "3.33");
        assert_eq!(upstream_version("2.3;rm -rf /-1"), "");
    }
}
