#!/bin/bash
# example.reuseport-workers: reuseport-workers
#   4 workers share one port (SO_REUSEPORT); 40 connections, each greeted
#   "worker <i>". The server must exit by itself after the 40th with
#   per-worker counts that sum to 40 (and TOTAL 40), each count matching the
#   greetings the client saw from that worker.
. "$(dirname "$0")/common.sh"
server=$1
workers=4 conns=40

start_server workers "$server" --port 0 --workers $workers --max-connections $conns --seconds 50
declare -A seen=()
for i in $(seq $conns); do
	exec 3<>"/dev/tcp/127.0.0.1/$PORT" || fail "connection $i refused"
	IFS= read -r -t 5 line <&3 || fail "connection $i: no greeting within 5 s"
	exec 3<&-
	case $line in
	"worker "[0-9]*) w=${line#worker }; seen[$w]=$(( ${seen[$w]:-0} + 1 )) ;;
	*) fail "connection $i: greeting '$line'" ;;
	esac
done
wait_server workers
cat "$tmp/workers.out"
sum=0
for w in $(seq 0 $((workers - 1))); do
	count=$(sed -n "s/^WORKER $w ACCEPTED \([0-9]*\) .*/\1/p" "$tmp/workers.out")
	[ -n "$count" ] || fail "no count for worker $w"
	[ "$count" = "${seen[$w]:-0}" ] || fail "worker $w says $count, client saw ${seen[$w]:-0}"
	sum=$((sum + count))
done
[ $sum = $conns ] || fail "per-worker counts sum to $sum, not $conns"
grep -qx "TOTAL $conns" "$tmp/workers.out" || fail "no TOTAL $conns"
echo "per-worker counts sum to $conns"
echo PASS
