#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, and end-to-end tests that dump and
# restore real processes with the release binary. Run as root on a Debian 12 machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export STASIS_BIN="$PWD/target/release/stasis"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --locked --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --release --locked --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, i }' target/test-output.txt
