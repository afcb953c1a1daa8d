using System.Globalization;
using System.Text;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.StaticFiles;

// Socket tests of StaticFileHandler: raw HTTP bytes against a server on port 0, on every transport.
public class StaticFileSocketTests
{
    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_file_comes_with_its_type_length_validators_and_Accept_Ranges(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        var mtime = new DateTime(2026, 1, 2, 3, 4, 5, 600, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(Path.Combine(s.Root, "hello.txt"), mtime);
        var r = await s.GetAsync("/hello.txt");
        Assert.Equal(200, r.Status);
        Assert.Equal("Hello, files!\n", r.BodyText);
        Assert.Equal("text/plain; charset=utf-8", r.Header("Content-Type"));
        Assert.Equal("14", r.Header("Content-Length"));
        Assert.Equal("Fri, 02 Jan 2026 03:04:05 GMT", r.Header("Last-Modified"));
        Assert.Equal("bytes", r.Header("Accept-Ranges"));
        var etag = r.Header("ETag");
        Assert.NotNull(etag);
        Assert.Matches("^\"[0-9a-f]+-[0-9a-f]+\"$", etag); // strong: no W/
        Assert.Equal("application/octet-stream", (await s.GetAsync("/digits.bin")).Header("Content-Type"));
        var zero = await s.GetAsync("/zero.txt");
        Assert.Equal((200, "0"), (zero.Status, zero.Header("Content-Length")));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task HEAD_sends_the_GET_headers_and_no_body(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        await using var c = await s.ConnectAsync();
        await c.SendAsync("HEAD /digits.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        var head = await c.ReadResponseAsync(noBody: true);
        Assert.Equal((200, "10000"), (head.Status, head.Header("Content-Length")));
        Assert.NotNull(head.Header("ETag"));
        // The next response follows at once: had HEAD sent a body, this would read its bytes as a status line.
        var next = await c.ReadResponseAsync();
        Assert.Equal("Hello, files!\n", next.BodyText);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task If_None_Match_and_If_Modified_Since_give_304_without_a_body(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        var first = await s.GetAsync("/hello.txt");
        var etag = first.Header("ETag")!;
        var lastModified = first.Header("Last-Modified")!;

        foreach (var condition in (string[])[$"If-None-Match: {etag}", $"If-None-Match: \"x\", {etag}", "If-None-Match: *", $"If-None-Match: W/{etag}",
                     $"If-Modified-Since: {lastModified}", $"If-None-Match: {etag}\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"])
        {
            await using var c = await s.ConnectAsync();
            await c.SendAsync($"GET /hello.txt HTTP/1.1\r\nHost: t\r\n{condition}\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.True(r.Status == 304, condition);
            Assert.Equal(etag, r.Header("ETag"));
            Assert.Null(r.Header("Transfer-Encoding"));
            // No body: the next response's status line comes straight after the head.
            Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        }
        // If-None-Match takes precedence: a stale tag means 200 even though the date says "not modified".
        var precedence = await s.GetAsync("/hello.txt", "GET", "If-None-Match: \"stale\"", $"If-Modified-Since: {lastModified}");
        Assert.Equal(200, precedence.Status);
        Assert.Equal(200, (await s.GetAsync("/hello.txt", "GET", "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT")).Status);
        Assert.Equal(412, (await s.GetAsync("/hello.txt", "GET", "If-Match: \"stale\"")).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Single_ranges_are_206_with_Content_Range(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        var digits = StaticFileServer.Digits(10_000);
        foreach (var (spec, first, last) in new[] { ("0-9", 0, 9), ("-5", 9995, 9999), ("9990-", 9990, 9999), ("5000-999999", 5000, 9999), ("13-13", 13, 13) })
        {
            var r = await s.GetAsync("/digits.bin", "GET", $"Range: bytes={spec}");
            Assert.Equal(206, r.Status);
            Assert.Equal($"bytes {first}-{last}/10000", r.Header("Content-Range"));
            Assert.Equal((last - first + 1).ToString(CultureInfo.InvariantCulture), r.Header("Content-Length"));
            Assert.Equal(digits[first..(last + 1)], r.Body);
        }
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task An_unsatisfiable_range_is_416_with_the_length(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        var r = await s.GetAsync("/digits.bin", "GET", "Range: bytes=10000-");
        Assert.Equal(416, r.Status);
        Assert.Equal("bytes */10000", r.Header("Content-Range"));
        var empty = await s.GetAsync("/zero.txt", "GET", "Range: bytes=0-");
        Assert.Equal((416, "bytes */0"), (empty.Status, empty.Header("Content-Range")));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task An_unknown_unit_or_a_bad_range_is_ignored(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        foreach (var range in (string[])["Range: items=0-1", "Range: bytes=9-1", "Range: bytes=x"])
        {
            var r = await s.GetAsync("/digits.bin", "GET", range);
            Assert.Equal(200, r.Status);
            Assert.Null(r.Header("Content-Range"));
            Assert.Equal(10_000, r.Body.Length);
        }
        // HEAD with a Range: Range is defined for GET only.
        var head = await s.GetAsync("/digits.bin", "HEAD", "Range: bytes=0-1");
        Assert.Equal((200, "10000"), (head.Status, head.Header("Content-Length")));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task If_Range_with_the_ETag_or_the_date_applies_the_range_and_a_stale_one_sends_everything(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        var first = await s.GetAsync("/digits.bin");
        var etag = first.Header("ETag")!;
        var date = first.Header("Last-Modified")!;
        Assert.Equal(206, (await s.GetAsync("/digits.bin", "GET", "Range: bytes=0-1", $"If-Range: {etag}")).Status);
        Assert.Equal(206, (await s.GetAsync("/digits.bin", "GET", "Range: bytes=0-1", $"If-Range: {date}")).Status);
        var stale = await s.GetAsync("/digits.bin", "GET", "Range: bytes=0-1", "If-Range: \"stale\"");
        Assert.Equal((200, 10_000), (stale.Status, stale.Body.Length));
        Assert.Equal(200, (await s.GetAsync("/digits.bin", "GET", "Range: bytes=0-1", "If-Range: Thu, 01 Jan 1970 00:00:00 GMT")).Status);
        Assert.Equal(200, (await s.GetAsync("/digits.bin", "GET", "Range: bytes=0-1", $"If-Range: W/{etag}")).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Several_ranges_are_multipart_byteranges_and_too_many_are_the_whole_file(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        var digits = StaticFileServer.Digits(10_000);
        var r = await s.GetAsync("/digits.bin", "GET", "Range: bytes=0-4, 100-102, -3");
        Assert.Equal(206, r.Status);
        var type = r.Header("Content-Type")!;
        Assert.StartsWith("multipart/byteranges; boundary=", type);
        var boundary = type["multipart/byteranges; boundary=".Length..];
        Assert.Equal(r.Body.Length.ToString(CultureInfo.InvariantCulture), r.Header("Content-Length"));
        var parts = ParseMultipart(r.Body, boundary);
        Assert.Equal(3, parts.Count);
        Assert.Equal(["bytes 0-4/10000", "bytes 100-102/10000", "bytes 9997-9999/10000"], parts.Select(p => p.Range));
        Assert.Equal(digits[0..5], parts[0].Body);
        Assert.Equal(digits[100..103], parts[1].Body);
        Assert.Equal(digits[9997..], parts[2].Body);
        Assert.All(parts, p => Assert.Equal("application/octet-stream", p.Type));

        var many = await s.GetAsync("/digits.bin", "GET", "Range: bytes=" + string.Join(",", Enumerable.Range(0, 17).Select(i => $"{i * 10}-{i * 10 + 1}")));
        Assert.Equal((200, 10_000), (many.Status, many.Body.Length));
    }

    private static List<(string Type, string Range, byte[] Body)> ParseMultipart(byte[] body, string boundary)
    {
        var text = Encoding.Latin1.GetString(body);
        var parts = new List<(string, string, byte[])>();
        var delimiter = "\r\n--" + boundary;
        Assert.StartsWith(delimiter + "\r\n", text);
        Assert.EndsWith(delimiter + "--\r\n", text);
        foreach (var part in text[..^(delimiter.Length + 4)].Split(delimiter, StringSplitOptions.RemoveEmptyEntries))
        {
            int end = part.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            var headers = part[2..end].Split("\r\n").Select(h => h.Split(": ", 2)).ToDictionary(h => h[0], h => h[1]);
            parts.Add((headers["Content-Type"], headers["Content-Range"], Encoding.Latin1.GetBytes(part[(end + 4)..])));
        }
        return parts;
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Directories_serve_their_index_redirect_without_a_slash_and_are_not_listed(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        var root = await s.GetAsync("/");
        Assert.Equal((200, "<h1>root index</h1>\n", "text/html; charset=utf-8"), (root.Status, root.BodyText, root.Header("Content-Type")));
        Assert.Equal("<h1>docs</h1>\n", (await s.GetAsync("/docs/")).BodyText);
        var redirect = await s.GetAsync("/docs?x=1");
        Assert.Equal(301, redirect.Status);
        Assert.Equal("/docs/?x=1", redirect.Header("Location"));
        Assert.Equal(404, (await s.GetAsync("/empty/")).Status);   // no index, no listing
        Assert.Equal(404, (await s.GetAsync("/hello.txt/")).Status); // a file is not a directory
        Assert.Equal(404, (await s.GetAsync("/missing.txt")).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_listing_when_turned_on_names_the_entries_but_not_the_dotfiles(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport, o => o with { DirectoryListing = true },
            root => File.WriteAllText(Path.Combine(root, "empty", "<b>.txt"), "x"));
        var r = await s.GetAsync("/empty/");
        Assert.Equal(200, r.Status);
        Assert.Contains("href=\"a.txt\"", r.BodyText);
        Assert.Contains("&lt;b&gt;.txt", r.BodyText); // names are HTML-escaped
        Assert.Contains("href=\"%3Cb%3E.txt\"", r.BodyText);
        Assert.DoesNotContain(".hidden", r.BodyText);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Dotfiles_and_links_out_of_the_root_are_404(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        foreach (var path in (string[])["/.env", "/.git/config", "/.git/", "/empty/.hidden", "/outside-link", "/outside-dir/secret.txt"])
        {
            var r = await s.GetAsync(path);
            Assert.True(r.Status == 404, $"{path}: {r.Status}");
            Assert.DoesNotContain(StaticFileServer.SecretMarker, r.BodyText);
        }
        Assert.Equal("Hello, files!\n", (await s.GetAsync("/inside-link.txt")).BodyText); // a link inside the root is followed
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Links_out_of_the_root_are_followed_only_when_allowed(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport, o => o with { FollowSymlinksOutsideRoot = true });
        Assert.Equal(StaticFileServer.SecretMarker, (await s.GetAsync("/outside-link")).BodyText);
    }

    private static readonly string[] TraversalTargets =
    [
        "/../secret.txt", "/../../secret.txt", "/docs/../../secret.txt", "/./../secret.txt",
        "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/.%2e/secret.txt", "/%2e%2e%2fsecret.txt",
        "/%252e%252e/secret.txt", "/%252e%252e%252fsecret.txt",
        "/..\\secret.txt", "/..%5csecret.txt", "/%5c..%5csecret.txt",
        "/%c0%ae%c0%ae/secret.txt", "/%c0%ae%c0%ae%c0%afsecret.txt", "/%e0%80%ae%e0%80%ae/secret.txt",
        "/secret.txt%00.html", "/%00/../secret.txt", "/a%01b", "/a%0d%0aX-Injected:%201", "/%7f",
        "http://test/../secret.txt", "http://test/%2e%2e/secret.txt",
        "/outside-dir/../secret.txt", "/outside-dir/secret.txt", "//../secret.txt",
    ];

    public static IEnumerable<object?[]> TraversalCases => TransportData.Cross(typeof(StaticFileSocketTests), nameof(TraversalRows));
    public static IEnumerable<object?[]> TraversalRows => TraversalTargets.Select(t => new object?[] { t });

    [Theory, MemberData(nameof(TraversalCases))]
    public async Task No_spelling_of_a_path_reads_outside_the_root(string target, string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        await using var c = await s.ConnectAsync();
        await c.SendAsync(Encoding.Latin1.GetBytes($"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n"));
        var r = await c.ReadResponseAsync();
        Assert.True(r.Status is 400 or 404, $"{target}: {r.Status}");
        Assert.DoesNotContain(StaticFileServer.SecretMarker, r.BodyText);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Raw_control_bytes_in_the_target_are_refused(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        foreach (var target in (string[])["/sec\u0000ret.txt", "/a\u0001", "/a\u007f", "/caf\u00e9"])
        {
            await using var c = await s.ConnectAsync();
            await c.SendAsync(Encoding.Latin1.GetBytes($"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n"));
            var r = await c.ReadResponseAsync();
            Assert.True(r.Status is 400 or 404, $"{target}: {r.Status}");
        }
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Methods_that_would_change_a_file_are_405_with_Allow(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        foreach (var method in (string[])["POST", "PUT", "DELETE", "PATCH"])
        {
            await using var c = await s.ConnectAsync();
            await c.SendAsync($"{method} /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
            var r = await c.ReadResponseAsync();
            Assert.Equal(405, r.Status);
            Assert.Equal("GET, HEAD", r.Header("Allow"));
        }
        Assert.Equal("Hello, files!\n", File.ReadAllText(Path.Combine(s.Root, "hello.txt")));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_changed_file_is_served_fresh_with_new_validators(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport);
        var path = Path.Combine(s.Root, "hello.txt");
        await using var c = await s.ConnectAsync(); // the same keep-alive connection: nothing may be cached on it either
        await c.SendAsync("GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        var before = await c.ReadResponseAsync();
        // Same length, new content, mtime one tick later: only the mtime part of the ETag can tell.
        File.WriteAllText(path, "HELLO, FILES!\n");
        File.SetLastWriteTimeUtc(path, File.GetLastWriteTimeUtc(path).AddSeconds(1));
        await c.SendAsync($"GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: {before.Header("ETag")}\r\n\r\n");
        var after = await c.ReadResponseAsync();
        Assert.Equal(200, after.Status);
        Assert.Equal("HELLO, FILES!\n", after.BodyText);
        Assert.NotEqual(before.Header("ETag"), after.Header("ETag"));
        Assert.NotEqual(before.Header("Last-Modified"), after.Header("Last-Modified"));
        File.Delete(path);
        await c.SendAsync("GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        Assert.Equal(404, (await c.ReadResponseAsync()).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_FIFO_under_the_root_does_not_hang_the_request(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport, populate: root =>
        {
            using var mkfifo = System.Diagnostics.Process.Start("mkfifo", Path.Combine(root, "pipe.txt"))!;
            if (!mkfifo.WaitForExit(5000) || mkfifo.ExitCode != 0) throw new InvalidOperationException("mkfifo failed");
        });
        // A blocking open(2) waits for a writer that never comes: the read below would time out.
        var r = await s.GetAsync("/pipe.txt");
        Assert.Equal(404, r.Status);
        Assert.Equal(0, s.OpenHandlesUnderTree());
        Assert.Equal(200, (await s.GetAsync("/hello.txt")).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_unix_socket_under_the_root_is_404_and_openat2_stays_on_for_the_next_request(string transport)
    {
        await using var s = await StaticFileServer.StartAsync(transport, populate: root =>
        {
            // bind(2) leaves the socket's inode behind when the socket is closed: open(2) of it fails with ENXIO.
            using var unix = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
            unix.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(Path.Combine(root, "app.sock")));
        });
        Assert.Equal(404, (await s.GetAsync("/app.sock")).Status);
        // One file's errno is that request's answer, not a reason to give up openat2 for the whole process.
        Assert.Equal(OperatingSystem.IsLinux(), PipeServer.StaticFiles.FileOpener.Openat2InUse);
        Assert.Equal("Hello, files!\n", (await s.GetAsync("/hello.txt")).BodyText);
        Assert.Equal(OperatingSystem.IsLinux(), PipeServer.StaticFiles.FileOpener.Openat2InUse);
        Assert.Equal(0, s.OpenHandlesUnderTree());
    }

    [Fact]
    public void An_openat2_errno_is_answered_for_its_request_only()
    {
        // 404: nothing there, unreadable, or nothing a file server serves (a socket, a device, refused by a LSM).
        foreach (int errno in new[] { 2, 20, 13, 36, 6, 19, 1 }) Assert.Equal(PipeServer.StaticFiles.OpenOutcome.NotFound, PipeServer.StaticFiles.FileOpener.OutcomeOf(errno));
        // 503: out of descriptors (EMFILE, ENFILE) or memory, or a lease asks to wait.
        foreach (int errno in new[] { 24, 23, 12, 11 }) Assert.Equal(PipeServer.StaticFiles.OpenOutcome.Unavailable, PipeServer.StaticFiles.FileOpener.OutcomeOf(errno));
        // A link on the way (ELOOP, EXDEV) and anything unforeseen: the portable path decides, this time.
        foreach (int errno in new[] { 40, 18, 5 }) Assert.Equal(PipeServer.StaticFiles.OpenOutcome.Resolve, PipeServer.StaticFiles.FileOpener.OutcomeOf(errno));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_large_file_arrives_whole(string transport)
    {
        var content = new byte[3 * 1024 * 1024 + 17];
        new Random(13).NextBytes(content);
        await using var s = await StaticFileServer.StartAsync(transport, populate: root => File.WriteAllBytes(Path.Combine(root, "big.bin"), content));
        var r = await s.GetAsync("/big.bin");
        Assert.Equal(200, r.Status);
        Assert.Equal(content, r.Body);
        var range = await s.GetAsync("/big.bin", "GET", "Range: bytes=100000-2999999");
        Assert.Equal(content[100000..3000000], range.Body);
        Assert.Equal(0, s.OpenHandlesUnderTree());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task File_handles_are_closed_after_success_a_client_gone_and_an_abort(string transport)
    {
        var content = new byte[32 * 1024 * 1024];
        await using var s = await StaticFileServer.StartAsync(transport, populate: root => File.WriteAllBytes(Path.Combine(root, "big.bin"), content),
            shutdownTimeout: TimeSpan.FromMilliseconds(300));
        Assert.Equal(0, s.OpenHandlesUnderTree());

        // Success, small and large, and every refusal.
        await s.GetAsync("/hello.txt");
        await s.GetAsync("/hello.txt", "GET", "Range: bytes=0-1");
        await s.GetAsync("/hello.txt", "GET", "Range: bytes=100-");
        await s.GetAsync("/hello.txt", "GET", "If-None-Match: *");
        await s.GetAsync("/hello.txt", "HEAD");
        Assert.Equal(0, s.OpenHandlesUnderTree());

        // Client gone: read the head and a little of a 32 MiB body, then reset.
        var gone = await s.ConnectAsync();
        await gone.SendAsync("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        Assert.True(await gone.WaitForReceivedAsync("HTTP/1.1 200"));
        await TestServer.WaitUntilAsync(() => s.OpenHandlesUnderTree() == 1, "the download holds its handle");
        gone.Socket.LingerState = new System.Net.Sockets.LingerOption(true, 0);
        await gone.DisposeAsync();
        await TestServer.WaitUntilAsync(() => s.OpenHandlesUnderTree() == 0, "the handle of the abandoned download is closed");

        // Abort: a client that stops reading, then the shutdown deadline.
        await using var stalled = await s.ConnectAsync();
        await stalled.SendAsync("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        Assert.True(await stalled.WaitForReceivedAsync("HTTP/1.1 200"));
        await TestServer.WaitUntilAsync(() => s.OpenHandlesUnderTree() == 1, "the stalled download holds its handle");
        var report = await s.Server.ShutdownAsync();
        await TestServer.WaitUntilAsync(() => s.OpenHandlesUnderTree() == 0, "the handle of the aborted download is closed");
        Assert.DoesNotContain(s.Logger.Events, e => e.Level >= Microsoft.Extensions.Logging.LogLevel.Error);
    }
}
