#!/usr/bin/env bash
# The HTTPS benchmark: PipeServer (--tls-cert/--tls-key) beside Kestrel over TLS, the same certificate
# (an EC P-256 one made here with openssl), HTTP/1.1 only on both.
#   ./build.sh bench tls [ROUNDS] [SECONDS]      (defaults: 3 rounds of 10 s per scenario and server)
#   PIPESERVER_ARGS="--transport linux" ...     extra PipeServer options
# Two scenarios, measured with wrk (OpenSSL, TLS 1.3):
#   keep-alive   64 connections, GET /plaintext: the cost of TLS records on a warm connection
#   handshakes   16 connections, GET /plaintext with "Connection: close": every request is a new
#                connection with a full handshake (wrk does not resume sessions), so requests/s is
#                full handshakes/s
# Method as in bench-e2e.sh: each server pinned to core 0, wrk (1 thread) to core 1, the same warm-up,
# rounds rotate the order; medians; ratios are PipeServer's figure over Kestrel's in the same run.
# Results: benchmarks/results/tls-<date>.md.
source "$(dirname "$0")/common.sh"
ROUNDS="${1:-3}"
SECS="${2:-10}"
WARMUP="${WARMUP:-10}"
read -r -a PIPESERVER_EXTRA <<<"${PIPESERVER_ARGS:-}"
ensure_tool wrk
ensure_tool taskset util-linux
ensure_tool curl
ensure_tool openssl
raise_fd_limit
echo "building (Release)..."
dotnet build "$ROOT/src/PipeServer.Host/PipeServer.Host.csproj" -c Release -v quiet -nologo >/dev/null
dotnet build "$ROOT/benchmarks/KestrelBaseline/KestrelBaseline.csproj" -c Release -v quiet -nologo >/dev/null
KESTREL_DLL="$ROOT/benchmarks/KestrelBaseline/bin/Release/net10.0/KestrelBaseline.dll"
WORK="$(mktemp -d)"
SERVERS=(pipeserver kestrel)
declare -A PID PORT
CLK_TCK="$(getconf CLK_TCK)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
  -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null

start_one() {
  local s=$1 port; port=$(free_port); PORT[$s]=$port
  case "$s" in
    pipeserver)
      taskset -c 0 dotnet "$SERVER_DLL" --address 127.0.0.1 --port "$port" --heartbeat-interval 0 --log-level warning \
        --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" "${PIPESERVER_EXTRA[@]}" >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
    kestrel)
      taskset -c 0 dotnet "$KESTREL_DLL" --urls "https://127.0.0.1:$port" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
        >"$WORK/$s.log" 2>&1 & PID[$s]=$! ;;
  esac
  wait_http_ready "$s" "${PID[$s]}" "$WORK/$s.log" "https://localhost:$port/plaintext" --cacert "$WORK/cert.pem"
}
trap 'stop_servers; rm -rf "$WORK"' EXIT

median() { sort -g | awk '{a[NR]=$1} END { if (NR == 0) print 0; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

# run SERVER NAME CONNECTIONS [close]: one measured round; appends "rps cpu_us_per_req errors" to WORK/NAME.SERVER
run() {
  local s=$1 name=$2 conns=$3 close=${4:-} hdr=() before after out rps reqs errs
  [ -n "$close" ] && hdr=(-H "Connection: close")
  before=$(cpu_ticks "$s")
  out="$(taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" "${hdr[@]}" "https://127.0.0.1:${PORT[$s]}/plaintext" 2>&1)"
  after=$(cpu_ticks "$s")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  errs=$(awk '/Socket errors/ {gsub(",",""); n = $4+$6+$8+$10; f=1} END {print (f ? n : 0)}' <<<"$out")
  echo "$rps $(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0) }') $errs" >>"$WORK/$name.$s"
}

for s in "${SERVERS[@]}"; do start_one "$s"; done
echo "warm-up ${WARMUP}s each..."
for s in "${SERVERS[@]}"; do
  taskset -c 1 wrk -t1 -c64 -d"${WARMUP}s" "https://127.0.0.1:${PORT[$s]}/plaintext" >/dev/null 2>&1
  taskset -c 1 wrk -t1 -c16 -d"$((WARMUP / 2))s" -H "Connection: close" "https://127.0.0.1:${PORT[$s]}/plaintext" >/dev/null 2>&1
done
for round in $(seq 1 "$ROUNDS"); do
  order=("${SERVERS[@]}"); [ $((round % 2)) -eq 0 ] && order=(kestrel pipeserver)
  for s in "${order[@]}"; do
    echo "round $round: $s"
    run "$s" keepalive 64
    run "$s" handshakes 16 close
  done
done

col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
OUT="$ROOT/benchmarks/results/tls-$(date -u +%Y%m%d-%H%M%S).md"
{
  echo "# TLS benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), .NET $(dotnet --version), $(openssl version | cut -d' ' -f1-2), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')."
  echo "Each server on core 0, wrk on core 1; $ROUNDS rounds of ${SECS}s per scenario, medians. PipeServer args: ${PIPESERVER_ARGS:-none}."
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (a figure above ~2 means other work shared the machine)."
  echo
  echo "| scenario | PipeServer | Kestrel | PipeServer / Kestrel |"
  echo "| --- | ---: | ---: | ---: |"
  for name in keepalive handshakes; do
    label="keep-alive requests/s (64 connections)"; [ "$name" = handshakes ] && label="new connections (full handshakes)/s (16 connections, Connection: close)"
    p=$(col "$name.pipeserver" 1); k=$(col "$name.kestrel" 1)
    echo "| $label | $p | $k | $(ratio "$p" "$k") |"
    p=$(col "$name.pipeserver" 2); k=$(col "$name.kestrel" 2)
    echo "| ↳ server CPU µs per request | $p | $k | $(ratio "$p" "$k") |"
  done
  echo
  echo "Socket errors per round (median; keep-alive / handshakes): PipeServer $(col keepalive.pipeserver 3) / $(col handshakes.pipeserver 3), Kestrel $(col keepalive.kestrel 3) / $(col handshakes.kestrel 3)."
  echo
  echo "Raw rounds (requests/s, CPU µs per request, socket errors):"
  echo
  for f in keepalive.pipeserver keepalive.kestrel handshakes.pipeserver handshakes.kestrel; do echo "    $f: $(tr '\n' ';' <"$WORK/$f")"; done
} >"$OUT"
cat "$OUT"
echo "written to $OUT"
