using System.Buffers;
using System.Net.Sockets;
using System.Text;
using PipeServer.Connections;
using PipeServer.Routing;
using PipeServer.StaticFiles;
using PipeServer.Tests.Infrastructure;
using PipeServer.Tls;
using PipeServer.Transports;
using PipeServer.Transports.Linux;
using PipeServer.Transports.Sockets;
using Xunit;

namespace PipeServer.Tests.StaticFiles;

// The fast paths of issue 13, on every transport: a large body leaves through the transport's file send
// (Transports/ISendFileFeature.cs: sendfile on Linux), in order with the bytes around it; the send-stall rule
// and aborts still apply to it; TLS never gets it (its bytes must be encrypted) and copies instead; a small
// file comes from a descriptor opened beneath the root, which is checked on every request, never stale.
public sealed class FileSendTests : IDisposable
{
    private readonly DirectoryInfo _tree = Directory.CreateTempSubdirectory("pipeserver-filesend-");
    private readonly string _root;
    private readonly byte[] _big = new byte[5 * 1024 * 1024 + 3];

    public FileSendTests()
    {
        _root = Path.Combine(_tree.FullName, "root");
        Directory.CreateDirectory(_root);
        new Random(7).NextBytes(_big);
        File.WriteAllBytes(Path.Combine(_root, "big.bin"), _big);
        File.WriteAllText(Path.Combine(_root, "small.txt"), "small\n");
    }

    public void Dispose()
    {
        try { _tree.Delete(recursive: true); } catch (IOException) { }
    }

    private Task<TestServer> StartAsync(string transport, Func<PipeServer.Server.HttpServerOptions, PipeServer.Server.HttpServerOptions>? configure = null) =>
        TestServer.StartAsync(transport, configure, r => r.MapStaticFiles("/files", new StaticFileOptions { Root = _root }));

    [Fact]
    public void The_transports_offer_the_file_send_and_TLS_does_not()
    {
        Assert.True(typeof(ISendFileFeature).IsAssignableFrom(typeof(SocketConnection)));
        Assert.True(typeof(ISendFileFeature).IsAssignableFrom(typeof(LinuxConnection)));
        // The protocol asks its ITransportControl; through TLS that is the TLS connection, which must copy.
        Assert.False(typeof(ISendFileFeature).IsAssignableFrom(typeof(TlsConnection)));
    }

