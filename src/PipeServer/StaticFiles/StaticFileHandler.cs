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
//   path        StaticPath.MapRequestPath (400/404 before any file system call), into a stack buffer
//   open        FileOpener.OpenBeneath: one openat2 beneath the root's descriptor that follows no link and
//               cannot leave the root (the kernel checks), from the dentry cache only (RESOLVE_CACHED): a path
//               whose lookup would read a directory from disk is opened on the thread pool instead; a path
//               with a link in it goes by StaticPath.Resolve (realpath, then "is it still under the root?")
//               and an O_NOFOLLOW open. An open that fails answers for its request only: 404 (nothing
//               there, unreadable, a socket or device), 503 (out of descriptors or memory: FileOpener.OutcomeOf)
//   directory   no trailing slash -> 301 to the slash form; else the index file, a listing if enabled, or 404
//   file        one descriptor per request, closed in a finally whatever happens: served, client gone, aborted
//   validators  from that descriptor (fstat): length + mtime -> strong ETag, Last-Modified. Nothing is cached
//               between requests, so a changed file is served fresh with fresh validators
//   conditions  Conditionals.Evaluate -> 304/412; then If-Range + ByteRanges.Parse -> 200/206/416
//   body        Content-Length set up front. Small files: read straight into the response's output from
//               the page cache (preadv2 RWF_NOWAIT: an event loop never waits for a disk; a cold file is
//               read on the thread pool), leaving with the connection's one flush per batch. Large files:
//               the transport's sendfile (HttpResponse.TrySendFileAsync), or, where it has none (TLS), one
//               pooled 64 KiB buffer with a flush per buffer (the flush waits while the client is slow)
//
// Per small-file request on Linux that is: statx (the root is still the root), openat2, statx (fstat),
// preadv2, close, and no allocation.
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
    private readonly RootDirectory _root;
    private readonly byte[]? _indexUtf8; // the index file's name, when it can be opened beneath the root (no '/', not a dotfile unless served)
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
        _root = new RootDirectory(_realRoot);
        if (options.IndexFile is { Length: > 0 } index && !index.Contains('/') && (options.ServeDotFiles || index[0] != '.'))
            _indexUtf8 = Encoding.UTF8.GetBytes(index);
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

        var rawPath = _prefixSegments == 0 ? request.RawPath : PathBelowMount(request.RawPath);
        Span<byte> relativeBytes = stackalloc byte[Math.Min(rawPath.Length, StaticPath.MaxPathBytes)];
        switch (StaticPath.MapRequestPath(rawPath, _options.ServeDotFiles, relativeBytes, out int relativeLength, out bool trailingSlash))
        {
            case PathVerdict.BadRequest: return Simple(response, 400, "Bad Request\n");
            case PathVerdict.NotFound: return NotFound(response);
        }
        relativeBytes = relativeBytes[..relativeLength];

        // The common case: no link anywhere on the path, opened beneath the root in one call, nothing allocated.
        if (_root.Current() is { } root)
        {
            OpenedFile opened = default;
            var outcome = OpenOffTheCallingThread ? OpenOutcome.WouldBlock : FileOpener.OpenBeneath(root, relativeBytes, out opened, cachedOnly: true);
            switch (outcome)
            {
                case OpenOutcome.NotFound: return NotFound(response);
                case OpenOutcome.Unavailable: return Unavailable(response);
                case OpenOutcome.Opened: return ServeOpened(request, response, opened, root, relativeBytes, trailingSlash);
                case OpenOutcome.WouldBlock: return OpenOnThreadPoolAsync(request, response, root, relativeBytes.ToArray(), trailingSlash);
            }
        }
        return ServeResolved(request, response, Encoding.UTF8.GetString(relativeBytes), trailingSlash);
    }

    /// <summary>For tests: every open takes the path of a lookup that is not cached (the thread pool).</summary>
    internal bool OpenOffTheCallingThread { get; init; }

    /// <summary>
    /// A path whose lookup is not in the kernel's cache: the open may wait for a disk, so it runs on the thread
    /// pool and the request continues there (an event loop's other connections go on meanwhile).
    /// </summary>
    private async ValueTask OpenOnThreadPoolAsync(HttpRequest request, HttpResponse response, Microsoft.Win32.SafeHandles.SafeFileHandle root,
        byte[] relative, bool trailingSlash)
    {
        var (outcome, opened) = await Task.Run(() =>
        {
            var outcome = FileOpener.OpenBeneath(root, relative, out var opened);
            return (outcome, opened);
        }).ConfigureAwait(false);
        switch (outcome)
        {
            case OpenOutcome.NotFound: await NotFound(response).ConfigureAwait(false); break;
            case OpenOutcome.Unavailable: await Unavailable(response).ConfigureAwait(false); break;
            case OpenOutcome.Opened: await ServeOpened(request, response, opened, root, relative, trailingSlash).ConfigureAwait(false); break;
            default: await ServeResolved(request, response, Encoding.UTF8.GetString(relative), trailingSlash).ConfigureAwait(false); break;
        }
    }

    /// <summary>Opened beneath the root (no link on the way): a file is served; a directory redirects, serves its index or is listed.</summary>
    private ValueTask ServeOpened(HttpRequest request, HttpResponse response, OpenedFile opened, Microsoft.Win32.SafeHandles.SafeFileHandle root,
        ReadOnlySpan<byte> relative, bool trailingSlash)
    {
        if (opened.Kind == FileKind.Regular)
        {
            if (!trailingSlash) return ServeFileAsync(request, response, opened, ContentTypeOf(relative));
            opened.Dispose();
            return NotFound(response); // "/file.txt/" names a directory that is not one
        }
        bool directory = opened.Kind == FileKind.Directory;
        opened.Dispose();
        if (!directory) return NotFound(response); // a FIFO, a socket, a device: nothing a length can describe
        if (!trailingSlash) return RedirectToSlash(request, response);
        if (_indexUtf8 is { } index)
        {
            Span<byte> indexPath = stackalloc byte[relative.Length + 1 + index.Length];
            relative.CopyTo(indexPath);
            int at = relative.Length;
            if (at > 0) indexPath[at++] = (byte)'/';
            index.CopyTo(indexPath[at..]);
            indexPath = indexPath[..(at + index.Length)];
            // (Not cached-only: a directory's index whose lookup is not cached is rare enough to wait for here.)
            switch (FileOpener.OpenBeneath(root, indexPath, out var indexFile))
            {
                case OpenOutcome.Opened when indexFile.Kind == FileKind.Regular:
                    return ServeFileAsync(request, response, indexFile, ContentTypeOf(indexPath));
                case OpenOutcome.Opened:
                    indexFile.Dispose();
                    break;
                case OpenOutcome.Unavailable:
                    return Unavailable(response);
                case OpenOutcome.Resolve: // the index is a link: Resolve judges where it leads
                    return ServeResolved(request, response, Encoding.UTF8.GetString(relative), trailingSlash);
            }
        }
        else if (_options.IndexFile is not null) return ServeResolved(request, response, Encoding.UTF8.GetString(relative), trailingSlash);
        return _options.DirectoryListing
            ? ListDirectory(request, response, relative.IsEmpty ? _realRoot : _realRoot + "/" + Encoding.UTF8.GetString(relative))
            : NotFound(response);
    }

    /// <summary>The Content-Type of the path's last segment, without a string when the name is short ASCII (the usual case).</summary>
    private static string ContentTypeOf(ReadOnlySpan<byte> relative)
    {
        var name = relative[(relative.LastIndexOf((byte)'/') + 1)..];
        if (name.Length > 128 || !System.Text.Ascii.IsValid(name)) return ContentTypes.For(Encoding.UTF8.GetString(name));
        Span<char> chars = stackalloc char[name.Length];
        System.Text.Ascii.ToUtf16(name, chars, out _);
        return ContentTypes.For(chars);
    }

    private ValueTask RedirectToSlash(HttpRequest request, HttpResponse response)
    {
        // Relative links inside an index page resolve against the slash form (RFC 3986 §5.2.3), so send the client there.
        response.StatusCode = 301;
        var location = Encoding.ASCII.GetString(request.RawPath) + "/" + (request.Query.Length > 0 ? "?" + request.Query : "");
        response.Headers.Set("Location", location);
        return response.WriteTextAsync("Moved Permanently\n");
    }

    /// <summary>A path with a link in it (or no openat2 here): resolved by string, real path checked against the root's.</summary>
    private ValueTask ServeResolved(HttpRequest request, HttpResponse response, string relative, bool trailingSlash)
    {
        var real = StaticPath.Resolve(_realRoot, relative, _options.FollowSymlinksOutsideRoot, _options.ServeDotFiles);
        if (real is null) return NotFound(response);

        if (Directory.Exists(real))
        {
            if (!trailingSlash) return RedirectToSlash(request, response);
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

    private ValueTask ServeFileAsync(HttpRequest request, HttpResponse response, string path)
    {
        // Gone since Resolve, unreadable to this process, or a link put in its place: all "not here" to a client.
        if (!FileOpener.OpenForReading(path, out var opened)) return NotFound(response);
        if (opened.Kind != FileKind.Regular)
        {
            // Not a regular file (a FIFO, a socket, a device under the root, a directory swapped in): nothing a range or a length can describe.
            opened.Dispose();
            return NotFound(response);
        }
        return ServeFileAsync(request, response, opened, ContentTypes.For(path));
    }

    /// <summary>Serves an open regular file, and closes it however the response ends.</summary>
    private async ValueTask ServeFileAsync(HttpRequest request, HttpResponse response, OpenedFile file, string contentType)
    {
        try
        {
            // Validators from the open descriptor, not from the path: they describe exactly the bytes about to be sent.
            long length = file.Length;
            var modified = file.Modified;
            var (etag, lastModifiedText) = Validators(length, modified);
            var headers = response.Headers;
            headers.Set("ETag", etag);
            headers.Set("Last-Modified", lastModifiedText);
            headers.Set("Accept-Ranges", "bytes");
            if (_options.CacheControl is { } cacheControl) headers.Set("Cache-Control", cacheControl);

            switch (Conditionals.Evaluate(Joined(request, "If-Match"), request.GetHeader("If-Unmodified-Since"),
                        Joined(request, "If-None-Match"), request.GetHeader("If-Modified-Since"), etag, modified, isGetOrHead: true))
            {
                case ConditionalOutcome.NotModified:
                    response.StatusCode = 304;
                    return;
                case ConditionalOutcome.PreconditionFailed:
                    headers.Remove("Accept-Ranges");
                    await Simple(response, 412, "Precondition Failed\n").ConfigureAwait(false);
                    return;
            }

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
                    if (sendBody) await SendAsync(file, range.First, range.Length, response, request).ConfigureAwait(false);
                    return;
                }
                case RangeOutcome.Partial:
                    await SendMultipartAsync(file, ranges.ToArray(), length, contentType, response, sendBody, request).ConfigureAwait(false);
                    return;
                default:
                    response.ContentType = contentType;
                    response.ContentLength = length;
                    StartWithLength(response);
                    if (sendBody && length > 0) await SendAsync(file, 0, length, response, request).ConfigureAwait(false);
                    return;
            }
        }
        finally
        {
            file.Dispose();
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
    private async ValueTask SendMultipartAsync(OpenedFile file, ByteRange[] ranges, long length, string contentType,
        HttpResponse response, bool sendBody, HttpRequest request)
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
            await SendAsync(file, ranges[i].First, ranges[i].Length, response, request).ConfigureAwait(false);
        }
        response.Body.Write(end);
    }

    /// <summary>
    /// Copies <paramref name="count"/> bytes from <paramref name="offset"/> into the response body. A file that
    /// shrank under us cannot keep the Content-Length promise: that throws, and the connection is aborted.
    /// </summary>
    private static async ValueTask SendAsync(OpenedFile file, long offset, long count, HttpResponse response, HttpRequest request)
    {
        var body = response.Body;
        if (count <= SmallFileBytes)
        {
            // Small: reads from the page cache into the output's own memory, no await, no copy. A file not in the
            // cache is read on the thread pool instead (an event loop's other connections do not wait for a disk).
            while (count > 0)
            {
                var span = body.GetSpan();
                int want = (int)Math.Min(span.Length, count);
                int n = file.ReadCached(span[..want], offset);
                if (n < 0) n = await file.ReadAsync(body.GetMemory()[..want], offset, request.Aborted).ConfigureAwait(false);
                if (n == 0) throw new IOException("The file became shorter while it was being sent.");
                body.Advance(n);
                offset += n;
                count -= n;
            }
            return;
        }
        // Large, where the transport can: straight from the file to the socket (sendfile), after the head.
        // Otherwise (TLS, in memory): one pooled buffer per download, reads off the calling thread, and a flush per
        // buffer, which waits while the client is behind. Aborted ends either wait.
        var handle = file.AsHandle(); // on Linux a borrowed one (the descriptor stays the OpenedFile's): one object per large body
        var buffer = ArrayPool<byte>.Shared.Rent(ReadChunkBytes);
        try
        {
            if (await response.TrySendFileAsync(handle, offset, count).ConfigureAwait(false)) return;
            var aborted = request.Aborted;
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
            if (!ReferenceEquals(handle, file.Handle)) handle.Dispose(); // borrowed: closes nothing
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
    private static string? Joined(HttpRequest request, string name)
    {
        if (request.GetHeader(name) is null) return null; // the common case, without materialising the headers or GetValues' enumerator
        var headers = request.Headers;
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

    /// <summary>The process is out of descriptors or memory (or a lease holder asks to wait): the path is fine, try again soon.</summary>
    private static ValueTask Unavailable(HttpResponse response)
    {
        response.Headers.Set("Retry-After", "1");
        return Simple(response, 503, "Service Unavailable\n");
    }

    private static ValueTask Simple(HttpResponse response, int status, string text)
    {
        response.StatusCode = status;
        return response.WriteTextAsync(text);
    }
}
