#!/usr/bin/env bash
# The end-to-end benchmark: PipeServer beside its peer (Kestrel), Kestrel tuned as TechEmpower's platform
# entries run it, and the ceiling (nginx), all in one run.
#   ./build.sh bench e2e [ROUNDS] [SECONDS]      (defaults: 5 rounds of 10 s per scenario and server)
#   BENCH_SERVERS="pipeserver kestrel" ./build.sh bench e2e 3 5     a subset, shorter
#   PIPESERVER_ARGS="--transport linux" ...                          extra PipeServer options
# Method: each server is pinned to core 0 and wrk (1 thread) to core 1 (taskset); every server gets the
# same warm-up (long enough for tiered JIT and PGO), then rounds rotate the order of the servers so none
# always runs on a warmer machine. The report gives medians of requests/s, p50 and p99 latency, server CPU
# microseconds per request (utime+stime from /proc/PID/stat, all the server's processes), context switches
# per request (voluntary + involuntary over /proc/PID/task/*/status), syscalls per request (strace -c -f
# over a separate short run, so strace's cost never touches the throughput figures), peak RSS, memory per
# idle keep-alive connection, PipeServer's GC counts under load, bytes allocated per request (the 'alloc'
# probe, on the transport the executable ran), Native AOT start-up, and one line per issue-11 target
# ("target: figure (met/not met)"). Ratios are
# PipeServer's figure divided by each other server's, measured in the same run: absolute numbers on a
# shared VM drift by ±20% between runs, ratios much less.
# Results: benchmarks/results/e2e-<date>.md (+ .svg chart), copied to latest.md / latest.svg.
source "$(dirname "$0")/common.sh"
ROUNDS="${1:-5}"
SECS="${2:-10}"
WARMUP="${WARMUP:-15}"
STRACE_SECS="${STRACE_SECS:-4}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-10000}"
read -r -a SERVERS <<<"${BENCH_SERVERS:-pipeserver kestrel kestrel-tuned nginx}"
read -r -a PIPESERVER_EXTRA <<<"${PIPESERVER_ARGS:-}"
ensure_tool wrk
ensure_tool taskset util-linux
ensure_tool curl
ensure_tool strace
ensure_tool gnuplot gnuplot-nox
has_server() { local s; for s in "${SERVERS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
has_server nginx && ensure_tool nginx nginx-light
raise_fd_limit
echo "building (Release)..."
dotnet build "$ROOT/src/PipeServer.Host/PipeServer.Host.csproj" -c Release -v quiet -nologo >/dev/null
dotnet build "$ROOT/benchmarks/KestrelBaseline/KestrelBaseline.csproj" -c Release -v quiet -nologo >/dev/null
dotnet build "$ROOT/benchmarks/PipeServer.Benchmarks/PipeServer.Benchmarks.csproj" -c Release -v quiet -nologo >/dev/null
KESTREL_DLL="$ROOT/benchmarks/KestrelBaseline/bin/Release/net10.0/KestrelBaseline.dll"
TOOLS_DLL="$ROOT/benchmarks/PipeServer.Benchmarks/bin/Release/net10.0/PipeServer.Benchmarks.dll"
WORK="$(mktemp -d)"
declare -A PID PORT
CLK_TCK="$(getconf CLK_TCK)"

# start_one SERVER: start it pinned to core 0 on a free loopback port; PID[SERVER] is the process to signal.
start_one() {
  local s=$1 port; port=$(free_port); PORT[$s]=$port
  case "$s" in
    pipeserver)
      taskset -c 0 dotnet "$SERVER_DLL" --address 127.0.0.1 --port "$port" --heartbeat-interval 1 --log-level information \
        "${PIPESERVER_EXTRA[@]}" >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
    kestrel)
      taskset -c 0 dotnet "$KESTREL_DLL" --urls "http://127.0.0.1:$port" >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
    kestrel-tuned)
      DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 taskset -c 0 dotnet "$KESTREL_DLL" --urls "http://127.0.0.1:$port" --inline true \
        >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
    nginx)
      mkdir -p "$WORK/nginx"
      sed -e "s|__PORT__|$port|g" -e "s|__PREFIX__|$WORK/nginx|g" "$ROOT/benchmarks/nginx/nginx.conf" >"$WORK/nginx/nginx.conf"
      # The master forks one worker; both inherit the affinity. "daemon off" keeps the master our child.
      taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
    *) echo "unknown server '$s' (pipeserver, kestrel, kestrel-tuned, nginx)" >&2; exit 2 ;;
  esac
  wait_http_ready "$s" "${PID[$s]}" "$WORK/$s.log" "http://127.0.0.1:$port/plaintext"
}
start_servers() { local s; for s in "${SERVERS[@]}"; do start_one "$s"; done; }
trap 'stop_servers; rm -rf "$WORK"' EXIT

