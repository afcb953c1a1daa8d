# PipeServer's one entry point on PowerShell: the same verbs as build.sh.
#   ./build.ps1 build | test | run [server options] | bench [BDN args] | publish
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
    Invoke-Step { dotnet build src/PipeServer/PipeServer.csproj -c $Config -v quiet -nologo | Out-Null }
    & dotnet "src/PipeServer/bin/$Config/net10.0/PipeServer.dll" @Rest
    exit $LASTEXITCODE
  }
  "bench" {
    $benchArgs = if ($Rest.Count -gt 0) { $Rest } else { @("--filter", "*") }
    Invoke-Step { dotnet run --project benchmarks/PipeServer.Benchmarks -c Release -- @benchArgs }
  }
  "publish" {
    Invoke-Step { dotnet publish src/PipeServer/PipeServer.csproj -c Release -o artifacts/publish @Rest }
    Write-Output "published to artifacts/publish"
  }
  default { Write-Error "usage: ./build.ps1 {build|test|run [options]|bench [args]|publish}"; exit 2 }
}
