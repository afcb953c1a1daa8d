using System.Net;
using System.Net.Sockets;
using System.Text;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;

namespace PipeServer.Benchmarks;

/// <summary>
/// "alloc [--requests N] [--path /plaintext] [--clients N] [--transport auto|sockets|linux] [--root DIR]": bytes allocated per request on the real socket path (accept
/// loop, transport, pipes, thread-pool hops), which the in-memory benchmark cannot see. An in-process
/// server on 127.0.0.1:0 and one keep-alive client whose buffers are allocated up front; the process-wide
/// allocation counter is read before and after N requests, after a warm-up. With --root the server is a file
/// server over DIR (StaticFileHandler) and --path names a file in it.
/// </summary>
public static class SocketAllocations
{
    public static async Task<int> RunAsync(string[] args)
    {
        int requests = args.Contains("--requests") ? int.Parse(args[Array.IndexOf(args, "--requests") + 1], System.Globalization.CultureInfo.InvariantCulture) : 100_000;
        string path = args.Contains("--path") ? args[Array.IndexOf(args, "--path") + 1] : "/plaintext";
        var transport = args.Contains("--transport") ? Enum.Parse<PipeServer.Transports.TransportKind>(args[Array.IndexOf(args, "--transport") + 1], ignoreCase: true) : PipeServer.Transports.TransportKind.Auto;
        var router = new Router();
        string? root = args.Contains("--root") ? args[Array.IndexOf(args, "--root") + 1] : null;
        PipeServer.Http.RequestHandler app = root is null ? router.HandleAsync : new PipeServer.StaticFiles.StaticFileHandler(new PipeServer.StaticFiles.StaticFileOptions { Root = root }).HandleAsync;
        await using var server = new HttpServer(new HttpServerOptions { Address = IPAddress.Loopback, Port = 0, Transport = transport }, app);
        DemoEndpoints.Map(router, server.Lifetime);
        await server.StartAsync();

        int clients = args.Contains("--clients") ? int.Parse(args[Array.IndexOf(args, "--clients") + 1], System.Globalization.CultureInfo.InvariantCulture) : 1;
        var request = Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        var sockets = new Socket[clients];
        var buffers = new byte[clients][];
        int responseLength = 0;
        for (int c = 0; c < clients; c++)
        {
            sockets[c] = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            sockets[c].Connect(server.EndPoint!);
            buffers[c] = new byte[root is null ? 4096 : 256 * 1024];
            responseLength = root is null ? Exchange(sockets[c], request, buffers[c], 0) : ExchangeFirst(sockets[c], request, buffers[c]);
        }
        void Run(int perClient)
        {
            var threads = new Thread[clients];
            for (int c = 0; c < clients; c++)
            {
                int id = c;
                threads[c] = new Thread(() => { for (int i = 0; i < perClient; i++) Exchange(sockets[id], request, buffers[id], responseLength); });
            }
            foreach (var t in threads) t.Start();
            foreach (var t in threads) t.Join();
        }
        Run(20_000 / clients + 1); // warm-up: tiered JIT, pools

        using var sampler = args.Contains("--sample") ? new AllocationSampler() : null;
        int gen0 = GC.CollectionCount(0);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        Run(requests / clients);
        long after = GC.GetTotalAllocatedBytes(precise: true);
        if (sampler is not null) Console.WriteLine("allocation samples by type (one per ~100 KB):\n" + sampler.Top(12));
        Console.WriteLine($"{path}: {(after - before) / (double)requests:0.0} bytes allocated per request over {requests} requests from {clients} client(s) on real sockets, transport {server.Transport!.Name} (client threads included); gen0 collections: {GC.CollectionCount(0) - gen0}");
        foreach (var s in sockets) s.Dispose();
        return 0;
    }

    /// <summary>The first exchange with a file server: the response's length from its head (Content-Length).</summary>
    private static int ExchangeFirst(Socket client, byte[] request, byte[] buffer)
    {
        client.Send(request);
        int total = 0, headEnd;
        while ((headEnd = buffer.AsSpan(0, total).IndexOf("\r\n\r\n"u8)) < 0) total += client.Receive(buffer, total, buffer.Length - total, SocketFlags.None);
        var head = Encoding.ASCII.GetString(buffer, 0, headEnd);
        int at = head.IndexOf("Content-Length: ", StringComparison.OrdinalIgnoreCase) + 16;
        int length = headEnd + 4 + int.Parse(head.AsSpan(at, head.IndexOf('\r', at) - at), System.Globalization.CultureInfo.InvariantCulture);
        while (total < length) total += client.Receive(buffer, total, buffer.Length - total, SocketFlags.None);
        return length;
    }

    private static int Exchange(Socket client, byte[] request, byte[] buffer, int expected)
    {
        client.Send(request);
        int total = 0;
        do { total += client.Receive(buffer, total, buffer.Length - total, SocketFlags.None); }
        while (expected > 0 && total < expected || expected == 0 && !buffer.AsSpan(0, total).EndsWith("!"u8) && !buffer.AsSpan(0, total).EndsWith("}"u8));
        return total;
    }
}
