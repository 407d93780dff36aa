#!/usr/bin/env bash
# Installs what the lab needs beyond python3, idempotently: Rust from the distribution's
# packages when cargo is missing (as root; scripts/rust-packages.sh), iproute2 (`ip`, for the
# network namespaces of the veth and sink paths), util-linux (setpriv, for the unprivileged
# tests), and the Python environment for the plots (scripts/pyenv.sh). Safe to run repeatedly;
# does nothing when everything is present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
  else
    echo "setup: missing ${need_apt[*]}; install with: sudo apt-get install ${need_apt[*]}" >&2
    echo "setup: (the lab still runs; paths that need them are skipped with the reason)" >&2
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  # shellcheck source=rust-packages.sh
  source "$here/rust-packages.sh"
  read -ra rust_pkgs <<<"$(command -v apt-cache >/dev/null && rust_packages)"
  if [[ $(id -u) -eq 0 && -n ${rust_pkgs[*]:-} && ${rust_pkgs[0]} != rustup ]]; then
    echo "setup: installing Rust from the distribution: ${rust_pkgs[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${rust_pkgs[@]}" >&2
  else
    echo "setup: cargo not found: install Rust 1.85 or newer (sudo scripts/provision.sh does," >&2
    echo "setup: from the distribution's packages), then run this again" >&2
    exit 1
  fi
fi

# The plots' Python environment (created on first use, quick afterwards).
if [[ -f $here/pyenv.sh ]]; then
  bash "$here/pyenv.sh" >/dev/null
fi
