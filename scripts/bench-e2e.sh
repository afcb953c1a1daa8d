#!/usr/bin/env bash
# The end-to-end benchmark: PipeServer against Kestrel (benchmarks/KestrelBaseline), side by side in one run.
#   ./build.sh bench e2e [ROUNDS] [SECONDS]      (defaults: 5 rounds of 10 s per scenario and server)
# Method: each server is pinned to core 0 and wrk to core 1 (taskset); both servers get the same warm-up
# (long enough for tiered JIT and PGO), then rounds alternate A B A B ...; the table reports medians of
# requests/s, p50 and p99 latency, server CPU microseconds per request (utime+stime from /proc/PID/stat),
# and peak RSS (VmHWM), with the ratio PipeServer/Kestrel for each. Then: GC collections during a 10 s run
# after warm-up, memory per idle keep-alive connection (10,000 of them), and Native AOT start-up.
# Results go to benchmarks/results/e2e-<date>.md and benchmarks/results/latest.md.
source "$(dirname "$0")/common.sh"
ROUNDS="${1:-5}"
SECS="${2:-10}"
WARMUP="${WARMUP:-15}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-10000}"
ensure_tool wrk
ensure_tool taskset util-linux
raise_fd_limit
echo "building (Release)..."
dotnet build "$ROOT/src/PipeServer/PipeServer.csproj" -c Release -v quiet -nologo >/dev/null
dotnet build "$ROOT/benchmarks/KestrelBaseline/KestrelBaseline.csproj" -c Release -v quiet -nologo >/dev/null
dotnet build "$ROOT/benchmarks/PipeServer.Benchmarks/PipeServer.Benchmarks.csproj" -c Release -v quiet -nologo >/dev/null
KESTREL_DLL="$ROOT/benchmarks/KestrelBaseline/bin/Release/net10.0/KestrelBaseline.dll"
TOOLS_DLL="$ROOT/benchmarks/PipeServer.Benchmarks/bin/Release/net10.0/PipeServer.Benchmarks.dll"
WORK="$(mktemp -d)"
declare -A PID PORT
CLK_TCK="$(getconf CLK_TCK)"

wait_ready() { for _ in $(seq 1 200); do curl -fs "http://127.0.0.1:$1/plaintext" >/dev/null 2>&1 && return; sleep 0.05; done; echo "server on $1 not ready" >&2; exit 1; }
start_servers() {
  PORT[pipeserver]=$(free_port); PORT[kestrel]=$(free_port)
  taskset -c 0 dotnet "$SERVER_DLL" --address 127.0.0.1 --port "${PORT[pipeserver]}" --heartbeat-interval 1 --log-level information \
    >"$WORK/pipeserver.log" 2>&1 & PID[pipeserver]=$!
  taskset -c 0 dotnet "$KESTREL_DLL" --urls "http://127.0.0.1:${PORT[kestrel]}" >"$WORK/kestrel.log" 2>&1 & PID[kestrel]=$!
  wait_ready "${PORT[pipeserver]}"; wait_ready "${PORT[kestrel]}"
}
stop_servers() { for s in pipeserver kestrel; do [ -n "${PID[$s]:-}" ] && { kill -TERM "${PID[$s]}" 2>/dev/null || true; wait "${PID[$s]}" 2>/dev/null || true; PID[$s]=""; }; done; }
trap 'stop_servers; rm -rf "$WORK"' EXIT
ensure_tool curl

cat >"$WORK/pipeline.lua" <<'LUA'
-- TechEmpower's pipelining: each write carries 16 requests.
init = function(args)
  local r = {}
  for i = 1, 16 do r[i] = wrk.format(nil) end
  req = table.concat(r)
end
request = function() return req end
LUA

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
to_us() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v*1000 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000000 } else print v }'; }
median() { sort -g | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

# run_wrk SERVER NAME CONNECTIONS PATH [pipeline]: one measured round; appends "rps p50us p99us cpu_us_per_req" to WORK/NAME.SERVER
run_wrk() {
  local server=$1 name=$2 conns=$3 path=$4 pipe=${5:-}
  local script=(); [ -n "$pipe" ] && script=(-s "$WORK/pipeline.lua")
  local before after out
  before=$(cpu_ticks "${PID[$server]}")
  out="$(taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" --latency "${script[@]}" "http://127.0.0.1:${PORT[$server]}$path" 2>&1)"
  after=$(cpu_ticks "${PID[$server]}")
  local rps p50 p99 requests errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(to_us "$(awk '/^ +50%/ {print $2}' <<<"$out")")
  p99=$(to_us "$(awk '/^ +99%/ {print $2}' <<<"$out")")
  errors=$(grep -cE "Socket errors|Non-2xx" <<<"$out" || true)
  [ "$errors" = "0" ] || { echo "$out" >&2; echo "errors in $server $name" >&2; }
  local cpu_us; cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.3f", t / hz * 1e6 / n }')
  echo "$rps $p50 $p99 $cpu_us" >>"$WORK/$name.$server"
  printf "   %-10s %-22s %10.0f req/s  p50 %7.0f us  p99 %8.0f us  %6.2f us CPU/req\n" "$server" "$name" "$rps" "$p50" "$p99" "$cpu_us"
}

