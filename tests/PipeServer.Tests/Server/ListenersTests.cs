using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Server;

// An HttpServer given several listening sockets (what socket activation hands it: TCP and Unix), in-process:
// each serves, they share the registry and the connection cap, every shutdown phase covers all of them, and
// an accept that fails for one connection (through the HttpServer.AcceptSocket seam) never ends a loop.
public class ListenersTests
{
    private sealed class Rig : IAsyncDisposable
    {
        public required HttpServer Server { get; init; }
        public required int TcpPort { get; init; }
        public required string UnixPath { get; init; }
        public required CapturingLogger Log { get; init; }
        public required CapturingLogger AccessLog { get; init; }

        public Task<RawConnection> ConnectTcpAsync() => RawConnection.ConnectAsync(TcpPort);
        public Task<RawConnection> ConnectUnixAsync() => RawConnection.ConnectUnixAsync(UnixPath);

        public async ValueTask DisposeAsync()
        {
            await Server.DisposeAsync();
            File.Delete(UnixPath);
        }
    }

    /// <summary>A TCP and a Unix listener bound by the test, as systemd would pass them, given to a server on <paramref name="transport"/>.</summary>
    private static async Task<Rig> StartAsync(string transport, Func<HttpServerOptions, HttpServerOptions>? configure = null,
        Func<Socket, CancellationToken, ValueTask<Socket>>? accept = null)
    {
        var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        tcp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        tcp.Listen(64);
        var path = Path.Combine(Path.GetTempPath(), $"pipeserver-{Guid.NewGuid():N}.sock");
        var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        unix.Bind(new UnixDomainSocketEndPoint(path));
        unix.Listen(64);

        var options = new HttpServerOptions { ShutdownTimeout = TimeSpan.FromSeconds(5), Transport = TransportData.Kind(transport), AccessLog = true };
        if (configure is not null) options = configure(options);
        var router = new Router();
        var log = new CapturingLogger("PipeServer.Server");
        var accessLog = new CapturingLogger("PipeServer.AccessLog");
        var server = new HttpServer(options, router.HandleAsync, log, accessLog);
        DemoEndpoints.Map(router, server.Lifetime);
        server.UseListenSocket(tcp, "web");
        server.UseListenSocket(unix, "local");
        if (accept is not null) server.AcceptSocket = accept;
        await server.StartAsync();
        return new Rig { Server = server, TcpPort = ((IPEndPoint)tcp.LocalEndPoint!).Port, UnixPath = path, Log = log, AccessLog = accessLog };
    }

