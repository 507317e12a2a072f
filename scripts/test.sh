#!/usr/bin/env bash
# The whole test suite, as CI runs it: install dependencies, formatting, lints, then every
# test (unit, property, integration, interop with real clients) once per io backend, then a
# short smoke run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

for io in uring epoll; do
  echo "=== test suite with RINGSEED_IO=$io ==="
  RINGSEED_IO=$io cargo test -- --test-threads="${RINGSEED_TEST_THREADS:-2}"
done

if [ "${RINGSEED_SKIP_FUZZ:-0}" != 1 ]; then
  scripts/fuzz-smoke.sh "${RINGSEED_FUZZ_SECONDS:-20}"
fi
echo "=== all tests passed ==="
