#!/usr/bin/env bash
# PipeServer's one entry point. Needs only the .NET 10 SDK; anything else a verb needs it installs itself.
#
#   ./build.sh build                 compile everything (Release)
#   ./build.sh test                  run every test project; ends with "N passed, M failed"
#   ./build.sh run [server options]  run the server in the foreground (./build.sh run --help for options)
#   ./build.sh bench                 micro-benchmarks, then the end-to-end comparison with Kestrel
#   ./build.sh bench micro [args]    BenchmarkDotNet micro-benchmarks only (e.g. --filter '*Parser*')
#   ./build.sh bench e2e [R] [S]     PipeServer, Kestrel, tuned Kestrel and nginx under wrk: R rounds of S seconds (installs wrk, nginx, strace, gnuplot)
#   ./build.sh bench files [S] [opts]  PipeServer --root beside nginx (sendfile on), side by side, rotated rounds (ROUNDS=3): a 1 KiB file at 64 connections, a 32 MiB download (installs wrk, nginx)
#   ./build.sh bench tls [R] [S]     PipeServer beside Kestrel over TLS, same certificate: keep-alive requests/s and full handshakes/s
#   ./build.sh bench idle [N] [R]    RSS per idle keep-alive connection (N open, R rounds): PipeServer on each transport, Kestrel
#   ./build.sh publish [--aot]       release build in artifacts/publish (JIT), or a Native AOT executable in artifacts/publish-aot
#   ./build.sh load [SECONDS]        wrk at 256 connections: /plaintext and POST /echo 64 KiB (installs wrk)
#   ./build.sh slowloris             1000 slow-header connections + latency of a normal client (installs slowhttptest, wrk)
#   ./build.sh soak [MINUTES]        steady load; RSS at start and end; registry back to zero (installs wrk)
#   ./build.sh lb-test [haproxy|nginx] [SECONDS]  rolling restart of two instances behind the shipped HAProxy or nginx config under load (installs haproxy or nginx-light, wrk, python3)
#   ./build.sh fuzz [SECONDS]        AFL++ + SharpFuzz over the parser and chunked decoder (installs afl++)
set -euo pipefail
cd "$(dirname "$0")"
CONFIG="${CONFIGURATION:-Release}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

need_dotnet() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "build.sh: the .NET 10 SDK is required (dotnet not found on PATH)" >&2
    exit 1
  fi
}

# try_install COMMAND PACKAGE: best effort, for tools a few tests drive for real. Where it cannot be
# installed, those tests are reported as skipped with the reason, never failed.
try_install() {
  command -v "$1" >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || return 0
  local sudo=""; [ "$(id -u)" -ne 0 ] && { command -v sudo >/dev/null 2>&1 || return 0; sudo="sudo -n"; }
  echo "build.sh: installing $2 for the tests that use $1 (apt-get)..." >&2
  $sudo apt-get install -y "$2" >/dev/null 2>&1 || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y "$2" >/dev/null 2>&1; } || true
}

verb="${1:-build}"
shift || true
need_dotnet

case "$verb" in
  build)
    dotnet build PipeServer.sln -c "$CONFIG"
    ;;
  test)
    # HAProxy (the PROXY protocol test), systemd-socket-activate (the socket activation test), curl and
    # openssl (the HTTPS tests: curl --cacert, and openssl s_client offering TLS 1.0/1.1).
    try_install haproxy haproxy
    try_install systemd-socket-activate systemd
    try_install curl curl
    try_install openssl openssl
    dotnet build PipeServer.sln -c "$CONFIG"
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    status=0
    # --blame-hang bounds a stuck run: no test may hang CI.
    dotnet test PipeServer.sln -c "$CONFIG" --no-build --blame-hang-timeout 5m "$@" 2>&1 | tee "$log" || status=$?
    # dotnet test prints one summary per test project: "Passed!  - Failed: 0, Passed: 167, Skipped: 0, ..."
    awk '/(Passed|Failed)! +- +Failed:/ {
           for (i = 1; i <= NF; i++) { gsub(",", "", $(i+1)); if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1) }
           seen = 1 }
         END { if (!seen) { p = 0; f = 1 } printf "%d passed, %d failed\n", p, f }' "$log"
    exit "$status"
    ;;
  run)
    dotnet build src/PipeServer.Host/PipeServer.Host.csproj -c "$CONFIG" -v quiet -nologo >/dev/null
    # exec: the server is this process, so signals (Ctrl+C, SIGTERM) reach it directly.
    exec dotnet "src/PipeServer.Host/bin/$CONFIG/net10.0/PipeServer.Host.dll" "$@"
    ;;
  bench)
    sub="${1:-all}"; [ $# -gt 0 ] && shift
    case "$sub" in
      micro) dotnet run --project benchmarks/PipeServer.Benchmarks -c Release -- "${@:---filter *}" ;;
      e2e) bash scripts/bench-e2e.sh "$@" ;;
      files) bash scripts/bench-files.sh "$@" ;;
      tls) bash scripts/bench-tls.sh "$@" ;;
      idle) bash scripts/bench-idle.sh "$@" ;;
      all) dotnet run --project benchmarks/PipeServer.Benchmarks -c Release -- --filter '*'
           bash scripts/bench-e2e.sh
           bash scripts/bench-files.sh ;;
      *) echo "usage: ./build.sh bench [micro [BDN args] | e2e [rounds] [seconds] | files [seconds] | tls [rounds] [seconds] | idle [connections] [rounds]]" >&2; exit 2 ;;
    esac
    ;;
  publish)
    if [ "${1:-}" = "--aot" ]; then
      shift
      # Native AOT: one self-contained native executable. Needs clang (or gcc) and zlib headers to link.
      command -v clang >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || { apt-get install -y clang >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y clang; }; }
      [ -e /usr/include/zlib.h ] || { apt-get install -y zlib1g-dev >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y zlib1g-dev; }; }
      dotnet publish src/PipeServer.Host/PipeServer.Host.csproj -c Release -r linux-x64 -p:PublishAot=true -o artifacts/publish-aot "$@"
      echo "published artifacts/publish-aot/PipeServer.Host ($(du -h artifacts/publish-aot/PipeServer.Host | cut -f1), native, no .NET runtime needed)"
    else
      dotnet publish src/PipeServer.Host/PipeServer.Host.csproj -c Release -o artifacts/publish "$@"
      echo "published to artifacts/publish (run: dotnet artifacts/publish/PipeServer.Host.dll)"
    fi
    ;;
  load) exec bash scripts/load.sh "$@" ;;
  slowloris) exec bash scripts/slowloris.sh "$@" ;;
  soak) exec bash scripts/soak.sh "$@" ;;
  fuzz) exec bash scripts/fuzz.sh "$@" ;;
  lb-test) exec bash scripts/lb-test.sh "$@" ;;
  *)
    echo "usage: ./build.sh {build|test|run [options]|bench [args]|publish|load [s]|slowloris|soak [min]|fuzz [s]|lb-test [haproxy|nginx] [s]}" >&2
    exit 2
    ;;
esac
