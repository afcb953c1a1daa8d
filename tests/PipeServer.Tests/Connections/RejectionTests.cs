using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using PipeServer.Connections;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Connections;

// Every rejection the server makes, over a real socket: the status, "Connection: close", and a graceful
// close (FIN, not RST) that lets the client read the response.
public class RejectionTests
{
    public static TheoryData<string, int> Cases => new()
    {
        { "GET / HTTP/1.1\nHost: a\n\n", 400 },                                                     // bare LF
        { "GET / HTTP/1.1\r\nHost: a\n\r\n", 400 },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400 },                                    // bare CR
        { "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400 },                                    // NUL
        { "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400 },                                               // method token
        { "GET / HTTP/1.1\r\nHost: a\r\nBad[Name]: 1\r\n\r\n", 400 },                               // header name token
        { "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400 },                                              // space before colon
        { "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n", 400 },                            // obs-fold
        { "GET / HTTP/1.1\r\n\r\n", 400 },                                                          // no Host
        { "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },                                    // two Hosts
        { "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400 },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\n", 400 },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3,3\r\n\r\nabc", 400 },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400 },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400 },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: br, chunked\r\n\r\n", 501 },
        { "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", 400 },
        { "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n0\r\n\r\n", 400 },
        { "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n", 400 },
        { "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", 400 },
        { "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\nabc\r\n0\r\n\r\n", 400 }, // LF in chunk ext line
        { "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400 },
        { "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505 },
        { "GET / HTTP/3.1\r\nHost: a\r\n\r\n", 505 },
        { "GET / HTTQ/1.1\r\nHost: a\r\n\r\n", 400 },
        { "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
        { "GET /" + new string('a', 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414 },
        { "GET / HTTP/1.1\r\nHost: a\r\n" + string.Concat(Enumerable.Range(0, 101).Select(i => $"X-{i}: v\r\n")) + "\r\n", 431 },
        { "GET / HTTP/1.1\r\nHost: a\r\nX: " + new string('v', 33 * 1024) + "\r\n\r\n", 431 },
        { "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 30000001\r\n\r\n", 413 },
        { "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
    };

    /// <summary>Reads the whole body before answering, so a body error surfaces before the response starts.</summary>
    internal static void MapSink(PipeServer.Routing.Router r) => r.MapPost("/sink", async (req, res) =>
    {
        long total = 0;
        while (true)
        {
            var result = await req.Body.ReadAsync(req.Aborted);
            total += result.Buffer.Length;
            req.Body.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted) break;
        }
        await res.WriteTextAsync(total.ToString(System.Globalization.CultureInfo.InvariantCulture));
    });

    [Theory]
    [MemberData(nameof(TransportData.Cross), typeof(RejectionTests), nameof(Cases), MemberType = typeof(TransportData))]
    public async Task Rejects_with_status_and_close(string request, int status, string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: MapSink);
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync(request);
        var r = await c.ReadResponseAsync();
        Assert.Equal(status, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.Equal("text/plain; charset=utf-8", r.Header("Content-Type"));
        Assert.DoesNotContain("Exception", r.BodyText);
        Assert.True(await c.ClosedWithFinAsync(), "expected a FIN after the rejection, not a reset");
        await c.DisposeAsync(); // our FIN ends the server's lingering close early
        await ends.AssertNextAsync(ConnectionEndReason.BadRequest);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_chunked_body_over_the_limit_is_413(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxRequestBodySize = 100 }, MapSink);
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + new string('a', 64) + "\r\n40\r\n" + new string('b', 64) + "\r\n0\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(413, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync());
        await ends.AssertNextAsync(ConnectionEndReason.BadRequest);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_content_length_over_the_limit_is_refused_before_the_body_is_sent(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxRequestBodySize = 100 });
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(413, r.Status); // not 100 Continue
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync());
        await ends.AssertNextAsync(ConnectionEndReason.BadRequest);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task The_rejection_is_readable_even_when_the_client_keeps_sending(string transport)
    {
        // A client that sends a refused body anyway: the lingering close reads it away so our 413 is not
        // destroyed by an RST from the kernel.
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxRequestBodySize = 10 });
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n" + new string('z', 20000));
        var r = await c.ReadResponseAsync();
        Assert.Equal(413, r.Status);
        Assert.True(await c.ClosedWithFinAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_slow_request_head_gets_408(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { RequestHeaderTimeout = TimeSpan.FromMilliseconds(300) });
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(408, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync());
        await ends.AssertNextAsync(ConnectionEndReason.RequestHeadersTimeout);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_silent_connection_is_closed_at_the_header_timeout_without_a_response(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { RequestHeaderTimeout = TimeSpan.FromMilliseconds(300) });
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync(TimeSpan.FromSeconds(5))); // no byte of a response, then FIN
        await ends.AssertNextAsync(ConnectionEndReason.RequestHeadersTimeout);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task An_idle_keep_alive_connection_is_closed_at_the_keep_alive_timeout(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { KeepAliveTimeout = TimeSpan.FromMilliseconds(300) });
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        var clock = Stopwatch.StartNew(); // before the response: the server's idle time starts no earlier than this
        Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync(TimeSpan.FromSeconds(5)));
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(280), $"closed after {clock.Elapsed.TotalMilliseconds} ms, before the 300 ms keep-alive timeout (less the coarse tick clock)");
        await ends.AssertNextAsync(ConnectionEndReason.KeepAliveTimeout);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Connections_over_the_limit_get_503(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxConnections = 2 });
        await using var a = await server.ConnectAsync();
        await using var b = await server.ConnectAsync();
        await server.WaitForConnectionCountAsync(2);
        await using var c = await server.ConnectAsync();
        var r = await c.ReadResponseAsync();
        Assert.Equal(503, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.Equal(CloseKind.Fin, await c.DiscardUntilCloseAsync()); // (the whole response is parsed by the 503's own test)
        Assert.Equal(1, server.Server.RejectedConnections);
        // the admitted ones are still served
        await a.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await a.ReadResponseAsync()).Status);
    }

    /// <summary>
    /// The client's side of a lingering close: keeps sending <paramref name="chunkSize"/>-byte pieces (a pause
    /// between them) until a send fails because the server reset the connection, or the limit passes.
    /// </summary>
    private static async Task<(long Sent, TimeSpan At, SocketError Error)> SendUntilRefusedAsync(Socket socket, int chunkSize, TimeSpan pause, Stopwatch clock, TimeSpan limit)
    {
        var chunk = new byte[chunkSize];
        long sent = 0;
        using var cts = new CancellationTokenSource(limit);
        try
        {
            while (true)
            {
                sent += await socket.SendAsync(chunk, SocketFlags.None, cts.Token);
                if (pause > TimeSpan.Zero) await Task.Delay(pause, cts.Token); // the client's pace, not synchronisation
            }
        }
        catch (SocketException ex) { return (sent, clock.Elapsed, ex.SocketErrorCode); }
        catch (OperationCanceledException) { return (sent, clock.Elapsed, SocketError.TimedOut); }
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_lingering_close_reads_a_slow_sender_for_at_most_500_ms(string transport)
    {
        // A refused upload the client keeps sending, slowly (well under 64 KiB in 500 ms): the server answers,
        // sends its FIN at once, reads and discards for 500 ms, then closes; the client's next bytes are reset.
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxRequestBodySize = 10 });
        await using var c = await server.ConnectAsync();
        var clock = Stopwatch.StartNew(); // the server's linger timer starts after this: it needs our request first
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n");
        var sender = SendUntilRefusedAsync(c.Socket, 1024, TimeSpan.FromMilliseconds(20), clock, TimeSpan.FromSeconds(5));
        Assert.Equal(413, (await c.ReadResponseAsync()).Status);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync()); // the response is whole; the server will send nothing more
        var finAt = clock.Elapsed;
        var (sent, refusedAt, error) = await sender.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(error is SocketError.ConnectionReset or SocketError.Shutdown, $"expected the server to reset the connection once it stopped reading; the sender ended with {error} after {sent} bytes");
        Assert.True(sent < 64 * 1024, $"{sent} bytes sent: the byte bound, not the time bound, may have ended the linger");
        Assert.True(finAt + TimeSpan.FromMilliseconds(100) < refusedAt, $"the FIN came at {finAt.TotalMilliseconds} ms and the reset at {refusedAt.TotalMilliseconds} ms: the FIN should come with the response, not at the end of the linger");
        Assert.True(refusedAt >= TimeSpan.FromMilliseconds(480), $"the server stopped reading {refusedAt.TotalMilliseconds} ms after the request, before its 500 ms linger");
        Assert.True(refusedAt < TimeSpan.FromSeconds(3), $"the server was still reading {refusedAt.TotalMilliseconds} ms after the request: the linger is not bounded in time");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_lingering_close_reads_a_fast_sender_for_at_most_64_KiB(string transport)
    {
        // A refused upload sent as fast as the network takes it: the server discards 64 KiB, then closes at once
        // (not at the 500 ms timer); the rest of the upload is reset. What the client's kernel accepted before
        // the reset is what the input pipe took before the rejection, 64 KiB, and the two sockets' buffers:
        // far below what loopback carries in 500 ms (tens of MiB at least) if the discard were unbounded.
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxRequestBodySize = 10 });
        await using var c = await server.ConnectAsync();
        c.Socket.SendBufferSize = 64 * 1024;
        var clock = Stopwatch.StartNew();
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n");
        var sender = SendUntilRefusedAsync(c.Socket, 64 * 1024, TimeSpan.Zero, clock, TimeSpan.FromSeconds(5));
        Assert.Equal(413, (await c.ReadResponseAsync()).Status);
        var (sent, refusedAt, error) = await sender.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(error is SocketError.ConnectionReset or SocketError.Shutdown, $"expected a reset once the server stopped reading; the sender ended with {error} after {sent} bytes");
        // Bytes, not time: on a loaded machine the reset may come late, but never after more than the input
        // pipe (1 MiB, filled before the rejection was known), the 64 KiB discard and the kernel buffers.
        Assert.True(sent < 16L * 1024 * 1024, $"the client got {sent} bytes into the connection in {refusedAt.TotalMilliseconds} ms: the server read far more than 64 KiB");
    }
}
