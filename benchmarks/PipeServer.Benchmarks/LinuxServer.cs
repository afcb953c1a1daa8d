using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Transports;
using PipeServer.Connections;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Transports.Linux;

namespace PipeServer.Benchmarks;

/// <summary>
/// "linuxserver --port P [--loops N] [--seconds S] [--idle-count N]": the demo routes served by the Linux
/// transport (Transports/Linux) without the rest of HttpServer: a TcpListener accept loop that pairs each
/// socket with a LinuxConnection and an Http1Connection, as HttpServer.Accept does through its transport
/// (the executable's --transport linux is the whole server on the same loops).
/// For wrk and `strace -c -f -p PID`. With --idle-count it waits for that many connections, then prints the
/// process RSS per connection (compare with `idleserver`, which prints the managed heap of the sockets
/// transport) and exits.
/// </summary>
public static class LinuxServer
{
    public static async Task<int> RunAsync(string[] args)
    {
        int port = Int(args, "--port", 8080);
        int loops = Int(args, "--loops", 0);
        int seconds = Int(args, "--seconds", 600);
        int idleCount = Int(args, "--idle-count", 0);
        var options = new HttpServerOptions { Address = IPAddress.Loopback, Port = port };
        var router = new Router();
        var lifetime = new ServerLifetime();
        var metrics = new ServerMetrics(); // disposed with the process
        DemoEndpoints.Map(router, lifetime);
        using var blocks = new BlockMemoryPool();
        var input = new PipeOptions(blocks, pauseWriterThreshold: options.MaxInputBufferSize, resumeWriterThreshold: options.MaxInputBufferSize / 2,
            minimumSegmentSize: BlockMemoryPool.BlockSize, useSynchronizationContext: false);
        var output = new PipeOptions(blocks, pauseWriterThreshold: options.MaxOutputBufferSize, resumeWriterThreshold: options.MaxOutputBufferSize / 2,
            minimumSegmentSize: BlockMemoryPool.BlockSize, useSynchronizationContext: false);
        using var transport = new LinuxTransport(loops);
        var listener = new TcpListener(options.Address, port);
        listener.Start(options.ListenBacklog);
        Console.WriteLine($"linux transport: {transport.LoopCount} loop(s), listening on {listener.LocalEndpoint}, pid {Environment.ProcessId}");
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        using var abort = new CancellationTokenSource();
        long open = 0, id = 0;
        long rssBefore = RssKiB();
        var accepting = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                Socket socket;
                try { socket = await listener.AcceptSocketAsync(stop.Token); }
                catch (OperationCanceledException) { return; }
                catch (SocketException) { continue; }
                socket.NoDelay = true;
                Http1Connection? protocol = null;
                var connection = transport.Create(socket, input, output, () => protocol?.OnPeerFailure());
                protocol = new Http1Connection(++id, connection, connection, options, router.HandleAsync, lifetime, NullLogger.Instance, abort.Token,
                    connection.RemoteEndPoint, metrics);
                Interlocked.Increment(ref open);
                _ = RunAsync(connection, protocol, () => Interlocked.Decrement(ref open));
            }
        });
        if (idleCount > 0)
        {
            while (Interlocked.Read(ref open) < idleCount && !stop.IsCancellationRequested) await Task.Delay(50);
            await Task.Delay(1000);
            GC.Collect();
            long rss = RssKiB();
            Console.WriteLine($"{open} connections: RSS {rss / 1024.0:0.0} MiB, {(rss - rssBefore) / (double)Math.Max(1, open):0.00} KiB per connection over the empty server ({rssBefore / 1024.0:0.0} MiB); managed heap {GC.GetTotalMemory(true) / 1024.0 / 1024:0.0} MiB");
            await stop.CancelAsync();
        }
        try { await Task.Delay(Timeout.Infinite, stop.Token); } catch (OperationCanceledException) { }
        listener.Stop();
        await accepting;
        return 0;
    }

    private static async Task RunAsync(LinuxConnection connection, Http1Connection protocol, Action done)
    {
        try
        {
            var running = connection.RunAsync();
            await protocol.ProcessAsync();
            await running;
        }
        finally { done(); }
    }

    private static long RssKiB()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }

    private static int Int(string[] args, string name, int fallback)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture) : fallback;
    }
}
