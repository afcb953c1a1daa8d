#!/usr/bin/env bash
# ./build.sh load [SECONDS]: wrk at 256 connections against GET /plaintext and POST /echo with 64 KiB
# bodies. Passes only with zero socket errors, zero non-2xx and zero wrong-length (truncated) responses.
source "$(dirname "$0")/common.sh"
DURATION="${1:-15}"
ensure_tool wrk
raise_fd_limit
build_server
start_server --heartbeat-interval 0 --log-level warning

LUA="$(mktemp --suffix .lua)"
cat >"$LUA" <<'LUA'
-- POST /echo with a 64 KiB body; counts responses whose body is not exactly the body sent.
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) bad = 0 end
function response(status, headers, body) if status ~= 200 or #body ~= 65536 then bad = bad + 1 end end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write(string.format("wrong-length or non-200 echo responses: %d\n", total))
end
LUA

fail=0
echo "== GET /plaintext, 256 connections, ${DURATION}s"
out1="$(wrk -t2 -c256 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/plaintext")"; echo "$out1"
echo "== POST /echo 64 KiB, 256 connections, ${DURATION}s"
out2="$(wrk -t2 -c256 -d"${DURATION}s" --latency -s "$LUA" "http://127.0.0.1:$PORT/echo")"; echo "$out2"
rm -f "$LUA"
for out in "$out1" "$out2"; do
  if grep -q "Socket errors" <<<"$out"; then echo "FAIL: socket errors"; fail=1; fi
  if grep -q "Non-2xx" <<<"$out"; then echo "FAIL: non-2xx responses"; fail=1; fi
done
if ! grep -q "wrong-length or non-200 echo responses: 0" <<<"$out2"; then echo "FAIL: truncated echo responses"; fail=1; fi
stop_server
echo "server exit code after SIGTERM: $SERVER_EXIT"
[ "$SERVER_EXIT" -eq 0 ] || fail=1
[ "$fail" -eq 0 ] && echo "load: PASS (0 errors, 0 non-2xx, 0 truncated)" || echo "load: FAIL"
exit "$fail"