    private static async Task AssertServesAsync(RawConnection c)
    {
        await using (c)
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.Equal(200, r.Status);
            Assert.Equal("Hello, World!", r.BodyText);
        }
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Every_given_socket_serves_and_is_listed_with_its_real_address(string transport)
    {
        await using var rig = await StartAsync(transport);
        await AssertServesAsync(await rig.ConnectTcpAsync());
        await AssertServesAsync(await rig.ConnectUnixAsync());
        await AssertServesAsync(await rig.ConnectUnixAsync()); // the Unix loop survived its first connection

        var listeners = rig.Server.Listeners;
        Assert.Equal(2, listeners.Count);
        Assert.Equal($"http://127.0.0.1:{rig.TcpPort}", listeners[0].Url);
        Assert.Equal("web", listeners[0].Name);
        Assert.False(listeners[0].IsUnix);
        Assert.Equal($"unix:{rig.UnixPath}", listeners[1].Url);
        Assert.Equal("local", listeners[1].Name);
        Assert.True(listeners[1].IsUnix);
        Assert.Equal(rig.TcpPort, rig.Server.EndPoint!.Port); // EndPoint: the first TCP listener, as before
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_unix_peer_is_logged_as_unix_and_its_proxy_header_is_refused_unless_trusted(string transport)
    {
        // HAProxy `server s1 unix@/run/pipeserver.sock send-proxy`: the PROXY header must be believed with
        // --trusted-proxies unix:, and is refused (as from any untrusted peer) without it.
        await using (var untrusted = await StartAsync(transport, o => o with { ProxyProtocol = true, TrustedProxies = [IPNetwork.Parse("10.0.0.0/8")] }))
        {
            await AssertServesAsync(await untrusted.ConnectUnixAsync()); // no header: a direct client
            var e = Assert.Single(await untrusted.AccessLog.WaitForAsync(1));
            Assert.StartsWith("unix: - - [", e.Message);
            Assert.Equal("unix:", e.State["PeerAddress"]);
            await using var c = await untrusted.ConnectUnixAsync();
            await c.SendAsync("PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Contains(await c.WaitForCloseAsync(), RawConnection.ClosedWithoutAnswer);
            await untrusted.Log.WaitForAsync(1, l => l.Message.Contains("from unix: closed before its first request: PROXY header from an untrusted peer", StringComparison.Ordinal));
        }
        await using var trusted = await StartAsync(transport, o => o with { ProxyProtocol = true, TrustUnixSocketPeers = true });
        await using (var c = await trusted.ConnectUnixAsync())
        {
            await c.SendAsync("PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        }
        var line = Assert.Single(await trusted.AccessLog.WaitForAsync(1));
        Assert.StartsWith("203.0.113.7 - - [", line.Message);
        Assert.Equal("unix:", line.State["PeerAddress"]);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task X_forwarded_for_from_a_trusted_unix_peer_names_the_client(string transport)
    {
        // nginx `proxy_pass http://unix:/run/pipeserver.sock;` with X-Forwarded-For, and --trusted-proxies unix:.
        await using var rig = await StartAsync(transport, o => o with { TrustUnixSocketPeers = true });
        await using (var c = await rig.ConnectUnixAsync())
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.4\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            await c.ReadResponseAsync();
            await c.ReadResponseAsync();
        }
        // Over TCP from 127.0.0.1, which is not trusted, the same header proves nothing.
        await using (var c = await rig.ConnectTcpAsync())
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.4\r\n\r\n");
            await c.ReadResponseAsync();
        }
        var lines = await rig.AccessLog.WaitForAsync(3);
        Assert.StartsWith("198.51.100.4 - - [", lines[0].Message);
        Assert.StartsWith("unix: - - [", lines[1].Message); // no header: the client is the Unix peer
        Assert.StartsWith("127.0.0.1 - - [", lines[2].Message);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Both_listeners_count_against_one_connection_cap(string transport)
    {
        await using var rig = await StartAsync(transport, o => o with { MaxConnections = 1 });
        await using var held = await rig.ConnectTcpAsync();
        await held.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        await held.ReadResponseAsync(); // registered, and kept alive
        await using var over = await rig.ConnectUnixAsync();
        var r = await over.ReadResponseAsync();
        Assert.Equal(503, r.Status);
        Assert.Equal(1, rig.Server.RejectedConnections);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Shutdown_stops_accepting_on_every_listener_and_drains_connections_from_all(string transport)
    {
        await using var rig = await StartAsync(transport);
        await using var tcp = await rig.ConnectTcpAsync();
        await using var unix = await rig.ConnectUnixAsync();
        await tcp.SendAsync("GET /slow?ms=300 HTTP/1.1\r\nHost: a\r\n\r\n");
        await unix.SendAsync("GET /slow?ms=300 HTTP/1.1\r\nHost: a\r\n\r\n");
        await TestServer.WaitUntilAsync(() => rig.Server.Connections.Count(c => c.State == PipeServer.Connections.ConnectionState.Active) == 2, "both requests run");
        var shutdown = rig.Server.ShutdownAsync();
        Assert.Equal(200, (await tcp.ReadResponseAsync()).Status);
        Assert.Equal(200, (await unix.ReadResponseAsync()).Status);
        var report = await shutdown.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, report.OpenAtStopAccepting);
        Assert.True(report.AllDrained);
        Assert.Contains(rig.Log.Events, e => e.Message.Contains("2 listeners closed", StringComparison.Ordinal));
        await Assert.ThrowsAnyAsync<SocketException>(() => rig.ConnectTcpAsync());
        await Assert.ThrowsAnyAsync<SocketException>(() => rig.ConnectUnixAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_failed_accept_or_a_connection_that_cannot_start_never_ends_the_accept_loop(string transport)
    {
        // What accept(2) can report for one pending connection or a passing shortage, then a connection that
        // throws as it starts (its socket already closed: setting its options fails). Each listener's loop
        // meets them all, and must still serve the next connection.
        var failures = new SocketError[] { SocketError.ConnectionAborted, SocketError.ProtocolOption, SocketError.NoBufferSpaceAvailable, SocketError.SocketError };
        var injected = new System.Collections.Concurrent.ConcurrentDictionary<Socket, int>();
        async ValueTask<Socket> Accept(Socket listener, CancellationToken ct)
        {
            int n = injected.AddOrUpdate(listener, 1, (_, v) => v + 1);
            if (n <= failures.Length) throw new SocketException((int)failures[n - 1]);
            var socket = await listener.AcceptAsync(ct);
            if (n == failures.Length + 1) socket.Dispose(); // the first real connection cannot start
            return socket;
        }
        await using var rig = await StartAsync(transport, accept: Accept);
        foreach (var connect in new Func<Task<RawConnection>>[] { rig.ConnectTcpAsync, rig.ConnectUnixAsync })
        {
            await using (var doomed = await connect()) Assert.Contains(await doomed.WaitForCloseAsync(), RawConnection.ClosedWithoutAnswer);
            await AssertServesAsync(await connect());
        }
        Assert.False(rig.Server.AcceptLoop.IsCompleted);
        Assert.Contains(rig.Log.Events, e => e.EventId.Id == 3 && e.Message.Contains("SocketError", StringComparison.Ordinal)); // the unknown one, a warning
        Assert.Contains(rig.Log.Events, e => e.EventId.Id == 61); // the TCP one's NoDelay threw: a start failure, logged as such
    }

    [Theory]
    [InlineData(2, 5)]
    [InlineData(3, 10)]
    [InlineData(9, 640)]
    [InlineData(10, 1000)]
    [InlineData(50, 1000)]
    public void The_accept_back_off_doubles_to_a_second(int failures, int milliseconds) =>
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), HttpServer.AcceptBackOff(failures));
}