start_servers
echo "== warm-up ${WARMUP}s each (tiered JIT, PGO)"
for s in pipeserver kestrel; do
  taskset -c 1 wrk -t1 -c64 -d"${WARMUP}s" "http://127.0.0.1:${PORT[$s]}/plaintext" >/dev/null
  taskset -c 1 wrk -t1 -c64 -d5s "http://127.0.0.1:${PORT[$s]}/json" >/dev/null
  taskset -c 1 wrk -t1 -c256 -d5s -s "$WORK/pipeline.lua" "http://127.0.0.1:${PORT[$s]}/plaintext" >/dev/null
done

SCENARIOS=("plaintext-64|64|/plaintext|" "plaintext-pipelined16-256|256|/plaintext|pipe" "json-64|64|/json|")
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r name conns path pipe <<<"$sc"
    # alternate which server goes first, so neither always runs on a warmer machine
    if (( r % 2 )); then order=(pipeserver kestrel); else order=(kestrel pipeserver); fi
    for s in "${order[@]}"; do run_wrk "$s" "$name" "$conns" "$path" "$pipe"; done
  done
done
declare -A RSS
for s in pipeserver kestrel; do RSS[$s]=$(awk '/VmHWM/ {print $2}' "/proc/${PID[$s]}/status"); done

echo "== GC collections in ${SECS}s of /json load after warm-up (PipeServer heartbeat)"
gc_line() { grep -o "GC gen0=[0-9]* gen1=[0-9]* gen2=[0-9]*" "$WORK/pipeserver.log" | tail -1; }
sleep 1.2; gc_before="$(gc_line)"
taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:${PORT[pipeserver]}/json" >/dev/null
sleep 1.2; gc_after="$(gc_line)"
echo "   before: $gc_before   after: $gc_after"
stop_servers

echo "== memory per idle keep-alive connection (${IDLE_CONNECTIONS})"
declare -A IDLE
start_servers
for s in pipeserver kestrel; do
  if [ "${SKIP_IDLE:-0}" = "1" ]; then IDLE[$s]="n/a"; continue; fi
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/${PID[$s]}/status")
  taskset -c 1 dotnet "$TOOLS_DLL" idle --port "${PORT[$s]}" --count "$IDLE_CONNECTIONS" --hold 8 >"$WORK/idle.$s" 2>&1 &
  tool=$!
  for _ in $(seq 1 600); do grep -q READY "$WORK/idle.$s" && break; kill -0 $tool 2>/dev/null || break; sleep 0.1; done
  sleep 3
  rss1=$(awk '/VmRSS/ {print $2}' "/proc/${PID[$s]}/status")
  wait $tool || true
  if grep -q READY "$WORK/idle.$s"; then
    IDLE[$s]=$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE_CONNECTIONS" 'BEGIN { printf "%.2f", (b - a) / n }')
  else IDLE[$s]="n/a"; cat "$WORK/idle.$s" >&2; fi
  echo "   $s: RSS ${rss0} KiB -> ${rss1} KiB with ${IDLE_CONNECTIONS} idle connections: ${IDLE[$s]} KiB each"
done
stop_servers

