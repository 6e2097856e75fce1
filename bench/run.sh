#!/usr/bin/env bash
# bench/run.sh PATH/TO/vie — Vie against nginx and a raw epoll floor.
#
# For each workload (plain GET /, and GET / pipelined 16 deep), each server
# (vie, nginx with one worker, the floor: /work/shared/bench/limit.c) and
# each round: wrk -t1 -c64 for BENCH_SECONDS on CPU 1 against the server on
# CPU 0, reading the server's CPU time (utime + stime from /proc/PID/stat)
# before and after. wrk saturates its one core before a fast server does, so
# the figure that ranks servers is server CPU µs per request, not req/s.
# Then the resident memory per idle keep-alive connection (bench/idle_rss.py)
# for vie and nginx. See bench/README.md for how to read the output.
#
# Environment: BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_CONNS (64),
# BENCH_IDLE_CONNS (5000), BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1),
# BENCH_LIMIT_SRC (/work/shared/bench/limit.c; the floor is skipped if it is
# missing).
#
# Exit status: 0 when everything ran (whether or not the goals are met),
# 1 when something failed to run or a server answered wrongly or with errors.
set -euo pipefail

VIE=${1:-}
if [ -z "$VIE" ] || [ ! -x "$VIE" ]; then
  echo "usage: bench/run.sh PATH/TO/vie   (not an executable: '${VIE}')" >&2
  exit 1
fi
VIE=$(cd "$(dirname "$VIE")" && pwd)/$(basename "$VIE")
HERE=$(cd "$(dirname "$0")" && pwd)
# The hello route behind N no-op layers (bench/layers.c, built beside vie):
# what the pipeline costs. Run as two more servers, layers0 and layers8.
LAYERS_BIN=$(dirname "$VIE")/bench_layers

RUN_SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-64}
IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
LIMIT_SRC=${BENCH_LIMIT_SRC:-/work/shared/bench/limit.c}
WORKLOADS=(plain pipelined)

die() { echo "bench: $*" >&2; exit 1; }

for tool in wrk nginx curl gcc python3 taskset pgrep timeout; do
  command -v "$tool" >/dev/null || die "'$tool' is missing (scripts/install-deps.sh installs it)"
done
{ taskset -c "$SERVER_CPU" true && taskset -c "$CLIENT_CPU" true; } 2>/dev/null ||
  die "cannot pin to CPUs $SERVER_CPU and $CLIENT_CPU (set BENCH_SERVER_CPU / BENCH_CLIENT_CPU)"
[ "$SERVER_CPU" != "$CLIENT_CPU" ] || echo "bench: warning: server and wrk share CPU $SERVER_CPU" >&2

# File descriptors for 5,000 idle connections on each side (server and
# client inherit this). 20000 or the hard limit, whichever is lower.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
if [ "$NOFILE" -lt $((IDLE_CONNS + 200)) ]; then
  echo "bench: warning: only $NOFILE file descriptors; idle test lowered to $((NOFILE - 200)) connections" >&2
  IDLE_CONNS=$((NOFILE - 200))
fi
NGINX_CONNS=$((NOFILE < 20000 ? NOFILE : 20000))

# ---------------------------------------------------------------------------
# Scratch directory and cleanup: every server we start is in PIDS and is
# stopped on any exit, Ctrl-C included.

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vie-bench.XXXXXX")
PIDS=()
BG_PID=

