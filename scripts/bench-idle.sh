#!/usr/bin/env bash
# Memory per idle keep-alive connection, alone (the e2e benchmark measures the same thing among much else):
#   ./build.sh bench idle [COUNT] [ROUNDS]        (defaults: 10000 connections, 3 rounds)
#   BENCH_SERVERS="linux kestrel" ./build.sh bench idle 10000 5
# Servers: linux and sockets are PipeServer on that transport, kestrel is benchmarks/KestrelBaseline (the
# same GC settings); default all three. PIPESERVER_ARGS adds options to PipeServer's command line.
# Method, as in scripts/bench-e2e.sh: a fresh server pinned to core 0 answers one request (the readiness
# check); its VmRSS is read; the 'idle' tool (benchmarks/PipeServer.Benchmarks/IdleConnections.cs), pinned to
# core 1, opens COUNT connections, sends one GET /plaintext on each, reads the answer and keeps them open and
# silent; 3 s after it reports READY the VmRSS is read again. (after - before) / COUNT is the figure. For
# PipeServer the heartbeat's line also gives the GC heap (live and not yet collected) and the GCs that ran
# meanwhile, so a figure can be split into the managed heap and the rest. RSS moves little with the load of
# other processes (unlike requests/s); rounds still differ by a few percent, so the median is reported.
source "$(dirname "$0")/common.sh"
COUNT="${1:-10000}"
ROUNDS="${2:-3}"
HOLD="${HOLD:-6}"
read -r -a SERVERS <<<"${BENCH_SERVERS:-linux sockets kestrel}"
read -r -a PIPESERVER_EXTRA <<<"${PIPESERVER_ARGS:-}"
ensure_tool taskset util-linux
ensure_tool curl
raise_fd_limit
echo "building (Release)..."
dotnet build "$ROOT/src/PipeServer/PipeServer.csproj" -c Release -v quiet -nologo >/dev/null
dotnet build "$ROOT/benchmarks/PipeServer.Benchmarks/PipeServer.Benchmarks.csproj" -c Release -v quiet -nologo >/dev/null
for s in "${SERVERS[@]}"; do
  [ "$s" = kestrel ] && dotnet build "$ROOT/benchmarks/KestrelBaseline/KestrelBaseline.csproj" -c Release -v quiet -nologo >/dev/null
done
KESTREL_DLL="$ROOT/benchmarks/KestrelBaseline/bin/Release/net10.0/KestrelBaseline.dll"
TOOLS_DLL="$ROOT/benchmarks/PipeServer.Benchmarks/bin/Release/net10.0/PipeServer.Benchmarks.dll"
WORK="$(mktemp -d)"
PID=""
stop() {
  [ -n "$PID" ] || return 0
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}
trap 'stop; rm -rf "$WORK"' EXIT

# start SERVER: pinned to core 0 on a free loopback port; sets PID and PORT, waits (60 s at most) for an answer.
start() {
  PORT=$(free_port)
  case "$1" in
    linux|sockets)
      taskset -c 0 dotnet "$SERVER_DLL" --address 127.0.0.1 --port "$PORT" --transport "$1" --heartbeat-interval 1 \
        --log-level information "${PIPESERVER_EXTRA[@]}" >"$WORK/server.log" 2>&1 & PID=$! ;;
    kestrel)
      taskset -c 0 dotnet "$KESTREL_DLL" --urls "http://127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 & PID=$! ;;
    *) echo "unknown server '$1' (linux, sockets, kestrel)" >&2; exit 2 ;;
  esac
  wait_http_ready "$1" "$PID" "$WORK/server.log" "http://127.0.0.1:$PORT/plaintext"
}

# The heartbeat's last "GC gen0=A gen1=B gen2=C, heap H KiB" as "A B C H" (PipeServer only).
gc_line() { { grep -oE "GC gen0=[0-9]+ gen1=[0-9]+ gen2=[0-9]+, heap [0-9]+" "$WORK/server.log" || true; } | tail -1 | tr -dc '0-9 \n' | awk '{print $1, $2, $3, $4}'; }

declare -A RESULTS
for r in $(seq 1 "$ROUNDS"); do
  for s in "${SERVERS[@]}"; do
    start "$s"
    sleep 1.5 # one heartbeat after the readiness answer
    rss0=$(rss_kib "$PID"); gc0=$(gc_line)
    taskset -c 1 dotnet "$TOOLS_DLL" idle --port "$PORT" --count "$COUNT" --hold "$HOLD" >"$WORK/idle.log" 2>&1 &
    tool=$!
    for _ in $(seq 1 1200); do grep -q READY "$WORK/idle.log" && break; kill -0 $tool 2>/dev/null || break; sleep 0.1; done
    sleep 3
    rss1=$(rss_kib "$PID"); gc1=$(gc_line)
    wait $tool || true
    stop
    if ! grep -q READY "$WORK/idle.log"; then cat "$WORK/idle.log" >&2; echo "   $s: the idle tool failed" >&2; continue; fi
    per=$(awk -v a="$rss0" -v b="$rss1" -v n="$COUNT" 'BEGIN { printf "%.2f", (b - a) / n }')
    RESULTS[$s]="${RESULTS[$s]:-} $per"
    heap=""
    if [ -n "$gc0" ] && [ -n "$gc1" ]; then
      heap=$(awk -v a="$gc0" -v b="$gc1" -v n="$COUNT" 'BEGIN { split(a, x, " "); split(b, y, " ");
        printf "; GC heap %.2f KiB each, GCs meanwhile gen0 %d gen1 %d gen2 %d", (y[4] - x[4]) / n, y[1] - x[1], y[2] - x[2], y[3] - x[3] }')
    fi
    echo "   round $r $s: RSS $rss0 -> $rss1 KiB with $COUNT idle connections: $per KiB each$heap"
  done
done

echo "== RSS per idle keep-alive connection, $COUNT open, median of $ROUNDS round(s)"
for s in "${SERVERS[@]}"; do
  [ -n "${RESULTS[$s]:-}" ] || { echo "   $s: n/a"; continue; }
  med=$(tr ' ' '\n' <<<"${RESULTS[$s]}" | grep . | sort -g | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else printf "%.2f", (a[NR/2]+a[NR/2+1])/2 }')
  echo "   $s: $med KiB (rounds:${RESULTS[$s]})"
done
