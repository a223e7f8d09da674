#!/usr/bin/env bash
# The whole test suite, as CI runs it (root needed: kernel programs and namespace labs).
# Installs what is missing first (scripts/setup.sh), then builds and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The lab tests run the peerwarden binary: build it before the tests that use it.
cargo build --locked -p peerwarden
# --no-fail-fast: one failing test binary does not hide the others' results.
cargo test --locked --no-fail-fast --workspace --exclude peerwarden-ebpf -- --test-threads=1
