#!/bin/bash
# Driver for the install tests (tests/install/CMakeLists.txt).
#
#   run-install-test.sh MODE --build-dir=B --prefix=P --work=W --source=S
#                       [--cmake=CMAKE] [--cc=CC] [--pkg-config=PKGCONFIG]
#                       [--sanitize=LIST] [--plain=PROG] [--noop=LIB]
#                       [--expect-default=shared|static]
#
# MODE:
#   prefix              cmake --install B --prefix P (P emptied first)
#   cmake-consumer      configure+build S/consumer with find_package(evuring)
#                       against P, run consumer_shared and consumer_static
#   pkgconfig-consumer  compile S/consumer/consumer.c with
#                       `pkg-config --cflags --libs evuring` (P's .pc only),
#                       shared and (--static, -Wl,-Bstatic) static; run both
#   evuring-run         P/bin/evuring-run --debug -- PROG (libevent-only):
#                       evuring's debug lines, the uring backend, the accept,
#                       the LD_PRELOAD chain; plus --help/--version/errors
#
# Every step is bounded (timeout(1)). Exit 0 pass, 1 fail, 77 skip.
set -u

mode=${1:-}
shift || true
build= prefix= work= src= cmake=cmake cc=cc pkgconfig=pkg-config sanitize= plain= noop=
expect_default=shared
for arg in "$@"; do
	case $arg in
	--build-dir=*) build=${arg#*=} ;;
	--prefix=*) prefix=${arg#*=} ;;
	--work=*) work=${arg#*=} ;;
	--source=*) src=${arg#*=} ;;
	--cmake=*) cmake=${arg#*=} ;;
	--cc=*) cc=${arg#*=} ;;
	--pkg-config=*) pkgconfig=${arg#*=} ;;
	--sanitize=*) sanitize=${arg#*=} ;;
	--plain=*) plain=${arg#*=} ;;
	--noop=*) noop=${arg#*=} ;;
	--expect-default=*) expect_default=${arg#*=} ;;
	*) echo "run-install-test.sh: unknown argument $arg" >&2; exit 2 ;;
	esac
done
[ -n "$prefix" ] || { echo "run-install-test.sh: need --prefix" >&2; exit 2; }

fail() { echo "FAIL: $*"; exit 1; }
# run LIMIT CMD...: run with a time bound, output shown.
run() {
	local limit=$1; shift
	echo "+ $*"
	timeout --kill-after=5 "$limit" "$@"
}

san_flags=
[ -n "$sanitize" ] && san_flags="-fsanitize=$sanitize -fno-omit-frame-pointer"

# The installed library directory (GNUInstallDirs may give lib or lib/<triplet>).
find_libdir() {
	local so
	so=$(find "$prefix" -name 'libevuring.so.0' -print -quit 2>/dev/null)
	[ -n "$so" ] || fail "no libevuring.so.0 under $prefix (did install.prefix run?)"
	dirname "$so"
}

# check_consumer NAME OUTFILE EXPECTED_LIB_PREFIX_OR_EMPTY
check_consumer() {
	local name=$1 out=$2 want_lib=$3
	grep -Eq '^BACKEND (uring|event)$' "$out" || fail "$name: no BACKEND line"
	grep -q '^VERSION ' "$out" || fail "$name: no VERSION line"
	grep -q '^ACCEPTED 1$' "$out" || fail "$name: did not accept exactly one connection"
	if [ -n "$want_lib" ]; then
		grep -q "^LIB $want_lib" "$out" || fail "$name: evuring not loaded from $want_lib"
	else
		# Static: evuring is part of the executable, no libevuring.so loaded.
		grep -q '^LIB .*libevuring\.so' "$out" && fail "$name: static consumer loaded libevuring.so"
	fi
	echo "ok: $name: $(grep '^BACKEND' "$out")"
}

