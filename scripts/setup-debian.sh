#!/usr/bin/env bash
# Install what evuring needs on Debian bookworm: build tools, liburing and
# libevent development files, Google Benchmark, and the tools the tests and
# the benchmark drive (curl as a real HTTP client, python3 + gnuplot for the
# benchmark report). Idempotent; needs root (or sudo).
set -euo pipefail
PKGS=(build-essential cmake pkg-config liburing-dev libevent-dev libbenchmark-dev
      curl python3 gnuplot-nox util-linux procps iproute2)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all Debian packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
