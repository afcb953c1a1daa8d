using System.Diagnostics;
using System.Net.Sockets;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Lifecycle;

// The graceful shutdown, observed from outside the process: real signals, real sockets, timings.
public class ShutdownProcessTests
{
    private static async Task<RawConnection> IdleKeepAliveAsync(int port)
    {
        var c = await RawConnection.ConnectAsync(port);
        await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        return c;
    }

    [Fact]
    public async Task In_flight_request_completes_with_connection_close_and_exit_0()
    {
        using var server = await ServerProcess.StartAsync();
        await using var c = await RawConnection.ConnectAsync(server.Port);
        await c.SendAsync("GET /slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n");
        await Task.Delay(300); // the request is in the handler
        server.Signal(ServerProcess.SIGTERM);
        var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(10));
        Assert.Equal(200, r.Status);
        Assert.Equal("waited 1500 ms\n", r.BodyText);
        Assert.True(r.ConnectionClose);
        Assert.True(await c.ClosedWithFinAsync());
        var lastConnectionDone = Stopwatch.StartNew();
        Assert.Equal(0, await server.WaitForExitAsync());
        // Budget: 100 ms after the last connection, plus runtime teardown and slack for this shared machine.
        Assert.True(lastConnectionDone.Elapsed < TimeSpan.FromMilliseconds(600), $"exit came {lastConnectionDone.Elapsed.TotalMilliseconds} ms after the last connection closed");
        Assert.Contains("1 connection(s) drained, 0 aborted", server.Output);
    }

    [Fact]
    public async Task Pipelined_requests_already_received_are_answered_during_the_drain()
    {
        using var server = await ServerProcess.StartAsync();
        await using var c = await RawConnection.ConnectAsync(server.Port);
        await c.SendAsync("GET /slow?ms=1000 HTTP/1.1\r\nHost: a\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /json HTTP/1.1\r\nHost: a\r\n\r\n");
        await Task.Delay(300);
        server.Signal(ServerProcess.SIGTERM);
        var first = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(10));
        var second = await c.ReadResponseAsync();
        var third = await c.ReadResponseAsync();
        Assert.Equal(["waited 1000 ms\n", "Hello, World!", "{\"message\":\"Hello, World!\"}"], new[] { first.BodyText, second.BodyText, third.BodyText });
        Assert.True(third.ConnectionClose);
        Assert.True(await c.ClosedWithFinAsync());
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Fact]
    public async Task New_connects_are_refused_once_accepting_stops()
    {
        using var server = await ServerProcess.StartAsync();
        await using var inFlight = await RawConnection.ConnectAsync(server.Port);
        await inFlight.SendAsync("GET /slow?ms=2000 HTTP/1.1\r\nHost: a\r\n\r\n");
        await Task.Delay(300);
        server.Signal(ServerProcess.SIGTERM);
        await Task.Delay(300); // stop-accepting has run (drain delay 0)
        var ex = await Assert.ThrowsAsync<SocketException>(() => RawConnection.ConnectAsync(server.Port));
        Assert.Equal(SocketError.ConnectionRefused, ex.SocketErrorCode);
        Assert.Equal(200, (await inFlight.ReadResponseAsync(timeout: TimeSpan.FromSeconds(10))).Status);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Fact]
    public async Task Idle_keep_alive_connections_get_eof_promptly_and_silent_ones_do_not_delay_exit()
    {
        using var server = await ServerProcess.StartAsync();
        var idle = new List<RawConnection>();
        for (int i = 0; i < 5; i++) idle.Add(await IdleKeepAliveAsync(server.Port));
        var silent = new List<RawConnection>();
        for (int i = 0; i < 5; i++) silent.Add(await RawConnection.ConnectAsync(server.Port)); // never send a byte
        await Task.Delay(200);

        var clock = Stopwatch.StartNew();
        server.Signal(ServerProcess.SIGTERM);
        foreach (var c in idle) Assert.True(await c.ClosedWithFinAsync(TimeSpan.FromSeconds(5)), "idle connection was reset, not closed");
        var eofAfter = clock.Elapsed;
        foreach (var c in silent) Assert.True(await c.ClosedWithFinAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(0, await server.WaitForExitAsync());
        var exitAfter = clock.Elapsed;

        // Budget: 100 ms for the server, plus slack for signal delivery and this shared 2-core machine.
        Assert.True(eofAfter < TimeSpan.FromMilliseconds(400), $"idle connections saw EOF after {eofAfter.TotalMilliseconds} ms");
        Assert.True(exitAfter < TimeSpan.FromMilliseconds(1500), $"exit took {exitAfter.TotalMilliseconds} ms");
        Assert.Contains("10 connection(s) drained, 0 aborted", server.Output);
        foreach (var c in idle.Concat(silent)) await c.DisposeAsync();
    }

    [Fact]
    public async Task Drain_delay_serves_with_connection_close_while_readiness_fails()
    {
        using var server = await ServerProcess.StartAsync("--drain-delay", "1.5");
        await using var kept = await IdleKeepAliveAsync(server.Port);
        server.Signal(ServerProcess.SIGTERM);
        await Task.Delay(300);

        // New connections are still accepted and served, each response closing its connection.
        await using (var c = await RawConnection.ConnectAsync(server.Port))
        {
            await c.SendAsync("GET /readyz HTTP/1.1\r\nHost: a\r\n\r\n");
            var ready = await c.ReadResponseAsync();
            Assert.Equal(503, ready.Status);
            Assert.True(ready.ConnectionClose);
            Assert.True(await c.IsClosedByServerAsync());
        }
        await using (var c = await RawConnection.ConnectAsync(server.Port))
        {
            await c.SendAsync("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
            var health = await c.ReadResponseAsync();
            Assert.Equal(200, health.Status);
            Assert.True(health.ConnectionClose);
        }
        // An existing keep-alive connection gets its next response with Connection: close too.
        await kept.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.True((await kept.ReadResponseAsync()).ConnectionClose);

        Assert.Equal(0, await server.WaitForExitAsync());
        Assert.Contains("drain-delay", server.Output);
    }

    [Fact]
    public async Task The_deadline_aborts_a_long_request_and_exits_2()
    {
        using var server = await ServerProcess.StartAsync("--shutdown-timeout", "0.5");
        await using var c = await RawConnection.ConnectAsync(server.Port);
        await c.SendAsync("GET /slow?ms=30000 HTTP/1.1\r\nHost: a\r\n\r\n");
        await Task.Delay(300);
        var clock = Stopwatch.StartNew();
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(2, await server.WaitForExitAsync());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"exit took {clock.Elapsed}");
        Assert.True(await c.IsClosedByServerAsync(TimeSpan.FromSeconds(2)));
        Assert.Contains("0 connection(s) drained, 1 aborted", server.Output);
    }

    [Fact]
    public async Task A_second_signal_exits_3_at_once()
    {
        using var server = await ServerProcess.StartAsync("--shutdown-timeout", "60");
        await using var c = await RawConnection.ConnectAsync(server.Port);
        await c.SendAsync("GET /slow?ms=30000 HTTP/1.1\r\nHost: a\r\n\r\n");
        await Task.Delay(300);
        server.Signal(ServerProcess.SIGTERM);
        await Task.Delay(300);
        var clock = Stopwatch.StartNew();
        server.Signal(ServerProcess.SIGINT);
        Assert.Equal(3, await server.WaitForExitAsync());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"exit took {clock.Elapsed}");
    }

    [Theory]
    [InlineData(ServerProcess.SIGHUP)]
    [InlineData(ServerProcess.SIGINT)]
    public async Task Sighup_and_sigint_shut_down_like_sigterm(int signal)
    {
        using var server = await ServerProcess.StartAsync();
        await using var c = await RawConnection.ConnectAsync(server.Port);
        await c.SendAsync("GET /slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n");
        await Task.Delay(300);
        server.Signal(signal);
        var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(10));
        Assert.Equal(200, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Fact]
    public async Task A_stream_in_flight_ends_with_a_valid_terminal_chunk()
    {
        using var server = await ServerProcess.StartAsync();
        await using var c = await RawConnection.ConnectAsync(server.Port);
        await c.SendAsync("GET /stream?count=1000&interval=50 HTTP/1.1\r\nHost: a\r\n\r\n");
        await Task.Delay(400);
        var clock = Stopwatch.StartNew();
        server.Signal(ServerProcess.SIGTERM);
        var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(10));
        Assert.True(r.TerminalChunkSeen);
        Assert.StartsWith("chunk 0\nchunk 1\n", r.BodyText);
        Assert.True(r.BodyText.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length < 1000);
        Assert.Equal(0, await server.WaitForExitAsync());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task A_burst_of_keep_alive_clients_never_sees_a_truncated_response()
    {
        using var server = await ServerProcess.StartAsync();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        int complete = 0, cleanCloses = 0;

        async Task ClientAsync(int id)
        {
            await using var c = await RawConnection.ConnectAsync(server.Port);
            for (int i = 0; i < 10_000 && !stop.IsCancellationRequested; i++)
            {
                var path = (i % 3) switch { 0 => "/plaintext", 1 => "/json", _ => "/slow?ms=20" };
                try { await c.SendAsync($"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n"); }
                catch (SocketException) { Interlocked.Increment(ref cleanCloses); return; }
                RawResponse r;
                try { r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(10)); }
                catch (EndOfStreamException ex) when (ex.Message.StartsWith("connection closed before", StringComparison.Ordinal))
                {
                    // The keep-alive race every server has: closed before a byte of the response. Clients retry.
                    Interlocked.Increment(ref cleanCloses);
                    return;
                }
                catch (SocketException) { Interlocked.Increment(ref cleanCloses); return; }
                // Anything else (EOF inside a body, a bad status line) fails the test: a truncated response.
                Assert.Equal(200, r.Status);
                Interlocked.Increment(ref complete);
                if (r.ConnectionClose) { Assert.True(await c.IsClosedByServerAsync()); Interlocked.Increment(ref cleanCloses); return; }
            }
        }

        var clients = Enumerable.Range(0, 32).Select(i => Task.Run(() => ClientAsync(i))).ToArray();
        await Task.Delay(1000);
        server.Signal(ServerProcess.SIGTERM);
        await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(0, await server.WaitForExitAsync());
        Assert.True(complete > 32, $"only {complete} responses completed");
        Assert.Equal(32, cleanCloses);
    }
}
