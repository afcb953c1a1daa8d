#!/usr/bin/env bash
# ./build.sh bench files [SECONDS] [server options]: PipeServer --root beside nginx (sendfile on) serving the
# same files — a 1 KiB file at 64 connections (requests/s) and a 32 MiB download at 4 connections (bytes/s).
# Both servers run side by side, each pinned to core 0, and wrk (1 thread) to core 1; each is warmed up for
# WARMUP seconds (default 15, as bench e2e: tiered JIT and PGO take that long on a loaded core, and a 2 s
# warm-up measured the JIT, not the server), then ROUNDS rounds (default 3) of SECONDS (default 5) per scenario
# and server, the order rotated each round so neither always runs second; the report gives medians, each
# round's ratio, and CPU per request / per download (utime+stime of the process). PipeServer's allocation
# figure is its own total (GC.GetTotalAllocatedBytes, logged at exit) divided by the requests it served,
# start-up included: an upper bound on bytes per request.
source "$(dirname "$0")/common.sh"
SECONDS_PER_RUN="${1:-5}"
WARMUP="${WARMUP:-15}"
ROUNDS="${ROUNDS:-3}"
ensure_tool wrk
ensure_tool taskset util-linux
ensure_tool curl
ensure_tool nginx nginx-light
raise_fd_limit
build_server

WORK="$(mktemp -d)"
FILES="$WORK/www"
mkdir -p "$FILES"
head -c 1024 /dev/urandom >"$FILES/small.bin"
head -c $((32 * 1024 * 1024)) /dev/urandom >"$FILES/big.bin"
# nginx's worker runs as nobody when started by root: the tree must be readable by others (mktemp -d is 0700).
chmod 755 "$WORK" "$FILES"; chmod 644 "$FILES"/*
NGINX_PID=""
cleanup() {
  stop_server
  if [ -n "$NGINX_PID" ]; then kill -TERM "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# run_wrk PORT CONNECTIONS PATH SECONDS: prints "requests/s bytes/s" from wrk's summary.
run_wrk() {
  local out
  out="$(taskset -c 1 wrk -t 1 -c "$2" -d "${4}s" --latency "http://127.0.0.1:$1$3" 2>&1)"
  local rps bps
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  bps="$(awk '/Transfer\/sec/ {v=$2; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2); m=(u=="GB"?1073741824:u=="MB"?1048576:u=="KB"?1024:1); printf "%.0f", n*m}' <<<"$out")"
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then echo "wrk reported errors:" >&2; echo "$out" >&2; fi
  echo "$rps $bps"
}

EXTRA_ARGS="${*:2}"
echo "PipeServer --root (${EXTRA_ARGS:-default transport}, pinned to core 0)..."
SERVER_LOG="$(mktemp)"
taskset -c 0 dotnet "$SERVER_DLL" --address 127.0.0.1 --port 0 --heartbeat-interval 0 --metrics --root "$FILES" "${@:2}" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 400); do
  PORT="$(sed -n 's/.*Listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$SERVER_LOG" | head -1)"
  [ -n "$PORT" ] && break; sleep 0.05
done
[ -n "$PORT" ] || { cat "$SERVER_LOG" >&2; exit 1; }

echo "nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') (sendfile on, one worker, pinned to core 0)..."
NPORT="$(free_port)"
mkdir -p "$WORK/nginx"
sed -e "s|__PORT__|$NPORT|g" -e "s|__PREFIX__|$WORK/nginx|g" -e "s|__ROOT__|$FILES|g" "$ROOT/benchmarks/nginx/nginx-files.conf" >"$WORK/nginx/nginx.conf"
taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 & NGINX_PID=$!
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$NPORT/small.bin" && break; sleep 0.05; done

declare -A PID=([pipeserver]=$SERVER_PID [nginx]=$NGINX_PID) # for common.sh's cpu_ticks (nginx's worker is a child)
port_of() { if [ "$1" = nginx ]; then echo "$NPORT"; else echo "$PORT"; fi; }
CLK_TCK="$(getconf CLK_TCK)"

for s in pipeserver nginx; do
  run_wrk "$(port_of $s)" 64 /small.bin "$WARMUP" >/dev/null   # warm-up (JIT, page cache)
  run_wrk "$(port_of $s)" 4 /big.bin 5 >/dev/null
done

# one_round SERVER SCENARIO: appends "rate cpu_us_per_unit" to WORK/SCENARIO.SERVER (unit: a request, or a 32 MiB download)
one_round() {
  local s=$1 sc=$2 t0 t1 rate bps
  t0=$(cpu_ticks "$s")
  if [ "$sc" = small ]; then read -r rate bps <<<"$(run_wrk "$(port_of "$s")" 64 /small.bin "$SECONDS_PER_RUN")"
  else read -r rate bps <<<"$(run_wrk "$(port_of "$s")" 4 /big.bin "$SECONDS_PER_RUN")"; rate=$bps; fi
  t1=$(cpu_ticks "$s")
  awk -v r="$rate" -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v sc="$sc" -v secs="$SECONDS_PER_RUN" 'BEGIN {
        units = (sc == "small") ? r * secs : r * secs / 33554432
        printf "%s %.2f\n", r, (units > 0 ? d / hz * 1e6 / units : 0) }' >>"$WORK/$sc.$s"
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="pipeserver nginx"; else order="nginx pipeserver"; fi
  for sc in small big; do for s in $order; do one_round "$s" "$sc"; done; done
  echo "round $r of $ROUNDS done"
done
median_col() { sort -n -k"$2" "$1" | awk -v c="$2" '{v[NR] = $c} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
P_SMALL=$(median_col "$WORK/small.pipeserver" 1); N_SMALL=$(median_col "$WORK/small.nginx" 1)
P_BIG=$(median_col "$WORK/big.pipeserver" 1);     N_BIG=$(median_col "$WORK/big.nginx" 1)
P_SMALL_CPU=$(median_col "$WORK/small.pipeserver" 2); N_SMALL_CPU=$(median_col "$WORK/small.nginx" 2)
P_BIG_CPU=$(median_col "$WORK/big.pipeserver" 2);     N_BIG_CPU=$(median_col "$WORK/big.nginx" 2)
round_ratios() { paste -d' ' "$WORK/$1.pipeserver" "$WORK/$1.nginx" | awk '{printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / $3}'; }

served="$(curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^http_server_request_duration_seconds_count/ {s+=$NF} END {printf "%d", s}')"
stop_server
cp "$SERVER_LOG" "$WORK/pipeserver.log"
allocated="$(sed -n 's/.* \([0-9]*\) bytes allocated in total.*/\1/p' "$SERVER_LOG" | tail -1)"

