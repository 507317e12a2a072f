#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the real BitTorrent clients
# the interop tests run against, and cargo-fuzz for the fuzz smoke runs. Idempotent.
set -euo pipefail

APT_PACKAGES=(
  python3-libtorrent   # libtorrent-rasterbar 2.0 (import only under /usr/bin/python3)
  aria2                # aria2c
  transmission-cli     # transmission-cli
  transmission-daemon  # transmission-daemon (later tests)
  opentracker          # tracker the interop tests announce to
  procps               # ps/pkill used by tests' cleanup
)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "install-deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "install-deps: cargo install cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

# Fail loudly here rather than in the middle of the suite.
/usr/bin/python3 -c 'import libtorrent' || { echo "python3-libtorrent is not importable"; exit 1; }
for tool in aria2c transmission-cli opentracker; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool"; exit 1; }
done
echo "install-deps: all test dependencies present"
