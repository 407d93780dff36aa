//! The comparison tools that Debian does not package as programs, built from the source
//! package of the installed version and kept in `$XDG_CACHE_HOME/zclab` (else
//! `~/.cache/zclab`): fio's t/io_uring and liburing's examples/send-zerocopy. Packages that
//! are missing are installed with apt-get (as root), as `zclab versus` promises.
//!
//! Everything comes through apt's configured sources (`apt-get install`, `apt-get source`):
//! no address is written here, so a machine behind a mirror or a proxy gets the same files.

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
    zclab::sys::host::cache_dir().context("neither XDG_CACHE_HOME nor HOME is set")
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

/// The source package of an installed binary package and its version (`fio` ->
/// (`fio`, `3.33-3`)), from dpkg's database.
fn source_of(package: &str) -> Result<(String, String)> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${source:Package} ${source:Version}", package])
        .output()
        .context("cannot run dpkg-query")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':'))
    };
    match text.trim().split_once(' ') {
        Some((src, ver)) if out.status.success() && ok(src) && ok(ver) => {
            Ok((src.to_string(), ver.to_string()))
        }
        _ => bail!("{package} is not installed from a Debian package (dpkg-query knows no source)"),
    }
}

/// Fetches the source package of the installed `package` with `apt-get source
/// --download-only` (through apt's configured `deb-src` sources) into the cache, unpacks its
/// upstream tarball as `<src>-<upstream version>/` and runs `build` (a shell command) there;
/// returns `bin` (relative to the source tree) once it exists. The build's output goes to
/// `build.log` in the tree.
fn from_debian_source(package: &str, build: &str, bin: &str) -> Result<PathBuf> {
    let (src, srcver) = source_of(package)?;
    let ver = upstream_version(&srcver);
    if ver.is_empty() {
        bail!("unexpected version {srcver} of source package {src}");
    }
    let cache = cache_dir()?;
    let tree = cache.join(format!("{src}-{ver}"));
    let out = tree.join(bin);
    if out.is_file() {
        return Ok(out);
    }
    for (tool, package) in [("make", "make"), ("gcc", "gcc"), ("xz", "xz-utils")] {
        ensure_tool(tool, package)?;
    }
    let dl = cache.join(format!("{src}-{ver}.download"));
    let _ = std::fs::remove_dir_all(&dl);
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(dl.join("unpacked"))
        .with_context(|| format!("cannot create {}", dl.display()))?;
    eprintln!("versus: building {bin} from source package {src} {srcver} (apt-get source)");
    let spec = format!("{src}={srcver}");
    if let Err(first) = apt_source(&spec, &dl, &[]) {
        // No `deb-src` entries: derive them from the configured `deb` ones into a private apt
        // configuration under the cache, leaving the system's untouched.
        let opts = private_src_config(&cache.join("apt-src")).with_context(|| {
            format!(
                "{first}; it needs `deb-src` entries in apt's sources (add `deb-src` to the \
                 `Types:` of a source in /etc/apt/sources.list.d/, then apt-get update)"
            )
        })?;
        apt_source(&spec, &dl, &opts).with_context(|| {
            format!("{first}; and with deb-src entries derived from apt's deb sources")
        })?;
    }
    // The upstream tarball (`<src>_<ver>.orig.tar.*`), or a native package's own.
    let names: Vec<String> = std::fs::read_dir(&dl)?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let tarball = names
        .iter()
        .find(|n| n.contains(".orig.tar."))
        .or_else(|| {
            names
                .iter()
                .find(|n| n.contains(".tar.") && !n.contains(".debian.tar."))
        })
        .with_context(|| format!("apt-get source {src} gave no tarball in {}", dl.display()))?;
    let st = Command::new("tar")
        .arg("xf")
        .arg(dl.join(tarball))
        .arg("-C")
        .arg(dl.join("unpacked"))
        .status()
        .context("cannot run tar")?;
    let top: Vec<PathBuf> = std::fs::read_dir(dl.join("unpacked"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    if !st.success() || top.len() != 1 || !top[0].is_dir() {
        bail!("{tarball} did not unpack into one directory");
    }
    std::fs::rename(&top[0], &tree)
        .with_context(|| format!("cannot move the source to {}", tree.display()))?;
    let _ = std::fs::remove_dir_all(&dl);
    let st = Command::new("sh")
        .arg("-c")
        .arg("sh -c \"$1\" >build.log 2>&1")
        .args(["sh", build])
        .current_dir(&tree)
        .status()
        .context("cannot run sh")?;
    if !st.success() || !out.is_file() {
        bail!(
            "could not build {bin} from {src} {srcver} (log: {})",
            tree.join("build.log").display()
        );
    }
    Ok(out)
}

/// `apt-get source --download-only SPEC` into `dir`, with extra apt options.
fn apt_source(spec: &str, dir: &std::path::Path, opts: &[String]) -> Result<()> {
    let mut get = Command::new("apt-get");
    get.args(["source", "--download-only", "-qq"]).args(opts);
    if nix::unistd::geteuid().is_root() {
        // apt's download user cannot write into root's cache directory.
        get.args(["-o", "APT::Sandbox::User=root"]);
    }
    let got = get
        .arg(spec)
        .current_dir(dir)
        .stdout(Stdio::null())
        .output()
        .context("cannot run apt-get source")?;
    if got.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&got.stderr);
    bail!(
        "apt-get source {spec} failed ({})",
        why.lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
    )
}

/// A private apt configuration in `dir` whose sources are the system's `deb` sources as
/// `deb-src` (same mirrors, suites, components and keys), with its own package lists; returns
/// the `-o` options that select it, after `apt-get update` has fetched its source indexes.
/// Root only: apt verifies the indexes with the system's keyrings.
fn private_src_config(dir: &std::path::Path) -> Result<Vec<String>> {
    if !nix::unistd::geteuid().is_root() {
        bail!("deriving deb-src entries needs root");
    }
    let cfg = Command::new("apt-config")
        .args([
            "shell",
            "LIST",
            "Dir::Etc::sourcelist/f",
            "PARTS",
            "Dir::Etc::sourceparts/d",
        ])
        .output()
        .context("cannot run apt-config")?;
    let cfg = String::from_utf8_lossy(&cfg.stdout).to_string();
    let value = |key: &str| {
        cfg.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| PathBuf::from(v.trim_matches('\'')))
    };
    let list = value("LIST").unwrap_or_else(|| PathBuf::from("/etc/apt/sources.list"));
    let parts = value("PARTS").unwrap_or_else(|| PathBuf::from("/etc/apt/sources.list.d"));
    let out_parts = dir.join("sources.list.d");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&out_parts)?;
    std::fs::create_dir_all(dir.join("lists/partial"))?;
    std::fs::create_dir_all(dir.join("cache/archives/partial"))?;
    let mut found = 0;
    let mut sources: Vec<PathBuf> = vec![list];
    if let Ok(rd) = std::fs::read_dir(&parts) {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        v.sort();
        sources.extend(v);
    }
    for (i, f) in sources.iter().enumerate() {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let derived = if name.ends_with(".sources") {
            deb822_as_src(&text)
        } else if name.ends_with(".list") {
            one_line_as_src(&text)
        } else {
            continue;
        };
        if let Some(d) = derived {
            found += 1;
            let ext = if name.ends_with(".sources") {
                "sources"
            } else {
                "list"
            };
            std::fs::write(out_parts.join(format!("{i:02}.{ext}")), d)?;
        }
    }
    if found == 0 {
        bail!("apt's sources have no deb entry to derive deb-src entries from");
    }
    let d = dir.display();
    let opts = vec![
        "-o".to_string(),
        format!("Dir::Etc::SourceList={d}/sources.list"),
        "-o".to_string(),
        format!("Dir::Etc::SourceParts={d}/sources.list.d"),
        "-o".to_string(),
        format!("Dir::State::Lists={d}/lists"),
        "-o".to_string(),
        format!("Dir::Cache={d}/cache"),
        "-o".to_string(),
        "APT::Sandbox::User=root".to_string(),
    ];
    eprintln!("versus: fetching source indexes for deb-src entries derived from apt's sources");
    let up = Command::new("apt-get")
        .args(["update", "-qq"])
        .args(&opts)
        .stdout(Stdio::null())
        .output()
        .context("cannot run apt-get update")?;
    if !up.status.success() {
        bail!(
            "apt-get update with derived deb-src entries failed: {}",
            String::from_utf8_lossy(&up.stderr).trim()
        );
    }
    Ok(opts)
}

