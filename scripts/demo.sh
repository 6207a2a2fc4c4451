#!/usr/bin/env bash
# The demo: start a workload, checkpoint it (which stops it), restore it from the images,
# and show it continuing from where it was. Run as root on a Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release --locked -q -p stasis-e2e --bin stasis-demo
