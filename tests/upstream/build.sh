#!/usr/bin/env bash
# Build libevent's own test programs (regress, test-ratelim, test-fdleak) and
# its samples http-server and hello-world from the source package of the
# installed libevent,
# then link them against
# Debian's libevent shared libraries: the programs are libevent's tests as
# written by libevent's authors, running on the exact libevent binaries a
# Debian user has. evuring is not involved here; run.sh preloads it.
#
#   build.sh SOURCE_DIR OUT_DIR
#
# SOURCE_DIR holds libevent_<version>.dsc and its files (scripts/setup-debian.sh
# --tests fetches them). Without them this writes OUT_DIR/SKIP with the reason
# and succeeds, and every tests/upstream test skips.
set -euo pipefail
src_dir=$1 out=$2

rm -rf "$out"
mkdir -p "$out"
ver=$(dpkg-query -W -f='${source:Version}' libevent-dev 2>/dev/null || true)
ver=${ver#*:}
dsc="$src_dir/libevent_$ver.dsc"
if [ -z "$ver" ] || [ ! -e "$dsc" ]; then
	echo "libevent's source package ($dsc) is not here; scripts/setup-debian.sh --tests fetches it" > "$out/SKIP"
	cat "$out/SKIP"
	exit 0
fi

# Unpack with Debian's patches applied (the same source Debian built).
dpkg-source -x "$dsc" "$out/src" > "$out/unpack.log" 2>&1 ||
	{ cat "$out/unpack.log"; exit 1; }

# libevent's CMake build compiles the test programs' objects (and generates
# regress.gen.c). Its own link of them may fail and is not wanted: its
# library hides internals that Debian's exports and the security patches'
# tests call (evhttp_check_transfer_encoding_), hence -k and no status check.
cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release \
	-DEVENT__LIBRARY_TYPE=SHARED -DEVENT__DISABLE_OPENSSL=ON \
	-DEVENT__DISABLE_MBEDTLS=ON -DEVENT__DISABLE_SAMPLES=OFF \
	-DEVENT__DISABLE_BENCHMARK=ON > "$out/configure.log" 2>&1 ||
	{ tail -30 "$out/configure.log"; exit 1; }
cmake --build "$out/build" -j"$(nproc)" --target regress test-ratelim test-fdleak http-server hello-world \
	-- -k > "$out/build.log" 2>&1 || true

# Link each program's objects against Debian's libevent. A missing object
# shows here as an undefined symbol.
libs=$(pkg-config --libs libevent_core libevent_extra libevent_pthreads)
for prog in regress test-ratelim test-fdleak http-server hello-world; do
	mapfile -t objs < <(find "$out/build/CMakeFiles/$prog.dir" -name '*.o' | sort)
	# shellcheck disable=SC2086 # $libs is a list of flags
	cc -rdynamic "${objs[@]}" -o "$out/$prog" $libs -lz -lm -lpthread ||
		{ grep -E "error|Error" "$out/build.log" | head -20; exit 1; }
done
# The sample TCP proxy le-proxy needs OpenSSL (it can encrypt towards the
# backend; not used here), which libevent's build is configured without so
# that regress's test set stays the same: compile it on its own against
# Debian's libevent_openssl, with the internal headers of the source above.
if pkg-config --exists openssl libevent_openssl; then
	# shellcheck disable=SC2046 # pkg-config prints lists of flags
	cc -O2 -I"$out/build/include" -I"$out/src/include" -I"$out/src" \
		"$out/src/sample/le-proxy.c" -o "$out/le-proxy" \
		$(pkg-config --cflags --libs libevent_openssl libevent openssl) \
		>"$out/le-proxy.log" 2>&1 || { cat "$out/le-proxy.log"; exit 1; }
	echo "built libevent's sample le-proxy against Debian's libevent_openssl"
else
	echo "no OpenSSL development files (libssl-dev): le-proxy not built"
fi
if ldd "$out/regress" | grep -q "$out/build"; then
	echo "regress still uses the libevent built here, not Debian's" >&2
	exit 1
fi
echo "built libevent $ver's regress, test-ratelim, test-fdleak, http-server and hello-world against Debian's libevent"
