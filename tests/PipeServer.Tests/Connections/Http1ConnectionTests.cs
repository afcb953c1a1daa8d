using System.Buffers;
using PipeServer.Connections;
using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Connections;

// The connection's keep-alive loop and its two signals (drain vs abort), over in-memory pipes.
public class Http1ConnectionTests
{
    private static RequestHandler Routes(Action<Router>? extra = null)
    {
        var r = new Router();
        r.MapGet("/hello", (_, res) => res.WriteTextAsync("hi"));
        r.MapGet("/slow", async (req, res) => { await Task.Delay(300, req.Aborted); await res.WriteTextAsync("slow"); });
        r.MapPost("/echo", async (req, res) =>
        {
            using var ms = new MemoryStream();
            await req.BodyStream.CopyToAsync(ms, req.Aborted);
            await res.WriteBytesAsync(ms.ToArray(), "application/octet-stream");
        });
        extra?.Invoke(r);
        return r.HandleAsync;
    }

    [Fact]
    public async Task Serves_pipelined_requests_over_a_pipe_fed_one_byte_at_a_time()
    {
        await using var c = new InMemoryConnection(Routes());
        var requests = "GET /hello HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPOST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n";
        foreach (char ch in requests)
        {
            await c.ClientOutput.WriteAsync(new[] { (byte)ch }).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        }
        var text = await c.ReadUntilAsync("HTTP/1.1 200 OK", 3);
        var bodies = text.Split("\r\n\r\n").Skip(1).Select(s => s.Split("HTTP/1.1")[0]).ToArray();
        Assert.Equal(["hi", "abc", "de"], bodies);
    }

