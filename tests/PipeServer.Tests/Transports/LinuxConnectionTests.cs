using System.Buffers;
using System.Net.Sockets;
using System.Text;
using PipeServer.Transports;
using PipeServer.Connections;
using PipeServer.Http;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Transports;

// The Linux transport under the real protocol: Http1Connection over a LinuxConnection, as HttpServer.Accept
// pairs them, on a loopback listener, spoken to in raw bytes. Each test names the SocketConnection
// behaviour it holds the twin to. Every wait has a deadline; nothing sleeps to synchronise.
public class LinuxConnectionTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private static async Task PollAsync(Func<bool> condition, string what, TimeSpan? timeout = null, Func<string>? detail = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? Bound);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for: {what} {detail?.Invoke()}");
            await Task.Delay(5);
        }
    }

    private static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++) bytes[i] = (byte)('a' + i * 7 % 26);
        return bytes;
    }

    /// <summary>GET /bytes?n=N: N bytes of body, written and flushed 4 KiB at a time (a big response with backpressure).</summary>
    private static void MapBytes(PipeServer.Routing.Router router) => router.MapGet("/bytes", async (req, res) =>
    {
        int n = int.Parse(req.GetQueryValue("n") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        res.ContentType = "application/octet-stream";
        res.ContentLength = n;
        var chunk = Pattern(4096);
        for (int sent = 0; sent < n; sent += chunk.Length)
        {
            res.Body.Write(chunk.AsSpan(0, Math.Min(chunk.Length, n - sent)));
            var flush = await res.Body.FlushAsync(req.Aborted);
            if (flush.IsCompleted) return;
        }
    });

    [Fact]
    public async Task Answers_a_get_and_keeps_the_connection_alive()
    {
        await using var host = LinuxTestHost.Start();
        await using var c = await host.ConnectAsync();
        for (int i = 0; i < 3; i++)
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.Equal(200, r.Status);
            Assert.Equal("Hello, World!", r.BodyText);
            Assert.Equal("text/plain", r.Header("Content-Type"));
        }
        var entry = await host.WaitForEntryAsync();
        Assert.Equal(3, entry.Protocol.RequestsServed);
        Assert.False(entry.Task.IsCompleted);
    }

    [Fact]
    public async Task A_handler_that_completes_synchronously_runs_on_the_loop_thread()
    {
        // Run to completion: recv, parse, handler and send on the loop, no thread-pool hop.
        var threads = new System.Collections.Concurrent.ConcurrentQueue<string?>();
        await using var host = LinuxTestHost.Start(routes: r => r.MapGet("/where", (_, res) =>
        {
            threads.Enqueue(Thread.CurrentThread.Name);
            return res.WriteTextAsync("here\n");
        }));
        await using var c = await host.ConnectAsync();
        // Once listed, the protocol waits for its first byte, so every request meets it on the loop.
        var entry = await host.WaitForEntryAsync();
        for (int i = 0; i < 5; i++)
        {
            await c.SendAsync("GET /where HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal("here\n", (await c.ReadResponseAsync()).BodyText);
        }
        Assert.All(threads, t => Assert.Equal($"PipeServer loop {entry.Transport.LoopIndex}", t));
        Assert.Equal(5, threads.Count);
    }

    [Fact]
    public async Task Answers_a_pipelined_batch_in_order()
    {
        await using var host = LinuxTestHost.Start();
        await using var c = await host.ConnectAsync();
        // Later requests finish faster if anything ran them out of order; plain ones between awaiting ones.
        var batch = new StringBuilder();
        for (int i = 0; i < 10; i++)
        {
            batch.Append(CultureInvariant($"GET /slow?ms={(10 - i) * 3} HTTP/1.1\r\nHost: a\r\n\r\n"));
            batch.Append("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        }
        await c.SendAsync(batch.ToString());
        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(CultureInvariant($"waited {(10 - i) * 3} ms\n"), (await c.ReadResponseAsync()).BodyText);
            Assert.Equal("Hello, World!", (await c.ReadResponseAsync()).BodyText);
        }
    }

    [Fact]
    public async Task Echoes_a_multi_megabyte_post_while_the_client_reads()
    {
        await using var host = LinuxTestHost.Start();
        await using var c = await host.ConnectAsync();
        var body = Pattern(8 * 1024 * 1024);
        await c.SendAsync(CultureInvariant($"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {body.Length}\r\n\r\n"));
        // Send and read at once: the echo streams, so neither side may wait for the other to finish.
        var sending = Task.Run(async () =>
        {
            for (int offset = 0; offset < body.Length; offset += 64 * 1024) await c.SendAsync(body[offset..(offset + 64 * 1024)]);
        });
        var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(30));
        await sending.WaitAsync(Bound);
        Assert.Equal(200, r.Status);
        Assert.Equal(body.Length, r.Body.Length);
        Assert.True(body.AsSpan().SequenceEqual(r.Body), "echoed bytes differ");
        // The response started with most of the body unread (over MaxUnreadBodyDrain), so the protocol chose
        // "Connection: close" at its head: the connection ends gracefully after the last byte.
        Assert.True(r.ConnectionClose);
        Assert.True(await c.ClosedWithFinAsync());
    }

    [Fact]
    public async Task A_client_that_stops_reading_stalls_the_send_and_the_server_stops_reading_then_both_resume()
    {
        // Fixed kernel buffers (no autotuning) so the pipes' bounds decide. Not smaller than a few loopback
        // MSS (64 KiB): a window under one MSS makes TCP crawl on zero-window probes.
        await using var host = LinuxTestHost.Start(heartbeat: false,
            configure: o => o with { MinResponseDataRate = 1_000_000, MinResponseDataRateGracePeriod = TimeSpan.FromMilliseconds(200) },
            configureAccepted: s => { s.ReceiveBufferSize = 256 * 1024; s.SendBufferSize = 256 * 1024; });
        await using var c = await host.ConnectAsync();
        c.Socket.ReceiveBufferSize = 256 * 1024;
        c.Socket.SendBufferSize = 256 * 1024;
        var body = Pattern(12 * 1024 * 1024);
        var sending = Task.Run(async () =>
        {
            await c.SendAsync(CultureInvariant($"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {body.Length}\r\n\r\n"));
            for (int offset = 0; offset < body.Length; offset += 16 * 1024)
                await c.Socket.SendAsync(body.AsMemory(offset, 16 * 1024), SocketFlags.None); // may wait: the server stops reading
        });
        var entry = await host.WaitForEntryAsync();

        // Output backpressure: the echo's responses fill the client's window, the send stalls past its deadline.
        await PollAsync(() => entry.Transport.IsSendStalled(Environment.TickCount64, host.Options.MinResponseDataRate, host.Options.MinResponseDataRateGracePeriod), "the send to stall", detail: () => $"received {entry.Transport.ReceivedBytes}, unread {entry.Transport.UnreadKernelBytes}");
        // Input backpressure: the handler waits in its flush, the input pipe fills, the loop stops reading:
        // what the client sends stays in the kernel.
        await PollAsync(() => entry.Transport.UnreadKernelBytes > 0, "bytes left unread in the kernel");
        Assert.False(sending.IsCompleted, "the client finished sending 12 MiB although nobody read it");

        // The client reads again: everything arrives, in order, and the stall clears.
        var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(60));
        await sending.WaitAsync(Bound);
        Assert.True(body.AsSpan().SequenceEqual(r.Body), "echoed bytes differ");
        Assert.False(entry.Transport.IsSendStalled(Environment.TickCount64, host.Options.MinResponseDataRate, host.Options.MinResponseDataRateGracePeriod));
    }

    [Fact]
    public async Task A_stalled_send_is_aborted_by_the_heartbeat_as_a_response_timeout()
    {
        await using var host = LinuxTestHost.Start(
            configure: o => o with { MinResponseDataRate = 1_000_000, MinResponseDataRateGracePeriod = TimeSpan.FromMilliseconds(200) },
            configureAccepted: s => s.SendBufferSize = 256 * 1024, routes: MapBytes);
        await using var c = await host.ConnectAsync();
        c.Socket.ReceiveBufferSize = 256 * 1024;
        await c.SendAsync("GET /bytes?n=8388608 HTTP/1.1\r\nHost: a\r\n\r\n"); // and never read
        var entry = await host.WaitForEntryAsync();
        await entry.Task.WaitAsync(Bound);
        Assert.Equal(ConnectionEndReason.ResponseTimeout, entry.Protocol.EndReason);
    }

    [Fact]
    public async Task A_peer_reset_mid_request_calls_on_peer_failure_and_fires_aborted()
    {
        var handlerSawAbort = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handlerStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var host = LinuxTestHost.Start(routes: r => r.MapPost("/hold", async (req, res) =>
        {
            handlerStarted.TrySetResult();
            try { await Task.Delay(Timeout.Infinite, req.Aborted); }
            catch (OperationCanceledException) { handlerSawAbort.TrySetResult(); }
        }));
        var c = await host.ConnectAsync();
        await c.SendAsync("POST /hold HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nonly ten b");
        await handlerStarted.Task.WaitAsync(Bound);
        var entry = await host.WaitForEntryAsync();

        c.Socket.LingerState = new LingerOption(true, 0);
        await c.DisposeAsync(); // RST

        await entry.PeerFailed.Task.WaitAsync(Bound);
        await handlerSawAbort.Task.WaitAsync(Bound);
        await entry.Task.WaitAsync(Bound);
        Assert.Equal(1, entry.PeerFailures);
        Assert.Equal(ConnectionEndReason.ClientAborted, entry.Protocol.EndReason);
    }

    [Fact]
    public async Task A_fin_from_the_client_still_gets_the_pending_requests_answered()
    {
        await using var host = LinuxTestHost.Start();
        await using var c = await host.ConnectAsync();
        await c.SendAsync("GET /slow?ms=50 HTTP/1.1\r\nHost: a\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /slow?ms=10 HTTP/1.1\r\nHost: a\r\n\r\n");
        c.Socket.Shutdown(SocketShutdown.Send);
        Assert.Equal("waited 50 ms\n", (await c.ReadResponseAsync()).BodyText);
        Assert.Equal("Hello, World!", (await c.ReadResponseAsync()).BodyText);
        Assert.Equal("waited 10 ms\n", (await c.ReadResponseAsync()).BodyText);
        Assert.True(await c.ClosedWithFinAsync());
        var entry = await host.WaitForEntryAsync();
        await entry.Task.WaitAsync(Bound);
        Assert.Equal(ConnectionEndReason.ClientClosed, entry.Protocol.EndReason);
        Assert.Equal(0, entry.PeerFailures);
    }

    [Fact]
    public async Task Abort_resets_the_connection()
    {
        await using var host = LinuxTestHost.Start();
        await using var c = await host.ConnectAsync();
        await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        var entry = await host.WaitForEntryAsync();
        entry.Transport.Abort();
        Assert.False(await c.ClosedWithFinAsync(), "expected an RST, got a FIN");
        await entry.Task.WaitAsync(Bound);
        Assert.Equal(0, entry.PeerFailures); // our own abort is not the peer's failure
    }

    [Fact]
    public async Task Abort_ends_a_handler_waiting_for_the_request_body()
    {
        await using var host = LinuxTestHost.Start();
        await using var c = await host.ConnectAsync();
        await c.SendAsync("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nsome");
        var entry = await host.WaitForEntryAsync();
        await PollAsync(() => entry.Protocol.State == ConnectionState.Active, "the request to start");
        entry.Protocol.Abort(ConnectionEndReason.Aborted); // from a foreign thread, as the shutdown deadline does
        await entry.Task.WaitAsync(Bound);
        Assert.False(await c.ClosedWithFinAsync(), "expected an RST, got a FIN");
        Assert.Equal(ConnectionEndReason.Aborted, entry.Protocol.EndReason);
    }

    [Fact]
    public async Task A_graceful_close_sends_every_byte_then_fin()
    {
        await using var host = LinuxTestHost.Start(routes: MapBytes);
        await using var c = await host.ConnectAsync();
        await c.SendAsync("GET /bytes?n=1000000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var r = await c.ReadResponseAsync(timeout: Bound);
        Assert.True(r.ConnectionClose);
        Assert.True(Pattern(4096).AsSpan().SequenceEqual(r.Body.AsSpan(0, 4096)));
        Assert.Equal(1_000_000, r.Body.Length);
        Assert.True(await c.ClosedWithFinAsync(), "expected a FIN, got an RST");
        var entry = await host.WaitForEntryAsync();
        await entry.Task.WaitAsync(Bound);
        Assert.Equal(ConnectionEndReason.ConnectionCloseRequested, entry.Protocol.EndReason);
    }

    [Fact]
    public async Task Lingering_close_ends_after_500_ms_when_the_client_stays_silent()
    {
        await using var host = LinuxTestHost.Start();
        await using var c = await host.ConnectAsync();
        // A request the server refuses (bad header), followed by bytes it will never parse: it answers 400,
        // sends FIN and lingers, reading the rest away, so the kernel does not answer them with an RST.
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n" + new string('x', 2000));
        var r = await c.ReadResponseAsync();
        Assert.Equal(400, r.Status);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var entry = await host.WaitForEntryAsync();
        Assert.True(await c.ClosedWithFinAsync(), "the 400 must be followed by a FIN, not an RST");
        await entry.Task.WaitAsync(Bound);
        // The linger is bounded by time: 500 ms from the FIN (measured from the response, a little later).
        Assert.InRange(clock.ElapsedMilliseconds, 300, 5000);
    }

    [Fact]
    public async Task Lingering_close_reads_at_most_64_KiB_away()
    {
        await using var host = LinuxTestHost.Start();
        await using var c = await host.ConnectAsync();
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n");
        Assert.Equal(400, (await c.ReadResponseAsync()).Status);
        var entry = await host.WaitForEntryAsync();
        // Now keep sending: the server discards up to its bound, then closes with input unread (RST), and the
        // client's sends fail long before the 4 MiB is through, and well inside the 500 ms time bound's reach.
        var junk = new byte[16 * 1024];
        long sent = 0;
        var failed = await Assert.ThrowsAsync<SocketException>(async () =>
        {
            using var cts = new CancellationTokenSource(Bound);
            while (sent < 4 * 1024 * 1024) sent += await c.Socket.SendAsync(junk, SocketFlags.None, cts.Token);
        });
        Assert.True(failed.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown, failed.SocketErrorCode.ToString());
        await entry.Task.WaitAsync(Bound);
        Assert.InRange(entry.Transport.DiscardedBytes, 64 * 1024, 64 * 1024 + 16 * 1024);
    }

    [Fact]
    public async Task A_handler_that_awaits_then_writes_a_large_body_is_sent_by_the_loop()
    {
        await using var host = LinuxTestHost.Start(routes: r => r.MapGet("/later", async (req, res) =>
        {
            await Task.Delay(20, req.Aborted); // continues on a pool thread: its writes are handed back to the loop
            res.ContentType = "application/octet-stream";
            res.ContentLength = 2_000_000;
            var chunk = Pattern(4096);
            for (int sent = 0; sent < 2_000_000; sent += 4096)
            {
                res.Body.Write(chunk.AsSpan(0, Math.Min(4096, 2_000_000 - sent)));
                if ((await res.Body.FlushAsync(req.Aborted)).IsCompleted) return;
            }
        }));
        await using var c = await host.ConnectAsync();
        await c.SendAsync("GET /later HTTP/1.1\r\nHost: a\r\n\r\nGET /slow?ms=30 HTTP/1.1\r\nHost: a\r\n\r\n");
        var big = await c.ReadResponseAsync(timeout: Bound);
        Assert.Equal(2_000_000, big.Body.Length);
        Assert.True(Pattern(4096).AsSpan().SequenceEqual(big.Body.AsSpan(4096 * 10, 4096)));
        Assert.Equal("waited 30 ms\n", (await c.ReadResponseAsync()).BodyText);
    }

    [Fact]
    public async Task Two_hundred_connections_times_twenty_requests_are_all_answered()
    {
        await using var host = LinuxTestHost.Start(loops: 2);
        using var overall = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var clients = Enumerable.Range(0, 200).Select(async i =>
        {
            await using var c = await host.ConnectAsync();
            for (int k = 0; k < 20; k++)
            {
                string path = k % 5 == 4 ? "/json" : "/plaintext";
                await c.SendAsync(CultureInvariant($"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n"));
                var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(30));
                Assert.Equal(200, r.Status);
                Assert.Equal(path == "/json" ? "{\"message\":\"Hello, World!\"}" : "Hello, World!", r.BodyText);
            }
        }).ToArray();
        await Task.WhenAll(clients).WaitAsync(overall.Token);
        var entries = host.Entries.ToArray();
        Assert.Equal(200, entries.Length);
        Assert.All(entries, e => Assert.Equal(20, e.Protocol.RequestsServed));
        Assert.Equal(2, entries.Select(e => e.Transport.LoopIndex).Distinct().Count()); // round-robin used both loops
    }

    [Fact]
    public async Task One_loop_serves_every_connection_including_a_slow_handler_beside_fast_ones()
    {
        await using var host = LinuxTestHost.Start(loops: 1);
        Assert.Equal(1, host.Transport.LoopCount);
        await using var slow = await host.ConnectAsync();
        await slow.SendAsync("GET /slow?ms=300 HTTP/1.1\r\nHost: a\r\n\r\n");
        // While /slow awaits, the one loop keeps serving everyone else (an awaiting handler does not hold it).
        for (int i = 0; i < 10; i++)
        {
            await using var c = await host.ConnectAsync();
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            Assert.Equal("Hello, World!", (await c.ReadResponseAsync()).BodyText);
        }
        Assert.Equal("waited 300 ms\n", (await slow.ReadResponseAsync()).BodyText);
        Assert.All(host.Entries, e => Assert.Equal(0, e.Transport.LoopIndex));
    }

    [Fact]
    public void The_default_loop_count_is_the_affinity_mask()
    {
        // sched_getaffinity and the runtime's own count agree when no CPU quota is set (the runtime also
        // honours the mask); under `taskset -c 0` both are 1.
        Assert.InRange(PipeServer.Transports.Linux.LinuxTransport.UsableCpuCount(), 1, Environment.ProcessorCount);
        using var transport = new PipeServer.Transports.Linux.LinuxTransport();
        Assert.Equal(PipeServer.Transports.Linux.LinuxTransport.UsableCpuCount(), transport.LoopCount);
    }

    private static string CultureInvariant(FormattableString s) => FormattableString.Invariant(s);
}