echo
echo "Medians of $ROUNDS rounds of ${SECONDS_PER_RUN}s after ${WARMUP}s of warm-up (PipeServer: ${EXTRA_ARGS:-default transport}):"
echo
echo "| scenario | PipeServer | nginx | ratio | each round's ratio |"
echo "| --- | ---: | ---: | ---: | --- |"
awk -v p="$P_SMALL" -v n="$N_SMALL" -v rr="$(round_ratios small)" 'BEGIN { printf "| 1 KiB file, 64 connections: requests/s | %.0f | %.0f | %.2f | %s |\n", p, n, p / n, rr }'
awk -v p="$P_SMALL_CPU" -v n="$N_SMALL_CPU" 'BEGIN { printf "| ↳ CPU per request (us) | %.2f | %.2f | %.2f | |\n", p, n, p / n }'
awk -v p="$P_BIG" -v n="$N_BIG" -v rr="$(round_ratios big)" 'BEGIN { printf "| 32 MiB file, 4 connections: MiB/s | %.0f | %.0f | %.2f | %s |\n", p / 1048576, n / 1048576, p / n, rr }'
awk -v p="$P_BIG_CPU" -v n="$N_BIG_CPU" 'BEGIN { printf "| ↳ CPU per download (us) | %.0f | %.0f | %.2f | |\n", p, n, p / n }'
[ -n "$allocated" ] && [ "${served:-0}" -gt 0 ] && awk -v a="$allocated" -v r="$served" 'BEGIN { printf "PipeServer allocated %.0f bytes per request (total %d bytes over %d requests, start-up included: an upper bound)\n", a / r, a, r }'
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (above ~2, other work shared the machine)."