echo "== Native AOT: start-up to first served request, size, RSS"
AOT="$ROOT/artifacts/publish-aot/PipeServer"
if [ "${SKIP_AOT:-0}" != "1" ]; then
  (cd "$ROOT" && ./build.sh publish --aot >/dev/null)
  starts=""
  for i in 1 2 3 4 5 6 7; do
    port=$(free_port)
    t0=$(date +%s%N)
    "$AOT" --address 127.0.0.1 --port "$port" --heartbeat-interval 0 --log-level warning >/dev/null 2>&1 &
    apid=$!
    until curl -fs "http://127.0.0.1:$port/plaintext" >/dev/null 2>&1; do :; done
    t1=$(date +%s%N)
    aot_rss=$(awk '/VmRSS/ {print $2}' "/proc/$apid/status")
    kill -TERM $apid; wait $apid || true
    starts="$starts $(( (t1 - t0) / 1000000 ))"
  done
  AOT_START=$(tr ' ' '\n' <<<"$starts" | grep -v '^$' | median)
  AOT_SIZE=$(du -k "$AOT" | cut -f1)
  echo "   start-up runs (ms):$starts -> median $AOT_START ms; size ${AOT_SIZE} KiB; RSS after first request ${aot_rss} KiB"
  JIT_START=""
  for i in 1 2 3; do
    port=$(free_port); t0=$(date +%s%N)
    dotnet "$SERVER_DLL" --address 127.0.0.1 --port "$port" --heartbeat-interval 0 --log-level warning >/dev/null 2>&1 &
    jpid=$!
    until curl -fs "http://127.0.0.1:$port/plaintext" >/dev/null 2>&1; do :; done
    t1=$(date +%s%N); kill -TERM $jpid; wait $jpid || true
    JIT_START="$JIT_START $(( (t1 - t0) / 1000000 ))"
  done
  JIT_START=$(tr ' ' '\n' <<<"$JIT_START" | grep -v '^$' | median)
fi

# ---- report ----
mkdir -p "$ROOT/benchmarks/results"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dotnet_version="$(dotnet --version)"
cpu="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo) ($(nproc) cores)"
out="$ROOT/benchmarks/results/e2e-$(date -u +%Y%m%d-%H%M%S).md"
{
  echo "# End-to-end: PipeServer vs Kestrel"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: $commit; .NET SDK $dotnet_version; machine: $cpu, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "- method: each server pinned to core 0, wrk to core 1; ${WARMUP}s warm-up each; $ROUNDS interleaved rounds of ${SECS}s per scenario; medians"
  echo "- both servers: Release, workstation non-concurrent GC, tiered PGO; Kestrel is a terminal middleware writing preformatted bytes (benchmarks/KestrelBaseline)"
  echo
  echo "| scenario | metric | PipeServer | Kestrel | PipeServer/Kestrel |"
  echo "| --- | --- | ---: | ---: | ---: |"
  for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r name _ _ _ <<<"$sc"
    for col in 1 2 3 4; do
      label=$(case $col in 1) echo "requests/s";; 2) echo "p50 latency (us)";; 3) echo "p99 latency (us)";; 4) echo "server CPU per request (us)";; esac)
      a=$(awk -v c=$col '{print $c}' "$WORK/$name.pipeserver" | median)
      b=$(awk -v c=$col '{print $c}' "$WORK/$name.kestrel" | median)
      ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
      # wrk cannot time individual requests inside a pipelined batch: its p99 there reads 0. Say so.
      if [ "$col" = 3 ] && [ -n "$(cut -d'|' -f4 <<<"$sc")" ]; then
        printf "| %s | %s | n/a | n/a | n/a (wrk does not time pipelined requests) |\n" "$name" "$label"; continue
      fi
      printf "| %s | %s | %.1f | %.1f | %s |\n" "$name" "$label" "$a" "$b" "$ratio"
    done
  done
  ra=${RSS[pipeserver]}; rb=${RSS[kestrel]}
  printf "| all | peak RSS under load (MiB) | %.1f | %.1f | %s |\n" "$(awk -v v=$ra 'BEGIN{print v/1024}')" "$(awk -v v=$rb 'BEGIN{print v/1024}')" "$(awk -v a=$ra -v b=$rb 'BEGIN{printf "%.2f", a/b}')"
  printf "| idle keep-alive | memory per connection (KiB, %s connections) | %s | %s | %s |\n" "$IDLE_CONNECTIONS" "${IDLE[pipeserver]}" "${IDLE[kestrel]}" \
    "$(awk -v a="${IDLE[pipeserver]}" -v b="${IDLE[kestrel]}" 'BEGIN { if (b+0 > 0) printf "%.2f", a/b; else print "n/a" }')"
  echo
  echo "GC collections in PipeServer over ${SECS}s of /json at 64 connections after warm-up: before \`$gc_before\`, after \`$gc_after\`."
  if [ -n "${AOT_START:-}" ]; then
    echo
    echo "Native AOT (\`./build.sh publish --aot\`): start-up to first served request ${AOT_START} ms (median of 7, measured by a curl loop, so an upper bound), executable $(awk -v k="$AOT_SIZE" 'BEGIN{printf "%.1f MiB", k/1024}'), RSS ${aot_rss} KiB after one request. The JIT build takes ${JIT_START} ms."
  fi
} >"$out"
cp "$out" "$ROOT/benchmarks/results/latest.md"
echo
cat "$out"
