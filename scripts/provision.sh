#!/usr/bin/env bash
# Prepares a Debian/Ubuntu machine (a Vagrant VM or bare metal) to run zclab, idempotently:
# build tools, iproute2 and util-linux, python3 with venv (plots), the Rust toolchain from the
# distribution's packages (rustc and cargo, rustc-web and cargo-web, or rustup), then `scripts/setup.sh` and
# `cargo build --release`.
# Runs as root, or re-runs itself with sudo. Every step is skipped when already done.
#
#   sudo scripts/provision.sh                  # for the invoking user, in this repository
#   scripts/provision.sh --user vagrant --repo /vagrant --memlock   # what the Vagrantfile runs
#   scripts/provision.sh --dry-run             # say what would be done, change nothing
#
# Options:
#   --user NAME   who owns the toolchain and the build (default: $SUDO_USER, else root)
#   --repo DIR    the zclab checkout (default: this script's repository)
#   --memlock     let NAME lock unlimited memory (/etc/security/limits.d/90-zclab.conf), so
#                 registered buffers work without root; takes effect at the next login
#   --matrix      also install the kernel matrix's tools (scripts/matrix/deps.sh qemu)
#   --no-build    install only; do not build
#   --dry-run     print the steps that would run, change nothing
# Note: with the distribution's rustup, the toolchain comes from rustup's configured server.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
user=${SUDO_USER:-$(id -un)}
memlock=0 matrix=0 build=1 dry=0
while (($#)); do
  case $1 in
    --user) user=${2:?--user needs a name}; shift 2 ;;
    --repo) repo=${2:?--repo needs a directory}; shift 2 ;;
    --memlock) memlock=1; shift ;;
    --matrix) matrix=1; shift ;;
    --no-build) build=0; shift ;;
    --dry-run) dry=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "provision: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "provision: $*" >&2; }
run() {
  if ((dry)); then say "would run: $*"; else "$@"; fi
}

if [[ $(id -u) -ne 0 ]] && ((!dry)); then
  command -v sudo >/dev/null || { say "run as root (no sudo here)"; exit 1; }
  again=(--user "$user" --repo "$repo")
  ((memlock)) && again+=(--memlock)
  ((matrix)) && again+=(--matrix)
  ((build)) || again+=(--no-build)
  exec sudo -E bash "$0" "${again[@]}"
fi
id "$user" >/dev/null 2>&1 || { say "no such user: $user"; exit 1; }
[[ -f $repo/Cargo.toml ]] || { say "$repo is not a zclab checkout (no Cargo.toml)"; exit 1; }
home=$(getent passwd "$user" | cut -d: -f6)

# Runs a command as the building user, with their cargo on PATH (queries run even in --dry-run).
as_user() {
  if ((dry)); then say "would run as $user: $1"; return 0; fi
  query_user "$1"
}
query_user() {
  local cmd="export PATH=\"$home/.cargo/bin:\$PATH\"; $1"
  if [[ $user == "$(id -un)" ]]; then
    HOME=$home bash -c "$cmd"
  else
    runuser -u "$user" -- env HOME="$home" bash -c "$cmd"
  fi
}

# 1. System packages.
command -v apt-get >/dev/null || { say "this script knows apt-get only (Debian, Ubuntu)"; exit 1; }
pkgs=(build-essential pkg-config curl ca-certificates git iproute2 util-linux python3
  python3-venv python3-pip rsync)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run apt-get update -qq
  run apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  say "system packages present"
fi

# 2. Rust for the building user (the crate needs 1.85 or newer: edition 2024).
if [[ -x $home/.cargo/bin/cargo ]] || runuser -u "$user" -- bash -c 'command -v cargo' >/dev/null 2>&1 ||
  { [[ $user == "$(id -un)" ]] && command -v cargo >/dev/null; }; then
  ver=$(query_user 'rustc --version' 2>/dev/null | awk '{print $2}')
  say "Rust present for $user: ${ver:-unknown version}"
  if [[ -n $ver ]] && ! printf '1.85.0\n%s\n' "$ver" | sort -V -C; then
    say "Rust $ver is older than 1.85: updating the stable toolchain"
    as_user 'rustup update stable && rustup default stable'
  fi
else
  # From the distribution's own packages (scripts/rust-packages.sh says which).
  # shellcheck source=rust-packages.sh
  source "$repo/scripts/rust-packages.sh"
  read -ra rust_pkgs <<<"$(rust_packages)"
  case ${rust_pkgs[0]:-} in
    "")
      say "this distribution packages no rustc 1.85 or newer and no rustup: install Rust 1.85"
      say "or newer for $user (see https://rustup.rs), then run this script again"
      exit 1 ;;
    rustup)
      say "installing rustup from the distribution, then the stable toolchain for $user"
      run apt-get install -y -qq --no-install-recommends rustup
      as_user 'rustup default stable' ;;
    *)
      say "installing Rust from the distribution (${rust_pkgs[*]} $(apt_candidate "${rust_pkgs[0]}"))"
      run apt-get install -y -qq --no-install-recommends "${rust_pkgs[@]}" ;;
  esac
fi

# 3. Optional: unlimited locked memory for the user (registered buffers without root).
if ((memlock)); then
  conf=/etc/security/limits.d/90-zclab.conf
  line="$user - memlock unlimited"
  if grep -qxF "$line" "$conf" 2>/dev/null; then
    say "memlock limit already set for $user"
  elif ((dry)); then
    say "would write '$line' to $conf"
  else
    echo "$line" >>"$conf"
    say "memlock unlimited for $user ($conf; next login)"
  fi
fi

# 3b. A work directory where O_DIRECT is real: Debian 13 mounts /tmp as tmpfs, which has no
# O_DIRECT and keeps files in memory, and the experiments' --workdir defaults to $TMPDIR.
if [[ $(stat -f -c %T /tmp 2>/dev/null) == tmpfs ]]; then
  conf=/etc/profile.d/zclab-workdir.sh
  if [[ -f $conf ]]; then
    say "TMPDIR already set for logins ($conf)"
  elif ((dry)); then
    say "would set TMPDIR=/var/tmp for logins in $conf (/tmp is tmpfs)"
  else
    echo 'export TMPDIR=/var/tmp  # zclab: /tmp is tmpfs here; O_DIRECT needs a real filesystem' >"$conf"
    say "TMPDIR=/var/tmp for logins ($conf): /tmp is tmpfs"
  fi
fi

# 4. Optional: the kernel matrix's tools.
if ((matrix)); then
  run bash "$repo/scripts/matrix/deps.sh" qemu
fi

# 5. Build (setup.sh also prepares the plots' Python environment).
if ((build)); then
  say "building zclab in $repo as $user"
  as_user "cd '$repo' && bash scripts/setup.sh && cargo build --release"
  ((dry)) || say "done: $repo/target/release/zclab probe; scripts/run.sh for the quick suite"
fi
