#!/usr/bin/env bash
# Runs every scenario in scenarios/ at full size, one at a time, with a release build, and
# writes results/<name>/ (summary, CSV/JSON time series, SVG plots). CI runs them at reduced
# size in tests/sim_scenarios.rs instead. Usage: scripts/sim-scenarios.sh [name...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ringseed
bin="${CARGO_TARGET_DIR:-target}/release/ringseed"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in scenarios/*.toml; do names+=("$(basename "$f" .toml)"); done
fi
for n in "${names[@]}"; do
  echo "=== $n"
  "$bin" sim "scenarios/$n.toml" --out "results/$n"
done
