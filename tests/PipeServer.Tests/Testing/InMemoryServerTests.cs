using PipeServer.Http;
using PipeServer.Testing;
using Xunit;

namespace PipeServer.Tests.Testing;

// The public in-memory server itself: it must read every framing the server writes, keep a connection's
// responses in order, and bound every wait.
public class InMemoryServerTests
{
    [Fact]
    public async Task Reads_a_chunked_body_with_trailers_split_over_many_writes()
    {
        await using var server = new InMemoryServer(async (_, res) =>
        {
            for (int i = 0; i < 5; i++) { await res.WriteTextAsync($"part{i};"); await res.FlushAsync(); }
        });
        var r = await server.GetAsync("/");
        Assert.True(r.IsChunked);
        Assert.Equal("part0;part1;part2;part3;part4;", r.BodyText);
    }

    [Fact]
    public async Task Skips_100_continue_and_keeps_pipelined_responses_in_order()
    {
        await using var server = new InMemoryServer(async (req, res) =>
        {
            using var reader = new StreamReader(req.BodyStream);
            await res.WriteTextAsync(req.Path + ":" + await reader.ReadToEndAsync(req.Aborted));
        });
        await using var c = server.Connect();
        await c.WriteAsync("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
        var first = c.ReadResponseAsync();
        await c.WriteAsync("hiGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        Assert.Equal("/a:hi", (await first).BodyText);
        Assert.Equal("/b:", (await c.ReadResponseAsync()).BodyText);
    }

    [Fact]
    public async Task A_handler_that_never_answers_is_a_timeout_not_a_hang()
    {
        await using var server = new InMemoryServer(async (req, _) => await Task.Delay(Timeout.Infinite, req.Aborted)) { Timeout = TimeSpan.FromMilliseconds(200) };
        await Assert.ThrowsAsync<TimeoutException>(() => server.GetAsync("/"));
    }

    [Fact]
    public async Task A_failure_after_the_response_started_is_seen_as_an_abort()
    {
        await using var server = new InMemoryServer(async (_, res) =>
        {
            res.ContentLength = 10;
            await res.WriteTextAsync("abc");
            await res.FlushAsync();
            throw new InvalidOperationException("boom");
        });
        await using var c = server.Connect();
        await c.WriteAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        await Assert.ThrowsAnyAsync<Exception>(() => c.ReadResponseAsync());
        Assert.True(c.WasAborted);
    }

    [Fact]
    public async Task A_rejected_request_gets_its_status_and_the_connection_closes()
    {
        await using var server = new InMemoryServer((_, res) => res.WriteTextAsync("never"));
        await using var c = server.Connect();
        await c.WriteAsync("GET / HTTP/1.1\r\n\r\n"); // no Host on 1.1
        var r = await c.ReadResponseAsync();
        Assert.Equal(400, r.StatusCode);
        Assert.True(r.ConnectionClose);
        Assert.True(await c.WaitForCloseAsync());
    }

    [Fact]
    public async Task BeginDraining_fires_the_draining_token_of_a_request_in_flight()
    {
        var inHandler = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = new InMemoryServer(async (req, res) =>
        {
            inHandler.SetResult();
            try { await Task.Delay(TimeSpan.FromSeconds(30), req.Draining); } catch (OperationCanceledException) { }
            await res.WriteTextAsync("drained");
        });
        await using var c = server.Connect();
        await c.WriteAsync("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        await inHandler.Task.WaitAsync(TimeSpan.FromSeconds(5));
        server.BeginDraining();
        var r = await c.ReadResponseAsync();
        Assert.Equal("drained", r.BodyText);
        Assert.True(r.ConnectionClose);
        Assert.False(server.Lifetime.IsReady);
    }
}