stop_server() { # PID: TERM, then KILL after 3 s (nginx's master takes its worker down)
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    # shellcheck disable=SC2046 # one word per child pid
    kill -KILL $(pgrep -P "$pid" || true) "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local p
  trap - EXIT INT TERM
  [ -z "$BG_PID" ] || kill -TERM "$BG_PID" 2>/dev/null || true
  for p in "${PIDS[@]}"; do stop_server "$p"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# bg_wait FILE all|stdout CMD...: run a client (wrk, idle_rss.py) in the
# background, its output (all, or stdout only) to FILE, and wait for it. wrk
# handles SIGINT itself and exits 0, and bash then ignores the Ctrl-C if wrk
# ran in the foreground; a `wait` is interrupted by the trap at once. (The
# redirections are here, not on the call, so that the trap's message and
# xtrace are not written to FILE.)
bg_wait() {
  local file=$1 what=$2 rc=0
  shift 2
  if [ "$what" = all ]; then "$@" >"$file" 2>&1 & else "$@" >"$file" & fi
  BG_PID=$!
  wait "$BG_PID" || rc=$?
  BG_PID=
  return "$rc"
}

# ---------------------------------------------------------------------------
# Servers

# N distinct free ports on 127.0.0.1 (bound to port 0 together, then released).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# nginx's configuration from the template, under its own prefix directory.
nginx_conf() { # PORT -> prints the config path
  local port=$1 prefix=$TMP/nginx-$1 user_line="# (not root: no user directive)"
  mkdir -p "$prefix"
  [ "$(id -u)" -eq 0 ] && user_line="user root;"
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@USER_LINE@|$user_line|" \
    -e "s|@NOFILE@|$NOFILE|g" -e "s|@WORKER_CONNECTIONS@|$NGINX_CONNS|g" \
    "$HERE/nginx.conf.in" >"$prefix/nginx.conf"
  echo "$prefix/nginx.conf"
}

# start_server NAME PORT [vie options...]: pinned to SERVER_CPU; sets SERVER_PID
# once the server answers GET /.
start_server() {
  local name=$1 port=$2 log=$TMP/$1-$2.log i
  shift 2
  case $name in
    # One process, as nginx runs one worker here.
    vie) taskset -c "$SERVER_CPU" "$VIE" serve -c "$HERE/hello.yaml" --workers 0 \
           --listen "127.0.0.1:$port" "$@" >"$log" 2>&1 & ;;
    nginx)
      local conf
      conf=$(nginx_conf "$port")
      taskset -c "$SERVER_CPU" nginx -p "$(dirname "$conf")" -c "$conf" \
        -e "$(dirname "$conf")/error.log" >"$log" 2>&1 &
      log=$(dirname "$conf")/error.log
      ;;
    floor) taskset -c "$SERVER_CPU" "$TMP/limit" "$port" >"$log" 2>&1 & ;;
    layers*) taskset -c "$SERVER_CPU" "$LAYERS_BIN" "$port" "${name#layers}" >"$log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  LOGS[$name]=$log
  for i in $(seq 100); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "bench: $name exited at start; its log:" >&2
      cat "$log" >&2 || true
      return 1
    fi
    curl -s -o /dev/null --noproxy '*' --max-time 1 "http://127.0.0.1:$port/" && return 0
    sleep 0.1
  done
  die "$name did not answer on 127.0.0.1:$port within 10 s"
}

# The response must be right before it is worth timing: one plain GET via
# curl, and 16 pipelined GETs in one write answered by 16 whole responses.
check_response() { # NAME PORT
  local name=$1 port=$2 out
  out=$(curl -s --noproxy '*' --max-time 2 -w '\n%{http_code}' "http://127.0.0.1:$port/") ||
    die "$name: curl failed"
  [ "$out" = $'Hello, World!\n200' ] || die "$name: GET / answered '${out//$'\n'/ | }', not 200 'Hello, World!'"
  python3 - "$port" <<'EOF' || die "$name: pipelined GET / answered wrongly"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 16)
buf, n = b"", 0
while n < 16:
    while b"\r\n\r\n" not in buf:
        c = s.recv(65536)
        if not c: sys.exit(f"closed after {n} responses")
        buf += c
    head, buf = buf.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 200 "): sys.exit(f"response {n}: {head[:40]!r}")
    while len(buf) < 13:
        c = s.recv(65536)
        if not c: sys.exit("closed in a body")
        buf += c
    if buf[:13] != b"Hello, World!": sys.exit(f"response {n}: body {buf[:13]!r}")
    buf, n = buf[13:], n + 1
if buf: sys.exit(f"extra bytes after 16 responses: {buf[:40]!r}")
EOF
}

# ---------------------------------------------------------------------------
# Measurement

CLK_TCK=$(getconf CLK_TCK)

