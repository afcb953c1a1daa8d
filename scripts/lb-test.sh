#!/usr/bin/env bash
# ./build.sh lb-test [haproxy|nginx] [SECONDS]: a rolling restart behind a real balancer on loopback, run with
# the shipped file itself: deploy/haproxy.cfg as is (it reads its addresses from the environment), or
# deploy/nginx-pipeserver.conf.template with its three ${PIPESERVER_*} addresses filled by envsubst, the way
# docs/deploy.md installs it, included from a minimal nginx.conf that only points pid, logs and temp files
# into a scratch directory.
#
#   1. Replay probe (a few seconds): the balancer in front of s1 and a backend that reads each request and
#      closes without answering (scripts/lb-test.py closer). GETs must all come back 200 (retried on s1);
#      no POST may reach a backend twice (answered or failed, but never replayed).
#   2. Rolling restart (SECONDS, default 30): two PipeServer instances with --drain-delay above the
#      balancer's time to notice; keep-alive GET load (wrk) plus POSTs with unique ids (scripts/lb-test.py
#      client); each instance in turn gets SIGTERM, must exit 0, and is started again on its port.
#      Passes with 0 failed and 0 non-2xx GETs, every answered POST seen by a backend exactly once and every
#      failed POST never seen (the backends' access logs record each POST's id as its body length).
#   With HAProxy, its own log must also hold the per-request httplog lines.
source "$(dirname "$0")/common.sh"
BALANCER=haproxy
case "${1:-}" in haproxy|nginx) BALANCER="$1"; shift ;; esac
DURATION="${1:-30}"
case "$BALANCER" in
  haproxy) ensure_tool haproxy ;;
  nginx) ensure_tool nginx nginx-light; ensure_tool envsubst gettext-base ;;
esac
ensure_tool wrk
ensure_tool curl
ensure_tool python3
raise_fd_limit
build_server
HELPER="$ROOT/scripts/lb-test.py"

LB=$(free_port); P1=$(free_port); P2=$(free_port); PC=$(free_port)
while [ "$P1" = "$LB" ]; do P1=$(free_port); done
while [ "$P2" = "$LB" ] || [ "$P2" = "$P1" ]; do P2=$(free_port); done
while [ "$PC" = "$LB" ] || [ "$PC" = "$P1" ] || [ "$PC" = "$P2" ]; do PC=$(free_port); done
LOGS="$(mktemp -d)"
chmod 755 "$LOGS" # nginx's workers run as nobody when started by root
declare -A PIDS=()
BAL_PID=""; CLOSER_PID=""; WRK=""; POSTS=""

start_instance() { # name port
  dotnet "$SERVER_DLL" --address 127.0.0.1 --port "$2" --drain-delay 2 --shutdown-timeout 10 --heartbeat-interval 0 \
    --access-log >>"$LOGS/$1.log" 2>&1 &
  PIDS[$1]=$!
  for _ in $(seq 1 200); do
    curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "instance $1 did not become ready" >&2; exit 1
}

start_balancer() { # s1-address s2-address
  case "$BALANCER" in
    haproxy)
      PIPESERVER_LB_BIND="127.0.0.1:$LB" PIPESERVER_S1="$1" PIPESERVER_S2="$2" \
        haproxy -f "$ROOT/deploy/haproxy.cfg" -db >>"$LOGS/haproxy.log" 2>&1 &
      ;;
    nginx)
      mkdir -p "$LOGS/nginx"
      PIPESERVER_LB_BIND="127.0.0.1:$LB" PIPESERVER_S1="$1" PIPESERVER_S2="$2" \
        envsubst '$PIPESERVER_LB_BIND $PIPESERVER_S1 $PIPESERVER_S2' \
        <"$ROOT/deploy/nginx-pipeserver.conf.template" >"$LOGS/nginx/pipeserver.conf"
      cat >"$LOGS/nginx/nginx.conf" <<NGINX
daemon off;
worker_processes 2;
pid $LOGS/nginx/nginx.pid;
error_log $LOGS/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $LOGS/nginx/client_body;
    proxy_temp_path $LOGS/nginx/proxy;
    fastcgi_temp_path $LOGS/nginx/fastcgi;
    uwsgi_temp_path $LOGS/nginx/uwsgi;
    scgi_temp_path $LOGS/nginx/scgi;
    include $LOGS/nginx/pipeserver.conf;
}
NGINX
      nginx -p "$LOGS/nginx" -c "$LOGS/nginx/nginx.conf" >>"$LOGS/nginx-error.log" 2>&1 &
      ;;
  esac
  BAL_PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$LB/healthz" >/dev/null 2>&1 && return
    kill -0 "$BAL_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$LOGS"/haproxy.log "$LOGS"/nginx-error.log 2>/dev/null >&2
  echo "$BALANCER did not start" >&2; exit 1
}

