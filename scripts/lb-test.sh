#!/usr/bin/env bash
# ./build.sh lb-test [SECONDS]: a rolling restart behind a real HAProxy (deploy/haproxy.cfg), on loopback.
# Two PipeServer instances with --drain-delay above HAProxy's inter x fall; steady keep-alive load through
# HAProxy; each instance in turn gets SIGTERM, must exit 0, and is started again on its port. Reports total
# requests, failed requests and non-2xx responses. Target: zero failed, zero non-2xx.
source "$(dirname "$0")/common.sh"
DURATION="${1:-30}"
ensure_tool haproxy
ensure_tool wrk
raise_fd_limit
build_server

LB=$(free_port); P1=$(free_port); P2=$(free_port)
while [ "$P2" = "$P1" ] || [ "$P2" = "$LB" ]; do P2=$(free_port); done
LOGS="$(mktemp -d)"
declare -A PIDS=()

start_instance() { # name port
  dotnet "$SERVER_DLL" --address 127.0.0.1 --port "$2" --drain-delay 2 --shutdown-timeout 10 --heartbeat-interval 0 \
    >>"$LOGS/$1.log" 2>&1 &
  PIDS[$1]=$!
  for _ in $(seq 1 200); do
    curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "instance $1 did not become ready" >&2; exit 1
}

cleanup() {
  for pid in "${PIDS[@]}" ${HAPROXY_PID:-}; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}" ${HAPROXY_PID:-}; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
ensure_tool curl

start_instance s1 "$P1"
start_instance s2 "$P2"
PIPESERVER_LB_BIND="127.0.0.1:$LB" PIPESERVER_S1="127.0.0.1:$P1" PIPESERVER_S2="127.0.0.1:$P2" \
  haproxy -f "$ROOT/deploy/haproxy.cfg" -db >"$LOGS/haproxy.log" 2>&1 &
HAPROXY_PID=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$LB/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
sleep 1 # both backends marked up

LUA="$(mktemp --suffix .lua)"
cat >"$LUA" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0 end
function response(status, headers, body) if status < 200 or status > 299 then non2xx = non2xx + 1 end end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d status=%d\n",
    summary.requests, n, e.connect, e.read, e.write, e.timeout, e.status))
end
LUA

echo "== ${DURATION}s of keep-alive load through HAProxy (127.0.0.1:$LB) to s1:$P1 and s2:$P2"
wrk -t2 -c32 -d"${DURATION}s" --latency -s "$LUA" "http://127.0.0.1:$LB/json" >"$LOGS/wrk.out" 2>&1 &
WRK=$!
fail=0
restart() { # name port
  local t0=$SECONDS
  kill -TERM "${PIDS[$1]}"
  set +e; wait "${PIDS[$1]}"; local code=$?; set -e
  echo "   $1: exit code $code after $(( SECONDS - t0 ))s; restarting on :$2"
  [ "$code" -eq 0 ] || fail=1
  start_instance "$1" "$2"
}
sleep $(( DURATION / 5 )); echo "-- rolling restart: s1"; restart s1 "$P1"
sleep $(( DURATION / 5 )); echo "-- rolling restart: s2"; restart s2 "$P2"
wait "$WRK" || true
rm -f "$LUA"
cat "$LOGS/wrk.out"
result="$(grep '^RESULT' "$LOGS/wrk.out")"
requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$result")
non2xx=$(sed 's/.*non2xx=\([0-9]*\).*/\1/' <<<"$result")
errors=$(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] != "requests" && kv[1] != "non2xx") s += kv[2] } } END { print s + 0 }' <<<"$result")
echo "lb-test: total requests ${requests}, failed requests ${errors}, non-2xx ${non2xx}"
grep -hE "Shutdown complete" "$LOGS"/s1.log "$LOGS"/s2.log | sed 's/^/   /'
[ "$errors" -eq 0 ] && [ "$non2xx" -eq 0 ] || fail=1
rm -rf "$LOGS"
[ "$fail" -eq 0 ] && echo "lb-test: PASS" || echo "lb-test: FAIL"
exit "$fail"
