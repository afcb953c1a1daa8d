using System.Diagnostics;
using PipeServer.Connections;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Server;

// The shutdown phases of HttpServer, in process: what each phase did, as its report says.
public class HttpServerShutdownTests
{
    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Counts_idle_and_in_flight_connections_as_drained(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        var idle = await server.ConnectAsync();
        await idle.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        await idle.ReadResponseAsync();
        var busy = await server.ConnectAsync();
        await busy.SendAsync("GET /slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n"); // long enough that a busy machine still drains it mid-flight
        await server.WaitForConnectionCountAsync(2);
        await TestServer.WaitUntilAsync(() => server.Server.Connections.Count(c => c.State == ConnectionState.Active) == 1, "the busy request is in its handler");

        var shutdown = server.Server.ShutdownAsync();
        var r = await busy.ReadResponseAsync();
        Assert.True(r.ConnectionClose);
        Assert.Equal(CloseKind.Fin, await busy.WaitForCloseAsync()); // drained: the response is whole
        Assert.Equal(CloseKind.Fin, await idle.WaitForCloseAsync());
        var report = await shutdown.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, report.OpenAtStopAccepting);
        Assert.Equal(2, report.Drained);
        Assert.Equal(0, report.Aborted);
        Assert.True(report.AllDrained);
        Assert.False(server.Server.Lifetime.IsReady);
        await idle.DisposeAsync(); await busy.DisposeAsync();
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Aborts_what_is_left_at_the_deadline(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { ShutdownTimeout = TimeSpan.FromMilliseconds(300) });
        var busy = await server.ConnectAsync();
        await busy.SendAsync("GET /slow?ms=60000 HTTP/1.1\r\nHost: a\r\n\r\n");
        await server.WaitForConnectionCountAsync(1);
        await TestServer.WaitUntilAsync(() => server.Server.Connections.Any(c => c.State == ConnectionState.Active), "the request is in its handler");
        var clock = Stopwatch.StartNew();
        var report = await server.Server.ShutdownAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, report.Aborted);
        Assert.False(report.AllDrained);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3));
        Assert.Equal(0, server.Server.ConnectionCount);
        Assert.Equal(CloseKind.Reset, await busy.WaitForCloseAsync()); // aborted at the deadline: RST, no response
        await busy.DisposeAsync();
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Reset_resets_every_connection_at_once_even_in_the_middle_of_the_drain_delay(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { ShutdownTimeout = TimeSpan.FromSeconds(60), DrainDelay = TimeSpan.FromSeconds(3) });
        var stream = await server.ConnectAsync();
        await stream.SendAsync("GET /stream?count=100000&interval=20 HTTP/1.0\r\n\r\n"); // close-delimited
        Assert.True(await stream.WaitForReceivedAsync("chunk 0\n"));
        var idle = await server.ConnectAsync();
        await idle.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        await idle.ReadResponseAsync();
        await server.WaitForConnectionCountAsync(2);
        var shutdown = server.Server.ShutdownAsync(); // now in its drain delay, for 3 s

        Assert.Equal(2, server.Server.ResetAllConnections());
        Assert.False(await stream.ClosedWithFinAsync(), "a cut close-delimited stream must end with a reset");
        Assert.False(await idle.ClosedWithFinAsync(), "the idle connection was closed, not reset");
        await server.WaitForConnectionCountAsync(0);
        Assert.False(shutdown.IsCompleted); // the graceful path, still in its drain delay, is not what ended them
        var report = await shutdown.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, report.OpenAtStopAccepting);
        await stream.DisposeAsync(); await idle.DisposeAsync();
    }
}
