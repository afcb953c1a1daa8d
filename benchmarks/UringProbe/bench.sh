#!/usr/bin/env bash
# The io_uring probe beside the epoll probe and the real PipeServer, measured as scripts/bench-e2e.sh
# measures: each server pinned to core 0, wrk (1 thread) to core 1, the same warm-up for all, rounds that
# rotate the order of the servers, medians. CPU per request is utime+stime from /proc/PID/stat over each
# run, split into user and system time, because the question is where the kernel interface moves the time.
#   benchmarks/UringProbe/bench.sh [ROUNDS] [SECONDS]       (defaults: 5 rounds of 10 s)
#   BENCH_SERVERS="uring epoll" benchmarks/UringProbe/bench.sh 3 5
source "$(dirname "$0")/../../scripts/common.sh"
ROUNDS="${1:-5}"
SECS="${2:-10}"
WARMUP="${WARMUP:-10}"
STRACE_SECS="${STRACE_SECS:-3}"
read -r -a SERVERS <<<"${BENCH_SERVERS:-uring epoll pipeserver}"
ensure_tool wrk
ensure_tool taskset util-linux
ensure_tool curl
ensure_tool strace
raise_fd_limit
echo "building (Release)..."
dotnet build "$ROOT/src/PipeServer.Host/PipeServer.Host.csproj" -c Release -v quiet -nologo >/dev/null
dotnet build "$ROOT/benchmarks/UringProbe/UringProbe.csproj" -c Release -v quiet -nologo >/dev/null
PROBE_DLL="$ROOT/benchmarks/UringProbe/bin/Release/net10.0/UringProbe.dll"
WORK="$(mktemp -d)"
declare -A PID PORT
CLK_TCK="$(getconf CLK_TCK)"
trap 'stop_servers; rm -rf "$WORK"' EXIT

start_one() {
  local s=$1 port; port=$(free_port); PORT[$s]=$port
  case "$s" in
    uring) taskset -c 0 dotnet "$PROBE_DLL" --uring --port "$port" >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
    epoll) taskset -c 0 dotnet "$PROBE_DLL" --epoll --port "$port" >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
    pipeserver) taskset -c 0 dotnet "$SERVER_DLL" --address 127.0.0.1 --port "$port" --log-level warning >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
    *) echo "unknown server '$s' (uring, epoll, pipeserver)" >&2; exit 2 ;;
  esac
  wait_http_ready "$s" "${PID[$s]}" "$WORK/$s.log" "http://127.0.0.1:$port/plaintext"
}

# ticks PID: "utime stime" in clock ticks (a probe and PipeServer are single processes).
ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

run_wrk() {
  local s=$1 name=$2 conns=$3 pipe=$4 script=()
  [ -n "$pipe" ] && script=(-s "$PIPELINE_LUA")
  local u0 s0 u1 s1 out rps requests
  read -r u0 s0 <<<"$(ticks "${PID[$s]}")"
  out="$(taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" "${script[@]}" "http://127.0.0.1:${PORT[$s]}/plaintext" 2>&1)"
  read -r u1 s1 <<<"$(ticks "${PID[$s]}")"
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  grep -qE "Socket errors|Non-2xx" <<<"$out" && { echo "$out" >&2; echo "errors in $s $name" >&2; }
  local load; load=$(awk '{print $1}' /proc/loadavg)
  awk -v rps="$rps" -v n="$requests" -v u=$((u1 - u0)) -v k=$((s1 - s0)) -v hz="$CLK_TCK" -v load="$load" \
    'BEGIN { printf "%s %.3f %.3f %.3f %s\n", rps, (u + k) / hz * 1e6 / n, u / hz * 1e6 / n, k / hz * 1e6 / n, load }' >>"$WORK/$name.$s"
  printf "   %-10s %-26s %s\n" "$s" "$name" "$(tail -1 "$WORK/$name.$s" | awk '{printf "%10.0f req/s  %6.2f us CPU/req (user %5.2f, sys %5.2f)  load %s", $1, $2, $3, $4, $5}')"
}

strace_run() {
  local s=$1
  strace -c -f -o "$WORK/strace.$s" -p "${PID[$s]}" 2>/dev/null & local spid=$!
  sleep 1
  local out requests
  out="$(taskset -c 1 wrk -t1 -c64 -d"${STRACE_SECS}s" "http://127.0.0.1:${PORT[$s]}/plaintext" 2>&1)"
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  kill -INT $spid 2>/dev/null || true; wait $spid 2>/dev/null || true
  awk -v n="$requests" '
    NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" { printf "%s %.3f\n", $NF, $4 / n }
  ' "$WORK/strace.$s" | sort -k2 -gr >"$WORK/syscalls.$s"
  echo "$(awk '{t += $2} END {printf "%.2f", t}' "$WORK/syscalls.$s") ($(head -3 "$WORK/syscalls.$s" | awk '{printf "%s%s %.2f", (NR>1?", ":""), $1, $2}'))" >"$WORK/syscalls-line.$s"
  echo "   $s: $(cat "$WORK/syscalls-line.$s") syscalls/request"
}

for s in "${SERVERS[@]}"; do start_one "$s"; done
echo "== warm-up ${WARMUP}s each; load $(cut -d' ' -f1-3 /proc/loadavg)"
for s in "${SERVERS[@]}"; do
  taskset -c 1 wrk -t1 -c64 -d"${WARMUP}s" "http://127.0.0.1:${PORT[$s]}/plaintext" >/dev/null
  taskset -c 1 wrk -t1 -c256 -d5s -s "$PIPELINE_LUA" "http://127.0.0.1:${PORT[$s]}/plaintext" >/dev/null
done
SCENARIOS=("plaintext-64|64|" "pipelined16-256|256|pipe")
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  n=${#SERVERS[@]}
  for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r name conns pipe <<<"$sc"
    for i in $(seq 0 $((n - 1))); do run_wrk "${SERVERS[$(( (i + r - 1) % n ))]}" "$name" "$conns" "$pipe"; done
  done
done
echo "== syscalls per request (strace -c -f, ${STRACE_SECS}s of /plaintext at 64 connections, a separate run)"
for s in "${SERVERS[@]}"; do strace_run "$s"; done
stop_servers

median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }
echo
echo "| scenario | server | requests/s | CPU µs/request | user µs | system µs | each round's req/s | load during rounds |"
echo "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"
for sc in "${SCENARIOS[@]}"; do
  IFS='|' read -r name _ _ <<<"$sc"
  for s in "${SERVERS[@]}"; do
    printf "| %s | %s | %.0f | %.2f | %.2f | %.2f | %s | %s |\n" "$name" "$s" "$(col "$name.$s" 1)" "$(col "$name.$s" 2)" "$(col "$name.$s" 3)" "$(col "$name.$s" 4)" \
      "$(awk '{printf "%s%.0fk", (NR>1?" ":""), $1/1000}' "$WORK/$name.$s")" "$(awk '{printf "%s%s", (NR>1?" ":""), $5}' "$WORK/$name.$s")"
  done
done
echo
echo "| server | syscalls per /plaintext request (strace -c) |"
echo "| --- | --- |"
for s in "${SERVERS[@]}"; do echo "| $s | $(cat "$WORK/syscalls-line.$s") |"; done
