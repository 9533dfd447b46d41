# Shared by the third-party program tests (sourced, bash).
#
# Every test script is called as
#   <script> --backend=uring|event|plain --preload=LIB[:LIB...]
#            --netkit=PATH --probe=PATH [--bindir=DIR]
# and sources this file, which parses the arguments, makes a temp dir
# ($tmp), installs the kill-on-exit trap, and gives the helpers below.
# Exit status of a script: 0 pass, 1 fail, 77 skip (program not installed,
# or io_uring unavailable for the .uring variant).
set -u

backend='' preload='' netkit='' probe='' bindir=''
for arg in "$@"; do
	case $arg in
	--backend=*) backend=${arg#*=} ;;
	--preload=*) preload=${arg#*=} ;;
	--netkit=*) netkit=${arg#*=} ;;
	--probe=*) probe=${arg#*=} ;;
	--bindir=*) bindir=${arg#*=} ;; # programs the test suite built
	*) echo "unknown argument $arg" >&2; exit 2 ;;
	esac
done
case $backend in
uring | event | plain) ;;
*) echo "need --backend=uring|event|plain" >&2; exit 2 ;;
esac
[ -x "$netkit" ] || { echo "need --netkit=PATH" >&2; exit 2; }
if [ "$backend" != plain ] && [ -z "$preload" ]; then
	echo "need --preload=LIB for --backend=$backend" >&2
	exit 2
fi
# The evuring library is the last entry of the preload list (an ASan build
# puts the ASan runtime in front of it).
evuring_lib=${preload##*:}

tmp=$(mktemp -d /tmp/evu-prog.XXXXXX) || exit 1
prog_pid=
prog_name=
cleanup() {
	if [ -n "$prog_pid" ] && kill -0 "$prog_pid" 2>/dev/null; then
		echo "killing $prog_name (pid $prog_pid)"
		kill -KILL "$prog_pid" 2>/dev/null
		wait "$prog_pid" 2>/dev/null
	fi
	# Helpers the script started (echo upstreams, clients) are killed too.
	local p
	for p in $(jobs -p); do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
	echo "FAIL: $*"
	show_logs
	exit 1
}

# need_program NAME PACKAGE: skip (77) if the program is not installed.
need_program() {
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "SKIP: $1 not installed (Debian package $2; scripts/setup-debian.sh --tests installs it)"
		exit 77
	fi
}

# need_built NAME [WHY]: the path of a program the test suite built in
# --bindir, or skip (77) saying why: WHY, else the reason the build left in
# --bindir/SKIP. Call as p=$(need_built NAME) || exit 77.
need_built() {
	local p=$bindir/$1 why=${2:-}
	if [ ! -x "$p" ]; then
		[ -n "$why" ] || why=$(cat "$bindir/SKIP" 2>/dev/null || echo "see the build's output")
		echo "SKIP: $p not built ($why)" >&2
		exit 77
	fi
	echo "$p"
}

# For --backend=uring: skip if io_uring cannot be used here.
need_uring_if_asked() {
	[ "$backend" = uring ] || return 0
	[ -x "$probe" ] || { echo "need --probe=PATH for --backend=uring" >&2; exit 2; }
	local why
	if ! why=$("$probe" 2>&1); then
		echo "SKIP: $why"
		exit 77
	fi
}

# start_program NAME CMD...: run CMD in the background with the backend's
# environment; stdout/stderr to $tmp/prog.out, $tmp/prog.err.
start_program() {
	prog_name=$1
	shift
	# The redirections below happen in the child, after the fork: until then
	# a previous program's output (its READY line) would still be read.
	rm -f "$tmp/prog.out" "$tmp/prog.err"
	case $backend in
	plain) env -u LD_PRELOAD -u EVURING_BACKEND "$@" >"$tmp/prog.out" 2>"$tmp/prog.err" & ;;
	*) env LD_PRELOAD="$preload" EVURING_BACKEND="$backend" EVURING_DEBUG=1 \
		"$@" >"$tmp/prog.out" 2>"$tmp/prog.err" & ;;
	esac
	prog_pid=$!
	echo "started $prog_name (pid $prog_pid), backend $backend${preload:+, preload $preload}"
}

show_logs() {
	local f
	for f in "$tmp"/prog.out "$tmp"/prog.err; do
		[ -s "$f" ] || continue
		echo "--- ${f#"$tmp"/} (last 40 lines)"
		tail -40 "$f"
	done
	echo "---"
}

alive() { kill -0 "$prog_pid" 2>/dev/null; }

