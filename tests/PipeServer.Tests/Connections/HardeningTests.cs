using System.Buffers;
using System.Net.Sockets;
using PipeServer.Connections;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Connections;

// Timeouts, backpressure and clients that vanish: the server keeps its bounds and leaves nothing behind.
public class HardeningTests
{
    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_body_slower_than_the_minimum_rate_gets_408(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, 
            o => o with { MinRequestBodyDataRate = 1000, MinRequestBodyDataRateGracePeriod = TimeSpan.FromMilliseconds(300) },
            RejectionTests.MapSink);
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n0123456789");
        var r = await c.ReadResponseAsync();
        Assert.Equal(408, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.Equal(CloseKind.Fin, await c.WaitForCloseAsync()); // a rejection, not an abort: the 408 is whole
        await ends.AssertNextAsync(ConnectionEndReason.RequestBodyTimeout);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_body_at_a_healthy_rate_is_not_timed_out(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, 
            o => o with { MinRequestBodyDataRate = 100, MinRequestBodyDataRateGracePeriod = TimeSpan.FromMilliseconds(200) },
            RejectionTests.MapSink);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n");
        for (int i = 0; i < 10; i++) { await c.SendAsync(new string('x', 100)); await Task.Delay(50); } // ~2000 B/s
        var r = await c.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        Assert.Equal("1000", r.BodyText);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_client_that_stops_reading_is_aborted_and_the_handler_is_held_back_meanwhile(string transport)
    {
        long written = 0;
        var handlerDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync(transport, 
            o => o with { MinResponseDataRate = 1000, MinResponseDataRateGracePeriod = TimeSpan.FromMilliseconds(500) },
            r => r.MapGet("/firehose", async (req, res) =>
            {
                try
                {
                    var block = new byte[64 * 1024];
                    for (int i = 0; i < 10_000; i++)
                    {
                        res.Body.Write(block);
                        var flush = await res.Body.FlushAsync(req.Aborted);
                        if (flush.IsCompleted) return;
                        Interlocked.Add(ref written, block.Length);
                    }
                }
                finally { handlerDone.TrySetResult(); }
            }));
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        c.Socket.ReceiveBufferSize = 4096;
        await c.SendAsync("GET /firehose HTTP/1.1\r\nHost: a\r\n\r\n");
        // Never read. The handler ends only when the stalled send is aborted; everything it wrote until then
        // is held to the output pipe's bound plus kernel buffers, not the 640 MB it would write unchecked.
        await handlerDone.Task.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.True(Interlocked.Read(ref written) < 32L * 1024 * 1024, $"handler wrote {Interlocked.Read(ref written)} bytes to a client that reads nothing");
        await ends.AssertNextAsync(ConnectionEndReason.ResponseTimeout, TimeSpan.FromSeconds(15));
        // Aborted, not closed: after what the kernel still holds for us comes a reset, never a FIN that would
        // let a close-delimited response pass for a whole one.
        Assert.Equal(CloseKind.Reset, await c.DiscardUntilCloseAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Input_backpressure_stops_reading_from_a_client_the_handler_ignores(string transport)
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync(transport, o => o with { MinRequestBodyDataRate = 0 },
            r => r.MapPost("/ignore", async (_, res) => { await release.Task.WaitAsync(TimeSpan.FromSeconds(30)); await res.WriteTextAsync("done"); }));
        await using var c = await server.ConnectAsync();
        await c.SendAsync("POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 29000000\r\n\r\n");
        var chunk = new byte[1024 * 1024];
        long sent = 0;
        bool stalled = false;
        // Send until a send stops making progress: the server has stopped reading (the bounded state), or
        // until all 28 MB went through (no bound). Each send gets a deadline, not the whole loop.
        while (sent < 28_000_000)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            try { sent += await c.Socket.SendAsync(chunk, SocketFlags.None, cts.Token); }
            catch (OperationCanceledException) { stalled = true; break; }
        }
        // The server stopped reading at its 1 MiB input bound; only kernel buffers took the rest.
        Assert.True(stalled, $"every send went through ({sent} bytes): the server read a body its handler ignored");
        Assert.True(sent < 24L * 1024 * 1024, $"server accepted {sent} bytes it was not reading");
        release.SetResult();
    }

    public static TheoryData<string> PartialRequests => new()
    {
        "GET /plaintext HTTP/1.1\r\nHost: a\r\nX-Partial: ",                                  // mid-head
        "POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nonly-some",             // mid-body
        "POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
    };

    [Theory]
    [MemberData(nameof(TransportData.Cross), typeof(HardeningTests), nameof(PartialRequests), MemberType = typeof(TransportData))]
    public async Task A_client_that_disconnects_mid_request_leaves_nothing_behind(string partial, string transport)
    {
        var unobserved = 0;
        void OnUnobserved(object? s, UnobservedTaskExceptionEventArgs e) => Interlocked.Increment(ref unobserved);
        TaskScheduler.UnobservedTaskException += OnUnobserved;
        try
        {
            await using var server = await TestServer.StartAsync(transport, routes: RejectionTests.MapSink);
            for (int i = 0; i < 20; i++)
            {
                var c = await server.ConnectAsync();
                await c.SendAsync(partial);
                if (i % 2 == 0) c.Socket.LingerState = new LingerOption(true, 0); // half of them reset, half close
                await c.DisposeAsync();
            }
            await server.WaitForConnectionCountAsync(0);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Assert.Equal(0, unobserved);
        }
        finally { TaskScheduler.UnobservedTaskException -= OnUnobserved; }
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_client_that_disconnects_mid_response_fires_the_abort_token_and_leaves_nothing_behind(string transport)
    {
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync(transport, routes: r => r.MapGet("/long", async (req, res) =>
        {
            req.Aborted.Register(() => aborted.TrySetResult());
            for (int i = 0; i < 1000 && !req.Aborted.IsCancellationRequested; i++)
            {
                res.Body.Write(new byte[1024]);
                var flush = await res.Body.FlushAsync();
                if (flush.IsCompleted) break;
                await Task.Delay(10); // the handler's pace, not synchronisation
            }
        }));
        using var ends = server.WatchConnectionEnds();
        var c = await server.ConnectAsync();
        await c.SendAsync("GET /long HTTP/1.1\r\nHost: a\r\n\r\n");
        var head = new byte[512];
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5))) await c.Socket.ReceiveAsync(head, SocketFlags.None, cts.Token);
        c.Socket.LingerState = new LingerOption(true, 0);
        await c.DisposeAsync();
        await aborted.Task.WaitAsync(TimeSpan.FromSeconds(5));
        await ends.AssertNextAsync(ConnectionEndReason.ClientAborted);
        await server.WaitForConnectionCountAsync(0);
    }
}
