#!/usr/bin/env bash
# The chaos walk-through: watch a circuit breaker trip, probe and close.
#
#   make && bash examples/chaos/run.sh
#
# Starts vie (build/vie, or $VIE_BIN) on 127.0.0.1:8088 with one worker
# under a supervisor, using a copy of examples/chaos/vie.yaml; drives about
# 100 requests with curl; prints the breaker's /metrics lines and log lines
# as it trips; rewrites the copy to turn the fault off and sends SIGHUP;
# shows the breaker closing; stops the server. Builds nothing. Every wait
# is bounded; the whole run takes about 10 seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VIE=${VIE_BIN:-$ROOT/build/vie}
ADDR=127.0.0.1:8088
URL=http://$ADDR

die() { echo "run.sh: $*" >&2; exit 1; }
[ -x "$VIE" ] || die "no vie binary at $VIE: run 'make' first (or set VIE_BIN)"
command -v curl >/dev/null || die "curl is needed"
if curl -s --max-time 1 -o /dev/null "$URL/" 2>/dev/null; then
    die "something already listens on $ADDR: stop it first"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vie-chaos.XXXXXX")
CONFIG=$WORK/vie.yaml
LOG=$WORK/vie.log
cp "$ROOT/examples/chaos/vie.yaml" "$CONFIG"
PID=

cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The breaker's lines of /metrics (state 1, codes and counters that moved).
show_metrics() {
    curl -s --max-time 2 "$URL/metrics" |
        grep -E '^vie_circuit_(state\{.*\} 1|state_code|calls_total|transitions_total\{.*\} [1-9])' |
        sed 's/^/    /' || true
}

# Log lines about the breaker since the last call.
SEEN=0
show_log() {
    local n
    n=$(wc -l <"$LOG")
    if [ "$n" -gt "$SEEN" ]; then
        sed -n "$((SEEN + 1)),${n}p" "$LOG" | grep -E 'circuit_breaker|fault chaos|SIGHUP' |
            sed 's/^[^ ]* /    log: /' || true
    fi
    SEEN=$n
}

# One request; prints one symbol: . (200), F (the fault's 503), B (the
# breaker's fallback). Counts them.
TOTAL=0
hit() {
    local out code
    out=$(curl -s --max-time 2 -D - -o "$WORK/body" "$URL/api/items" || true)
    code=${out#HTTP/* } # the status line's second field, without a pipe (pipefail + head)
    code=${code%% *}
    TOTAL=$((TOTAL + 1))
    if [ "$code" = 200 ]; then
        printf '.'
    elif grep -q degraded "$WORK/body" 2>/dev/null; then
        printf 'B'
        RETRY=$(printf '%s' "$out" | tr -d '\r' | sed -n 's/^Retry-After: //Ip')
    else
        printf 'F'
    fi
}

# n requests, 10 to a line.
burst() {
    local n=$1 gap=${2:-0}
    printf '    '
    for i in $(seq 1 "$n"); do
        hit
        [ $((i % 10)) -eq 0 ] && [ "$i" -lt "$n" ] && printf '\n    '
        [ "$gap" != 0 ] && sleep "$gap"
    done
    printf '\n'
}

state() {
    curl -s --max-time 2 "$URL/metrics" | sed -n 's/^vie_circuit_state{breaker="breaker",state="\([a-z_]*\)"} 1$/\1/p'
}

bold "Starting $VIE on $ADDR (1 worker, config $CONFIG)"
"$VIE" serve -c "$CONFIG" --listen "$ADDR" --workers 1 >"$WORK/stdout" 2>"$LOG" &
PID=$!
for _ in $(seq 1 50); do
    curl -s --max-time 1 -o /dev/null "$URL/metrics" && break
    kill -0 "$PID" 2>/dev/null || { cat "$LOG"; die "vie exited"; }
    sleep 0.1
done
curl -s --max-time 1 -o /dev/null "$URL/metrics" || { cat "$LOG"; die "vie did not start"; }
show_log
echo "    legend: . = 200 from the route   F = 503 injected by the fault   B = the breaker's fallback"

bold "1. The fault fails 90% of the calls: the breaker opens once 10 calls are in its window"
RETRY=
burst 30
echo "    Retry-After on the fallback: ${RETRY:-?} s (until the breaker lets probes through)"
show_log
show_metrics

bold "2. After open_wait (2 s) the next calls are probes (3 of them); the fault still fails most"
sleep 2.2
burst 10 0.05
show_log
show_metrics

bold "3. Turn the fault off in the config and send SIGHUP: the breaker's state survives the reload"
sed -i.bak 's/^    enabled: true .*$/    enabled: false/' "$CONFIG"
grep -q '^    enabled: false' "$CONFIG" || die "could not rewrite $CONFIG"
kill -HUP "$PID"
for _ in $(seq 1 50); do
    grep -q 'drained and exited' "$LOG" && break
    sleep 0.1
done
show_log

bold "4. Calls every 0.3 s: once the wait ends, the probes succeed and the breaker closes"
printf '    '
for i in $(seq 1 40); do
    hit
    [ "$(state)" = closed ] && break
    [ $((i % 10)) -eq 0 ] && printf '\n    '
    sleep 0.3
done
printf '\n'
show_log
echo "    state now: $(state)"

bold "5. Closed again: the rest of the ~100 requests go through"
left=$((100 - TOTAL))
[ "$left" -lt 10 ] && left=10
burst "$left"
show_metrics

bold "Stopping vie"
kill -TERM "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
wait "$PID" 2>/dev/null || true
PID=
echo "    done: $TOTAL requests"
