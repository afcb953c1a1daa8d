using System.Net;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;

namespace PipeServer.Benchmarks;

/// <summary>
/// "idleserver --port P --count N": an in-process server that waits until N connections are open, then
/// prints the managed heap per connection and a sample of the types allocated meanwhile (GC AllocationTick,
/// one sample per ~100 KB). Pair it with "idle --port P --count N" from another process.
/// </summary>
public static class IdleServer
{
    public static async Task<int> RunAsync(string[] args)
    {
        int port = int.Parse(args[Array.IndexOf(args, "--port") + 1], System.Globalization.CultureInfo.InvariantCulture);
        int count = int.Parse(args[Array.IndexOf(args, "--count") + 1], System.Globalization.CultureInfo.InvariantCulture);
        var router = new Router();
        await using var server = new HttpServer(new HttpServerOptions { Address = IPAddress.Loopback, Port = port }, router.HandleAsync);
        DemoEndpoints.Map(router, server.Lifetime);
        await server.StartAsync();
        GC.Collect();
        long before = GC.GetTotalMemory(forceFullCollection: true);
        using var sampler = new AllocationSampler();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        while (server.ConnectionCount < count && !timeout.IsCancellationRequested) await Task.Delay(50);
        await Task.Delay(1000);
        long after = GC.GetTotalMemory(forceFullCollection: true);
        Console.WriteLine($"{server.ConnectionCount} connections: live managed heap {(after - before) / 1024.0 / server.ConnectionCount:0.00} KiB per connection");
        Console.WriteLine("allocation samples by type while they connected:\n" + sampler.Top(25));
        return 0;
    }
}