    [Fact]
    public async Task A_file_send_completed_from_two_threads_finishes_once_and_releases_the_file_once()
    {
        // A handler whose post to a stopped loop failed completes the send, and the loop's last pass, closing the
        // connection, completes it too: one must win, the other do nothing (no second SetResult, no second Release).
        using var file = File.OpenHandle(Path.Combine(_root, "small.txt"));
        var send = new FileSend(runContinuationsAsynchronously: false);
        var first = send.Start(file, 0, 6);
        Assert.True(send.IsActive);
        Assert.True(send.Complete(null));
        Assert.False(send.Complete(new IOException("closed")));
        await first; // the winner's outcome
        Assert.False(send.IsActive);
        Assert.Equal(-1, send.FileDescriptor);

        for (int i = 0; i < 2000; i++)
        {
            var task = send.Start(file, 0, 6);
            using var go = new Barrier(2);
            int wins = 0;
            var other = Task.Run(() => { go.SignalAndWait(); if (send.Complete(new IOException("reset"))) Interlocked.Increment(ref wins); });
            go.SignalAndWait();
            if (send.Complete(new IOException("closed"))) Interlocked.Increment(ref wins);
            await other.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(1, wins);
            await Assert.ThrowsAsync<IOException>(async () => await task);
        }
        // Every Start's reference released exactly once: the handle is still open, and closes when its owner disposes it.
        Assert.False(file.IsClosed);
        Assert.Equal(6, RandomAccess.GetLength(file));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Ranges_past_4_GiB_of_a_sparse_file_are_read_and_sent_at_their_offset(string transport)
    {
        // 64-bit offsets all the way down (pread/preadv2/sendfile, or their *64 forms on a 32-bit process): a
        // truncated offset would send the zeros at the start of the file instead of the marked bytes.
        const long at = 4L * 1024 * 1024 * 1024 + 12345;
        var marked = new byte[200_000];
        new Random(11).NextBytes(marked);
        using (var sparse = File.OpenHandle(Path.Combine(_root, "sparse.bin"), FileMode.CreateNew, FileAccess.Write))
        {
            RandomAccess.SetLength(sparse, at + marked.Length + 1);
            RandomAccess.Write(sparse, marked, at);
        }
        await using var server = await StartAsync(transport);
        await using var c = await server.ConnectAsync();
        var timeout = TimeSpan.FromSeconds(20);
        // Small (the page-cache read) and large (the transport's file send).
        await c.SendAsync($"GET /files/sparse.bin HTTP/1.1\r\nHost: a\r\nRange: bytes={at}-{at + 99}\r\n\r\n" +
                          $"GET /files/sparse.bin HTTP/1.1\r\nHost: a\r\nRange: bytes={at}-{at + marked.Length - 1}\r\n\r\n");
        var small = await c.ReadResponseAsync(timeout: timeout);
        Assert.Equal(206, small.Status);
        Assert.True(marked.AsSpan(0, 100).SequenceEqual(small.Body), "the small range, byte for byte");
        var large = await c.ReadResponseAsync(timeout: timeout);
        Assert.Equal(206, large.Status);
        Assert.True(marked.AsSpan().SequenceEqual(large.Body), "the large range, byte for byte");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_file_send_for_HEAD_sends_nothing_and_reads_nothing(string transport)
    {
        var results = new System.Collections.Concurrent.ConcurrentQueue<bool>();
        await using var server = await TestServer.StartAsync(transport, null, r => r.MapGet("/raw", async (request, response) =>
        {
            using var file = File.OpenHandle(Path.Combine(_root, "big.bin"));
            response.ContentLength = _big.Length;
            await response.FlushAsync(); // the head: HEAD's framing is "no body" from here
            results.Enqueue(await response.TrySendFileAsync(file, 0, _big.Length));
        }));
        await using var c = await server.ConnectAsync();
        await c.SendAsync("HEAD /raw HTTP/1.1\r\nHost: a\r\n\r\nGET /raw HTTP/1.1\r\nHost: a\r\n\r\n");
        var timeout = TimeSpan.FromSeconds(20);
        var head = await c.ReadResponseAsync(noBody: true, timeout: timeout);
        Assert.Equal((200, _big.Length.ToString()), (head.Status, head.Header("Content-Length")));
        // Had HEAD's file gone out, its bytes would be read here as the next status line.
        var get = await c.ReadResponseAsync(timeout: timeout);
        Assert.Equal(200, get.Status);
        Assert.True(_big.AsSpan().SequenceEqual(get.Body), "the GET's file, byte for byte");
        // HEAD: done without a send (true: the caller copies nothing either); GET: sent by the transport. The GET's
        // answer is recorded after the kernel took its last byte, which the client may have read first: wait for it.
        var deadline = DateTime.UtcNow + timeout;
        while (results.Count < 2 && DateTime.UtcNow < deadline) await Task.Delay(10);
        Assert.Equal(new[] { true, true }, results.ToArray());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Large_bodies_keep_their_order_with_the_responses_around_them(string transport)
    {
        await using var server = await StartAsync(transport);
        await using var c = await server.ConnectAsync();
        // Pipelined: a small file, a large one, a large range, a multipart of large parts, a small one again.
        const string parts = "bytes=0-99999,1000000-1299999,5000000-";
        await c.SendAsync("GET /files/small.txt HTTP/1.1\r\nHost: a\r\n\r\n" +
                          "GET /files/big.bin HTTP/1.1\r\nHost: a\r\n\r\n" +
                          "GET /files/big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=70000-4999999\r\n\r\n" +
                          $"GET /files/big.bin HTTP/1.1\r\nHost: a\r\nRange: {parts}\r\n\r\n" +
                          "GET /files/small.txt HTTP/1.1\r\nHost: a\r\n\r\n");
        var timeout = TimeSpan.FromSeconds(20);
        Assert.Equal("small\n", (await c.ReadResponseAsync(timeout: timeout)).BodyText);
        var whole = await c.ReadResponseAsync(timeout: timeout);
        Assert.Equal(200, whole.Status);
        Assert.True(_big.AsSpan().SequenceEqual(whole.Body), "the whole file, byte for byte");
        var range = await c.ReadResponseAsync(timeout: timeout);
        Assert.Equal(206, range.Status);
        Assert.True(_big.AsSpan(70000, 4930000).SequenceEqual(range.Body), "the range, byte for byte");
        var multipart = await c.ReadResponseAsync(timeout: timeout);
        Assert.Equal(206, multipart.Status);
        var boundary = multipart.Header("Content-Type")!.Split("boundary=")[1];
        var body = multipart.Body;
        int at = 0;
        foreach (var (first, length) in new[] { (0, 100000), (1000000, 300000), (5000000, _big.Length - 5000000) })
        {
            var head = $"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {first}-{first + length - 1}/{_big.Length}\r\n\r\n";
            Assert.Equal(head, Encoding.ASCII.GetString(body, at, head.Length));
            at += head.Length;
            Assert.True(_big.AsSpan(first, length).SequenceEqual(body.AsSpan(at, length)), $"part at {first}");
            at += length;
        }
        Assert.Equal($"\r\n--{boundary}--\r\n", Encoding.ASCII.GetString(body, at, body.Length - at));
        Assert.Equal("small\n", (await c.ReadResponseAsync(timeout: timeout)).BodyText);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_slow_reader_gets_the_whole_file(string transport)
    {
        // A small receive buffer: the file send waits for room many times (EPOLLOUT, or the engine's wait).
        await using var server = await StartAsync(transport, o => o with { MinResponseDataRate = 0 });
        await using var c = await server.ConnectAsync();
        c.Socket.ReceiveBufferSize = 8192;
        await c.SendAsync("GET /files/big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1999999\r\n\r\n");
        var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(30));
        Assert.Equal(206, r.Status);
        var received = r.Body;
        Assert.True(_big.AsSpan(0, 2_000_000).SequenceEqual(received), "the range, byte for byte");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_response_of_many_blocks_reaches_a_slow_reader_whole(string transport)
    {
        // Not a file: 4 MB written in 64 KiB pieces, so the output pipe holds many 4 KiB blocks at once, which
        // go out gathered (several per sendmsg); a slow reader makes the kernel take part of a batch.
        var pattern = new byte[64 * 1024];
        for (int i = 0; i < pattern.Length; i++) pattern[i] = (byte)(i * 7 + i / 251);
        await using var server = await TestServer.StartAsync(transport, configure: o => o with { MinResponseDataRate = 0 }, routes: r => r.MapGet("/blocks", async (req, res) =>
        {
            res.ContentLength = 64L * pattern.Length;
            for (int i = 0; i < 64; i++)
            {
                res.Body.Write(pattern);
                if ((await res.Body.FlushAsync(req.Aborted)).IsCompleted) return;
            }
        }));
        await using var c = await server.ConnectAsync();
        c.Socket.ReceiveBufferSize = 16384;
        await c.SendAsync("GET /blocks HTTP/1.1\r\nHost: a\r\n\r\n");
        var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(30));
        Assert.Equal(200, r.Status);
        var bytes = r.Body;
        Assert.Equal(64L * pattern.Length, bytes.Length);
        for (int i = 0; i < 64; i++) Assert.True(pattern.AsSpan().SequenceEqual(bytes.AsSpan(i * pattern.Length, pattern.Length)), $"piece {i}");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_client_that_stops_reading_a_file_is_cut_off_by_the_send_stall_rule(string transport)
    {
        using (var f = new FileStream(Path.Combine(_root, "huge.bin"), FileMode.Create)) f.SetLength(64L * 1024 * 1024); // sparse: more than any socket buffers
        await using var server = await StartAsync(transport,
            o => o with { MinResponseDataRate = 1000, MinResponseDataRateGracePeriod = TimeSpan.FromMilliseconds(500) });
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        c.Socket.ReceiveBufferSize = 4096;
        await c.SendAsync("GET /files/huge.bin HTTP/1.1\r\nHost: a\r\n\r\n");
        // Never read: the file send stalls with the kernel's buffers full, and the heartbeat aborts it.
        await ends.AssertNextAsync(ConnectionEndReason.ResponseTimeout, TimeSpan.FromSeconds(15));
        Assert.Equal(CloseKind.Reset, await c.DiscardUntilCloseAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_large_file_over_TLS_is_copied_and_arrives_whole(string transport)
    {
        using var cert = TestCertificate.Create();
        await using var server = await StartAsync(transport, o => o with { Tls = new TlsOptions(cert.CertPath, cert.KeyPath) { ReloadInterval = TimeSpan.Zero } });
        await using var c = await TlsClient.ConnectAsync(server.Port);
        await c.SendAsync("GET /files/big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=100-1500099\r\n\r\n");
        var r = await c.ReadResponseAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(206, r.Status);
        Assert.True(_big.AsSpan(100, 1500000).SequenceEqual(r.Body), "the range, byte for byte, encrypted (no sendfile through TLS)");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_directory_moved_into_the_roots_place_is_served_at_once(string transport)
    {
        await using var server = await StartAsync(transport);
        var first = await GetAsync(server, "/files/small.txt");
        Assert.Equal("small\n", first.BodyText);
        // A deploy that renames: the new tree takes the root's name; the held root descriptor must not serve the old one.
        var next = Path.Combine(_tree.FullName, "next");
        Directory.CreateDirectory(next);
        File.WriteAllText(Path.Combine(next, "small.txt"), "new tree\n");
        Directory.Move(_root, Path.Combine(_tree.FullName, "old"));
        Directory.Move(next, _root);
        Assert.Equal("new tree\n", (await GetAsync(server, "/files/small.txt")).BodyText);
        Assert.Equal(404, (await GetAsync(server, "/files/big.bin")).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_file_not_in_the_page_cache_is_served(string transport)
    {
        // Dropped from the page cache (POSIX_FADV_DONTNEED on a clean file), the small-file read would wait for
        // the disk: it goes to the thread pool instead of holding an event loop. Either way, the right bytes.
        var path = Path.Combine(_root, "cold.txt");
        var content = Encoding.ASCII.GetBytes(new string('c', 20000));
        using (var f = new FileStream(path, FileMode.Create)) { f.Write(content); f.Flush(flushToDisk: true); }
        Evict(path);
        await using var server = await StartAsync(transport);
        var r = await GetAsync(server, "/files/cold.txt");
        Assert.Equal(200, r.Status);
        Assert.Equal(content, r.Body);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_large_file_not_in_the_page_cache_is_read_off_the_event_loop_before_its_sendfile(string transport)
    {
        // sendfile reads the file inside the syscall whatever O_NONBLOCK says: on an event loop a cold window
        // would stall every connection of that loop for the disk. The Linux transport reads it on the thread pool first.
        var path = Path.Combine(_root, "cold.bin");
        var content = new byte[3 * 1024 * 1024 + 5];
        new Random(3).NextBytes(content);
        using (var f = new FileStream(path, FileMode.Create)) { f.Write(content); f.Flush(flushToDisk: true); }
        Evict(path);
        await using var server = await StartAsync(transport);
        long before = LinuxConnection.FileWarmUps;
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /files/cold.bin HTTP/1.1\r\nHost: a\r\n\r\n");
        var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(20));
        Assert.Equal(200, r.Status);
        Assert.True(content.AsSpan().SequenceEqual(r.Body), "the cold file, byte for byte");
        // (Other tests may warm files meanwhile: only "at least one" is this request's.)
        if (transport == "linux") Assert.True(LinuxConnection.FileWarmUps > before, "the cold window was read off the loop");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_path_whose_lookup_is_not_cached_is_opened_on_the_thread_pool(string transport)
    {
        // Forced here (a cold dentry cache cannot be arranged in a test): the open leaves the calling thread (an
        // event loop), and everything else about the response is as on the fast path, redirects and index included.
        Directory.CreateDirectory(Path.Combine(_root, "docs"));
        File.WriteAllText(Path.Combine(_root, "docs", "index.html"), "<h1>docs</h1>\n");
        var handler = new StaticFileHandler(new StaticFileOptions { Root = _root }) { OpenOffTheCallingThread = true };
        await using var server = await TestServer.StartAsync(transport, routes: r => r.MapGet("/{*path}", handler.HandleAsync));
        Assert.Equal("small\n", (await GetAsync(server, "/small.txt")).BodyText);
        Assert.Equal(404, (await GetAsync(server, "/missing.txt")).Status);
        Assert.Equal(301, (await GetAsync(server, "/docs")).Status);
        Assert.Equal("<h1>docs</h1>\n", (await GetAsync(server, "/docs/")).BodyText);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n");
        var big = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(20));
        Assert.True(_big.AsSpan().SequenceEqual(big.Body), "the large file, byte for byte");
    }

    private static void Evict(string path)
    {
        if (!OperatingSystem.IsLinux()) return;
        using var handle = File.OpenHandle(path);
        _ = posix_fadvise((int)handle.DangerousGetHandle(), 0, 0, 4 /* POSIX_FADV_DONTNEED */);
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int posix_fadvise(int fd, long offset, long length, int advice);

    private static async Task<RawResponse> GetAsync(TestServer server, string target)
    {
        await using var c = await server.ConnectAsync();
        await c.SendAsync($"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        return await c.ReadResponseAsync();
    }
}
