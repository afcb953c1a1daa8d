using System.Net.Http.Headers;
using System.Security.Cryptography;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Connections;

// A real-world client against the server: .NET's HttpClient (its own parser, pooling and framing).
public class HttpClientTests
{
    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task HttpClient_gets_json_and_plaintext_over_a_pooled_connection(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{server.Port}"), Timeout = TimeSpan.FromSeconds(10) };
        for (int i = 0; i < 20; i++)
        {
            var json = await http.GetAsync("/json");
            Assert.Equal("application/json", json.Content.Headers.ContentType!.MediaType);
            Assert.Equal("{\"message\":\"Hello, World!\"}", await json.Content.ReadAsStringAsync());
            Assert.Equal("Hello, World!", await http.GetStringAsync("/plaintext"));
        }
        Assert.Equal(1, server.Server.TotalConnections);
    }

    public static TheoryData<int, bool> Bodies => new() { { 0, false }, { 1, false }, { 1_000_000, false }, { 1_000_000, true } };

    [Theory]
    [MemberData(nameof(TransportData.Cross), typeof(HttpClientTests), nameof(Bodies), MemberType = typeof(TransportData))]
    public async Task HttpClient_round_trips_a_body_through_echo(int size, bool chunked, string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{server.Port}"), Timeout = TimeSpan.FromSeconds(20) };
        var payload = RandomNumberGenerator.GetBytes(size);
        HttpContent content = chunked ? new StreamContent(new NonSeekableStream(payload)) : new ByteArrayContent(payload);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var request = new HttpRequestMessage(HttpMethod.Post, "/echo") { Content = content };
        if (chunked) request.Headers.TransferEncodingChunked = true;
        using var response = await http.SendAsync(request);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(payload, await response.Content.ReadAsByteArrayAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task HttpClient_reads_a_chunked_stream(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var text = await http.GetStringAsync($"http://127.0.0.1:{server.Port}/stream?count=5&interval=5");
        Assert.Equal(string.Concat(Enumerable.Range(0, 5).Select(i => $"chunk {i}\n")), text);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Two_hundred_concurrent_clients_leave_an_empty_registry(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        async Task ClientAsync()
        {
            await using var c = await server.ConnectAsync();
            for (int i = 0; i < 20; i++)
            {
                await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
                Assert.Equal("Hello, World!", (await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(20))).BodyText);
            }
        }
        await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => Task.Run(ClientAsync))).WaitAsync(TimeSpan.FromSeconds(60));
        await server.WaitForConnectionCountAsync(0);
        Assert.Equal(200, server.Server.TotalConnections);
    }

    private sealed class NonSeekableStream(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
    }
}
