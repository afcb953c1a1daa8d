#!/usr/bin/env python3
# The two helpers ./build.sh lb-test needs beside wrk (see scripts/lb-test.sh); standard library only.
#
#   lb-test.py client URL METHOD FIRST_ID COUNT RATE SECONDS OUT
#       Sends requests with unique ids through the balancer over keep-alive connections (2 threads), at most
#       RATE a second in all, until COUNT are sent or SECONDS pass, and writes "id status" per request to OUT
#       ("id error" when the connection failed instead). Never retries: a retried id would hide a replay.
#       A POST's id is its body length (the body is "<id> xxx...", echoed back by POST /echo), because that
#       length is what PipeServer's access log records ("POST /echo 200 <bytes> ..."), so the backends' logs
#       tell which ids they saw without any test-only code in the server. Ids stay below HAProxy's tune.bufsize
#       (16 KiB): a larger request is never retried, which would hide a replay.
#
#   lb-test.py tally RESULTS RULE LOG...
#       Matches the ids in RESULTS (from client) against the POSTs the backends' LOGs record (PipeServer access
#       logs and closer logs), prints one summary line and exits 1 when the RULE is broken:
#         exactly-once  every answered (2xx) id seen exactly once, every failed id never seen (a rolling restart)
#         at-most-once  no id seen twice (a backend that closed without answering did see its request)
#
#   lb-test.py closer PORT LOG
#       A backend that answers GET /readyz with 200 (so the balancer keeps it in rotation) and reads every other
#       request whole, writes "METHOD PATH BODY_LENGTH" to LOG, then closes without answering: the crashed or
#       restarting backend against which a balancer must not replay a POST (it may retry a GET).
import http.client
import re
import socket
import sys
import threading
import time
import urllib.parse


def client(url, method, first_id, count, rate, seconds, out):
    target = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    state = {"next": first_id, "sent": 0}
    results = []
    interval = 2.0 / rate  # two threads share the rate

    def take_id():
        with lock:
            if state["sent"] >= count or time.monotonic() >= deadline:
                return None
            state["sent"] += 1
            state["next"] += 1
            return state["next"] - 1

    def run():
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        while True:
            started = time.monotonic()
            rid = take_id()
            if rid is None:
                break
            body = (str(rid) + " ").ljust(rid, "x").encode() if method == "POST" else None
            path = target.path + "?id=" + str(rid)
            try:
                conn.request(method, path, body=body, headers={"Content-Type": "text/plain"} if body else {})
                resp = conn.getresponse()
                data = resp.read()
                status = str(resp.status)
                if method == "POST" and resp.status == 200 and data != body:
                    status = "mismatch"  # an answer meant for another request: as bad as a replay
            except (OSError, http.client.HTTPException) as e:
                status = "error:" + type(e).__name__
                conn.close()  # http.client reconnects on the next request
            with lock:
                results.append((rid, status))
            pause = interval - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)  # pacing, not synchronisation
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out, "w") as f:
        for rid, status in sorted(results):
            f.write(f"{rid} {status}\n")


# PipeServer's access line ("POST /echo 200 <bytes> ..."; also a Combined-Log-Format-style
# '"POST /echo?id=N HTTP/1.1" 200 <bytes>') and the closer's ("POST /echo <bytes>"). Bytes = id for POST /echo.
ACCESS = re.compile(r'POST /echo\S*(?: HTTP/1\.[01]")? (\d{3}) (\d+)')
CLOSED = re.compile(r'^POST /echo (\d+)$')


def tally(results, rule, logs):
    status = {}
    with open(results) as f:
        for line in f:
            rid, st = line.split()
            status[int(rid)] = st
    seen = {}
    for log in logs:
        with open(log, errors="replace") as f:
            for line in f:
                m = ACCESS.search(line)
                if m:
                    rid = int(m.group(2))
                else:
                    m = CLOSED.match(line.strip())
                    if not m:
                        continue
                    rid = int(m.group(1))
                if rid in status:
                    seen[rid] = seen.get(rid, 0) + 1
    ok = [r for r, st in status.items() if st.startswith("2")]
    failed = [r for r, st in status.items() if not st.startswith("2")]
    once = [r for r in status if seen.get(r, 0) == 1]
    twice = [r for r in status if seen.get(r, 0) > 1]
    failed_seen = [r for r in failed if seen.get(r, 0) > 0]
    ok_unseen = [r for r in ok if seen.get(r, 0) == 0]
    print(f"POST ids sent {len(status)}, answered 2xx {len(ok)}, failed {len(failed)}; seen by a backend once "
          f"{len(once)}, more than once {len(twice)}; failed but seen {len(failed_seen)}; answered but unseen {len(ok_unseen)}")
    for name, ids in (("seen more than once", twice), ("failed but seen", failed_seen), ("answered but unseen", ok_unseen)):
        if ids:
            print(f"  {name}: " + ", ".join(f"{r} ({status[r]}, seen {seen.get(r, 0)}x)" for r in sorted(ids)[:10]))
    broken = twice or ok_unseen or (rule == "exactly-once" and failed_seen)
    sys.exit(1 if broken else 0)


def closer(port, log):
    listener = socket.create_server(("127.0.0.1", port), backlog=128)
    out = open(log, "a", buffering=1)
    lock = threading.Lock()

    def serve(conn):
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
            except (OSError, ValueError):
                return
            if method == "GET" and path.startswith("/readyz"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nready\n")
                return
            with lock:
                out.write(f"{method} {path.split('?')[0]} {len(body)}\n")
            # Closing with the request read and unanswered: what a backend that crashed mid-request looks like.

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1] == "client":
        url, method, first_id, count, rate, seconds, out = sys.argv[2:9]
        client(url, method, int(first_id), int(count), float(rate), float(seconds), out)
    elif sys.argv[1] == "tally":
        tally(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif sys.argv[1] == "closer":
        closer(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("usage: lb-test.py client URL METHOD FIRST_ID COUNT RATE SECONDS OUT | tally RESULTS RULE LOG... | closer PORT LOG")
