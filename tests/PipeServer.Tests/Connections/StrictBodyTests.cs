using PipeServer.Tests.Http;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Connections;

// Strict bodies over a real socket: malformed chunked framing that has already been received is a 400
// with "Connection: close" and a FIN, even from /echo, which starts its 200 with the first body bytes
// it is handed (before the fix it started the 200 and the connection was then reset).
public class StrictBodyTests
{
    [Theory]
    [MemberData(nameof(TransportData.Cross), typeof(ChunkedFramingTests), nameof(ChunkedFramingTests.MalformedBodies), MemberType = typeof(TransportData))]
    public async Task Echo_answers_malformed_framing_sent_in_one_write_with_400(string name, string body, string transport)
    {
        _ = name;
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body);
        var r = await c.ReadResponseAsync();
        Assert.Equal(400, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.True(await c.ClosedWithFinAsync(), "expected a FIN after the 400, not a reset");
    }

    [Theory]
    [MemberData(nameof(TransportData.Cross), typeof(ChunkedFramingTests), nameof(ChunkedFramingTests.MalformedBodies), MemberType = typeof(TransportData))]
    public async Task Malformed_framing_sent_byte_by_byte_is_400(string name, string body, string transport)
    {
        _ = name;
        await using var server = await TestServer.StartAsync(transport, routes: RejectionTests.MapSink);
        await using var c = await server.ConnectAsync();
        await c.SendByteByByteAsync("POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body);
        var r = await c.ReadResponseAsync();
        Assert.Equal(400, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.True(await c.ClosedWithFinAsync(), "expected a FIN after the 400, not a reset");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task No_100_continue_for_an_http_1_0_request(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        await using var c = await server.ConnectAsync();
        // An HTTP/1.0 client cannot wait for 100 Continue: it sends the body with the head.
        await c.SendAsync("POST /echo HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
        var r = await c.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        Assert.Equal("hello", r.BodyText);
    }
}