/// A deb822 `.sources` file with every enabled `deb` stanza turned into `deb-src`; `None` if
/// it has none.
fn deb822_as_src(text: &str) -> Option<String> {
    let mut out = String::new();
    for stanza in text.split("\n\n") {
        let field = |k: &str| {
            stanza.lines().find_map(|l| {
                let (key, v) = l.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(k)
                    .then(|| v.trim().to_string())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|x| x == "deb"));
        let enabled = field("Enabled").is_none_or(|e| !e.eq_ignore_ascii_case("no"));
        if !is_deb || !enabled {
            continue;
        }
        for l in stanza.lines() {
            match l.split_once(':') {
                Some((k, _)) if k.trim().eq_ignore_ascii_case("Types") => {
                    out.push_str("Types: deb-src\n")
                }
                _ => {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out.push('\n');
    }
    (!out.is_empty()).then_some(out)
}

/// A one-line-style `.list` file with its `deb` lines as `deb-src`; `None` if it has none.
fn one_line_as_src(text: &str) -> Option<String> {
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("deb "))
        .map(|rest| format!("deb-src {rest}\n"))
        .collect();
    (!lines.is_empty()).then(|| lines.concat())
}

/// fio's t/io_uring (Debian's fio package does not ship it), from the source of the installed
/// fio. `ZCLAB_T_IO_URING` names a binary to use instead.
pub(super) fn t_io_uring() -> Result<PathBuf> {
    if let Some(p) = overridden("ZCLAB_T_IO_URING")? {
        return Ok(p);
    }
    ensure_tool("fio", "fio")?;
    from_debian_source("fio", "./configure && make -j2 t/io_uring", "t/io_uring")
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
    ensure_package("liburing-dev")?;
    ensure_tool("gcc", "gcc")?;
    from_debian_source(
        "liburing-dev",
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

    #[test]
    fn deb_sources_become_deb_src() {
        let deb822 = "Types: deb\nURIs: http://m/debian\nSuites: s\nComponents: main\n\n\
                      Types: deb\nEnabled: no\nURIs: http://x\n\nTypes: deb-src\nURIs: http://y\n";
        let got = deb822_as_src(deb822).unwrap();
        assert_eq!(
            got,
            "Types: deb-src\nURIs: http://m/debian\nSuites: s\nComponents: main\n\n"
        );
        assert_eq!(deb822_as_src("Types: deb-src\nURIs: http://y\n"), None);
        let list = "# c\ndeb [arch=amd64] http://m/debian s main\ndeb-src http://m s main\n";
        assert_eq!(
            one_line_as_src(list).unwrap(),
            "deb-src [arch=amd64] http://m/debian s main\n"
        );
        assert_eq!(one_line_as_src("# nothing\n"), None);
    }

    #[test]
    fn source_packages_come_from_dpkg() {
        if Command::new("dpkg-query")
            .arg("--version")
            .output()
            .is_err()
        {
            return; // not a Debian system
        }
        let (src, ver) = source_of("dpkg").unwrap();
        assert_eq!(src, "dpkg");
        assert!(!upstream_version(&ver).is_empty(), "{ver}");
        assert!(source_of("no-such-package-zclab").is_err());
    }
}
