#!/usr/bin/env bash
# Copies the run directories of a Vagrant VM's results/ into the host's results/ (for the
# default rsync synced folder, which only copies host -> guest). Run directories already on
# the host are left as they are; nothing is deleted on either side.
#
#   scripts/matrix/vm-pull.sh              # the primary machine (bookworm)
#   scripts/matrix/vm-pull.sh noble trixie
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v vagrant >/dev/null || { echo "vm-pull: vagrant not found" >&2; exit 1; }
machines=("$@")
((${#machines[@]})) || machines=(bookworm)
mkdir -p results
for m in "${machines[@]}"; do
  echo "vm-pull: $m:/vagrant/results -> results/" >&2
  # base64 keeps the archive intact through the ssh session's terminal handling.
  vagrant ssh "$m" -c 'cd /vagrant && tar -czf - --exclude=./README.md results | base64 -w0' \
    2>/dev/null | base64 -d | tar -xzf - --skip-old-files --no-same-owner
done
find results -mindepth 1 -maxdepth 1 -type d | sort | tail -n 5
