#!/usr/bin/env bash
# ./build.sh fuzz [SECONDS]: AFL++ over the request parser and the chunked decoder, through SharpFuzz.
# Installs afl++ (Debian) and the SharpFuzz instrumenter (a .NET tool, into artifacts/tools), publishes
# the fuzz target, instruments PipeServer.dll, seeds from tests/PipeServer.Fuzz/corpus, runs for SECONDS
# (default 300) and reports executions and findings. Exits 1 if any crash or hang was found; each one is
# kept in artifacts/fuzz/findings and must become a regression test.
source "$(dirname "$0")/common.sh"
SECONDS_TO_RUN="${1:-300}"
OUT="$ROOT/artifacts/fuzz"
TOOLS="$ROOT/artifacts/tools"
ensure_tool afl-fuzz afl++
if [ ! -x "$TOOLS/sharpfuzz" ]; then
  dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$TOOLS" >/dev/null
fi
rm -rf "$OUT/bin" "$OUT/findings"
mkdir -p "$OUT"
dotnet publish "$ROOT/tests/PipeServer.Fuzz/PipeServer.Fuzz.csproj" -c Release -o "$OUT/bin" -v quiet -nologo >/dev/null
"$TOOLS/sharpfuzz" "$OUT/bin/PipeServer.dll"

# dotnet itself is not AFL-instrumented (the instrumentation is inside PipeServer.dll), so the binary check
# is skipped; -m none because the CLR reserves far more virtual memory than AFL's default limit.
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
echo "fuzzing for ${SECONDS_TO_RUN}s..."
afl-fuzz -V "$SECONDS_TO_RUN" -i "$ROOT/tests/PipeServer.Fuzz/corpus" -o "$OUT/findings" -t 5000 -m none \
  -- dotnet "$OUT/bin/PipeServer.Fuzz.dll" >"$OUT/afl.log" 2>&1 || { tail -30 "$OUT/afl.log"; exit 1; }

STATS="$OUT/findings/default/fuzzer_stats"
get() { awk -F': *' -v k="$1" '$1 ~ "^"k" *$" {print $2}' "$STATS"; }
execs="$(get execs_done)"; crashes="$(get saved_crashes)"; hangs="$(get saved_hangs)"
paths="$(get corpus_count)"; speed="$(get execs_per_sec)"
echo "fuzz: ${execs} executions in ${SECONDS_TO_RUN}s (${speed}/s), corpus ${paths}, crashes ${crashes:-0}, hangs ${hangs:-0}"
if [ "${crashes:-0}" != "0" ] || [ "${hangs:-0}" != "0" ]; then
  echo "findings in $OUT/findings/default/{crashes,hangs}; replay one with: dotnet $OUT/bin/PipeServer.Fuzz.dll FILE"
  exit 1
fi
