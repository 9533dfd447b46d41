#!/bin/bash
# fstrm_capture (Debian's fstrm-bin, libevent 2.1.12): a Frame Streams
# collector (the dnstap log sink) that calls evconnlistener_new_bind()
# itself, reads every accepted connection with a bufferevent (a bidirectional
# READY/ACCEPT/START/STOP/FINISH handshake, then length-prefixed frames), and
# with -c N calls evconnlistener_disable() at N open connections and
# evconnlistener_enable() when one closes.
#
# The client is fstrm_replay from the same package: 100 connections one after
# another, then 8 at once against -c 3 (so the listener is disabled and
# re-enabled while connections wait in the backlog). Each connection sends
# the same 6 frames (1 B to 60 KB). Checks: the capture logs 108 accepted and
# 108 completed connections of 6 frames each; the file it writes holds
# exactly 108 x 6 data frames with the right sizes and payloads; it exits 0
# on SIGTERM; plus the backend checks (ring / no ring / no evuring).
#
# Usage: fstrm.sh --backend=uring|event|plain --preload=LIB
#                 --netkit=PATH --probe=PATH
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

need_program fstrm_capture fstrm-bin
need_program fstrm_replay fstrm-bin
need_program fstrm_dump fstrm-bin
need_uring_if_asked

ctype=protobuf:dnstap.Dnstap
sizes="1 17 100 1000 10000 60000"
nframes=6 seq_conns=100 conc_conns=8

# A Frame Streams file (START with the content type, data frames, STOP); the
# frame of size N is N copies of one letter, a different letter per frame.
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
{
	be32 0
	be32 $((12 + ${#ctype}))
	be32 2
	be32 1
	be32 ${#ctype}
	printf %s "$ctype"
	letters=(a b c d e f)
	i=0
	for s in $sizes; do
		be32 "$s"
		head -c "$s" /dev/zero | tr '\0' "${letters[i]}"
		i=$((i + 1))
	done
	be32 0
	be32 4
	be32 3
} >"$tmp/in.fstrm"
[ "$(fstrm_dump "$tmp/in.fstrm" 2>&1 | grep -c '^Data frame')" -eq $nframes ] ||
	fail "could not build the input file"

port=$("$netkit" freeport) || fail "no free port"
# -d x4: log every accepted and every closed connection.
start_program fstrm_capture fstrm_capture -d -d -d -d -t "$ctype" -a 127.0.0.1 \
	-p "$port" -w "$tmp/out.fstrm" -c 3
listening() { grep -qs 'opened output file' "$tmp/prog.err" && ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; }
if command -v ss >/dev/null 2>&1; then
	wait_until 10 listening || fail "fstrm_capture not listening on $port within 10 s"
else
	wait_until 10 grep -qs 'opened output file' "$tmp/prog.err" || fail "fstrm_capture did not start"
	sleep 0.5
fi
echo "ok: fstrm_capture listening on 127.0.0.1:$port"
check_backend

replay() { timeout 20 fstrm_replay -t "$ctype" -r "$tmp/in.fstrm" -a 127.0.0.1 -p "$port"; }
for ((i = 1; i <= seq_conns; i++)); do
	replay >"$tmp/replay.out" 2>&1 || { cat "$tmp/replay.out"; fail "fstrm_replay $i failed"; }
done
echo "ok: $seq_conns sequential connections replayed"
pids=
for ((i = 1; i <= conc_conns; i++)); do
	replay >"$tmp/replay.$i.out" 2>&1 &
	pids+=" $!"
done
wait_jobs $pids
[ $jobs_failed -eq 0 ] || fail "$jobs_failed of $conc_conns concurrent fstrm_replay runs failed"
echo "ok: $conc_conns concurrent connections replayed (maxconns 3)"

total=$((seq_conns + conc_conns))
# Every connection closes on the capture side once its STOP is answered; wait
# for the last of them to be logged.
all_closed() { [ "$(grep -c 'closing (read' "$tmp/prog.err")" -ge $total ]; }
wait_until 10 all_closed || fail "only $(grep -c 'closing (read' "$tmp/prog.err") of $total connections closed"
check_backend
stop_program TERM

accepted=$(grep -c 'accepted new connection fd' "$tmp/prog.err")
complete=$(grep -c "closing (read $nframes frames, " "$tmp/prog.err")
[ "$accepted" -eq $total ] || fail "fstrm_capture accepted $accepted connections, expected $total"
[ "$complete" -eq $total ] || fail "$complete of $total connections closed with all $nframes frames"
grep -q "closed output file .*(wrote $((total * nframes + 2)) frames" "$tmp/prog.err" ||
	fail "output file not closed with $((total * nframes + 2)) frames"
echo "ok: $accepted connections accepted, $complete closed with $nframes frames each"

# The file: START, total x nframes data frames of the right sizes, STOP.
fstrm_dump "$tmp/out.fstrm" >"$tmp/dump" 2>&1 || fail "fstrm_dump of the capture failed"
for s in $sizes; do
	got=$(grep -c "^Data frame ($s) bytes" "$tmp/dump")
	[ "$got" -eq $total ] || fail "$got data frames of $s bytes in the capture, expected $total"
done
[ "$(grep -c '^Data frame' "$tmp/dump")" -eq $((total * nframes)) ] || fail "extra data frames in the capture"
grep -q 'FSTRM_CONTROL_STOP' "$tmp/dump" || fail "capture file not finished with STOP"
# Payloads: the bytes between the frame headers, and each frame's letter.
expect_bytes=0
for s in $sizes; do expect_bytes=$((expect_bytes + s)); done
data_bytes=$(($(stat -c %s "$tmp/out.fstrm") - (8 + 12 + ${#ctype}) - 12 - 4 * total * nframes))
[ "$data_bytes" -eq $((total * expect_bytes)) ] ||
	fail "capture holds $data_bytes payload bytes, expected $((total * expect_bytes))"
i=0
for s in $sizes; do
	l=$(echo a b c d e f | cut -d' ' -f$((i + 1)))
	n=$(tr -cd "$l" <"$tmp/out.fstrm" | wc -c)
	# The letter may also occur in the header (content type); count only
	# the excess over it.
	h=$(printf %s "$ctype" | tr -cd "$l" | wc -c)
	[ $((n - h)) -ge $((total * s)) ] || fail "payload '$l' short in the capture: $((n - h)) < $((total * s))"
	i=$((i + 1))
done
echo "ok: capture file holds $((total * nframes)) frames, $data_bytes payload bytes"
check_stderr
echo PASS