// The transport alone, no protocol: what its input pipe reports for each way the peer can end, and the
// kernel-queue count the drain rule needs.
public class LinuxConnectionInputTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private sealed class Rig : IAsyncDisposable
    {
        public readonly PipeServer.Transports.Linux.LinuxTransport Transport = new(1);
        public readonly System.Net.Sockets.TcpListener Listener = new(System.Net.IPAddress.Loopback, 0);
        public int PeerFailures;
        public PipeServer.Transports.Linux.LinuxConnection Connection = null!;
        public RawConnection Client = null!;

        public async Task StartAsync()
        {
            Listener.Start();
            var accepting = Listener.AcceptSocketAsync();
            Client = await RawConnection.ConnectAsync(((System.Net.IPEndPoint)Listener.LocalEndpoint).Port);
            var socket = await accepting.WaitAsync(Bound);
            var options = new System.IO.Pipelines.PipeOptions(useSynchronizationContext: false);
            Connection = Transport.Create(socket, options, options, () => Interlocked.Increment(ref PeerFailures));
        }

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            Connection.Abort();
            await Connection.RunAsync().WaitAsync(Bound);
            Transport.Dispose();
            Listener.Stop();
        }
    }

    private static async Task<(long Bytes, Exception? Error)> ReadToEndAsync(System.IO.Pipelines.PipeReader input)
    {
        long total = 0;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync().AsTask().WaitAsync(Bound);
                total += result.Buffer.Length;
                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted) return (total, null);
            }
        }
        catch (Exception ex) when (ex is not TimeoutException) { return (total, ex); }
    }

    [Fact]
    public async Task A_fin_completes_the_input_after_the_bytes_before_it()
    {
        await using var rig = new Rig();
        await rig.StartAsync();
        var running = rig.Connection.RunAsync();
        await rig.Client.SendAsync(new byte[10_000]);
        rig.Client.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        var (bytes, error) = await ReadToEndAsync(rig.Connection.Input);
        Assert.Null(error);
        Assert.Equal(10_000, bytes);
        Assert.Equal(10_000, rig.Connection.ReceivedBytes);
        Assert.False(running.IsCompleted); // the output side is still open: the socket is not closed yet
        Assert.Equal(0, rig.PeerFailures);
        await rig.Connection.Output.CompleteAsync(); // graceful end: FIN to the client, then close
        Assert.True(await rig.Client.ClosedWithFinAsync());
        await running.WaitAsync(Bound);
    }

    [Fact]
    public async Task A_reset_fails_the_input_with_ConnectionResetException_and_calls_on_peer_failure_once()
    {
        await using var rig = new Rig();
        await rig.StartAsync();
        var running = rig.Connection.RunAsync();
        rig.Client.Socket.LingerState = new System.Net.Sockets.LingerOption(true, 0);
        rig.Client.Socket.Close(); // RST
        var (_, error) = await ReadToEndAsync(rig.Connection.Input);
        Assert.IsType<ConnectionResetException>(error);
        Assert.Equal(1, rig.PeerFailures);
        await rig.Connection.Output.CompleteAsync();
        await running.WaitAsync(Bound);
        Assert.Equal(1, rig.PeerFailures);
    }

    [Fact]
    public async Task A_connection_that_starts_after_its_loop_stopped_is_reset_and_its_run_completes()
    {
        // The shutdown race: the accept loop took a socket and made its connection just before the transport
        // stopped, and its RunAsync (the hand-over to the loop) comes after the loop's last pass. Before the
        // fix the hand-over went into a queue nobody drained: RunAsync never completed and the client's
        // socket stayed open, unanswered, until the process exited.
        await using var rig = new Rig();
        await rig.StartAsync();
        rig.Transport.Dispose();
        var running = rig.Connection.RunAsync();
        await running.WaitAsync(Bound);
        Assert.Equal(CloseKind.Reset, await rig.Client.WaitForCloseAsync(Bound));
        Assert.True((await rig.Connection.Input.ReadAsync().AsTask().WaitAsync(Bound)).IsCompleted); // the protocol's read ends too
    }

    [Fact]
    public async Task A_socket_closed_before_it_is_handed_over_is_refused_not_registered_under_its_old_number()
    {
        // A closed SafeHandle still reports its old fd number, and accept(2) hands out the lowest free number,
        // so the next connection usually has it. Taken, that number put the next connection's fd in the loop
        // under the dead one's object, which read its request and closed it (ListenersTests' "connection that
        // cannot start" case failed that way under load, on the Unix listener, where no socket option throws).
        using var transport = new PipeServer.Transports.Linux.LinuxTransport(1);
        var path = Path.Combine(Path.GetTempPath(), $"pipeserver-{Guid.NewGuid():N}.sock");
        using var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        listener.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        listener.Listen(4);
        try
        {
            await using var client = await RawConnection.ConnectUnixAsync(path);
            var accepted = await listener.AcceptAsync().WaitAsync(Bound);
            accepted.Dispose();
            var options = new System.IO.Pipelines.PipeOptions(useSynchronizationContext: false);
            Assert.Throws<ObjectDisposedException>(() => transport.Create(accepted, options, options, static () => { }));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public async Task Connections_handed_over_while_the_loop_stops_are_all_reset()
    {
        // The same race left to timing: hand-overs posted while Dispose runs land before the loop's last pass
        // (reset by its sweep), during it, or after it (reset by the refused hand-over). Every one must end.
        var transport = new PipeServer.Transports.Linux.LinuxTransport(1);
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start(64);
        var clients = new List<RawConnection>();
        var connections = new List<PipeServer.Transports.Linux.LinuxConnection>();
        try
        {
            var options = new System.IO.Pipelines.PipeOptions(useSynchronizationContext: false);
            for (int i = 0; i < 32; i++)
            {
                var accepting = listener.AcceptSocketAsync();
                clients.Add(await RawConnection.ConnectAsync(((System.Net.IPEndPoint)listener.LocalEndpoint).Port));
                connections.Add(transport.Create(await accepting.WaitAsync(Bound), options, options, static () => { }));
            }
            var starting = Task.Run(() => connections.Select(c => c.RunAsync()).ToArray());
            transport.Dispose();
            var runs = await starting.WaitAsync(Bound);
            await Task.WhenAll(runs).WaitAsync(Bound);
            foreach (var client in clients) Assert.Equal(CloseKind.Reset, await client.WaitForCloseAsync(Bound));
        }
        finally
        {
            foreach (var client in clients) await client.DisposeAsync();
            transport.Dispose();
            listener.Stop();
        }
    }

    [Fact]
    public async Task Try_close_idle_sends_what_was_flushed_then_fin_when_nothing_came_since_the_mark()
    {
        await using var rig = new Rig();
        await rig.StartAsync();
        var running = rig.Connection.RunAsync();
        await rig.Client.SendAsync("ping");
        var read = await rig.Connection.Input.ReadAtLeastAsync(4).AsTask().WaitAsync(Bound);
        rig.Connection.Input.AdvanceTo(read.Buffer.End);
        long mark = rig.Connection.ReceivedBytes;
        Assert.Equal(4, mark);
        await rig.Connection.Output.WriteAsync(Encoding.ASCII.GetBytes("bye")).AsTask().WaitAsync(Bound);
        Assert.True(await rig.Connection.TryCloseIdleAsync(mark).AsTask().WaitAsync(Bound));
        Assert.Equal("bye", Encoding.ASCII.GetString(await rig.Client.ReadToEndAsync())); // the bytes, then FIN
        Assert.False(running.IsCompleted); // only the sending side is shut: the protocol still ends the connection
    }

    [Fact]
    public async Task Try_close_idle_refuses_when_bytes_arrived_after_the_mark()
    {
        await using var rig = new Rig();
        await rig.StartAsync();
        var running = rig.Connection.RunAsync();
        long mark = rig.Connection.ReceivedBytes; // 0: the caller looked at its input before these came
        await rig.Client.SendAsync("GET / HTTP/1.1\r\n\r\n");
        var deadline = DateTime.UtcNow + Bound;
        while (rig.Connection.ReceivedBytes == 0 && rig.Connection.UnreadKernelBytes == 0 && DateTime.UtcNow < deadline) await Task.Delay(5);
        Assert.False(await rig.Connection.TryCloseIdleAsync(mark).AsTask().WaitAsync(Bound));
        // No FIN was sent: the connection can still answer what came.
        await rig.Connection.Output.WriteAsync(Encoding.ASCII.GetBytes("answer")).AsTask().WaitAsync(Bound);
        await rig.Connection.Output.CompleteAsync();
        Assert.Equal("answer", Encoding.ASCII.GetString(await rig.Client.ReadToEndAsync()));
        await running.WaitAsync(Bound);
    }

    [Fact]
    public async Task Unread_kernel_bytes_counts_what_the_loop_has_not_taken()
    {
        await using var rig = new Rig();
        await rig.StartAsync();
        // Not yet running: nothing reads the socket, so whatever the client sends waits in the kernel.
        await rig.Client.SendAsync(new byte[1234]);
        var deadline = DateTime.UtcNow + Bound;
        while (rig.Connection.UnreadKernelBytes != 1234 && DateTime.UtcNow < deadline) await Task.Delay(5);
        Assert.Equal(1234, rig.Connection.UnreadKernelBytes);
        Assert.True(rig.Connection.HasUndeliveredInput);
        var running = rig.Connection.RunAsync();
        var result = await rig.Connection.Input.ReadAtLeastAsync(1234).AsTask().WaitAsync(Bound);
        Assert.Equal(1234, result.Buffer.Length);
        rig.Connection.Input.AdvanceTo(result.Buffer.End);
        Assert.Equal(0, rig.Connection.UnreadKernelBytes);
        Assert.False(rig.Connection.HasUndeliveredInput);
        rig.Connection.Abort();
        await running.WaitAsync(Bound);
        Assert.Equal(0, rig.Connection.UnreadKernelBytes); // closed: 0, not an error
    }
}

public class LinuxTransportDisposeTests
{
    [Fact]
    public async Task Disposing_the_transport_resets_a_connection_whose_client_never_reads()
    {
        var host = LinuxTestHost.Start(configure: o => o with { MinResponseDataRate = 0 }, routes: r => r.MapGet("/bytes", async (req, res) =>
        {
            res.ContentLength = 64 * 1024 * 1024;
            var chunk = new byte[4096];
            for (int i = 0; i < 16 * 1024; i++)
                if ((await res.Body.WriteAsync(chunk, req.Aborted)).IsCompleted) return;
        }));
        await using var c = await host.ConnectAsync();
        await c.SendAsync("GET /bytes HTTP/1.1\r\nHost: a\r\n\r\n"); // and never read: the handler waits in its flush
        var entry = await host.WaitForEntryAsync();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await host.DisposeAsync(); // aborts every connection, then stops the loops; throws if a loop logged anything
        Assert.True(entry.Task.IsCompleted);
        Assert.InRange(clock.ElapsedMilliseconds, 0, 5000);
    }

    [Fact]
    public async Task Disposing_the_transport_from_a_continuation_on_its_own_loop_does_not_wait_for_itself()
    {
        var log = new ErrorLog();
        var transport = new PipeServer.Transports.Linux.LinuxTransport(1, log);
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var accepting = listener.AcceptSocketAsync();
        await using var client = await RawConnection.ConnectAsync(((System.Net.IPEndPoint)listener.LocalEndpoint).Port);
        var options = new System.IO.Pipelines.PipeOptions(useSynchronizationContext: false);
        var connection = transport.Create(await accepting.WaitAsync(TimeSpan.FromSeconds(10)), options, options, () => { });
        var running = connection.RunAsync();
        // The read completes inline on the loop; so does this continuation, which disposes the transport.
        var disposed = connection.Input.ReadAsync().AsTask().ContinueWith(_ =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            string? thread = Thread.CurrentThread.Name;
            transport.Dispose();
            return (thread, clock.ElapsedMilliseconds);
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        await client.SendAsync("x");
        var (where, ms) = await disposed.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("PipeServer loop 0", where);
        Assert.InRange(ms, 0, 1000); // not the 2 s join timeout
        await running.WaitAsync(TimeSpan.FromSeconds(10)); // the loop still aborted its connection on the way out
        Assert.Empty(log.Entries);
    }
}