# The server's processes: the one we started and its children (nginx's worker).
ctx_switches() { cat $(for p in $(pids_of "$1"); do echo /proc/$p/task/*/status; done) 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n+0}'; }
rss_sum() { local field=$2 t=0 p; for p in $(pids_of "$1"); do t=$((t + $(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $t; }
to_us() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v*1000 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000000 } else print v }'; }
median() { sort -g | awk '{a[NR]=$1} END { if (NR == 0) print 0; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

# run_wrk SERVER NAME CONNECTIONS PATH [pipeline]: one measured round; appends "rps p50us p99us cpu_us_per_req ctxsw_per_req" to WORK/NAME.SERVER
run_wrk() {
  local server=$1 name=$2 conns=$3 path=$4 pipe=${5:-}
  local script=(); [ -n "$pipe" ] && script=(-s "$PIPELINE_LUA")
  local before after cs_before cs_after out
  before=$(cpu_ticks "$server"); cs_before=$(ctx_switches "$server")
  out="$(taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" --latency "${script[@]}" "http://127.0.0.1:${PORT[$server]}$path" 2>&1)"
  after=$(cpu_ticks "$server"); cs_after=$(ctx_switches "$server")
  local rps p50 p99 requests errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(to_us "$(awk '/^ +50%/ {print $2}' <<<"$out")")
  p99=$(to_us "$(awk '/^ +99%/ {print $2}' <<<"$out")")
  errors=$(grep -cE "Socket errors|Non-2xx" <<<"$out" || true)
  [ "$errors" = "0" ] || { echo "$out" >&2; echo "errors in $server $name" >&2; }
  local cpu_us cs
  cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN { printf "%.3f", t / hz * 1e6 / n }')
  cs=$(awk -v c=$((cs_after - cs_before)) -v n="$requests" 'BEGIN { printf "%.4f", c / n }')
  echo "$rps $p50 $p99 $cpu_us $cs" >>"$WORK/$name.$server"
  printf "   %-14s %-26s %10.0f req/s  p50 %7.0f us  p99 %8.0f us  %6.2f us CPU/req  %6.3f cs/req\n" "$server" "$name" "$rps" "$p50" "$p99" "$cpu_us" "$cs"
}

# strace_run SERVER: syscalls per request over a short /plaintext run at 64 connections. strace attaches
# before wrk starts and detaches after it ends, so wrk's request count covers exactly the traced window.
strace_run() {
  local s=$1 args=() p
  for p in $(pids_of "$s"); do args+=(-p "$p"); done
  strace -c -f -o "$WORK/strace.$s" "${args[@]}" 2>/dev/null & local spid=$!
  sleep 1
  local out requests
  out="$(taskset -c 1 wrk -t1 -c64 -d"${STRACE_SECS}s" "http://127.0.0.1:${PORT[$s]}/plaintext" 2>&1)"
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  kill -INT $spid 2>/dev/null || true; wait $spid 2>/dev/null || true
  # strace -c rows: "% time  seconds  usecs/call  calls  [errors]  syscall"; the last row is "total".
  awk -v n="$requests" '
    $NF == "total" { total = $(NF-1); if (NF == 6) total = $(NF-2) }
    NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" { calls = $4; errs = (NF == 6) ? $5 : 0; name = $NF;
      printf "%s %.3f %.3f\n", name, calls / n, errs / n }
  ' "$WORK/strace.$s" | sort -k2 -gr >"$WORK/syscalls.$s"
  awk '{t += $2} END {printf "%.2f", t}' "$WORK/syscalls.$s" >"$WORK/syscalls-total.$s"
  echo "   $s: $(cat "$WORK/syscalls-total.$s") syscalls/request ($(head -4 "$WORK/syscalls.$s" | awk '{printf "%s%s %.2f", (NR>1?", ":""), $1, $2}'))"
}

start_servers
if has_server pipeserver; then
  TRANSPORT="$(grep -oE "[Tt]ransport[: ]+[a-z]+[^,]*" "$WORK/pipeserver.log" | head -1 || true)"
  TRANSPORT="${TRANSPORT:-sockets (the only transport in this build)}"
fi
echo "== warm-up ${WARMUP}s each (tiered JIT, PGO)"
for s in "${SERVERS[@]}"; do
  taskset -c 1 wrk -t1 -c64 -d"${WARMUP}s" "http://127.0.0.1:${PORT[$s]}/plaintext" >/dev/null
  taskset -c 1 wrk -t1 -c64 -d5s "http://127.0.0.1:${PORT[$s]}/json" >/dev/null
  taskset -c 1 wrk -t1 -c256 -d5s -s "$PIPELINE_LUA" "http://127.0.0.1:${PORT[$s]}/plaintext" >/dev/null
done

SCENARIOS=("plaintext-64|64|/plaintext|" "plaintext-pipelined16-256|256|/plaintext|pipe" "json-64|64|/json|")
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r of $ROUNDS"
  n=${#SERVERS[@]}
  for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r name conns path pipe <<<"$sc"
    # rotate which server goes first, so none always runs on a warmer (or cooler) machine
    for i in $(seq 0 $((n - 1))); do
      s=${SERVERS[$(( (i + r - 1) % n ))]}
      run_wrk "$s" "$name" "$conns" "$path" "$pipe"
    done
  done
done
declare -A RSS
for s in "${SERVERS[@]}"; do RSS[$s]=$(rss_sum "$s" VmHWM); done

echo "== syscalls per request (strace -c -f, ${STRACE_SECS}s of /plaintext at 64 connections, a separate run)"
for s in "${SERVERS[@]}"; do strace_run "$s"; done

gc_before="" gc_after=""
if has_server pipeserver; then
  echo "== GC collections in ${SECS}s of /json load after warm-up (PipeServer heartbeat)"
  gc_line() { grep -o "GC gen0=[0-9]* gen1=[0-9]* gen2=[0-9]*" "$WORK/pipeserver.log" | tail -1; }
  sleep 1.2; gc_before="$(gc_line)"
  taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:${PORT[pipeserver]}/json" >/dev/null
  sleep 1.2; gc_after="$(gc_line)"
  echo "   before: $gc_before   after: $gc_after"
fi
stop_servers

ALLOC_LINE=""
if has_server pipeserver; then
  # The in-process probe on real sockets (benchmarks/PipeServer.Benchmarks/SocketAllocations.cs): 64 keep-alive
  # clients, process-wide allocated bytes over the run divided by requests (client threads included).
  probe_transport="$(grep -oE "Transport [a-z]+" <<<"$TRANSPORT" | awk '{print $2}' | head -1)"
  echo "== bytes allocated per request (alloc probe, transport ${probe_transport:-auto})"
  ALLOC_LINE="$(taskset -c 0 dotnet "$TOOLS_DLL" alloc --requests 64000 --clients 64 --transport "${probe_transport:-auto}" 2>&1 | tail -1)"
  echo "   $ALLOC_LINE"
fi

declare -A IDLE
for s in "${SERVERS[@]}"; do IDLE[$s]="n/a"; done
[ "${SKIP_IDLE:-0}" = "1" ] || { echo "== memory per idle keep-alive connection (${IDLE_CONNECTIONS})"; start_servers; }
for s in "${SERVERS[@]}"; do
  if [ "${SKIP_IDLE:-0}" = "1" ]; then continue; fi
  rss0=$(rss_sum "$s" VmRSS)
  taskset -c 1 dotnet "$TOOLS_DLL" idle --port "${PORT[$s]}" --count "$IDLE_CONNECTIONS" --hold 8 >"$WORK/idle.$s" 2>&1 &
  tool=$!
  for _ in $(seq 1 600); do grep -q READY "$WORK/idle.$s" && break; kill -0 $tool 2>/dev/null || break; sleep 0.1; done
  sleep 3
  rss1=$(rss_sum "$s" VmRSS)
  wait $tool || true
  if grep -q READY "$WORK/idle.$s"; then
    IDLE[$s]=$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE_CONNECTIONS" 'BEGIN { printf "%.2f", (b - a) / n }')
  else IDLE[$s]="n/a"; cat "$WORK/idle.$s" >&2; fi
  echo "   $s: RSS ${rss0} KiB -> ${rss1} KiB with ${IDLE_CONNECTIONS} idle connections: ${IDLE[$s]} KiB each"
done
stop_servers

AOT_START=""
if [ "${SKIP_AOT:-0}" != "1" ] && has_server pipeserver; then
  echo "== Native AOT: start-up to first served request, size, RSS"
  AOT="$ROOT/artifacts/publish-aot/PipeServer.Host"
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
col_median() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "n/a") printf "%.2f", a / b; else print "n/a" }'; }
# target_line TEXT FIGURE OP THRESHOLD UNIT: "- TEXT: FIGURE (met|not met)", or "(not measured)" when the figure is n/a.
target_line() {
  local verdict
  verdict=$(awk -v v="$2" -v op="$3" -v t="$4" 'BEGIN { if (v == "" || v == "n/a") print "not measured"; else if ((op == ">=" && v + 0 >= t) || (op == "<=" && v + 0 <= t)) print "met"; else print "not met" }')
  if [ "$verdict" = "not measured" ]; then echo "- $1: n/a (not measured in this run)"; else echo "- $1: $2$5 ($verdict)"; fi
}
label_of() { case $1 in pipeserver) echo "PipeServer";; kestrel) echo "Kestrel";; kestrel-tuned) echo "Kestrel, tuned";; nginx) echo "nginx";; esac; }
mkdir -p "$ROOT/benchmarks/results"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dotnet_version="$(dotnet --version)"
nginx_version="$(nginx -v 2>&1 | sed 's|.*nginx/||' || true)"
cpu="$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo) ($(nproc) cores)"
stamp="$(date -u +%Y%m%d-%H%M%S)"
out="$ROOT/benchmarks/results/e2e-$stamp.md"
svg="$ROOT/benchmarks/results/e2e-$stamp.svg"
{
  echo "# End-to-end: PipeServer, Kestrel, tuned Kestrel, nginx"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: $commit; .NET SDK $dotnet_version; nginx $nginx_version; machine: $cpu, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); kernel $(uname -r)"
  has_server pipeserver && echo "- PipeServer transport: $TRANSPORT${PIPESERVER_ARGS:+; options: $PIPESERVER_ARGS}"
  echo "- method: each server pinned to core 0, wrk (1 thread) to core 1; ${WARMUP}s warm-up each; $ROUNDS rounds of ${SECS}s per scenario, server order rotated each round; medians"
  echo "- servers: Release builds, workstation non-concurrent GC, tiered PGO for the .NET ones; Kestrel is a terminal middleware writing preformatted bytes (benchmarks/KestrelBaseline); tuned Kestrel adds inline scheduling and DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1; nginx is one worker answering \`return 200\` (benchmarks/nginx/nginx.conf)"
  echo
  echo "| scenario | server | requests/s | p50 (us) | p99 (us) | CPU per request (us) | context switches per request |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  for sc in "${SCENARIOS[@]}"; do
    IFS='|' read -r name _ _ pipe <<<"$sc"
    for s in "${SERVERS[@]}"; do
      p99=$(col_median "$name.$s" 3); [ -n "$pipe" ] && p99="n/a"  # wrk does not time requests inside a pipelined batch
      printf "| %s | %s | %.0f | %.0f | %s | %.2f | %.3f |\n" "$name" "$(label_of "$s")" "$(col_median "$name.$s" 1)" "$(col_median "$name.$s" 2)" \
        "$p99" "$(col_median "$name.$s" 4)" "$(col_median "$name.$s" 5)"
    done
  done
  if has_server pipeserver && [ ${#SERVERS[@]} -gt 1 ]; then
    echo
    echo "PipeServer's figure divided by each other server's, same run (requests/s: higher is better; CPU per request: lower is better):"
    echo
    printf "| scenario | metric |"; for s in "${SERVERS[@]}"; do [ "$s" = pipeserver ] || printf " ÷ %s |" "$(label_of "$s")"; done; echo
    printf "| --- | --- |"; for s in "${SERVERS[@]}"; do [ "$s" = pipeserver ] || printf " ---: |"; done; echo
    for sc in "${SCENARIOS[@]}"; do
      IFS='|' read -r name _ _ _ <<<"$sc"
      for col in 1 4; do
        printf "| %s | %s |" "$name" "$([ $col = 1 ] && echo requests/s || echo CPU per request)"
        for s in "${SERVERS[@]}"; do [ "$s" = pipeserver ] || printf " %s |" "$(ratio "$(col_median "$name.pipeserver" $col)" "$(col_median "$name.$s" $col)")"; done; echo
      done
    done
  fi
  echo
  echo "Syscalls per request (strace -c -f over ${STRACE_SECS}s of /plaintext at 64 connections, a separate run; the four most frequent, with how many of them failed, e.g. EAGAIN):"
  echo
  echo "| server | syscalls per request | most frequent |"
  echo "| --- | ---: | --- |"
  for s in "${SERVERS[@]}"; do
    printf "| %s | %s | %s |\n" "$(label_of "$s")" "$(cat "$WORK/syscalls-total.$s")" \
      "$(head -4 "$WORK/syscalls.$s" | awk '{printf "%s%s %.2f%s", (NR>1?", ":""), $1, $2, ($3 >= 0.005 ? sprintf(" (%.2f failed)", $3) : "")}')"
  done
  echo
  echo "| memory | $(for s in "${SERVERS[@]}"; do printf "%s | " "$(label_of "$s")"; done)"
  echo "| --- | $(for s in "${SERVERS[@]}"; do printf -- "---: | "; done)"
  echo "| peak RSS under load (MiB) | $(for s in "${SERVERS[@]}"; do printf "%.1f | " "$(awk -v v="${RSS[$s]}" 'BEGIN{print v/1024}')"; done)"
  echo "| RSS per idle keep-alive connection (KiB, $IDLE_CONNECTIONS open) | $(for s in "${SERVERS[@]}"; do printf "%s | " "${IDLE[$s]}"; done)"
  if has_server pipeserver; then
    echo
    echo "GC collections in PipeServer over ${SECS}s of /json at 64 connections after warm-up: before \`$gc_before\`, after \`$gc_after\`."
  fi
  if [ -n "$AOT_START" ]; then
    echo
    echo "Native AOT (\`./build.sh publish --aot\`): start-up to first served request ${AOT_START} ms (median of 7, measured by a curl loop, so an upper bound), executable $(awk -v k="$AOT_SIZE" 'BEGIN{printf "%.1f MiB", k/1024}'), RSS ${aot_rss} KiB after one request. The JIT build takes ${JIT_START} ms."
  fi
  if has_server pipeserver; then
    echo
    echo "## Issue 11 targets, from this run"
    echo
    r_k=$(ratio "$(col_median plaintext-64.pipeserver 1)" "$(has_server kestrel && col_median plaintext-64.kestrel 1)")
    r_t=$(ratio "$(col_median plaintext-64.pipeserver 1)" "$(has_server kestrel-tuned && col_median plaintext-64.kestrel-tuned 1)")
    r_n=$(ratio "$(col_median plaintext-64.pipeserver 1)" "$(has_server nginx && col_median plaintext-64.nginx 1)")
    c_k=$(ratio "$(col_median plaintext-64.pipeserver 4)" "$(has_server kestrel && col_median plaintext-64.kestrel 4)")
    p_k=$(ratio "$(col_median plaintext-pipelined16-256.pipeserver 1)" "$(has_server kestrel && col_median plaintext-pipelined16-256.kestrel 1)")
    sys=$(cat "$WORK/syscalls-total.pipeserver")
    futex=$(awk '$1 == "futex" {printf "%.3f", $2}' "$WORK/syscalls.pipeserver"); futex=${futex:-0.000}
    alloc=$(sed -n 's/.*: \([0-9.]*\) bytes allocated per request.*/\1/p' <<<"$ALLOC_LINE"); alloc=${alloc:-n/a}
    target_line "/plaintext, 64 connections: requests/s ≥ 1.75× Kestrel's" "$r_k" ">=" 1.75 "×"
    target_line "/plaintext, 64 connections: requests/s ≥ 1.4× tuned Kestrel's" "$r_t" ">=" 1.4 "×"
    target_line "/plaintext, 64 connections: requests/s ≥ 0.8× nginx's (aim: past 1.0×)" "$r_n" ">=" 0.8 "×"
    target_line "/plaintext, 64 connections: CPU per request ≤ 0.6× Kestrel's" "$c_k" "<=" 0.6 "×"
    target_line "pipelined ×16, 256 connections: requests/s ≥ 1.5× Kestrel's" "$p_k" ">=" 1.5 "×"
    target_line "syscalls per unpipelined request ≤ 2.2 (strace -c -f)" "$sys" "<=" 2.2 ""
    target_line "no futex wake-up per request (futex calls per request ≤ 0.05)" "$futex" "<=" 0.05 ""
    target_line "RSS per idle keep-alive connection ≤ 3 KiB ($IDLE_CONNECTIONS open)" "${IDLE[pipeserver]}" "<=" 3 " KiB"
    target_line "bytes allocated per request ≤ 1 (0 B stays true; the probe's client threads add a fraction)" "$alloc" "<=" 1 " B"
  fi
  echo
  echo "![requests/s and CPU per request by server]($(basename "$svg"))"
} >"$out"

# The chart: requests/s (left) and CPU per request (right) for the two unpipelined scenarios, by server.
{
  for s in "${SERVERS[@]}"; do
    printf '"%s" %s %s %s %s\n' "$(label_of "$s")" "$(col_median "plaintext-64.$s" 1)" "$(col_median "json-64.$s" 1)" \
      "$(col_median "plaintext-64.$s" 4)" "$(col_median "json-64.$s" 4)"
  done
} >"$WORK/chart.dat"
gnuplot <<GNUPLOT
set terminal svg size 960,420 dynamic font "sans,12" background rgb "white"
set output "$svg"
set multiplot layout 1,2 title "PipeServer $commit, one core each, wrk on the other ($(date -u +%Y-%m-%d))"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside bottom center horizontal
set xrange [-0.6:${#SERVERS[@]}-0.4]
set xtics nomirror
set yrange [0:*]
set title "requests per second (higher is better)"
set format y "%.0s%c"
plot "$WORK/chart.dat" using 2:xtic(1) title "/plaintext, 64 conns", "" using 3 title "/json, 64 conns"
set title "server CPU per request, µs (lower is better)"
set format y "%g"
plot "$WORK/chart.dat" using 4:xtic(1) title "/plaintext, 64 conns", "" using 5 title "/json, 64 conns"
unset multiplot
GNUPLOT
[ -s "$svg" ] || echo "warning: the chart $svg was not generated (gnuplot failed?)" >&2
cp "$out" "$ROOT/benchmarks/results/latest.md"
cp "$svg" "$ROOT/benchmarks/results/latest.svg"
sed -i "s|($(basename "$svg"))|(latest.svg)|" "$ROOT/benchmarks/results/latest.md"
echo
cat "$out"