# utime + stime (clock ticks) of PID and its children (nginx: master +
# worker). The process line already sums all of a process's threads.
cpu_ticks() {
  local total=0 p line f
  for p in "$1" $(pgrep -P "$1" || true); do
    line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    read -r -a f <<<"${line##*) }" # f[0] is field 3 (state): field N is f[N-3]
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"
FAILED=0

# run_wrk NAME PORT WORKLOAD SECONDS ROUND: one timed run; ROUND 0 = warm-up,
# not recorded.
run_wrk() {
  local name=$1 port=$2 workload=$3 secs=$4 round=$5 out=$TMP/wrk.out
  local pid=${SERVERS_PID[$name]} args=(-t1 "-c$CONNS" "-d${secs}s") t0 t1
  [ "$workload" = pipelined ] && args+=(-s "$HERE/pipeline.lua")
  t0=$(cpu_ticks "$pid")
  bg_wait "$out" all taskset -c "$CLIENT_CPU" wrk "${args[@]}" "http://127.0.0.1:$port/" ||
    { cat "$out" >&2; die "wrk against $name failed"; }
  t1=$(cpu_ticks "$pid")
  kill -0 "$pid" 2>/dev/null || die "$name died during the $workload run (log: ${LOGS[$name]})"
  [ "$round" -eq 0 ] && return 0

  # "123456 requests in 5.00s, ..."; "Non-2xx or 3xx responses: N";
  # "Socket errors: connect A, read B, write C, timeout D"
  local line
  line=$(awk -v dt=$((t1 - t0)) '
    / requests in / { req = $1; dur = $4; sub(/s,?$/, "", dur) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) sockerr += $i }
    END {
      if (req == "" || req == 0) exit 1
      printf "%d\t%.2f\t%d\t%.3f\t%d\t%d\n", req, rps, dt, dur, non2xx + 0, sockerr + 0
    }' "$out") || { cat "$out" >&2; die "cannot read wrk's output for $name"; }
  printf '%d\t%s\t%s\t%s\n' "$round" "$workload" "$name" "$line" >>"$RESULTS"

  # one line per run, and wrk's error lines verbatim if there are any
  awk -F'\t' -v tck="$CLK_TCK" '{
    cpu = $6 / tck
    printf "  round %d  %-9s  %-5s  %9.0f req/s  %7.2f µs cpu/request  server cpu %3.0f%%\n",
      $1, $2, $3, $5, cpu * 1e6 / $4, 100 * cpu / $7 }' <<<"$round	$workload	$name	$line"
  grep -E 'Non-2xx or 3xx responses|Socket errors' "$out" | sed "s/^/           $name: /" || true
}

# ---------------------------------------------------------------------------
# Go

declare -A SERVERS_PID SERVERS_PORT LOGS
SERVER_NAMES=(vie nginx)
if [ -r "$LIMIT_SRC" ]; then
  gcc -O2 -o "$TMP/limit" "$LIMIT_SRC" || die "cannot compile the floor $LIMIT_SRC"
  SERVER_NAMES+=(floor)
else
  echo "bench: warning: $LIMIT_SRC not found: no floor (set BENCH_LIMIT_SRC)" >&2
fi

if [ -x "$LAYERS_BIN" ]; then
  SERVER_NAMES+=(layers0 layers8)
else
  echo "bench: warning: $LAYERS_BIN not built: no pipeline-cost figures" >&2
fi

read -r -a ports <<<"$(free_ports ${#SERVER_NAMES[@]})"
i=0
for name in "${SERVER_NAMES[@]}"; do
  start_server "$name" "${ports[$i]}"
  SERVERS_PID[$name]=$SERVER_PID
  SERVERS_PORT[$name]=${ports[$i]}
  check_response "$name" "${ports[$i]}"
  i=$((i + 1))
done

echo "Vie benchmark: $("$VIE" --version 2>/dev/null || echo vie), $(nginx -v 2>&1 | sed 's/.*: //')," \
  "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'))"
echo "servers on CPU $SERVER_CPU, wrk -t1 -c$CONNS on CPU $CLIENT_CPU, ${RUN_SECS}s per run," \
  "$ROUNDS rounds, workloads: ${WORKLOADS[*]} (pipelined = 16 deep)"
echo "responses checked (GET / and 16 pipelined): ${SERVER_NAMES[*]}"
echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg) (anything else running skews the figures)"
echo

# A short warm-up of each server, then the rounds, alternating servers.
for name in "${SERVER_NAMES[@]}"; do
  for w in "${WORKLOADS[@]}"; do run_wrk "$name" "${SERVERS_PORT[$name]}" "$w" 1 0; done
done
for round in $(seq "$ROUNDS"); do
  for w in "${WORKLOADS[@]}"; do
    for name in "${SERVER_NAMES[@]}"; do
      run_wrk "$name" "${SERVERS_PORT[$name]}" "$w" "$RUN_SECS" "$round"
    done
  done
done
for name in "${SERVER_NAMES[@]}"; do stop_server "${SERVERS_PID[$name]}"; done

