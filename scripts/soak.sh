#!/usr/bin/env bash
# ./build.sh soak [MINUTES]: steady keep-alive load for MINUTES (default 5); reports RSS at start (after a
# warm-up) and at the end, and checks the connection registry returns to zero after the clients leave.
source "$(dirname "$0")/common.sh"
MINUTES="${1:-5}"
ensure_tool wrk
raise_fd_limit
build_server
start_server --heartbeat-interval 1 --log-level information
echo "== warm-up 20 s"
wrk -t2 -c64 -d20s "http://127.0.0.1:$PORT/json" >/dev/null
rss_start="$(rss_kib "$SERVER_PID")"
echo "RSS after warm-up: ${rss_start} KiB"
echo "== soak ${MINUTES} min: 64 connections, /plaintext and /json"
half=$(( MINUTES * 30 ))
wrk -t1 -c32 -d"${half}s" "http://127.0.0.1:$PORT/plaintext" > /tmp/soak-a.$$ &
A=$!
wrk -t1 -c32 -d"${half}s" "http://127.0.0.1:$PORT/json" > /tmp/soak-b.$$ &
B=$!
samples=""
while kill -0 "$A" 2>/dev/null; do samples="$samples $(rss_kib "$SERVER_PID")"; sleep 10; done
wait "$A" "$B" || true
wrk -t2 -c64 -d"${half}s" "http://127.0.0.1:$PORT/json" > /tmp/soak-c.$$ || true
rss_end="$(rss_kib "$SERVER_PID")"
cat /tmp/soak-a.$$ /tmp/soak-b.$$ /tmp/soak-c.$$ | grep -E "Requests/sec|requests in|Socket errors|Non-2xx" || true
sleep 3
open_after="$(grep -o "Heartbeat: [0-9]* open" "$SERVER_LOG" | tail -1 | awk '{print $2}')"
stop_server
rm -f /tmp/soak-a.$$ /tmp/soak-b.$$ /tmp/soak-c.$$
echo "RSS samples (KiB):$samples"
echo "RSS start ${rss_start} KiB, end ${rss_end} KiB; open connections after clients left: ${open_after}; exit code ${SERVER_EXIT}"
fail=0
[ "$open_after" = "0" ] || { echo "FAIL: registry did not return to zero"; fail=1; }
[ "$SERVER_EXIT" -eq 0 ] || fail=1
awk -v s="$rss_start" -v e="$rss_end" 'BEGIN { exit !(e < s * 1.5 + 20000) }' || { echo "FAIL: RSS grew from $rss_start to $rss_end KiB"; fail=1; }
[ "$fail" -eq 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$fail"
