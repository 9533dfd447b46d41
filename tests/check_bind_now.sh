#!/bin/sh
# Programs without libevent, libevuring preloaded, every symbol bound at
# start (LD_BIND_NOW=1, as hardened setups run them): each must start and
# run as without evuring. A preloaded server's scripts and helpers are such
# programs.
#   check_bind_now.sh LD_PRELOAD_VALUE
set -u
preload=$1
fail=0
run() {
	out=$(LD_BIND_NOW=1 LD_PRELOAD="$preload" "$@" 2>&1)
	rc=$?
	if [ $rc != 0 ]; then
		echo "FAIL: '$*' exited $rc: $out"
		fail=1
	else
		echo "ok: $*"
	fi
}
run /bin/true
run sh -c 'echo started >/dev/null'
run ls /
run cat /dev/null
[ $fail = 0 ] && echo PASS
exit $fail