    [Fact]
    public async Task Pipelined_batch_is_flushed_once()
    {
        await using var c = new InMemoryConnection(Routes());
        await c.SendAsync(string.Concat(Enumerable.Repeat("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", 10)));
        var text = await c.ReadUntilAsync("\r\n\r\nhi", 10);
        Assert.Equal(10, text.Split("HTTP/1.1 200 OK").Length - 1);
        // Ten requests that arrived together are answered with one flush (one send on a socket), made when
        // the connection is about to wait for more input: not one per response.
        Assert.Equal(1, c.Flushes);
        // And the next request, alone, gets its own flush.
        await c.SendAsync("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
        await c.ReadUntilAsync("hi");
        Assert.Equal(2, c.Flushes);
    }

    [Fact]
    public async Task Drain_closes_an_idle_connection_at_once()
    {
        await using var c = new InMemoryConnection(Routes());
        await c.SendAsync("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
        await c.ReadUntilAsync("hi");
        await WaitForStateAsync(c.Connection, ConnectionState.Idle);
        c.Connection.RequestClose();
        await c.Processing.WaitAsync(TimeSpan.FromSeconds(2));
        Assert.Equal(ConnectionEndReason.ServerDrained, c.Connection.EndReason);
        Assert.False(c.Aborted);
    }

    [Fact]
    public async Task Drain_closes_a_new_connection_that_sent_nothing()
    {
        await using var c = new InMemoryConnection(Routes());
        c.Connection.RequestClose();
        await c.Processing.WaitAsync(TimeSpan.FromSeconds(2));
        Assert.Equal(ConnectionEndReason.ServerDrained, c.Connection.EndReason);
        Assert.Equal("", await c.ReadAllAsync());
    }

    [Fact]
    public async Task Drain_lets_the_request_in_flight_finish_with_connection_close()
    {
        await using var c = new InMemoryConnection(Routes());
        await c.SendAsync("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
        await WaitForStateAsync(c.Connection, ConnectionState.Active);
        c.Connection.RequestClose();
        var text = await c.ReadAllAsync();
        Assert.Contains("Connection: close\r\n", text);
        Assert.EndsWith("slow", text);
        Assert.Equal(ConnectionEndReason.ServerDrained, c.Connection.EndReason);
    }

    [Fact]
    public async Task Drain_does_not_interrupt_a_body_being_read()
    {
        var firstBytesRead = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var c = new InMemoryConnection(Routes(r => r.MapPost("/echo-gated", async (req, res) =>
        {
            using var ms = new MemoryStream();
            var buffer = new byte[16];
            int n;
            while ((n = await req.BodyStream.ReadAsync(buffer, req.Aborted)) > 0)
            {
                ms.Write(buffer, 0, n);
                firstBytesRead.TrySetResult(); // the handler is inside the body: its next read waits for "def"
            }
            await res.WriteBytesAsync(ms.ToArray(), "application/octet-stream");
        })));
        await c.SendAsync("POST /echo-gated HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc");
        await firstBytesRead.Task.WaitAsync(TimeSpan.FromSeconds(5));
        c.Connection.RequestClose(); // wakes (or pre-empts) the body read; the body reader must ignore it
        await c.SendAsync("def");
        var text = await c.ReadAllAsync();
        Assert.EndsWith("abcdef", text);
        Assert.Contains("Connection: close", text);
    }

    [Fact]
    public async Task Abort_fires_the_handler_token_and_resets_the_transport()
    {
        var sawCancel = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var c = new InMemoryConnection(Routes(r => r.MapGet("/forever", async (req, _) =>
        {
            try { await Task.Delay(Timeout.Infinite, req.Aborted); }
            catch (OperationCanceledException) { sawCancel.SetResult(); throw; }
        })));
        await c.SendAsync("GET /forever HTTP/1.1\r\nHost: a\r\n\r\n");
        await WaitForStateAsync(c.Connection, ConnectionState.Active);
        c.Connection.Abort();
        await sawCancel.Task.WaitAsync(TimeSpan.FromSeconds(2));
        await c.Processing.WaitAsync(TimeSpan.FromSeconds(2));
        Assert.True(c.Aborted);
        Assert.Equal(ConnectionEndReason.Aborted, c.Connection.EndReason);
    }

    [Fact]
    public async Task The_server_abort_token_reaches_the_handler()
    {
        using var serverAbort = new CancellationTokenSource();
        var sawCancel = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var c = new InMemoryConnection(Routes(r => r.MapGet("/forever", async (req, _) =>
        {
            try { await Task.Delay(Timeout.Infinite, req.Aborted); }
            catch (OperationCanceledException) { sawCancel.SetResult(); throw; }
        })), serverAbort: serverAbort.Token);
        await c.SendAsync("GET /forever HTTP/1.1\r\nHost: a\r\n\r\n");
        await WaitForStateAsync(c.Connection, ConnectionState.Active);
        serverAbort.Cancel();
        await sawCancel.Task.WaitAsync(TimeSpan.FromSeconds(2));
    }

    [Fact]
    public async Task The_draining_token_fires_for_handlers_but_the_abort_token_does_not()
    {
        var lifetime = new ServerLifetime();
        var tokens = new TaskCompletionSource<(bool draining, bool aborted)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var c = new InMemoryConnection(Routes(r => r.MapGet("/watch", async (req, res) =>
        {
            try { await Task.Delay(Timeout.Infinite, req.Draining); } catch (OperationCanceledException) { }
            tokens.SetResult((req.Draining.IsCancellationRequested, req.Aborted.IsCancellationRequested));
            await res.WriteTextAsync("ended early");
        })), lifetime: lifetime);
        await c.SendAsync("GET /watch HTTP/1.1\r\nHost: a\r\n\r\n");
        await WaitForStateAsync(c.Connection, ConnectionState.Active);
        lifetime.SignalDraining();
        Assert.Equal((true, false), await tokens.Task.WaitAsync(TimeSpan.FromSeconds(2)));
    }

    [Fact]
    public async Task A_rejected_request_asks_the_transport_for_a_lingering_close()
    {
        await using var c = new InMemoryConnection(Routes());
        await c.SendAsync("GET / HTTP/1.1\nHost: a\n\n");
        var text = await c.ReadAllAsync();
        Assert.StartsWith("HTTP/1.1 400 Bad Request\r\n", text);
        Assert.True(c.LingerRequested);
        Assert.Equal(ConnectionEndReason.BadRequest, c.Connection.EndReason);
    }

    [Fact]
    public async Task Client_eof_between_requests_is_a_quiet_close()
    {
        var c = new InMemoryConnection(Routes());
        await c.SendAsync("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
        await c.ReadUntilAsync("hi");
        await c.ClientOutput.CompleteAsync();
        await c.Processing.WaitAsync(TimeSpan.FromSeconds(2));
        Assert.Equal(ConnectionEndReason.ClientClosed, c.Connection.EndReason);
    }

    [Fact]
    public async Task Client_eof_inside_a_body_ends_the_request_as_aborted()
    {
        var c = new InMemoryConnection(Routes());
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc");
        await WaitForStateAsync(c.Connection, ConnectionState.Active);
        await c.ClientOutput.CompleteAsync();
        await c.Processing.WaitAsync(TimeSpan.FromSeconds(2));
        var text = await c.ReadAllAsync();
        Assert.StartsWith("HTTP/1.1 400", text); // the body ended early: nothing was sent yet, so a 400 is still possible
        Assert.Equal(ConnectionEndReason.BadRequest, c.Connection.EndReason);
    }

    [Fact]
    public async Task Drain_of_an_idle_connection_first_answers_a_request_the_transport_already_holds()
    {
        await using var c = new InMemoryConnection(Routes());
        await c.SendAsync("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
        await c.ReadUntilAsync("hi");
        await WaitForStateAsync(c.Connection, ConnectionState.Idle);
        // The client's next request is in the kernel's receive queue, not yet in the input pipe.
        c.HoldInTransport("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
        c.Connection.RequestClose();
        var text = await c.ReadAllAsync();
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", text);
        Assert.Contains("Connection: close\r\n", text);
        Assert.EndsWith("hi", text);
        Assert.Equal(ConnectionEndReason.ServerDrained, c.Connection.EndReason);
        Assert.False(c.Aborted);
    }

    /// <summary>A handler that holds the connection until the test releases it, and says when it has started.</summary>
    private sealed class Gate
    {
        public readonly TaskCompletionSource Entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public readonly TaskCompletionSource Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public RequestHandler Handler => async (_, res) =>
        {
            Entered.TrySetResult();
            await Release.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await res.WriteTextAsync("gated");
        };
    }

    private static int Count(string text, string marker)
    {
        int seen = 0, at = 0;
        while ((at = text.IndexOf(marker, at, StringComparison.Ordinal)) >= 0) { seen++; at += marker.Length; }
        return seen;
    }

    [Fact]
    public async Task During_the_drain_delay_requests_already_received_are_answered_and_only_the_last_closes()
    {
        var gate = new Gate();
        var lifetime = new ServerLifetime();
        await using var c = new InMemoryConnection(Routes(r => r.MapGet("/gate", gate.Handler)), lifetime: lifetime);
        await c.SendAsync("GET /gate HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
        await gate.Entered.Task.WaitAsync(TimeSpan.FromSeconds(5));
        lifetime.CloseConnectionsAfterResponse(); // the drain-delay phase starts while the first request is in its handler
        gate.Release.SetResult();
        var text = await c.ReadAllAsync();
        Assert.Equal(3, Count(text, "HTTP/1.1 200 OK\r\n"));
        Assert.Equal(1, Count(text, "Connection: close\r\n"));
        Assert.True(text.LastIndexOf("Connection: close", StringComparison.Ordinal) > text.LastIndexOf("HTTP/1.1 200", StringComparison.Ordinal), "the close is not on the last response");
        Assert.EndsWith("hi", text);
        Assert.Equal(ConnectionEndReason.ServerDrained, c.Connection.EndReason);
    }

    [Fact]
    public async Task Requests_pipelined_behind_a_response_already_started_are_answered_after_a_drain()
    {
        var lifetime = new ServerLifetime();
        await using var c = new InMemoryConnection(Routes(r => r.MapGet("/stream", async (req, res) =>
        {
            res.Body.Write("chunk\n"u8);
            await res.Body.FlushAsync(req.Aborted);
            try { await Task.Delay(TimeSpan.FromSeconds(10), req.Draining); } catch (OperationCanceledException) { }
        })), lifetime: lifetime);
        await c.SendAsync("GET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n");
        var head = await c.ReadUntilAsync("chunk\n"); // the stream's head is out: it was sent keep-alive
        Assert.DoesNotContain("Connection: close", head);
        lifetime.SignalDraining();       // what RequestCloseAll does, in its order
        c.Connection.RequestClose();
        var text = head + await c.ReadAllAsync();
        Assert.Equal(3, Count(text, "HTTP/1.1 200 OK\r\n"));
        int second = text.IndexOf("HTTP/1.1 200 OK\r\n", 1, StringComparison.Ordinal);
        Assert.True(text.LastIndexOf("\r\n0\r\n\r\n", second, StringComparison.Ordinal) > 0, "the stream did not end with its terminal chunk before the next response");
        Assert.Equal(1, Count(text, "Connection: close\r\n"));
        Assert.True(text.IndexOf("Connection: close", StringComparison.Ordinal) > text.LastIndexOf("HTTP/1.1 200", StringComparison.Ordinal), "the close is not on the last response");
        Assert.EndsWith("hi", text);
        Assert.Equal(ConnectionEndReason.ServerDrained, c.Connection.EndReason);
    }

    private static async Task WaitForStateAsync(Http1Connection connection, ConnectionState state)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (connection.State != state)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"connection stayed {connection.State}, expected {state}");
            await Task.Delay(5);
        }
    }
}
