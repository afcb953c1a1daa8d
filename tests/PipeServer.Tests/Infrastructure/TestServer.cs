using System.Net;
using PipeServer.Demo;
using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Server;

namespace PipeServer.Tests.Infrastructure;

/// <summary>An in-process HttpServer on 127.0.0.1, port 0, with the demo routes plus whatever a test adds.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private TestServer(HttpServer server, Router router) { Server = server; Router = router; }

    public HttpServer Server { get; }
    public Router Router { get; }
    public int Port => Server.EndPoint!.Port;

    public static Task<TestServer> StartAsync(Func<HttpServerOptions, HttpServerOptions>? configure = null, Action<Router>? routes = null) =>
        StartAsync("sockets", configure, routes);

    /// <summary>As above, on the named transport (<see cref="TransportData.All"/>); <paramref name="configure"/> may not change it.</summary>
    public static async Task<TestServer> StartAsync(string transport, Func<HttpServerOptions, HttpServerOptions>? configure = null, Action<Router>? routes = null)
    {
        var options = new HttpServerOptions { Address = IPAddress.Loopback, Port = 0, ShutdownTimeout = TimeSpan.FromSeconds(5), Transport = TransportData.Kind(transport) };
        if (configure is not null) options = configure(options);
        var router = new Router();
        var server = new HttpServer(options, router.HandleAsync);
        DemoEndpoints.Map(router, server.Lifetime);
        routes?.Invoke(router);
        await server.StartAsync();
        // The fixture's promise: a test named for a transport ran on it.
        if (server.Transport?.Name != transport) throw new InvalidOperationException($"asked for transport {transport}, the server runs {server.Transport?.Name}");
        return new TestServer(server, router);
    }

    public Task<RawConnection> ConnectAsync() => RawConnection.ConnectAsync(Port);

    /// <summary>Starts recording why each connection of this server ends (dispose it with the test).</summary>
    public ConnectionEnds WatchConnectionEnds() => new(Server.Metrics.Meter);

    /// <summary>Polls (bounded) until <paramref name="condition"/> holds; for states the server exposes but signals nowhere.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(5));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting until {what}");
            await Task.Delay(5);
        }
    }

    /// <summary>Waits (bounded) until the registry holds exactly <paramref name="count"/> connections.</summary>
    public async Task WaitForConnectionCountAsync(int count, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(5));
        while (Server.ConnectionCount != count)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"expected {count} connection(s), have {Server.ConnectionCount}");
            await Task.Delay(10);
        }
    }

    public async ValueTask DisposeAsync() => await Server.DisposeAsync();
}