# Idle keep-alive connections: fresh servers with room for them. idle_rss.py
# says what it measured on stderr and leaves its key=value line for the table.
echo
echo "idle keep-alive connections: $IDLE_CONNS per server"
IDLE=$TMP/idle.txt
read -r -a ports <<<"$(free_ports 2)"
start_server vie "${ports[0]}" --max-connections 20000 --keepalive-timeout 600000
bg_wait "$IDLE.vie" stdout timeout 300 python3 "$HERE/idle_rss.py" --pid "$SERVER_PID" --port "${ports[0]}" \
  --conns "$IDLE_CONNS" --name vie || die "idle RSS test of vie failed"
stop_server "$SERVER_PID"
start_server nginx "${ports[1]}"
bg_wait "$IDLE.nginx" stdout timeout 300 python3 "$HERE/idle_rss.py" --pid "$SERVER_PID" --port "${ports[1]}" \
  --conns "$IDLE_CONNS" --name nginx || die "idle RSS test of nginx failed"
stop_server "$SERVER_PID"
cat "$IDLE.vie" "$IDLE.nginx" >"$IDLE"

# Anything vie logged at WARN or above during the whole bench.
for log in "$TMP"/vie-*.log; do
  if grep -qE ' (WARN|ERROR) ' "$log"; then
    echo "bench: vie logged warnings/errors ($(grep -cE ' (WARN|ERROR) ' "$log") lines), first ones:"
    grep -E ' (WARN|ERROR) ' "$log" | head -5 | sed 's/^/  /'
  fi
done

# What 8 no-op layers cost in instructions: exact and repeatable (callgrind
# counts instructions, whatever else runs), where CPU time moves by several
# percent between rounds. Two request counts per configuration, so start-up
# cancels out: (Ir(N2) - Ir(N1)) / (N2 - N1) instructions per request.
CALLGRIND=$TMP/callgrind.txt
: >"$CALLGRIND"
callgrind_ir() { # LAYERS REQUESTS DEPTH -> total instructions of the server
  local port out=$TMP/cg.$1.$2.$3 pid i
  port=$(free_ports 1)
  valgrind --tool=callgrind --callgrind-out-file="$out" "$LAYERS_BIN" "$port" "$1" >/dev/null 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for i in $(seq 300); do
    curl -s -o /dev/null --noproxy '*' --max-time 1 "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
  python3 "$HERE/fixed_requests.py" --port "$port" --requests "$2" --depth "$3" ||
    die "fixed_requests against bench_layers $1 failed"
  kill -TERM "$pid"
  wait "$pid" || true
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}
if [ -x "$LAYERS_BIN" ] && command -v valgrind >/dev/null; then
  echo
  echo "instructions per request (callgrind, user space, exact):"
  for depth in 1 16; do
    for n in 0 8; do
      a=$(callgrind_ir "$n" 1000 "$depth")
      b=$(callgrind_ir "$n" 5000 "$depth")
      w=plain
      [ "$depth" -eq 16 ] && w=pipelined
      printf '%s\t%s\t%s\n' "$w" "$n" "$(((b - a) / 4000))" | tee -a "$CALLGRIND" |
        awk -F'\t' '{ printf "  %-9s  %d layers  %6d instructions/request\n", $1, $2, $3 }'
    done
  done
fi

# ---------------------------------------------------------------------------
# The table, the goals and the summary line.
echo
python3 - "$RESULTS" "$IDLE" "$CLK_TCK" "$CALLGRIND" <<'EOF' || FAILED=1
import statistics as st, sys

results, idle_file, tck, cg_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
runs = {}  # (workload, server) -> [(rps, cpu_us_per_req, cpu_share, errors, requests)]
for line in open(results):
    rnd, w, srv, req, rps, ticks, dur, non2xx, sockerr = line.split("\t")
    req, cpu = int(req), int(ticks) / tck
    runs.setdefault((w, srv), []).append(
        (float(rps), cpu * 1e6 / req, cpu / float(dur), int(non2xx) + int(sockerr), req))

idle = {}
for line in open(idle_file):
    kv = dict(f.split("=", 1) for f in line.split()[1:])
    idle[kv["name"]] = float(kv["bytes_per_conn"])

workloads = list(dict.fromkeys(w for w, _ in runs))
servers = list(dict.fromkeys(s for _, s in runs))
med = {k: (st.median(r[0] for r in v), st.median(r[1] for r in v), st.median(r[2] for r in v))
       for k, v in runs.items()}

