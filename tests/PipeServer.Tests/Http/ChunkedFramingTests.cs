using System.Buffers;
using System.Text;
using PipeServer.Connections;
using PipeServer.Http;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Http;

// Strict bodies and strict responses, over in-memory pipes: chunked framing that is already received is
// refused with 400 before the handler sees a byte of the body; "Expect: 100-continue" is ignored in
// HTTP/1.0; a reason phrase cannot split the response.
public class ChunkedFramingTests
{
    private const string Head = "POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

    /// <summary>
    /// Malformed chunked bodies, each behind a well-formed first chunk (so a reader that hands out data
    /// before looking further gives the handler "hello" first).
    /// </summary>
    public static TheoryData<string, string> MalformedBodies => new()
    {
        { "bare CR after data", "5\r\nhello\r0\r\n\r\n" },
        { "bare LF after data", "5\r\nhello\n0\r\n\r\n" },
        { "SP CRLF after data", "5\r\nhello \r\n0\r\n\r\n" },
        { "LF CR after data", "5\r\nhello\n\r0\r\n\r\n" },
        { "size under the data length", "3\r\nhello\r\n0\r\n\r\n" },
        { "missing last chunk", "5\r\nhello\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n" },
        { "0x0 as a size", "5\r\nhello\r\n0x0\r\n\r\n" },
        { "size that overflows", "5\r\nhello\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n" },
        { "trailers ended by bare LF", "5\r\nhello\r\n0\r\nX: y\r\n\n" },
        { "trailer field ended by bare LF", "5\r\nhello\r\n0\r\nX: y\n\r\n" },
        { "empty trailer section ended by bare LF", "5\r\nhello\r\n0\r\n\n" },
        { "trailers run into the next request", "5\r\nhello\r\n0\r\nX: y\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n" },
        { "bad framing after several good chunks", "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0;\r\n\r\n" },
    };

