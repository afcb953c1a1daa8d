using System.Buffers;
using System.Text;
using System.Text.RegularExpressions;
using PipeServer.Connections;
using PipeServer.Http;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Connections;

// Socket tests: a real HttpServer on 127.0.0.1:0, spoken to in exact bytes, answered in exact bytes
// (only the Date header's value is masked).
public partial class SocketProtocolTests
{
    [GeneratedRegex(@"Date: [^\r]+\r\n")]
    private static partial Regex DateLine();

    private static string Mask(byte[] raw) => DateLine().Replace(Encoding.Latin1.GetString(raw), "Date: *\r\n");

    private static async Task<string> ExchangeAsync(TestServer server, string request)
    {
        await using var c = await server.ConnectAsync();
        await c.SendAsync(request);
        return Mask(await c.ReadToEndAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Answers_a_get_with_exact_bytes(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        var text = await ExchangeAsync(server, "GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.Equal("HTTP/1.1 200 OK\r\nDate: *\r\nServer: PipeServer\r\nContent-Length: 13\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nHello, World!", text);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Date_header_is_rfc1123(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        var r = await c.ReadResponseAsync();
        var date = DateTimeOffset.ParseExact(r.Header("Date")!, "r", System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(Math.Abs((DateTimeOffset.UtcNow - date).TotalSeconds) < 5);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Keeps_the_connection_alive_across_requests(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        for (int i = 0; i < 3; i++)
        {
            await c.SendAsync("GET /json HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.Equal(200, r.Status);
            Assert.Equal("application/json", r.Header("Content-Type"));
            Assert.Equal("{\"message\":\"Hello, World!\"}", r.BodyText);
            Assert.Null(r.Header("Connection"));
        }
        Assert.Single(server.Server.Connections);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Answers_ten_pipelined_requests_in_order(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        // Later requests finish faster if anything ran them out of order.
        var batch = string.Concat(Enumerable.Range(0, 10).Select(i => $"GET /slow?ms={(10 - i) * 3} HTTP/1.1\r\nHost: a\r\n\r\n"));
        await c.SendAsync(batch);
        for (int i = 0; i < 10; i++)
        {
            var r = await c.ReadResponseAsync();
            Assert.Equal(200, r.Status);
            Assert.Equal($"waited {(10 - i) * 3} ms\n", r.BodyText);
        }
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Echoes_a_content_length_body(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        var text = await ExchangeAsync(server, "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world");
        Assert.Equal("HTTP/1.1 200 OK\r\nDate: *\r\nServer: PipeServer\r\nContent-Length: 11\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nhello world", text);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Decodes_a_chunked_request_and_streams_a_chunked_response(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer-A: 1\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        Assert.True(r.Chunked);
        Assert.True(r.TerminalChunkSeen);
        Assert.Equal("hello world", r.BodyText);
        // the connection is still usable: framing ended exactly at the trailer section
        await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal("Hello, World!", (await c.ReadResponseAsync()).BodyText);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Streams_chunks_as_they_are_produced(string transport)
    {
        // The handler writes chunk i, flushes, and produces chunk i+1 only once the client has received
        // chunk i. A server that buffered the response until the handler returned would deadlock here, and
        // the bounded reads fail the test instead.
        var gates = Enumerable.Range(0, 3).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
        await using var server = await TestServer.StartAsync(transport, routes: r => r.MapGet("/gated", async (req, res) =>
        {
            for (int i = 0; i < gates.Length; i++)
            {
                res.Body.Write(Encoding.ASCII.GetBytes($"chunk {i}\n"));
                await res.Body.FlushAsync(req.Aborted);
                await gates[i].Task.WaitAsync(TimeSpan.FromSeconds(10), req.Aborted);
            }
        }));
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /gated HTTP/1.1\r\nHost: a\r\n\r\n");
        var head = await c.ReadHeadAsync();
        Assert.Equal("chunked", head.Header("Transfer-Encoding"));
        Assert.Null(head.Header("Content-Length"));
        for (int i = 0; i < gates.Length; i++)
        {
            Assert.Equal($"chunk {i}\n", Encoding.ASCII.GetString((await c.ReadChunkAsync(TimeSpan.FromSeconds(3)))!));
            gates[i].SetResult();
        }
        Assert.Null(await c.ReadChunkAsync()); // the terminal chunk
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task The_stream_endpoint_sends_each_chunk_at_its_interval(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /stream?count=3&interval=250 HTTP/1.1\r\nHost: a\r\n\r\n");
        var head = await c.ReadHeadAsync();
        Assert.Equal("chunked", head.Header("Transfer-Encoding"));
        Assert.Equal("chunk 0\n", Encoding.ASCII.GetString((await c.ReadChunkAsync())!));
        // Chunk 0 came before the two intervals behind chunk 2 had passed: it was not held back with the rest.
        var sinceFirst = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal("chunk 1\n", Encoding.ASCII.GetString((await c.ReadChunkAsync())!));
        Assert.Equal("chunk 2\n", Encoding.ASCII.GetString((await c.ReadChunkAsync())!));
        Assert.Null(await c.ReadChunkAsync());
        Assert.True(sinceFirst.Elapsed >= TimeSpan.FromMilliseconds(400), $"chunks 1 and 2 came {sinceFirst.Elapsed.TotalMilliseconds} ms after chunk 0, not two 250 ms intervals later");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Sends_100_continue_only_when_the_handler_reads_the_body(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        var interim = await c.ReadResponseAsync();
        Assert.Equal(100, interim.Status);
        Assert.Equal("HTTP/1.1 100 Continue", interim.StatusLine);
        await c.SendAsync("hello");
        var r = await c.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        Assert.Equal("hello", r.BodyText);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task No_100_continue_when_the_handler_ignores_the_body(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(405, r.Status); // /plaintext is GET only; the body was never asked for
        Assert.True(r.ConnectionClose); // the client may not send the body at all: do not wait for it
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Head_sends_the_get_headers_and_no_body(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /json HTTP/1.1\r\nHost: a\r\n\r\nHEAD /json HTTP/1.1\r\nHost: a\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        var get = await c.ReadResponseAsync();
        var head = await c.ReadResponseAsync(noBody: true);
        var next = await c.ReadResponseAsync();
        Assert.Equal(get.Header("Content-Length"), head.Header("Content-Length"));
        Assert.Equal(get.Header("Content-Type"), head.Header("Content-Type"));
        Assert.Equal("Hello, World!", next.BodyText); // no stray body bytes between HEAD and the next response
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Http10_closes_by_default(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        var text = await ExchangeAsync(server, "GET /plaintext HTTP/1.0\r\n\r\n");
        Assert.Equal("HTTP/1.1 200 OK\r\nDate: *\r\nServer: PipeServer\r\nContent-Length: 13\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nHello, World!", text);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Http10_keep_alive_is_honoured(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal("keep-alive", r.Header("Connection"));
        await c.SendAsync("GET /plaintext HTTP/1.0\r\n\r\n");
        var r2 = await c.ReadResponseAsync();
        Assert.True(r2.ConnectionClose);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Http10_streaming_response_is_close_delimited(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        var text = await ExchangeAsync(server, "GET /stream?count=2&interval=0 HTTP/1.0\r\n\r\n");
        Assert.DoesNotContain("Transfer-Encoding", text);
        Assert.Contains("Connection: close\r\n", text);
        Assert.EndsWith("\r\n\r\nchunk 0\nchunk 1\n", text);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Connection_close_from_the_client_is_honoured(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.True(r.ConnectionClose);
        Assert.True(await c.ClosedWithFinAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Connection_close_from_the_handler_is_honoured(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: r => r.MapGet("/bye", (_, res) =>
        {
            res.Headers.Set("Connection", "close");
            return res.WriteTextAsync("bye");
        }));
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /bye HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.True((await c.ReadResponseAsync()).ConnectionClose);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Unknown_path_is_404_and_wrong_method_is_405_with_allow(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /nope HTTP/1.1\r\nHost: a\r\n\r\nDELETE /echo HTTP/1.1\r\nHost: a\r\n\r\nOPTIONS /json HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(404, (await c.ReadResponseAsync()).Status);
        var r = await c.ReadResponseAsync();
        Assert.Equal(405, r.Status);
        Assert.Equal("OPTIONS, POST", r.Header("Allow"));
        var o = await c.ReadResponseAsync();
        Assert.Equal(204, o.Status);
        Assert.Equal("GET, HEAD, OPTIONS", o.Header("Allow"));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task An_unread_body_is_drained_before_the_next_request(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        var body = new string('x', 10_000);
        await c.SendAsync($"POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: {body.Length}\r\n\r\n{body}GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(405, (await c.ReadResponseAsync()).Status);
        Assert.Equal("Hello, World!", (await c.ReadResponseAsync()).BodyText);
    }

    public static TheoryData<bool> BodySent => new() { false, true };

    [Theory]
    [MemberData(nameof(TransportData.Cross), typeof(SocketProtocolTests), nameof(BodySent), MemberType = typeof(TransportData))]
    public async Task A_large_unread_body_closes_the_connection_instead(bool bodySent, string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxUnreadBodyDrain = 1024 });
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + (bodySent ? new string('x', 20_000) : ""));
        var r = await c.ReadResponseAsync();
        Assert.Equal(405, r.Status);
        Assert.True(r.ConnectionClose); // known before the response started: 100000 > 1024
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync()); // the response is whole: FIN, not RST
        await ends.AssertNextAsync(ConnectionEndReason.UnreadBodyTooLarge);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_large_unread_chunked_body_is_drained_up_to_the_bound_then_closes(string transport)
    {
        // Chunked: the size is unknown at the response start, so the server answers keep-alive, drains up to
        // MaxUnreadBodyDrain, finds more, and closes with a FIN behind the complete response.
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxUnreadBodyDrain = 1024 });
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /json HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + new string('x', 2048) + "\r\n");
        Assert.Equal(405, (await c.ReadResponseAsync()).Status);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync());
        await ends.AssertNextAsync(ConnectionEndReason.UnreadBodyTooLarge);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_request_sent_one_byte_at_a_time_is_served(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendByteByByteAsync("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        Assert.Equal("abc", (await c.ReadResponseAsync()).BodyText);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Handler_exception_before_the_response_is_a_500_and_the_server_lives_on(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: r => r.MapGet("/boom", (_, _) => throw new InvalidOperationException("secret detail")));
        using var ends = server.WatchConnectionEnds();
        await using (var c = await server.ConnectAsync())
        {
            await c.SendAsync("GET /boom HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.Equal(500, r.Status);
            Assert.DoesNotContain("secret", r.BodyText); // never a stack trace or message to the client
            Assert.True(r.ConnectionClose);
            Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync()); // the 500 is whole
        }
        await ends.AssertNextAsync(ConnectionEndReason.ApplicationError);
        await using var c2 = await server.ConnectAsync();
        await c2.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await c2.ReadResponseAsync()).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Handler_exception_after_the_response_started_aborts_the_connection(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: r => r.MapGet("/half", async (_, res) =>
        {
            res.Body.Write("partial"u8);
            await res.Body.FlushAsync();
            throw new InvalidOperationException("late failure");
        }));
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /half HTTP/1.1\r\nHost: a\r\n\r\n");
        // The client must be able to tell the response is incomplete: a reset (which on Linux may even arrive
        // before the head is read), never a FIN, which would pass a cut close-delimited body for a whole one.
        Assert.Equal(CloseKind.Reset, await c.DiscardUntilCloseAsync());
        await ends.AssertNextAsync(ConnectionEndReason.ApplicationError);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Declared_content_length_not_met_aborts(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: r => r.MapGet("/short", (_, res) =>
        {
            res.ContentLength = 10;
            res.Body.Write("abc"u8);
            return ValueTask.CompletedTask;
        }));
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /short HTTP/1.1\r\nHost: a\r\n\r\n");
        // 3 of 10 declared bytes: the client must see the body cut by a reset, not ended by a FIN.
        Assert.Equal(CloseKind.Reset, await c.DiscardUntilCloseAsync());
        await ends.AssertNextAsync(ConnectionEndReason.ApplicationError);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Response_header_injection_is_refused(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: r => r.MapGet("/inject", (_, res) =>
        {
            res.Headers.Add("X-Evil", "a\r\nSet-Cookie: x=1");
            return res.WriteTextAsync("x");
        }));
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /inject HTTP/1.1\r\nHost: a\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(500, r.Status);
        Assert.Null(r.Header("Set-Cookie"));
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Status_204_and_304_carry_no_body(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: r =>
        {
            r.MapGet("/204", (_, res) => { res.StatusCode = 204; return ValueTask.CompletedTask; });
            r.MapGet("/304", (_, res) => { res.StatusCode = 304; return ValueTask.CompletedTask; });
        });
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var all = Mask(await c.ReadToEndAsync());
        Assert.StartsWith("HTTP/1.1 204 No Content\r\nDate: *\r\nServer: PipeServer\r\n\r\nHTTP/1.1 304 Not Modified\r\nDate: *\r\nServer: PipeServer\r\n\r\nHTTP/1.1 200 OK", all);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Tolerates_an_empty_line_before_the_request(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await c.ReadResponseAsync()).Status);
    }
}
