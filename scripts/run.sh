#!/usr/bin/env bash
# The main job: set up, build, run the quick suite (or what the arguments say), draw the plots
# and write report.md in a new run directory under results/.
#   scripts/run.sh                          # quick suite, every experiment
#   scripts/run.sh --preset full            # the seeds' sizes, more repeats
#   scripts/run.sh file_to_socket net_send  # just these
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
exec target/release/zclab run "$@"
