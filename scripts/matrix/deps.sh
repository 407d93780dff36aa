#!/usr/bin/env bash
# Installs what the kernel matrix and the Vagrantfile check need, idempotently (Debian/Ubuntu,
# as root; does nothing when everything is present):
#   qemu-system-x86   boots the kernels (on Debian 12 from bookworm-backports when apt's
#                     sources have it: bookworm's own 7.2 build would replace a newer
#                     qemu-utils already installed)
#   busybox-static    the guest's userland
#   cpio              packs the initramfs
#   vagrant, vagrant-libvirt   `vagrant validate` of the Vagrantfile (tests/matrix.rs)
#   iproute2, python3 network namespaces in the guest; matrix.json and the probe summary
#
#   scripts/matrix/deps.sh            # everything
#   scripts/matrix/deps.sh qemu       # only what booting kernels needs
#   scripts/matrix/deps.sh vagrant    # only vagrant
#
# Packages come only through apt's configured sources (a mirror or proxy set up there applies);
# this script adds no source of its own.
set -euo pipefail

want=${1:-all}
case $want in all | qemu | vagrant) ;; *)
  echo "deps: usage: $0 [all|qemu|vagrant]" >&2
  exit 2
  ;;
esac

need=()
if [[ $want != vagrant ]]; then
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  # busybox-static: a static busybox needs nothing else in the initramfs.
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
    need+=(busybox-static)
  command -v cpio >/dev/null || need+=(cpio)
  command -v ip >/dev/null || need+=(iproute2)
  command -v python3 >/dev/null || need+=(python3)
  command -v xz >/dev/null || need+=(xz-utils)
fi
if [[ $want != qemu ]]; then
  command -v vagrant >/dev/null || need+=(vagrant)
  # The libvirt provider plugin: `vagrant validate` then checks the libvirt block too.
  dpkg-query -W -f='${Status}' vagrant-libvirt 2>/dev/null | grep -q 'ok installed' ||
    need+=(vagrant-libvirt)
fi
((${#need[@]})) || exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "deps: missing ${need[*]}; run this script as root (sudo $0)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "deps: missing ${need[*]}; this script knows apt-get only: install them by hand" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive

# shellcheck disable=SC1091  # the running system's file
codename=$( (. /etc/os-release && echo "${VERSION_CODENAME:-}") 2>/dev/null || true)

echo "deps: installing ${need[*]}" >&2
# Wait for another apt run (e.g. a parallel test installing its part) instead of failing.
lock=(-o DPkg::Lock::Timeout=300)
apt-get "${lock[@]}" update -qq >&2
target=()
if [[ " ${need[*]} " == *" qemu-system-x86 "* && $codename == bookworm ]]; then
  # Debian 12: take QEMU from bookworm-backports (10.x) so that a preinstalled backports
  # qemu-utils is not downgraded, and the guest CPU model `max` is current.
  if apt-cache policy 2>/dev/null | grep -q 'n=bookworm-backports'; then
    target=(-t bookworm-backports)
  else
    echo "deps: bookworm-backports is not among apt's sources: installing bookworm's QEMU 7.2" \
      "(enable bookworm-backports in /etc/apt/sources.list.d/ for QEMU 10)" >&2
  fi
fi
apt-get "${lock[@]}" install -y -qq --no-install-recommends "${target[@]}" "${need[@]}" >&2
