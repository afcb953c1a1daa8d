using System.Buffers;
using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Win32.SafeHandles;
using PipeServer.Http;
using HttpMethod = PipeServer.Http.HttpMethod;

namespace PipeServer.StaticFiles;

// Where this sits: the application layer, a RequestHandler like the router (the executable's --root puts it
// behind the health probes: ProbesThenFiles). One request's journey through it:
//
//   method      GET/HEAD only, anything else 405 + Allow: GET, HEAD
//   path        StaticPath.MapRequestPath (400/404 before any file system call), then StaticPath.Resolve
//               (the real path must stay under the root)
//   directory   no trailing slash -> 301 to the slash form; else the index file, a listing if enabled, or 404
//   open        one handle per request, closed in a finally whatever happens: served, client gone, aborted
//   validators  from that handle (fstat): length + mtime -> strong ETag, Last-Modified. Nothing is cached
//               between requests, so a changed file is served fresh with fresh validators
//   conditions  Conditionals.Evaluate -> 304/412; then If-Range + ByteRanges.Parse -> 200/206/416
//   body        Content-Length set up front; bytes read from the handle straight into the response's
//               output (small files, no await) or through one pooled 64 KiB buffer with a flush per
//               buffer (large files: the flush waits while the client is slow, which is the backpressure)
//
// The body is never buffered whole, and a download in flight at shutdown is an ordinary request: a drain
// lets it finish, the deadline aborts it (the Aborted token ends the read or the flush, the handle is closed
// and the connection reset, so the client sees fewer bytes than Content-Length).

/// <summary>Serves the files under <see cref="StaticFileOptions.Root"/> for GET and HEAD (RFC 9110 validators, conditionals and ranges).</summary>
public sealed class StaticFileHandler
{
    /// <summary>The metric label (http.route) of every request this handler answers: one value, whatever the path.</summary>
    public const string RouteLabel = "/{**file}";

    /// <summary>Files up to this size are read without an await, straight into the output (one pread for most).</summary>
    internal const int SmallFileBytes = 64 * 1024;
    /// <summary>The read size for larger files, and how much is written between two flushes.</summary>
    internal const int ReadChunkBytes = 64 * 1024;
    /// <summary>Most entries a directory listing shows (a bound on the page, not on the directory).</summary>
    internal const int MaxListingEntries = 10_000;

    private readonly StaticFileOptions _options;
    private readonly string _realRoot;
    private readonly string _boundary = "PipeServer-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(12));
    [ThreadStatic] private static List<ByteRange>? t_ranges;

    /// <summary>Throws <see cref="ArgumentException"/> for bad options and <see cref="DirectoryNotFoundException"/> or <see cref="UnauthorizedAccessException"/> for a root that cannot be served.</summary>
    public StaticFileHandler(StaticFileOptions options) : this(options, prefixSegments: 0) { }

    /// <param name="options">The options.</param>
    /// <param name="prefixSegments">Leading path segments that name the mount point, not the file (Router.MapStaticFiles).</param>
    internal StaticFileHandler(StaticFileOptions options, int prefixSegments)
    {
        options.Validate();
        _options = options;
        _realRoot = CheckRoot(options.Root);
        _prefixSegments = prefixSegments;
    }

    private readonly int _prefixSegments;

    /// <summary>
    /// The raw path below the mount point. The router matched the prefix segment by segment (decoding escapes),
    /// so its raw bytes may be spelt differently from the template: segments are skipped, not bytes.
    /// </summary>
    private ReadOnlySpan<byte> PathBelowMount(ReadOnlySpan<byte> raw)
    {
        for (int skipped = 0; skipped < _prefixSegments; skipped++)
        {
            int next = raw.Length > 1 ? raw[1..].IndexOf((byte)'/') : -1;
            if (next < 0) return "/"u8;
            raw = raw[(next + 1)..];
        }
        return raw;
    }

    /// <summary>The root's real path (every link followed), as the containment check compares against it.</summary>
    public string RealRoot => _realRoot;