case $mode in
prefix)
	[ -n "$build" ] || fail "need --build-dir"
	rm -rf "$prefix"
	run 120 "$cmake" --install "$build" --prefix "$prefix" || fail "cmake --install"
	for f in include/evuring.h bin/evuring-run share/man/man1/evuring-run.1; do
		[ -e "$prefix/$f" ] || fail "$f not installed"
	done
	libdir=$(find_libdir)
	for f in libevuring.so libevuring.so.0 libevuring.a pkgconfig/evuring.pc \
		 cmake/evuring/evuringConfig.cmake cmake/evuring/evuringConfigVersion.cmake \
		 cmake/evuring/evuringTargets.cmake; do
		[ -e "$libdir/$f" ] || fail "$libdir/$f not installed"
	done
	soname=$(readelf -d "$libdir/libevuring.so.0" 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
	if [ -n "$soname" ] && [ "$soname" != libevuring.so.0 ]; then
		fail "SONAME is $soname"
	fi
	# The design keeps libevent out of the shared library's DT_NEEDED.
	if readelf -d "$libdir/libevuring.so.0" 2>/dev/null | grep -q 'NEEDED.*libevent'; then
		fail "libevuring.so.0 has a DT_NEEDED on libevent"
	fi
	# (The prefix itself may lie inside the build tree: ignore it.)
	for f in "$libdir/pkgconfig/evuring.pc" "$prefix/bin/evuring-run" "$libdir"/cmake/evuring/*.cmake; do
		sed "s|$prefix||g" "$f" | grep -qF -- "$build" && fail "$f names the build tree"
		grep -qF -- "$src" "$f" && fail "$f names the source tree"
	done
	echo PASS
	;;

cmake-consumer)
	[ -n "$src" ] && [ -n "$work" ] || fail "need --source and --work"
	rm -rf "$work"
	run 120 "$cmake" -S "$src/consumer" -B "$work" \
		-DCMAKE_PREFIX_PATH="$prefix" -DEVU_EXPECT_PREFIX="$prefix" \
		-DEVU_EXPECT_DEFAULT="$expect_default" \
		-DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		${san_flags:+"-DCMAKE_C_FLAGS=$san_flags" "-DCMAKE_EXE_LINKER_FLAGS=$san_flags"} \
		|| fail "consumer configure (find_package(evuring))"
	run 120 "$cmake" --build "$work" || fail "consumer build"
	libdir=$(find_libdir)
	# The shared consumer must not link libevent itself yet run: libevent_core
	# came from evuring::evuring.
	run 20 "$work/consumer_shared" >"$work/shared.out" || { cat "$work/shared.out"; fail "consumer_shared exited $?"; }
	cat "$work/shared.out"
	check_consumer consumer_shared "$work/shared.out" "$libdir/libevuring.so"
	run 20 "$work/consumer_static" >"$work/static.out" || { cat "$work/static.out"; fail "consumer_static exited $?"; }
	cat "$work/static.out"
	check_consumer consumer_static "$work/static.out" ""
	run 20 "$work/consumer_default" >"$work/default.out" || { cat "$work/default.out"; fail "consumer_default exited $?"; }
	cat "$work/default.out"
	if [ "$expect_default" = shared ]; then
		check_consumer consumer_default "$work/default.out" "$libdir/libevuring.so"
	else
		check_consumer consumer_default "$work/default.out" ""
	fi
	# evuring_USE_STATIC_LIBS=ON switches evuring::evuring to the static library.
	run 120 "$cmake" -S "$src/consumer" -B "$work-static" \
		-DCMAKE_PREFIX_PATH="$prefix" -DEVU_EXPECT_PREFIX="$prefix" \
		-Devuring_USE_STATIC_LIBS=ON -DEVU_EXPECT_DEFAULT=static \
		-DCMAKE_C_COMPILER="$cc" >/dev/null || fail "configure with evuring_USE_STATIC_LIBS=ON"
	rm -rf "$work-static"
	echo "ok: evuring_USE_STATIC_LIBS=ON selects evuring::evuring_static"
	echo PASS
	;;

pkgconfig-consumer)
	[ -n "$src" ] && [ -n "$work" ] || fail "need --source and --work"
	command -v "$pkgconfig" >/dev/null 2>&1 || { echo "SKIP: no pkg-config"; exit 77; }
	rm -rf "$work"
	mkdir -p "$work"
	libdir=$(find_libdir)
	export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
	pc_prefix=$("$pkgconfig" --variable=prefix evuring) || fail "pkg-config does not know evuring"
	[ "$pc_prefix" = "$prefix" ] || fail "evuring.pc says prefix=$pc_prefix, installed to $prefix"
	cflags=$("$pkgconfig" --cflags evuring) || fail "pkg-config --cflags evuring"
	libs=$("$pkgconfig" --libs evuring) || fail "pkg-config --libs evuring"
	echo "pkg-config --cflags --libs evuring: $cflags $libs"
	case " $libs " in
	*" -levuring "*"-levent_core "*) ;;
	*) fail "--libs must give -levuring ahead of -levent_core: $libs" ;;
	esac
	pc_libdir=$("$pkgconfig" --variable=libdir evuring)
	# shellcheck disable=SC2086 # word splitting of flags is intended
	run 120 "$cc" -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter $san_flags \
		-o "$work/consumer_pc" "$src/consumer/consumer.c" $cflags $libs -ldl \
		"-Wl,-rpath,$pc_libdir" || fail "compile with pkg-config flags"
	run 20 "$work/consumer_pc" >"$work/shared.out" || { cat "$work/shared.out"; fail "consumer_pc exited $?"; }
	cat "$work/shared.out"
	check_consumer consumer_pc "$work/shared.out" "$libdir/libevuring.so"

	# Static: Requires.private (liburing) and Libs.private must suffice to
	# link libevuring.a and its dependencies' archives.
	missing=
	for a in libevuring.a libevent_core.a liburing.a; do
		p=$("$cc" -print-file-name="$a")
		[ "$p" != "$a" ] || [ "$a" = libevuring.a ] || missing="$missing $a"
	done
	if [ -n "$missing" ] || [ -n "$sanitize" ]; then
		echo "note: static pkg-config link skipped (missing:${missing:- none}; sanitize: ${sanitize:-no})"
		echo PASS
		exit 0
	fi
	slibs_l=$("$pkgconfig" --static --libs-only-l evuring)
	slibs_other=$("$pkgconfig" --static --libs-only-L --libs-only-other evuring)
	echo "pkg-config --static --libs evuring: $("$pkgconfig" --static --libs evuring)"
	case " $slibs_l " in
	*" -luring "*) ;;
	*) fail "--static --libs lacks -luring (Requires.private): $slibs_l" ;;
	esac
	# shellcheck disable=SC2086
	run 120 "$cc" -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter \
		-o "$work/consumer_pc_static" "$src/consumer/consumer.c" $cflags \
		$slibs_other -Wl,-Bstatic $slibs_l -Wl,-Bdynamic -ldl \
		|| fail "static link with pkg-config --static flags"
	run 20 "$work/consumer_pc_static" >"$work/static.out" || { cat "$work/static.out"; fail "consumer_pc_static exited $?"; }
	cat "$work/static.out"
	check_consumer consumer_pc_static "$work/static.out" ""
	echo PASS
	;;

evuring-run)
	[ -x "$plain" ] && [ -n "$work" ] || fail "need --plain and --work"
	if [ -n "$sanitize" ]; then
		echo "SKIP: evuring-run preloads a sanitizer-built library ahead of the runtime"
		exit 77
	fi
	run=$prefix/bin/evuring-run
	[ -x "$run" ] || fail "$run not installed"
	rm -rf "$work"
	mkdir -p "$work"
	libdir=$(find_libdir)
	lib=$libdir/libevuring.so.0

	run 10 "$run" --help >"$work/help" || fail "--help exited $?"
	grep -q '^Usage: evuring-run' "$work/help" || fail "--help prints no usage"
	grep -q "$lib" "$work/help" || fail "--help does not name $lib"
	v=$(run 10 "$run" --version) || fail "--version exited $?"
	echo "$v" | grep -Eq '^evuring-run \(evuring\) [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version: $v"
	run 10 "$run" --backend bogus -- true 2>/dev/null; rc=$?
	[ $rc = 125 ] || fail "bad --backend exited $rc, expected 125"
	run 10 "$run" 2>/dev/null; rc=$?
	[ $rc = 125 ] || fail "no command exited $rc, expected 125"

	# 1. --debug with a preload already set (kept, after evuring's).
	env -u EVURING_BACKEND -u EVURING_DEBUG ${noop:+LD_PRELOAD=$noop} \
		timeout --kill-after=5 20 "$run" --debug -- "$plain" >"$work/out" 2>"$work/err"
	rc=$?
	echo "--- stdout"; cat "$work/out"; echo "--- stderr"; cat "$work/err"; echo "---"
	[ $rc = 0 ] || fail "program under evuring-run exited $rc"
	grep -q '^ACCEPTED 1$' "$work/out" || fail "program did not accept its connection"
	grep -q '\[evuring\]' "$work/err" || fail "no [evuring] debug line on stderr"
	grep -q "^MAPPED $lib" "$work/out" || fail "$lib not mapped in the program"
	want_preload=$lib${noop:+:$noop}
	grep -qxF "ENV LD_PRELOAD=$want_preload" "$work/out" || fail "LD_PRELOAD is not $want_preload"
	if ! grep -q 'uring backend' "$work/err"; then
		if grep -q 'event backend' "$work/err"; then
			echo "SKIP: evuring works through evuring-run, but io_uring is not usable here:"
			grep 'io_uring' "$work/err"
			exit 77
		fi
		fail "no 'uring backend' debug line"
	fi

	# 2. --backend event reaches the library.
	env -u EVURING_DEBUG timeout --kill-after=5 20 "$run" --backend=event --debug "$plain" \
		>"$work/out2" 2>"$work/err2"
	rc=$?
	[ $rc = 0 ] || { cat "$work/out2" "$work/err2"; fail "--backend=event run exited $rc"; }
	grep -q '^ENV EVURING_BACKEND=event$' "$work/out2" || fail "EVURING_BACKEND not set to event"
	grep -q 'event backend' "$work/err2" || { cat "$work/err2"; fail "--backend=event: no 'event backend' debug line"; }
	grep -q '^ACCEPTED 1$' "$work/out2" || fail "--backend=event: no accept"
	echo "ok: --backend=event"

	# 3. Without --debug nothing is printed by evuring.
	env -u EVURING_DEBUG timeout --kill-after=5 20 "$run" "$plain" >"$work/out3" 2>"$work/err3" \
		|| fail "plain run exited $?"
	grep -q '\[evuring\]' "$work/err3" && fail "debug output without --debug"
	echo PASS
	;;

*)
	echo "run-install-test.sh: unknown mode '$mode'" >&2
	exit 2
	;;
esac
