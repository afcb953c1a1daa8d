using System.IO.Pipelines;
using System.Text;
using System.Text.Json.Serialization;
using PipeServer.Http;
using PipeServer.Testing;
using Xunit;

namespace PipeServer.Tests.Http;

public sealed record Item(string Name, int Count);

[JsonSerializable(typeof(Item))]
internal sealed partial class ResponseTestJson : JsonSerializerContext;

// A response written more than once, in every way a handler can write one, and the framing each gets:
// Content-Length while it fits the 64 KiB buffer, chunked (close-delimited on HTTP/1.0) beyond it or after a
// flush, the handler's own Content-Length honoured and enforced. Through the public in-memory server.
public class ResponseWritingTests
{
    private static string Big(int length) => string.Create(length, 0, (span, _) => { for (int i = 0; i < span.Length; i++) span[i] = (char)('a' + i % 26); });

    [Fact]
    public async Task Text_bytes_and_json_written_in_turn_are_one_body_with_content_length()
    {
        await using var server = new InMemoryServer(async (_, res) =>
        {
            await res.WriteTextAsync("one ");
            await res.WriteTextAsync("two ");
            await res.WriteBytesAsync("three "u8);
            await res.WriteJsonAsync(new Item("x", 1), ResponseTestJson.Default.Item);
            res.Headers.Set("X-After-Writes", "yes"); // nothing is sent before the handler returns
        });
        var r = await server.GetAsync("/");
        Assert.Equal("one two three {\"Name\":\"x\",\"Count\":1}", r.BodyText);
        Assert.Equal(r.Body.Length, r.ContentLength);
        Assert.False(r.IsChunked);
        Assert.Equal("text/plain; charset=utf-8", r.GetHeader("Content-Type")); // the first write's default wins
        Assert.Equal("yes", r.GetHeader("X-After-Writes"));
    }

    [Fact]
    public async Task A_content_type_set_by_the_handler_is_kept_and_an_explicit_one_replaces_it()
    {
        await using var server = new InMemoryServer(async (req, res) =>
        {
            if (req.Path == "/html") res.ContentType = "text/html";
            await res.WriteTextAsync("<p>");
            if (req.Path == "/csv") await res.WriteTextAsync("a,b", "text/csv");
        });
        Assert.Equal("text/html", (await server.GetAsync("/html")).GetHeader("Content-Type"));
        Assert.Equal("text/csv", (await server.GetAsync("/csv")).GetHeader("Content-Type"));
    }

    [Theory]
    [InlineData(1)]       // one call over the bound
    [InlineData(1000)]    // many small ones
    public async Task More_than_64_KiB_goes_chunked_on_http_1_1_and_close_delimited_on_1_0(int pieces)
    {
        var text = Big(200_000);
        await using var server = new InMemoryServer(async (_, res) =>
        {
            int size = text.Length / pieces;
            for (int i = 0; i < pieces; i++) await res.WriteTextAsync(text.Substring(i * size, i == pieces - 1 ? text.Length - i * size : size));
        });
        var r11 = await server.GetAsync("/");
        Assert.True(r11.IsChunked);
        Assert.Null(r11.ContentLength);
        Assert.Equal(text, r11.BodyText);

        var r10 = await server.SendAsync("GET / HTTP/1.0\r\n\r\n");
        Assert.False(r10.IsChunked);
        Assert.Null(r10.ContentLength);
        Assert.True(r10.ConnectionClose);
        Assert.Equal(text, r10.BodyText);
    }

    [Fact]
    public async Task Exactly_64_KiB_still_has_a_content_length()
    {
        var text = Big(HttpResponse.MaxBufferedBody);
        await using var server = new InMemoryServer(async (_, res) => { await res.WriteTextAsync(text[..1000]); await res.WriteTextAsync(text[1000..]); });
        var r = await server.GetAsync("/");
        Assert.Equal(text.Length, r.ContentLength);
        Assert.Equal(text, r.BodyText);
    }

    [Fact]
    public async Task A_flush_starts_a_chunked_response_and_later_writes_stream()
    {
        await using var server = new InMemoryServer(async (_, res) =>
        {
            await res.WriteTextAsync("head ");
            await res.FlushAsync();
            Assert.True(res.HasStarted);
            await res.WriteTextAsync("tail");
        });
        var r = await server.GetAsync("/");
        Assert.True(r.IsChunked);
        Assert.Equal("head tail", r.BodyText);
    }

    [Fact]
    public async Task A_content_length_set_by_the_handler_is_honoured_over_the_buffer_bound()
    {
        var text = Big(150_000);
        await using var server = new InMemoryServer(async (_, res) =>
        {
            res.ContentLength = text.Length;
            for (int i = 0; i < text.Length; i += 10_000) await res.WriteTextAsync(text.Substring(i, 10_000));
        });
        var r = await server.GetAsync("/");
        Assert.False(r.IsChunked);
        Assert.Equal(text.Length, r.ContentLength);
        Assert.Equal(text, r.BodyText);
    }

    [Fact]
    public async Task Writing_past_a_declared_content_length_is_a_500_while_nothing_was_sent()
    {
        await using var server = new InMemoryServer(async (_, res) =>
        {
            res.ContentLength = 4;
            await res.WriteTextAsync("abc");
            await res.WriteTextAsync("de"); // one byte too many
        });
        var r = await server.GetAsync("/");
        Assert.Equal(500, r.StatusCode);
        Assert.True(r.ConnectionClose);
    }