    /// <summary>Reads the whole body before answering with its length; records every body byte it was handed.</summary>
    private sealed class RecordingHandler
    {
        private long _bytesSeen;
        public long BytesSeen => Interlocked.Read(ref _bytesSeen);
        public readonly TaskCompletionSource FirstData = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public RequestHandler Handler => async (req, res) =>
        {
            long total = 0;
            while (true)
            {
                var result = await req.Body.ReadAsync(req.Aborted);
                total += result.Buffer.Length;
                Interlocked.Add(ref _bytesSeen, result.Buffer.Length);
                if (result.Buffer.Length > 0) FirstData.TrySetResult();
                req.Body.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted) break;
            }
            await res.WriteTextAsync(total.ToString(System.Globalization.CultureInfo.InvariantCulture));
        };
    }

    private static async Task AssertRejectedAsync(InMemoryConnection c)
    {
        var text = await c.ReadAllAsync();
        Assert.StartsWith("HTTP/1.1 400 Bad Request\r\n", text, StringComparison.Ordinal);
        Assert.Contains("Connection: close\r\n", text, StringComparison.Ordinal);
        Assert.Single(text.Split("HTTP/1.1 "), s => s.Length > 0); // one response: nothing after the 400
        await c.Processing.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(ConnectionEndReason.BadRequest, c.Connection.EndReason);
        Assert.True(c.LingerRequested, "a rejection ends with a lingering close (FIN), like every other rejection");
        Assert.False(c.Aborted, "a 400 before the response started is answered, not reset");
    }

    [Theory]
    [MemberData(nameof(MalformedBodies))]
    public async Task Malformed_framing_received_in_one_write_is_400_before_the_handler_sees_a_byte(string name, string body)
    {
        _ = name;
        var handler = new RecordingHandler();
        await using var c = new InMemoryConnection(handler.Handler);
        await c.SendAsync(Head + body);
        await AssertRejectedAsync(c);
        Assert.Equal(0, handler.BytesSeen);
    }

    [Theory]
    [MemberData(nameof(MalformedBodies))]
    public async Task Malformed_framing_fed_byte_by_byte_is_400(string name, string body)
    {
        _ = name;
        var handler = new RecordingHandler();
        await using var c = new InMemoryConnection(handler.Handler);
        foreach (byte b in Encoding.Latin1.GetBytes(Head + body))
            await c.ClientOutput.WriteAsync(new[] { b }).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        await AssertRejectedAsync(c);
    }

    [Fact]
    public async Task Malformed_framing_received_with_the_head_is_400_from_echo_instead_of_a_cut_200()
    {
        // The demo /echo starts its 200 with the first body bytes it gets; checking the framing of what is
        // buffered before handing any out is what lets it answer 400 instead of a reset.
        var router = new PipeServer.Routing.Router();
        PipeServer.Demo.DemoEndpoints.Map(router, new PipeServer.Server.ServerLifetime());
        await using var c = new InMemoryConnection(router.HandleAsync);
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n");
        await AssertRejectedAsync(c);
    }

    [Fact]
    public async Task A_well_formed_body_in_one_write_is_read_whole()
    {
        var handler = new RecordingHandler();
        await using var c = new InMemoryConnection(handler.Handler);
        await c.SendAsync(Head + "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n" + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        var text = await c.ReadUntilAsync("\r\n\r\n0");
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", text, StringComparison.Ordinal);
        Assert.Contains("\r\n\r\n11HTTP/1.1 200 OK\r\n", text, StringComparison.Ordinal); // the pipelined request behind it is served
        Assert.Equal(11, handler.BytesSeen);
    }

    [Fact]
    public async Task Bytes_not_yet_received_are_still_streamed()
    {
        // Validation looks only at what is buffered: the handler gets the first chunk before the rest exists.
        var handler = new RecordingHandler();
        await using var c = new InMemoryConnection(handler.Handler);
        await c.SendAsync(Head + "5\r\nhello\r\n");
        await handler.FirstData.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(5, handler.BytesSeen);
        await c.SendAsync("0\r\n\r\n");
        var text = await c.ReadUntilAsync("\r\n\r\n5");
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Malformed_framing_that_arrives_after_the_response_started_still_aborts()
    {
        // Bytes that arrive after the handler already answered cannot be refused with a status any more.
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var c = new InMemoryConnection(async (req, res) =>
        {
            var first = await req.Body.ReadAsync(req.Aborted);
            req.Body.AdvanceTo(first.Buffer.End);
            res.Body.Write("started"u8);
            await res.Body.FlushAsync(req.Aborted);
            started.TrySetResult();
            while (true)
            {
                var result = await req.Body.ReadAsync(req.Aborted);
                req.Body.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted) break;
            }
        });
        await c.SendAsync(Head + "5\r\nhello\r\n");
        await started.Task.WaitAsync(TimeSpan.FromSeconds(5));
        await c.SendAsync("0x0\r\n\r\n");
        await c.Processing.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(c.Aborted);
        Assert.Equal(ConnectionEndReason.BadRequest, c.Connection.EndReason);
    }

    [Fact]
    public async Task Expect_100_continue_is_ignored_in_http_1_0()
    {
        // RFC 9110 §10.1.1: a server that receives 100-continue in an HTTP/1.0 request MUST ignore it.
        var waiting = new TaskCompletionSource<HttpRequest>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var c = new InMemoryConnection(async (req, res) =>
        {
            waiting.TrySetResult(req);
            using var ms = new MemoryStream();
            await req.BodyStream.CopyToAsync(ms, req.Aborted);
            await res.WriteBytesAsync(ms.ToArray(), "application/octet-stream");
        });
        await c.SendAsync("POST /up HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        var req = await waiting.Task.WaitAsync(TimeSpan.FromSeconds(5));
        // Once the handler's read waits for the client, any 100 Continue would already have been flushed.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (!req.BodyReader.IsWaitingForData)
        {
            Assert.True(DateTime.UtcNow < deadline, "the handler never started waiting for the body");
            await Task.Delay(5);
        }
        await c.SendAsync("hello");
        var text = await c.ReadAllAsync();
        Assert.DoesNotContain("100 Continue", text, StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", text, StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\nhello", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Expect_100_continue_is_still_honoured_in_http_1_1()
    {
        await using var c = new InMemoryConnection(async (req, res) =>
        {
            using var ms = new MemoryStream();
            await req.BodyStream.CopyToAsync(ms, req.Aborted);
            await res.WriteBytesAsync(ms.ToArray(), "application/octet-stream");
        });
        await c.SendAsync("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        Assert.Equal("HTTP/1.1 100 Continue\r\n\r\n", await c.ReadUntilAsync("\r\n\r\n"));
        await c.SendAsync("hello");
        Assert.EndsWith("\r\n\r\nhello", await c.ReadUntilAsync("hello"), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("OK\r\nSet-Cookie: x=1")]
    [InlineData("OK\nSet-Cookie: x=1")]
    [InlineData("OK\rSet-Cookie: x=1")]
    [InlineData("OK\0")]
    public async Task A_reason_phrase_that_could_split_the_response_is_a_500(string reason)
    {
        await using var c = new InMemoryConnection((_, res) =>
        {
            res.ReasonPhrase = reason;
            return res.WriteTextAsync("x");
        });
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var text = await c.ReadAllAsync();
        Assert.StartsWith("HTTP/1.1 500 Internal Server Error\r\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Set-Cookie", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\0", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_custom_reason_phrase_is_sent()
    {
        await using var c = new InMemoryConnection((_, res) =>
        {
            res.StatusCode = 299;
            res.ReasonPhrase = "Quite\tFine";
            return res.WriteTextAsync("x");
        });
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 299 Quite\tFine\r\n", await c.ReadAllAsync(), StringComparison.Ordinal);
    }
}
