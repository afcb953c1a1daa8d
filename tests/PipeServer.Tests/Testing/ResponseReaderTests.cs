using System.IO.Pipelines;
using System.Text;
using PipeServer.Testing;
using Xunit;

namespace PipeServer.Tests.Testing;

// The client end of the in-memory server, on its own: raw response bytes arriving one byte per flush must
// parse exactly as when they arrive at once, and a broken or cut response must be an error, not a guess.
public class ResponseReaderTests
{
    private static async Task<List<TestResponse>> ReadAllAsync(string raw, int responses, bool oneByteAtATime, bool[]? head = null, bool close = true)
    {
        var pipe = new Pipe();
        var reader = new ResponseReader(pipe.Reader, maxBodySize: 1024);
        var writing = Task.Run(async () =>
        {
            var bytes = Encoding.Latin1.GetBytes(raw);
            if (oneByteAtATime) foreach (byte b in bytes) await pipe.Writer.WriteAsync(new[] { b });
            else await pipe.Writer.WriteAsync(bytes);
            if (close) await pipe.Writer.CompleteAsync();
        });
        var result = new List<TestResponse>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        for (int i = 0; i < responses; i++) result.Add(await reader.ReadAsync(head?[i] ?? false, cts.Token));
        await writing.WaitAsync(TimeSpan.FromSeconds(5));
        return result;
    }

    private const string Mixed =
        "HTTP/1.1 100 Continue\r\n\r\n" +
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello" +
        "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" + // answers a HEAD: no body follows
        "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=\"x\"\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n" +
        "HTTP/1.1 204 No Content\r\n\r\n" +
        "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil the end";

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Every_framing_parses_the_same_whole_or_one_byte_at_a_time(bool oneByteAtATime)
    {
        var r = await ReadAllAsync(Mixed, 5, oneByteAtATime, head: [false, true, false, false, false]);
        Assert.Equal("hello", r[0].BodyText);
        Assert.Equal(["1", "2"], r[0].GetHeaderValues("x-a"));
        Assert.Equal((99, 0), (r[1].ContentLength!.Value, r[1].Body.Length));
        Assert.Equal((201, "Created", "abcde", true), (r[2].StatusCode, r[2].ReasonPhrase, r[2].BodyText, r[2].IsChunked));
        Assert.Equal("t", Assert.Single(r[2].Trailers).Value);
        Assert.Equal(204, r[3].StatusCode);
        Assert.Equal(("HTTP/1.0", "until the end"), (r[4].Version, r[4].BodyText));
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")]              // cut inside a body
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")] // no last chunk
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")]       // not a size
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n")] // no CRLF after data
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n")]                   // over the body bound
    [InlineData("SMTP ready\r\n\r\n")]                                                // not HTTP
    [InlineData("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n")]
    [InlineData("")]                                                                  // closed before a response
    public async Task A_broken_or_cut_response_is_an_error(string raw) =>
        await Assert.ThrowsAsync<InvalidDataException>(() => ReadAllAsync(raw, 1, oneByteAtATime: true));
}
