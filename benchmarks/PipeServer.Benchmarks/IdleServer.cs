using System.Net;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;

namespace PipeServer.Benchmarks;

/// <summary>
/// "idleserver --port P --count N [--transport sockets|linux]": an in-process server that waits until N connections are open, then
/// prints the managed heap per connection and a sample of the types allocated meanwhile (GC AllocationTick,
/// one sample per ~100 KB). Pair it with "idle --port P --count N" from another process.
/// </summary>
public static class IdleServer
{
    public static async Task<int> RunAsync(string[] args)
    {
        int port = int.Parse(args[Array.IndexOf(args, "--port") + 1], System.Globalization.CultureInfo.InvariantCulture);
        int count = int.Parse(args[Array.IndexOf(args, "--count") + 1], System.Globalization.CultureInfo.InvariantCulture);
        int t = Array.IndexOf(args, "--transport");
        var transport = t < 0 ? PipeServer.Transports.TransportKind.Auto : Enum.Parse<PipeServer.Transports.TransportKind>(args[t + 1], ignoreCase: true);
        var router = new Router();
        await using var server = new HttpServer(new HttpServerOptions { Address = IPAddress.Loopback, Port = port, Transport = transport }, router.HandleAsync);
        DemoEndpoints.Map(router, server.Lifetime);
        await server.StartAsync();
        GC.Collect();
        long before = GC.GetTotalMemory(forceFullCollection: true);
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        int gen0Before = GC.CollectionCount(0);
        using var sampler = new AllocationSampler();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        while (server.ConnectionCount < count && !timeout.IsCancellationRequested) await Task.Delay(50);
        await Task.Delay(1000);
        // Before the forced collection: everything allocated meanwhile, and how many collections ran on their own
        // (none means every byte allocated, live or garbage, is still in the heap and in RSS).
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        int gen0 = GC.CollectionCount(0) - gen0Before;
        long after = GC.GetTotalMemory(forceFullCollection: true);
        int n = Math.Max(1, server.ConnectionCount);
        Console.WriteLine($"{server.ConnectionCount} connections ({server.Transport?.Name}): live managed heap {(after - before) / 1024.0 / n:0.00} KiB per connection; " +
            $"allocated {allocated / 1024.0 / n:0.00} KiB per connection ({gen0} gen0 collection(s) meanwhile)");
        Console.WriteLine("allocation samples by type while they connected:\n" + sampler.Top(25));
        return 0;
    }
}
