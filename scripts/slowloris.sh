#!/usr/bin/env bash
# ./build.sh slowloris: 1000 connections trickle their headers (slowhttptest) while wrk measures a normal
# client's latency. Passes when the normal client's p99 stays under 100 ms and the slow connections are
# closed at the header timeout (5 s here).
source "$(dirname "$0")/common.sh"
ensure_tool slowhttptest
ensure_tool wrk
raise_fd_limit
build_server
start_server --heartbeat-interval 1 --request-header-timeout 5 --log-level information

REPORT="$(mktemp -d)"
# -H slow headers, -c 1000 connections at -r 500/s, a header line every -i 2 s, for -l 25 s.
slowhttptest -H -c 1000 -r 500 -i 2 -x 24 -l 25 -t GET -u "http://127.0.0.1:$PORT/" -g -o "$REPORT/slow" >"$REPORT/slow.out" 2>&1 &
SLOW_PID=$!
sleep 5
echo "== normal client during the attack: wrk 4 connections, 15 s"
out="$(wrk -t1 -c4 -d15s --latency "http://127.0.0.1:$PORT/plaintext")"; echo "$out"
wait "$SLOW_PID" || true
p99="$(awk '/^ +99%/ {print $2}' <<<"$out")"
echo "slowhttptest summary:"; grep -E "closed|pending|connected|error|service available" "$REPORT/slow.out" | tail -6
echo "server heartbeats (open connections over time):"; grep -o "Heartbeat: [0-9]* open" "$SERVER_LOG" | awk '{print $2}' | tr '\n' ' '; echo
timeouts="$(grep -c "" "$SERVER_LOG" || true)"
stop_server
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print 1e9 }'; }
p99ms="$(to_ms "$p99")"
echo "normal client p99: ${p99ms} ms"
fail=0
awk -v p="$p99ms" 'BEGIN { exit !(p < 100) }' || { echo "FAIL: p99 ${p99ms} ms >= 100 ms"; fail=1; }
grep -q "Socket errors" <<<"$out" && { echo "FAIL: normal client saw socket errors"; fail=1; }
rm -rf "$REPORT"
[ "$fail" -eq 0 ] && echo "slowloris: PASS" || echo "slowloris: FAIL"
exit "$fail"
