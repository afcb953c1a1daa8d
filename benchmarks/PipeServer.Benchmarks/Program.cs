using BenchmarkDotNet.Running;

// ./build.sh bench [BenchmarkDotNet arguments]; e.g. ./build.sh bench --filter '*Parser*'
BenchmarkSwitcher.FromAssembly(typeof(PipeServer.Benchmarks.ParserBenchmarks).Assembly).Run(args);