stop_pid() { # pid: SIGTERM, then SIGKILL after 5 s
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cleanup() {
  for pid in ${WRK:-} ${POSTS:-} "${PIDS[@]}" ${BAL_PID:-} ${CLOSER_PID:-}; do stop_pid "$pid"; done
  rm -rf "$LOGS"
}
trap cleanup EXIT
fail=0

start_instance s1 "$P1"
start_instance s2 "$P2"

echo "== replay probe: $BALANCER in front of s1:$P1 and a backend that closes without answering (:$PC)"
python3 "$HELPER" closer "$PC" "$LOGS/closer.log" &
CLOSER_PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PC") 2>/dev/null && break; sleep 0.05; done
start_balancer "127.0.0.1:$P1" "127.0.0.1:$PC"
python3 "$HELPER" client "http://127.0.0.1:$LB/json" GET 1 20 8 10 "$LOGS/probe-get.txt"
python3 "$HELPER" client "http://127.0.0.1:$LB/echo" POST 20 20 8 10 "$LOGS/probe-post.txt"
stop_pid "$BAL_PID"; BAL_PID=""
stop_pid "$CLOSER_PID"; CLOSER_PID=""
get_ok=$(grep -c ' 200$' "$LOGS/probe-get.txt" || true)
get_sent=$(wc -l <"$LOGS/probe-get.txt")
closer_gets=$(grep -c '^GET ' "$LOGS/closer.log" || true)
closer_posts=$(grep -c '^POST ' "$LOGS/closer.log" || true)
echo "   GET: $get_ok of $get_sent answered 200 ($closer_gets reached the closing backend and had to be retried)"
[ "$get_ok" -eq "$get_sent" ] && [ "$get_sent" -gt 0 ] || { echo "   FAIL: a GET the closing backend dropped was not retried"; fail=1; }
echo -n "   "
python3 "$HELPER" tally "$LOGS/probe-post.txt" at-most-once "$LOGS/closer.log" "$LOGS/s1.log" \
  || { echo "   FAIL: a POST was replayed"; fail=1; }
[ "$closer_gets" -gt 0 ] && [ "$closer_posts" -gt 0 ] \
  || { echo "   FAIL: the probe is inconclusive: no GET or no POST reached the closing backend"; fail=1; }

start_balancer "127.0.0.1:$P1" "127.0.0.1:$P2"
LUA="$LOGS/count.lua"
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

# POST ids start at 100 (the probe used 20-39) and stay below 15,000 (HAProxy's 16 KiB buffer, see lb-test.py).
post_rate=$(( 15000 / DURATION )); [ "$post_rate" -gt 100 ] && post_rate=100
echo "== ${DURATION}s of keep-alive load through $BALANCER (127.0.0.1:$LB) to s1:$P1 and s2:$P2:" \
  "GET /json on 32 connections, POST /echo with unique ids (${post_rate}/s)"
wrk -t2 -c32 -d"${DURATION}s" --latency -s "$LUA" "http://127.0.0.1:$LB/json" >"$LOGS/wrk.out" 2>&1 &
WRK=$!
python3 "$HELPER" client "http://127.0.0.1:$LB/echo" POST 100 15000 "$post_rate" "$DURATION" "$LOGS/posts.txt" &
POSTS=$!
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
wait "$WRK" || true; WRK=""
wait "$POSTS" || true; POSTS=""
# Stop the instances so that their access logs are complete before they are read.
for name in s1 s2; do stop_pid "${PIDS[$name]}"; unset "PIDS[$name]"; done
cat "$LOGS/wrk.out"
result="$(grep '^RESULT' "$LOGS/wrk.out")"
requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$result")
non2xx=$(sed 's/.*non2xx=\([0-9]*\).*/\1/' <<<"$result")
errors=$(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] != "requests" && kv[1] != "non2xx") s += kv[2] } } END { print s + 0 }' <<<"$result")
echo "lb-test ($BALANCER): GET requests ${requests}, failed requests ${errors}, non-2xx ${non2xx}"
[ "$errors" -eq 0 ] && [ "$non2xx" -eq 0 ] || fail=1
echo -n "lb-test ($BALANCER): "
python3 "$HELPER" tally "$LOGS/posts.txt" exactly-once "$LOGS/s1.log" "$LOGS/s2.log" || fail=1
awk '$2 !~ /^2/ { n[$2]++ } END { for (s in n) printf "   failed POSTs: %d x %s\n", n[s], s }' "$LOGS/posts.txt"
grep -hE "Shutdown complete" "$LOGS"/s1.log "$LOGS"/s2.log | sed 's/^/   /'
if [ "$BALANCER" = haproxy ]; then
  # An httplog line: "... web pipeservers/s1 0/0/0/1/1 200 ..." (the timers follow the server's name; a
  # "Server pipeservers/s1 is DOWN" alert does not match). A "log ... warning" filter drops every one of them.
  logged=$(grep -cE ' pipeservers/s[12] -?[0-9]+/-?[0-9]+/' "$LOGS/haproxy.log" || true)
  echo "   HAProxy request log lines: $logged"
  [ "$logged" -gt 0 ] || { echo "   FAIL: HAProxy logged no requests"; fail=1; }
fi
[ "$fail" -eq 0 ] && echo "lb-test ($BALANCER): PASS" || echo "lb-test ($BALANCER): FAIL"
exit "$fail"
