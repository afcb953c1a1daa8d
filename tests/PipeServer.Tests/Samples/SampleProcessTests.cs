using System.Text;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Samples;

// The samples (samples/), run as their own processes on every transport, spoken to in raw HTTP: they are
// documentation, so they must keep doing what docs/embedding.md says they do.
public class SampleProcessTests
{
    private static string Post(string target, string json) =>
        $"POST {target} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(json)}\r\n\r\n{json}";

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task JsonApi_serves_route_parameters_runs_its_background_job_and_stops_cleanly(string transport)
    {
        using var p = await ServerProcess.StartSampleAsync("JsonApi", "--port", "0", "--transport", transport, "--purge-interval", "0.2");
        await using var c = await RawConnection.ConnectAsync(p.Port);

        await c.SendAsync(Post("/todos", "{\"title\":\"write the docs\"}"));
        var created = await c.ReadResponseAsync();
        Assert.Equal(201, created.Status);
        Assert.Equal("/todos/1", created.Header("Location"));
        Assert.Equal("{\"id\":1,\"title\":\"write the docs\",\"done\":false}", created.BodyText);

        await c.SendAsync("GET /todos/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /todos/x HTTP/1.1\r\nHost: a\r\n\r\nGET /todos?done=false HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal("application/json", (await c.ReadResponseAsync()).Header("Content-Type"));
        Assert.Equal(404, (await c.ReadResponseAsync()).Status); // "x" is not an id: the handler's rule
        Assert.Equal("[{\"id\":1,\"title\":\"write the docs\",\"done\":false}]", (await c.ReadResponseAsync()).BodyText);

        await c.SendAsync("PUT /todos/1 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        var put = await c.ReadResponseAsync();
        Assert.Equal(405, put.Status);
        Assert.Equal("DELETE, GET, HEAD, OPTIONS", put.Header("Allow"));

        await c.SendAsync(Post("/todos", "{\"title\":"));
        Assert.Equal(400, (await c.ReadResponseAsync()).Status);

        await c.SendAsync(Post("/todos/1/done", ""));
        Assert.Contains("\"done\":true", (await c.ReadResponseAsync()).BodyText, StringComparison.Ordinal);
        await p.WaitForOutputAsync("Purged 1 done item(s)"); // the background job, under the same ServiceManager
        await c.SendAsync("GET /todos/1 HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(404, (await c.ReadResponseAsync()).Status);

        p.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await p.WaitForExitAsync());
        // Stopped in reverse order of start: the job, then the server.
        var output = p.Output;
        Assert.True(output.IndexOf("Service purge stopped", StringComparison.Ordinal) < output.IndexOf("Service http stopped", StringComparison.Ordinal), output);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Streaming_ends_its_stream_with_a_last_event_and_the_terminal_chunk_on_drain(string transport)
    {
        using var p = await ServerProcess.StartSampleAsync("Streaming", "--port", "0", "--transport", transport);
        await using var c = await RawConnection.ConnectAsync(p.Port);
        await c.SendAsync("GET /ticks?interval=100 HTTP/1.1\r\nHost: a\r\n\r\n");
        var head = await c.ReadHeadAsync();
        Assert.Equal("chunked", head.Header("Transfer-Encoding"));
        Assert.Equal("text/event-stream", head.Header("Content-Type"));
        Assert.Equal("data: tick 0\n\n", Encoding.UTF8.GetString((await c.ReadChunkAsync())!));

        p.Signal(ServerProcess.SIGTERM); // the stream would go on for ever: only the drain ends it
        var rest = new StringBuilder();
        byte[]? chunk;
        while ((chunk = await c.ReadChunkAsync()) is not null) rest.Append(Encoding.UTF8.GetString(chunk));
        Assert.EndsWith("event: bye\ndata: server is shutting down\n\n", rest.ToString(), StringComparison.Ordinal);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync()); // closed after the response, not reset

        Assert.Equal(0, await p.WaitForExitAsync());
        Assert.Contains("Shutdown: 1 of 1 connection(s) drained, 0 aborted", p.Output, StringComparison.Ordinal);
    }
}
