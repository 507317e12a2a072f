#!/usr/bin/env bash
# Runs every cargo-fuzz target for a few seconds (default 20) on the stable toolchain
# (`-s none`: no sanitizer; ASan needs nightly). A crash fails the run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
for target in $(cargo fuzz list); do
  echo "=== fuzz $target for ${seconds}s ==="
  cargo fuzz run "$target" -s none -- -max_total_time="$seconds" -rss_limit_mb=2048
done
