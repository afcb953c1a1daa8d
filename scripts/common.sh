#!/usr/bin/env bash
# Helpers shared by the load, slowloris and soak scripts. Every server these scripts start listens on
# 127.0.0.1 only and is stopped by its PID; every load is bounded in time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER_DLL="$ROOT/src/PipeServer.Host/bin/Release/net10.0/PipeServer.Host.dll"
SERVER_PID=""
SERVER_LOG=""

# ensure_tool COMMAND [DEBIAN_PACKAGE]: install from Debian's packages when missing.
ensure_tool() {
  local cmd="$1" pkg="${2:-$1}"
  if command -v "$cmd" >/dev/null 2>&1; then return; fi
  echo "installing $pkg (apt-get)..." >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y "$pkg" >/dev/null 2>&1 || { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y "$pkg" >/dev/null; }
  command -v "$cmd" >/dev/null 2>&1 || { echo "could not install $pkg" >&2; exit 1; }
}

build_server() {
  dotnet build "$ROOT/src/PipeServer.Host/PipeServer.Host.csproj" -c Release -v quiet -nologo >/dev/null
}

# start_server [server options...]: starts on 127.0.0.1:0, sets SERVER_PID and PORT.
start_server() {
  SERVER_LOG="$(mktemp)"
  dotnet "$SERVER_DLL" --address 127.0.0.1 --port 0 "$@" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  trap stop_server_on_exit EXIT
  for _ in $(seq 1 200); do
    PORT="$(sed -n 's/.*Listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$SERVER_LOG" | head -1)"
    [ -n "$PORT" ] && return
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$SERVER_LOG" >&2; echo "server failed to start" >&2; exit 1; }
    sleep 0.05
  done
  echo "server did not report a port" >&2; exit 1
}

# stop_server: SIGTERM by PID, wait (bounded), return its exit code in SERVER_EXIT.
stop_server() {
  [ -z "$SERVER_PID" ] && return
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 600); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID"; fi
  set +e; wait "$SERVER_PID" 2>/dev/null; SERVER_EXIT=$?; set -e
  SERVER_PID=""
}

stop_server_on_exit() { stop_server; }

# free_port: a loopback port nothing listens on now (for servers that must keep their port across restarts).
# Picked below the kernel's ephemeral range: a port wrk or curl just used as a client port can sit in
# TIME_WAIT, and a listener cannot bind it then (EADDRINUSE) even though nothing listens.
free_port() {
  local p lo
  lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$lo" -gt 12000 ] || lo=32768
  while :; do
    p=$(( 10000 + RANDOM % (lo - 10000) ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

raise_fd_limit() { ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; }

# The comparison benchmarks (bench-e2e, bench-tls, bench-files) run several servers side by side, named in
# SERVERS and found by name in PID (a name -> process id table, `declare -A PID`, the script fills as it
# starts them; declared there, not here: bench-idle uses PID as a plain variable).

# wait_http_ready NAME PID LOG URL [CURL_ARGS...]: up to 60 s for URL to answer 2xx (a loaded 2-core machine
# can take a while to start a JIT build); if the process dies first or time runs out, show its log and exit 1.
wait_http_ready() {
  local name=$1 pid=$2 log=$3 url=$4; shift 4
  for _ in $(seq 1 600); do
    curl -fs "$@" "$url" >/dev/null 2>&1 && return
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name ($url) did not become ready:" >&2; cat "$log" >&2; exit 1
}

# wrk's pipelining script: each write carries 16 requests.
PIPELINE_LUA="$ROOT/scripts/wrk-pipeline16.lua"

# stop_servers: SIGTERM each server in SERVERS by its PID, wait up to 10 s, then SIGKILL; forget the PID.
stop_servers() {
  local s
  for s in "${SERVERS[@]}"; do
    [ -n "${PID[$s]:-}" ] || continue
    kill -TERM "${PID[$s]}" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "${PID[$s]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$s]}" 2>/dev/null || true
    wait "${PID[$s]}" 2>/dev/null || true
    PID[$s]=""
  done
}

# pids_of NAME: the server's process and its children (nginx's worker).
pids_of() { echo "${PID[$1]}" $(pgrep -P "${PID[$1]}" 2>/dev/null || true); }
# cpu_ticks NAME: utime + stime of the server and its children, in clock ticks.
cpu_ticks() { local t=0 p; for p in $(pids_of "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
