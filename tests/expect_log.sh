#!/bin/sh
# expect_log.sh REGEX CMD [ARGS...]: run CMD, show its output, and pass only
# if it exits 0 (or 77: skipped) and its output (stdout+stderr) matches REGEX.
regex=$1; shift
out=$("$@" 2>&1); rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 0 ] || exit "$rc"
if ! printf '%s\n' "$out" | grep -Eq -- "$regex"; then
  echo "expect_log: output does not match: $regex" >&2
  exit 1
fi
