#!/usr/bin/env bash
# ./build.sh bench files [SECONDS]: PipeServer --root beside nginx (sendfile on) serving the same files —
# a 1 KiB file at 64 connections (requests/s) and a 32 MiB download at 4 connections (bytes/s). Each server
# is pinned to core 0 and wrk to core 1; a warm-up of WARMUP seconds (default 15, as bench e2e: tiered JIT and
# PGO take that long on a loaded core, and a 2 s warm-up measured the JIT, not the server), then one run of
# SECONDS (default 5) per scenario. Both servers get the same warm-up.
# A smoke run, not a measurement: one round, no rotation, and on a shared machine the figures move by
# tens of percent. PipeServer's allocation figure is its own total (GC.GetTotalAllocatedBytes, logged at
# exit) divided by the requests it served, start-up included: an upper bound on bytes per request.
source "$(dirname "$0")/common.sh"
SECONDS_PER_RUN="${1:-5}"
WARMUP="${WARMUP:-15}"
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

measure() { # SERVER PORT -> sets SMALL_RPS BIG_BPS
  run_wrk "$2" 64 /small.bin "$WARMUP" >/dev/null   # warm-up (JIT, page cache)
  read -r SMALL_RPS _ <<<"$(run_wrk "$2" 64 /small.bin "$SECONDS_PER_RUN")"
  run_wrk "$2" 4 /big.bin 2 >/dev/null
  read -r _ BIG_BPS <<<"$(run_wrk "$2" 4 /big.bin "$SECONDS_PER_RUN")"
  echo "$1: 1 KiB x 64 connections: $SMALL_RPS requests/s; 32 MiB x 4 connections: $((BIG_BPS / 1048576)) MiB/s"
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
measure PipeServer "$PORT"; P_SMALL=$SMALL_RPS; P_BIG=$BIG_BPS
served="$(curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^http_server_request_duration_seconds_count/ {s+=$NF} END {printf "%d", s}')"
stop_server
cp "$SERVER_LOG" "$WORK/pipeserver.log"
allocated="$(sed -n 's/.* \([0-9]*\) bytes allocated in total.*/\1/p' "$SERVER_LOG" | tail -1)"

echo "nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') (sendfile on, one worker, pinned to core 0)..."
NPORT="$(free_port)"
mkdir -p "$WORK/nginx"
sed -e "s|__PORT__|$NPORT|g" -e "s|__PREFIX__|$WORK/nginx|g" -e "s|__ROOT__|$FILES|g" "$ROOT/benchmarks/nginx/nginx-files.conf" >"$WORK/nginx/nginx.conf"
taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 & NGINX_PID=$!
for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$NPORT/small.bin" && break; sleep 0.05; done
measure nginx "$NPORT"; N_SMALL=$SMALL_RPS; N_BIG=$BIG_BPS

echo
echo "| scenario | PipeServer | nginx | ratio |"
echo "| --- | ---: | ---: | ---: |"
awk -v p="$P_SMALL" -v n="$N_SMALL" 'BEGIN { printf "| 1 KiB file, 64 connections: requests/s | %.0f | %.0f | %.2f |\n", p, n, p / n }'
awk -v p="$P_BIG" -v n="$N_BIG" 'BEGIN { printf "| 32 MiB file, 4 connections: MiB/s | %.0f | %.0f | %.2f |\n", p / 1048576, n / 1048576, p / n }'
[ -n "$allocated" ] && [ "${served:-0}" -gt 0 ] && awk -v a="$allocated" -v r="$served" 'BEGIN { printf "PipeServer allocated %.0f bytes per request (total %d bytes over %d requests, start-up included: an upper bound)\n", a / r, a, r }'
echo "(one short round on a shared 2-core machine: a smoke run, not a measurement)"