    [Fact]
    public async Task Content_length_cannot_change_once_the_response_started()
    {
        Exception? seen = null;
        await using var server = new InMemoryServer(async (_, res) =>
        {
            await res.WriteTextAsync("x");
            await res.FlushAsync();
            try { res.ContentLength = 1; } catch (InvalidOperationException e) { seen = e; }
        });
        await server.GetAsync("/");
        Assert.NotNull(seen);
    }

    [Theory]
    [InlineData(10, false)]
    [InlineData(300_000, true)]
    public async Task CopyFromAsync_sends_a_short_stream_with_its_length_and_streams_a_long_one(int length, bool chunked)
    {
        var bytes = Encoding.ASCII.GetBytes(Big(length));
        await using var server = new InMemoryServer((_, res) => res.CopyFromAsync(new MemoryStream(bytes), "application/x-test"));
        var r = await server.GetAsync("/");
        Assert.Equal(chunked, r.IsChunked);
        Assert.Equal(bytes, r.Body);
        Assert.Equal("application/x-test", r.GetHeader("Content-Type"));
    }

    [Fact]
    public async Task Head_of_a_handler_that_writes_several_times_has_the_get_length_and_no_body()
    {
        await using var server = new InMemoryServer(async (_, res) => { await res.WriteTextAsync("12345"); await res.WriteTextAsync("678"); });
        await using var c = server.Connect();
        await c.WriteAsync("HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        var head = await c.ReadResponseAsync(headRequest: true);
        Assert.Equal(8, head.ContentLength);
        Assert.Empty(head.Body);
        Assert.Equal("12345678", (await c.ReadResponseAsync()).BodyText); // framing kept: the next response parses
    }

    [Fact]
    public async Task The_body_reads_as_a_stream_and_as_a_pipe_when_it_arrives_one_byte_at_a_time()
    {
        await using var server = new InMemoryServer(async (req, res) =>
        {
            if (req.Path == "/stream")
            {
                using var reader = new StreamReader(req.BodyStream, Encoding.UTF8, leaveOpen: true);
                await res.WriteTextAsync("stream:" + await reader.ReadToEndAsync(req.Aborted));
                return;
            }
            var body = req.Body; // the PipeReader
            long total = 0;
            var sb = new StringBuilder();
            while (true)
            {
                var result = await body.ReadAsync(req.Aborted);
                foreach (var segment in result.Buffer) sb.Append(Encoding.UTF8.GetString(segment.Span));
                total += result.Buffer.Length;
                body.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted) break;
            }
            await res.WriteTextAsync($"pipe:{sb} ({total})");
        });
        await using var c = server.Connect();
        var requests = "POST /stream HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            + "POST /pipe HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n";
        foreach (byte b in Encoding.ASCII.GetBytes(requests)) await c.WriteAsync(new[] { b });
        Assert.Equal("stream:hello", (await c.ReadResponseAsync()).BodyText);
        Assert.Equal("pipe:abcde (5)", (await c.ReadResponseAsync()).BodyText);
    }

    [Fact]
    public async Task ReadJsonAsync_reads_the_body_through_source_generated_metadata()
    {
        await using var server = new InMemoryServer(async (req, res) =>
        {
            try
            {
                var item = await req.ReadJsonAsync(ResponseTestJson.Default.Item, req.Aborted);
                await res.WriteJsonAsync(item! with { Count = item.Count + 1 }, ResponseTestJson.Default.Item);
            }
            catch (System.Text.Json.JsonException)
            {
                res.StatusCode = 400;
                await res.WriteTextAsync("bad json");
            }
        });
        var ok = await server.SendAsync("POST", "/", "{\"Name\":\"n\",\"Count\":41}", "application/json");
        Assert.Equal(new Item("n", 42), ok.ReadJson(ResponseTestJson.Default.Item));
        Assert.Equal("application/json", ok.GetHeader("Content-Type"));
        Assert.Equal(400, (await server.SendAsync("POST", "/", "{nope", "application/json")).StatusCode);
    }

    [Fact]
    public async Task A_streamed_response_written_in_a_loop_flushes_as_it_goes()
    {
        // 1 MiB in 4 KiB writes with no flush of the handler's own: the writes flush whenever 64 KiB are
        // pending, so the client sees the start of the body while the handler is still writing (and a
        // client that does not read holds the handler up, instead of the output growing without bound).
        var clientSawBytes = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var c = new PipeServer.Tests.Infrastructure.InMemoryConnection(async (_, res) =>
        {
            var piece = new byte[4096];
            for (int i = 0; i < 256; i++)
            {
                await res.WriteBytesAsync(piece);
                if (i == 128) await clientSawBytes.Task.WaitAsync(TimeSpan.FromSeconds(5));
            }
        });
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        var start = await c.ReadUntilAsync("Transfer-Encoding: chunked");
        clientSawBytes.SetResult();
        Assert.StartsWith("HTTP/1.1 200 OK", start, StringComparison.Ordinal);
        var rest = await c.ReadUntilAsync("\r\n0\r\n\r\n");
        Assert.EndsWith("\r\n0\r\n\r\n", rest, StringComparison.Ordinal);
    }
}