# The pids of the program and all its descendants (a daemon may serve from
# a child, e.g. after a privilege-separation fork).
prog_tree() {
	local todo=$prog_pid p kids
	while [ -n "$todo" ]; do
		set -- $todo
		p=$1
		shift
		todo="$*"
		echo "$p"
		kids=$(cat /proc/"$p"/task/*/children 2>/dev/null)
		todo="$todo $kids"
		todo=${todo# }
	done
}

# Number of live io_uring fds held by the program (and its descendants).
ring_count() {
	local n=0 p fd
	for p in $(prog_tree); do
		for fd in /proc/"$p"/fd/*; do
			[ "$(readlink "$fd" 2>/dev/null)" = "anon_inode:[io_uring]" ] &&
				[ -r /proc/"$p"/fdinfo/"${fd##*/}" ] && n=$((n + 1))
		done
	done
	echo $n
}

# Is the preloaded evuring mapped into the program?
evuring_mapped() {
	local p lib
	lib=$(readlink -f "$evuring_lib" 2>/dev/null) || return 1
	for p in $(prog_tree); do
		grep -qF "$lib" /proc/"$p"/maps 2>/dev/null && return 0
	done
	return 1
}

# While the program serves: what a user of this backend must see.
check_backend() {
	local rings p
	rings=$(ring_count)
	case $backend in
	uring)
		if [ "$rings" -lt 1 ]; then
			# what the program held instead
			for p in $(prog_tree); do
				echo "--- /proc/$p/fd"
				ls -l /proc/"$p"/fd 2>&1 | sed 's/^/  /'
			done
			fail "backend uring: $prog_name holds no io_uring fd"
		fi
		evuring_mapped || fail "backend uring: evuring is not mapped into $prog_name"
		echo "ok: $prog_name holds $rings io_uring fd(s), evuring mapped"
		;;
	event)
		[ "$rings" -eq 0 ] || fail "backend event: $prog_name holds $rings io_uring fd(s)"
		evuring_mapped || fail "backend event: evuring is not mapped into $prog_name"
		echo "ok: $prog_name holds no io_uring fd, evuring mapped"
		;;
	plain)
		[ "$rings" -eq 0 ] || fail "plain: $prog_name holds $rings io_uring fd(s)"
		evuring_mapped && fail "plain: evuring is mapped into $prog_name"
		echo "ok: $prog_name holds no io_uring fd, no evuring"
		;;
	esac
}

# After the run: evuring said which backend each listener got (EVURING_DEBUG)
# and nothing went wrong on stderr.
check_stderr() {
	local err=$tmp/prog.err
	case $backend in
	uring | event)
		grep -qE "^\[evuring\] listener fd [0-9]+: $backend backend" "$err" ||
			fail "no '[evuring] listener fd N: $backend backend' line on stderr"
		if grep -E '^\[evuring\] listener fd [0-9]+: [a-z_]+ backend' "$err" | grep -qv ": $backend backend"; then
			fail "a listener got another backend than $backend"
		fi
		;;
	plain)
		grep -q '^\[evuring\]' "$err" && fail "plain run printed [evuring] lines"
		;;
	esac
	if grep -iE '^\[evuring\].*(error|fail|cannot|refused|unavailable|switching|did not)' "$err" ||
		grep -E '^\[(warn|err)\]' "$err" ||
		grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$err"; then
		fail "error lines on $prog_name's stderr (above)"
	fi
	echo "ok: stderr clean"
}

# wait_until SECONDS CMD...: poll CMD every 0.1 s; 0 once it succeeds, 1
# once SECONDS of wall time have passed or if the program died.
wait_until() {
	local end=$((SECONDS + $1))
	shift
	while [ $SECONDS -lt $end ]; do
		"$@" && return 0
		alive || return 1
		sleep 0.1
	done
	return 1
}

# wait_jobs PID...: wait for each background job; $jobs_failed = how many
# failed. (Not a $(...) subshell: only this shell can wait for its jobs.)
wait_jobs() {
	local p
	jobs_failed=0
	for p in "$@"; do wait "$p" || jobs_failed=$((jobs_failed + 1)); done
}

# expect_exit SECONDS WHAT [STATUS]: the program was asked to exit (by WHAT);
# wait up to SECONDS for it, check its wait status (default 0; 128+N for a
# program that dies of signal N, as it does without evuring).
expect_exit() {
	local i rc want=${3:-0}
	for ((i = 0; i < $1 * 10; i++)); do
		alive || break
		sleep 0.1
	done
	alive && fail "$prog_name did not exit within $1 s of $2"
	wait "$prog_pid"
	rc=$?
	prog_pid=
	[ $rc -eq "$want" ] || fail "$prog_name exited with status $rc after $2 (expected $want)"
	echo "ok: $prog_name exited $rc after $2"
}

# stop_program [SIGNAL]: signal the program, wait up to 15 s, check it
# exited with status 0.
stop_program() {
	local sig=${1:-TERM}
	alive || fail "$prog_name died while serving"
	kill -"$sig" "$prog_pid"
	expect_exit 15 "SIG$sig"
}
