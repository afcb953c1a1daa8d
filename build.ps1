# PipeServer's one entry point on PowerShell: the same verbs as build.sh.
#   ./build.ps1 build | test | run [server options] | bench [micro|e2e] | publish [--aot]
#               load | slowloris | soak | fuzz | lb-test   (Linux: they call the bash scripts)
param([Parameter(Position = 0)][string]$Verb = "build", [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest = @())
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$Config = if ($env:CONFIGURATION) { $env:CONFIGURATION } else { "Release" }
$env:DOTNET_CLI_TELEMETRY_OPTOUT = "1"; $env:DOTNET_NOLOGO = "1"

if (-not (Get-Command dotnet -ErrorAction SilentlyContinue)) { Write-Error "the .NET 10 SDK is required (dotnet not found on PATH)"; exit 1 }

function Invoke-Step([scriptblock]$Step) { & $Step; if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE } }

switch ($Verb) {
  "build" { Invoke-Step { dotnet build PipeServer.sln -c $Config } }
  "test" {
    Invoke-Step { dotnet build PipeServer.sln -c $Config }
    $output = & dotnet test PipeServer.sln -c $Config --no-build --blame-hang-timeout 5m @Rest 2>&1 | Tee-Object -Variable lines
    $code = $LASTEXITCODE
    $passed = 0; $failed = 0; $seen = $false
    foreach ($line in $lines) {
      if ("$line" -match '(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+)') { $failed += [int]$Matches[2]; $passed += [int]$Matches[3]; $seen = $true }
    }
    if (-not $seen) { $failed = 1 }
    Write-Output "$passed passed, $failed failed"
    exit $code
  }
  "run" {
    Invoke-Step { dotnet build src/PipeServer.Host/PipeServer.Host.csproj -c $Config -v quiet -nologo | Out-Null }
    & dotnet "src/PipeServer.Host/bin/$Config/net10.0/PipeServer.Host.dll" @Rest
    exit $LASTEXITCODE
  }
  "bench" {
    $sub = if ($Rest.Count -gt 0) { $Rest[0] } else { "all" }
    $more = if ($Rest.Count -gt 1) { $Rest[1..($Rest.Count - 1)] } else { @() }
    switch ($sub) {
      "micro" {
        $benchArgs = if ($more.Count -gt 0) { $more } else { @("--filter", "*") }
        Invoke-Step { dotnet run --project benchmarks/PipeServer.Benchmarks -c Release -- @benchArgs }
      }
      "e2e" { Invoke-Step { bash scripts/bench-e2e.sh @more } }
      default {
        Invoke-Step { dotnet run --project benchmarks/PipeServer.Benchmarks -c Release -- --filter "*" }
        Invoke-Step { bash scripts/bench-e2e.sh }
      }
    }
  }
  "publish" {
    if ($Rest.Count -gt 0 -and $Rest[0] -eq "--aot") {
      $more = if ($Rest.Count -gt 1) { $Rest[1..($Rest.Count - 1)] } else { @() }
      Invoke-Step { dotnet publish src/PipeServer.Host/PipeServer.Host.csproj -c Release -r linux-x64 -p:PublishAot=true -o artifacts/publish-aot @more }
      Write-Output "published artifacts/publish-aot/PipeServer.Host (Native AOT)"
    } else {
      Invoke-Step { dotnet publish src/PipeServer.Host/PipeServer.Host.csproj -c Release -o artifacts/publish @Rest }
      Write-Output "published to artifacts/publish (run: dotnet artifacts/publish/PipeServer.Host.dll)"
    }
  }
  # The load verbs drive Linux tools (wrk, slowhttptest, afl++, haproxy): they run the same bash scripts.
  { $_ -in @("load", "slowloris", "soak", "fuzz", "lb-test") } { Invoke-Step { bash "scripts/$Verb.sh" @Rest } }
  default { Write-Error "usage: ./build.ps1 {build|test|run [options]|bench [micro|e2e]|publish [--aot]|load|slowloris|soak|fuzz|lb-test}"; exit 2 }
}