    /// <summary>The real path of <paramref name="root"/> if it is a directory this process can list; throws with a message naming it otherwise.</summary>
    public static string CheckRoot(string root)
    {
        var real = StaticPath.RealPath(Path.GetFullPath(root));
        if (real is null || !Directory.Exists(real)) throw new DirectoryNotFoundException($"'{root}' is not a directory");
        try
        {
            using var entries = Directory.EnumerateFileSystemEntries(real).GetEnumerator();
            entries.MoveNext();
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
        {
            throw new UnauthorizedAccessException($"'{root}' cannot be read: {ex.Message}");
        }
        return real;
    }

    /// <summary>The RequestHandler to give the server (or to put behind other routes).</summary>
    public ValueTask HandleAsync(HttpRequest request, HttpResponse response)
    {
        request.Route ??= RouteLabel; // mounted on a router, its template is the label
        if (request.KnownMethod is not (HttpMethod.Get or HttpMethod.Head))
        {
            // A file tree is read-only over HTTP: the methods that would change it are "not allowed", not "not found" (§15.5.6).
            response.StatusCode = 405;
            response.Headers.Set("Allow", "GET, HEAD");
            return response.WriteTextAsync("Method Not Allowed\n");
        }
        if (request.TargetForm is not (RequestTargetForm.Origin or RequestTargetForm.Absolute))
            return Simple(response, 400, "Bad Request\n");

        switch (StaticPath.MapRequestPath(_prefixSegments == 0 ? request.RawPath : PathBelowMount(request.RawPath), _options.ServeDotFiles, out var relative, out bool trailingSlash))
        {
            case PathVerdict.BadRequest: return Simple(response, 400, "Bad Request\n");
            case PathVerdict.NotFound: return NotFound(response);
        }
        var real = StaticPath.Resolve(_realRoot, relative, _options.FollowSymlinksOutsideRoot, _options.ServeDotFiles);
        if (real is null) return NotFound(response);

        if (Directory.Exists(real))
        {
            if (!trailingSlash)
            {
                // Relative links inside an index page resolve against the slash form (RFC 3986 §5.2.3), so send the client there.
                response.StatusCode = 301;
                var location = Encoding.ASCII.GetString(request.RawPath) + "/" + (request.Query.Length > 0 ? "?" + request.Query : "");
                response.Headers.Set("Location", location);
                return response.WriteTextAsync("Moved Permanently\n");
            }
            if (_options.IndexFile is { } index)
            {
                var indexReal = StaticPath.Resolve(_realRoot, relative.Length == 0 ? index : relative + "/" + index,
                    _options.FollowSymlinksOutsideRoot, _options.ServeDotFiles);
                if (indexReal is not null && File.Exists(indexReal)) return ServeFileAsync(request, response, indexReal);
            }
            return _options.DirectoryListing ? ListDirectory(request, response, real) : NotFound(response);
        }
        if (trailingSlash) return NotFound(response); // "/file.txt/" names a directory that is not one
        return ServeFileAsync(request, response, real);
    }

    private async ValueTask ServeFileAsync(HttpRequest request, HttpResponse response, string path)
    {
        // Gone since Resolve, unreadable to this process, or a link put in its place: all "not here" to a client.
        if (FileOpener.OpenForReading(path) is not { } handle)
        {
            await NotFound(response).ConfigureAwait(false);
            return;
        }
        using (handle)
        {
            // Validators from the open handle, not from the path: they describe exactly the bytes about to be sent.
            long length;
            try { length = RandomAccess.GetLength(handle); }
            catch (NotSupportedException)
            {
                // Not a seekable file (a FIFO, a socket, a character device under the root): nothing a range or a length can describe.
                await NotFound(response).ConfigureAwait(false);
                return;
            }
            var modified = new DateTimeOffset(File.GetLastWriteTimeUtc(handle), TimeSpan.Zero);
            var (etag, lastModifiedText) = Validators(length, modified);
            var headers = response.Headers;
            headers.Set("ETag", etag);
            headers.Set("Last-Modified", lastModifiedText);
            headers.Set("Accept-Ranges", "bytes");
            if (_options.CacheControl is { } cacheControl) headers.Set("Cache-Control", cacheControl);

            var requestHeaders = request.Headers;
            switch (Conditionals.Evaluate(Joined(requestHeaders, "If-Match"), request.GetHeader("If-Unmodified-Since"),
                        Joined(requestHeaders, "If-None-Match"), request.GetHeader("If-Modified-Since"), etag, modified, isGetOrHead: true))
            {
                case ConditionalOutcome.NotModified:
                    response.StatusCode = 304;
                    return;
                case ConditionalOutcome.PreconditionFailed:
                    headers.Remove("Accept-Ranges");
                    await Simple(response, 412, "Precondition Failed\n").ConfigureAwait(false);
                    return;
            }

            var contentType = ContentTypes.For(path);
            // Range applies to GET only (§14.2); If-Range that does not match means "the whole file".
            var rangeHeader = request.KnownMethod == HttpMethod.Get ? request.GetHeader("Range") : null;
            var outcome = RangeOutcome.Whole;
            var ranges = t_ranges ??= [];
            ranges.Clear();
            if (rangeHeader is not null && Conditionals.IfRangeAllows(request.GetHeader("If-Range"), etag, modified))
                outcome = ByteRanges.Parse(rangeHeader, length, _options.MaxRanges, ranges);

            bool sendBody = request.KnownMethod != HttpMethod.Head;
            switch (outcome)
            {
                case RangeOutcome.Unsatisfiable:
                    response.StatusCode = 416;
                    headers.Set("Content-Range", string.Create(CultureInfo.InvariantCulture, $"bytes */{length}"));
                    await response.WriteTextAsync("Range Not Satisfiable\n").ConfigureAwait(false);
                    return;
                case RangeOutcome.Partial when ranges.Count == 1:
                {
                    var range = ranges[0];
                    response.StatusCode = 206;
                    headers.Set("Content-Range", ContentRange(range, length));
                    response.ContentType = contentType;
                    response.ContentLength = range.Length;
                    StartWithLength(response);
                    if (sendBody) await SendAsync(handle, range.First, range.Length, response, request.Aborted).ConfigureAwait(false);
                    return;
                }
                case RangeOutcome.Partial:
                    await SendMultipartAsync(handle, ranges.ToArray(), length, contentType, response, sendBody, request.Aborted).ConfigureAwait(false);
                    return;
                default:
                    response.ContentType = contentType;
                    response.ContentLength = length;
                    StartWithLength(response);
                    if (sendBody && length > 0) await SendAsync(handle, 0, length, response, request.Aborted).ConfigureAwait(false);
                    return;
            }
        }
    }

    // The last validators formatted on this thread. They are a pure function of (length, mtime), so a stale
    // entry cannot be wrong, only unused: a file served again unchanged costs no new strings.
    [ThreadStatic] private static long t_validatorLength, t_validatorTicks;
    [ThreadStatic] private static string? t_etag, t_lastModified;

    private static (string ETag, string LastModified) Validators(long length, DateTimeOffset modified)
    {
        if (t_etag is null || t_validatorLength != length || t_validatorTicks != modified.UtcTicks)
        {
            t_etag = Conditionals.ETagFor(length, modified);
            t_lastModified = Conditionals.TruncateToSeconds(modified).ToString("r", CultureInfo.InvariantCulture);
            t_validatorLength = length;
            t_validatorTicks = modified.UtcTicks;
        }
        return (t_etag, t_lastModified!);
    }

    /// <summary>
    /// The ranges as one multipart/byteranges body (RFC 9110 §14.6). Its length is worked out first, so it goes
    /// with Content-Length like any file; the ranges are few (MaxRanges) and add up to at most the file.
    /// </summary>
    private async ValueTask SendMultipartAsync(SafeFileHandle handle, ByteRange[] ranges, long length, string contentType,
        HttpResponse response, bool sendBody, CancellationToken aborted)
    {
        var partHeads = new byte[ranges.Length][];
        long total = 0;
        for (int i = 0; i < ranges.Length; i++)
        {
            partHeads[i] = Encoding.ASCII.GetBytes(
                $"\r\n--{_boundary}\r\nContent-Type: {contentType}\r\nContent-Range: {ContentRange(ranges[i], length)}\r\n\r\n");
            total += partHeads[i].Length + ranges[i].Length;
        }
        var end = Encoding.ASCII.GetBytes($"\r\n--{_boundary}--\r\n");
        total += end.Length;
        response.StatusCode = 206;
        response.ContentType = "multipart/byteranges; boundary=" + _boundary;
        response.ContentLength = total;
        StartWithLength(response);
        if (!sendBody) return;
        for (int i = 0; i < ranges.Length; i++)
        {
            response.Body.Write(partHeads[i]);
            await SendAsync(handle, ranges[i].First, ranges[i].Length, response, aborted).ConfigureAwait(false);
        }
        response.Body.Write(end);
    }

    /// <summary>
    /// Copies <paramref name="count"/> bytes from <paramref name="offset"/> into the response body. A file that
    /// shrank under us cannot keep the Content-Length promise: that throws, and the connection is aborted.
    /// </summary>
    private static async ValueTask SendAsync(SafeFileHandle handle, long offset, long count, HttpResponse response, CancellationToken aborted)
    {
        var body = response.Body;
        if (count <= SmallFileBytes)
        {
            // Small: synchronous preads from the page cache into the output's own memory, no await, no copy.
            while (count > 0)
            {
                var span = body.GetSpan();
                int want = (int)Math.Min(span.Length, count);
                int n = RandomAccess.Read(handle, span[..want], offset);
                if (n == 0) throw new IOException("The file became shorter while it was being sent.");
                body.Advance(n);
                offset += n;
                count -= n;
            }
            return;
        }
        // Large: one pooled buffer per download, reads off the calling thread (RandomAccess.ReadAsync), and a flush
        // per buffer, which waits while the client is behind. Aborted ends either wait.
        var buffer = ArrayPool<byte>.Shared.Rent(ReadChunkBytes);
        try
        {
            while (count > 0)
            {
                int want = (int)Math.Min(buffer.Length, count);
                int n = await RandomAccess.ReadAsync(handle, buffer.AsMemory(0, want), offset, aborted).ConfigureAwait(false);
                if (n == 0) throw new IOException("The file became shorter while it was being sent.");
                body.Write(buffer.AsSpan(0, n));
                offset += n;
                count -= n;
                var flush = await body.FlushAsync(aborted).ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled) return; // the client is gone: the connection records why
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Writes the head now (the length is known): the body then goes straight into the connection's output
    /// instead of the response's staging buffer. Nothing is flushed: a small file still leaves with the
    /// connection's one flush per batch.
    /// </summary>
    private static void StartWithLength(HttpResponse response)
    {
        // HttpResponse.Start with nothing staged is what the body writer itself does when a write passes its
        // staging bound; here it happens before the first write, so the file's bytes skip the staging copy.
        if (!response.HasStarted && response.BodyBytesWritten == 0) response.Start(0, complete: false);
    }

    private ValueTask ListDirectory(HttpRequest request, HttpResponse response, string directory)
    {
        var html = new StringBuilder();
        var title = WebUtility.HtmlEncode(request.Path);
        html.Append("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ").Append(title)
            .Append("</title></head><body><h1>Index of ").Append(title).Append("</h1><ul>\n");
        int shown = 0;
        foreach (var entry in new DirectoryInfo(directory).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal))
        {
            if (!_options.ServeDotFiles && entry.Name.StartsWith('.')) continue;
            if (++shown > MaxListingEntries) { html.Append("<li>…</li>\n"); break; }
            var name = entry is DirectoryInfo ? entry.Name + "/" : entry.Name;
            html.Append("<li><a href=\"").Append(Uri.EscapeDataString(entry.Name)).Append(entry is DirectoryInfo ? "/" : "")
                .Append("\">").Append(WebUtility.HtmlEncode(name)).Append("</a></li>\n");
        }
        html.Append("</ul></body></html>\n");
        return response.WriteTextAsync(html.ToString(), "text/html; charset=utf-8");
    }

    private static string ContentRange(ByteRange range, long length) =>
        string.Create(CultureInfo.InvariantCulture, $"bytes {range.First}-{range.Last}/{length}");

    /// <summary>A list-valued field sent on several lines is one list (RFC 9110 §5.3); null when absent.</summary>
    private static string? Joined(HttpHeaders headers, string name)
    {
        if (headers[name] is null) return null; // the common case, without the enumerator GetValues allocates
        string? single = null;
        List<string>? many = null;
        foreach (var value in headers.GetValues(name))
        {
            if (single is null) single = value;
            else (many ??= [single]).Add(value);
        }
        return many is null ? single : string.Join(", ", many);
    }

    private static ValueTask NotFound(HttpResponse response) => Simple(response, 404, "Not Found\n");

    private static ValueTask Simple(HttpResponse response, int status, string text)
    {
        response.StatusCode = status;
        return response.WriteTextAsync(text);
    }
}
