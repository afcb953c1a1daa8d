using BenchmarkDotNet.Running;

// ./build.sh bench micro [BenchmarkDotNet arguments]; e.g. ./build.sh bench micro --filter '*Parser*'
// "idle ..." is the load tool the end-to-end harness (scripts/bench-e2e.sh) uses for idle connections.
if (args.Length > 0 && args[0] == "idle") return await PipeServer.Benchmarks.IdleConnections.RunAsync(args[1..]);
if (args.Length > 0 && args[0] == "idleserver") return await PipeServer.Benchmarks.IdleServer.RunAsync(args[1..]);
// "linuxserver ..." serves the demo routes on the Linux transport (for wrk/strace until HttpServer can select it).
if (args.Length > 0 && args[0] == "linuxserver") return await PipeServer.Benchmarks.LinuxServer.RunAsync(args[1..]);
if (args.Length > 0 && args[0] == "alloc") return await PipeServer.Benchmarks.SocketAllocations.RunAsync(args[1..]);
BenchmarkSwitcher.FromAssembly(typeof(PipeServer.Benchmarks.ParserBenchmarks).Assembly).Run(args);
return 0;
