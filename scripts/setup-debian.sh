#!/usr/bin/env bash
# Install what evuring needs on Debian bookworm: build tools, liburing and
# libevent development files, Google Benchmark, and the tools the tests and
# the benchmark drive (curl as a real HTTP client, python3 + gnuplot for the
# benchmark report, perf for its profile). Idempotent; needs root (or sudo).
#
#   scripts/setup-debian.sh [--tests]
#
# --tests also installs the third-party programs that tests/programs runs
# with evuring preloaded (Debian's own builds against libevent 2.1.12):
# transmission-daemon and litecoind (evhttp RPC servers; litecoind installs
# no service), fstrm-bin (fstrm_capture) and coturn (turnserver), direct
# evconnlistener users, and ustreamer (an MJPEG streamer whose HTTP side is
# an evhttp; no service), sslsplit (a TLS/TCP interception proxy that makes
# its own listeners; no service), and libevhtp-dev (an HTTP library that makes
# its own listener). Their services are never started by the install.
# It also fetches the source of the installed libevent into .deps/ for
# tests/upstream (libevent's own tests and samples, run with evuring
# preloaded; libssl-dev for the sample le-proxy), and valgrind (the
# memcheck pass of scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(build-essential cmake pkg-config liburing-dev libevent-dev libbenchmark-dev
      curl python3 gnuplot-nox util-linux procps iproute2 linux-perf)
TEST_PKGS=(transmission-daemon fstrm-bin litecoind coturn ustreamer sslsplit libevhtp-dev libssl-dev
           valgrind)
# Daemons among TEST_PKGS whose packages would start (and enable) a service.
TEST_SERVICES=(transmission-daemon coturn)
tests=0
for a in "$@"; do
  case $a in
    --tests) tests=1 ;;
    *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
  esac
done
[ $tests = 0 ] || PKGS+=("${TEST_PKGS[@]}")
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# --tests: libevent's own test programs (regress, test-ratelim, test-fdleak),
# which tests/upstream builds from the source of the installed libevent and
# runs against Debian's libevent with evuring preloaded. The source package
# comes from the same Debian archive as the binaries, through a private apt
# state under .deps/ (the system's apt sources and lists are not touched).
fetch_libevent_source() {
  local dest=.deps/libevent-src ver apt_dir f
  ver=$(dpkg-query -W -f='${source:Version}' libevent-dev)
  ver=${ver#*:}
  if [ -e "$dest/libevent_$ver.dsc" ]; then
    echo "setup: libevent $ver source present in $dest"
    return 0
  fi
  apt_dir=$dest/apt
  rm -rf "$apt_dir"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/sources.list.d"
  # deb-src twins of the system's enabled deb entries.
  [ ! -f /etc/apt/sources.list ] ||
    sed -n 's/^deb\([[:space:]]\)/deb-src\1/p' /etc/apt/sources.list > "$apt_dir/sources.list"
  for f in /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && sed -n 's/^deb\([[:space:]]\)/deb-src\1/p' "$f" >> "$apt_dir/sources.list"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sed 's/^Types:.*/Types: deb-src/' "$f" > "$apt_dir/sources.list.d/${f##*/}"
  done
  local opts=(-o "Dir::Etc::SourceList=$PWD/$apt_dir/sources.list"
              -o "Dir::Etc::SourceParts=$PWD/$apt_dir/sources.list.d"
              -o "Dir::State::Lists=$PWD/$apt_dir/lists"
              -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
              -o "APT::Sandbox::User=$(id -un)" -o Debug::NoLocking=1)
  echo "setup: fetching Debian's libevent $ver source (for tests/upstream)"
  apt-get "${opts[@]}" update -qq || true
  if ! (cd "$dest" && apt-get "${opts[@]}" source --download-only -qq "libevent=$ver"); then
    echo "setup: could not fetch libevent $ver source; tests/upstream will skip" >&2
  fi
  rm -rf "$apt_dir"
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all Debian packages present"
  [ $tests = 0 ] || fetch_libevent_source
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The test programs are daemons: keep their maintainer scripts from starting
# them (invoke-rc.d and deb-systemd-invoke ask policy-rc.d; 101 = refuse).
# A policy-rc.d already in place (containers have one) is left alone.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ $tests = 1 ] && [ ! -e $policy ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
  $SUDO chmod 755 $policy
  own_policy=1
  trap '$SUDO rm -f $policy' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [ $tests = 1 ]; then
  # Nothing of theirs may keep running or start at boot: the tests start
  # their own instances on free ports with temporary state.
  for s in "${TEST_SERVICES[@]}"; do
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/"$s" ]; then
      $SUDO /etc/init.d/"$s" stop >/dev/null 2>&1 || true
      $SUDO update-rc.d "$s" disable >/dev/null 2>&1 || true
    fi
  done
fi
[ $own_policy = 0 ] || { $SUDO rm -f $policy; trap - EXIT; }
[ $tests = 0 ] || fetch_libevent_source