def ratio(w, a, b):
    return med[(w, a)][1] / med[(w, b)][1] if (w, a) in med and (w, b) in med else None

fmt = lambda r: "    -" if r is None else f"{r:5.2f}"
print(f"{'workload':<10} {'server':<6} {'req/s':>9}  {'cpu µs/req':>10} {'(min-max)':>13}  "
      f"{'server cpu':>10}  {'vs nginx':>8}  {'vs floor':>8}")
bad = []
for w in workloads:
    for s in servers:
        if (w, s) not in med:
            continue
        rps, us, share = med[(w, s)]
        v = runs[(w, s)]
        lo, hi = min(r[1] for r in v), max(r[1] for r in v)
        print(f"{w:<10} {s:<6} {rps:>9.0f}  {us:>10.2f} {f'({lo:.2f}-{hi:.2f})':>13}  "
              f"{100 * share:>9.0f}%  {fmt(ratio(w, s, 'nginx')):>8}  {fmt(ratio(w, s, 'floor')):>8}")
        errs, reqs = sum(r[3] for r in v), sum(r[4] for r in v)
        if errs > reqs * 1e-3:  # more than 0.1 % of requests failed: the figures are void
            bad.append(f"{s} {w}: {errs} errors in {reqs} requests")
print()
if idle:
    print("resident memory per idle keep-alive connection (RSS growth / connections):")
    for s, b in idle.items():
        print(f"  {s:<6} {b:7.0f} bytes")
    print()

print("goals:")
summary = []
plain, piped = ratio("plain", "vie", "nginx"), ratio("pipelined", "vie", "nginx")
for label, value, limit, text in (
        ("plain", plain, 1.00, "<= 1.00"),
        ("pipelined", piped, 0.25, "<= 0.25")):
    if value is None:
        print(f"  {label:<10} vie/nginx cpu-per-request =   n/a   (goal {text})")
        continue
    verdict = "PASS" if value <= limit else "MISS"
    print(f"  {label:<10} vie/nginx cpu-per-request = {value:5.2f}   (goal {text})   {verdict}")
    summary.append(f"{label}: vie/nginx cpu-per-request = {value:.2f}" if not summary
                   else f"{label}: vie/nginx = {value:.2f}")
if "vie" in idle:
    v = idle["vie"]
    verdict = "PASS" if v <= 1024 else "MISS"
    print(f"  {'idle':<10} vie RSS per connection = {v:.0f} B  (goal <= 1024 B)  {verdict}")
    extra = f" (nginx {idle['nginx']:.0f})" if "nginx" in idle else ""
    summary.append(f"idle: vie {v:.0f} B/connection{extra}")
# The pipeline's cost: hello behind 8 no-op layers against none, same rounds.
for k in ("plain", "pipelined"):
    r = ratio(k, "layers8", "layers0")
    if r is None:
        continue
    pct = 100 * (r - 1)
    if k == "plain":
        verdict = "PASS" if pct <= 3 else "MISS"
        print(f"  {'layers':<10} 8 no-op layers add {pct:+5.1f}% server cpu per request, plain "
              f"(goal <= +3%)   {verdict}")
    else:
        print(f"  {'layers':<10} 8 no-op layers add {pct:+5.1f}% server cpu per request, pipelined")
    summary.append(f"8 layers {k}: {pct:+.1f}% cpu")
cg = {}
for line in open(cg_file):
    w, n, ir = line.split("\t")
    cg[(w, int(n))] = int(ir)
for k in ("plain", "pipelined"):
    if (k, 0) in cg and (k, 8) in cg:
        d = cg[(k, 8)] - cg[(k, 0)]
        print(f"  {'layers':<10} 8 no-op layers add {d} instructions per request, {k} "
              f"({d / 8:.0f} per layer; {cg[(k, 0)]} without them, user space)")
        summary.append(f"8 layers {k}: +{d} instructions/request")
for k in ("plain", "pipelined"):
    r = ratio(k, "vie", "floor")
    if r is not None:
        summary.append(f"{k} vie/floor = {r:.2f}")
print()
print("; ".join(summary))
if bad:
    print("\nbench: too many errors, these figures are not valid:", *bad, sep="\n  ", file=sys.stderr)
    sys.exit(1)
EOF
[ "$FAILED" -eq 0 ] || exit 1
