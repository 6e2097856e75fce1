#!/usr/bin/env bash
# Run every fuzz target of a fuzz build for a bounded time, each on a
# scratch copy of its seed corpus (so runs never rewrite the committed one).
set -euo pipefail
build=$1
seconds=$2
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for bin in "$build"/tests/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  seeds="$root/tests/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
  echo "fuzz: $name for ${seconds}s"
  if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      "$work" >"$work.log" 2>&1; then
    tail -60 "$work.log"
    echo "fuzz: $name FAILED (crash input kept in $(pwd))"
    status=1
  else
    grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$work.log" | tail -2 | sed "s/^/fuzz: $name: /"
  fi
  rm -rf "$work" "$work.log"
done
exit $status
