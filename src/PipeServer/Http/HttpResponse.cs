using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace PipeServer.Http;

// Where this sits: step 5 of a request's journey. The handler sets a status and headers and writes the
// body, as many times as it likes (text, bytes, JSON, a stream, or the PipeWriter); nothing reaches the
// connection's output until the response "starts": the handler returns, flushes, or has written more than
// MaxBufferedBody (64 KiB). Starting decides the framing once, by RFC 9112 §6:
//   - handler returned, <= 64 KiB written -> Content-Length = bytes buffered (the common case)
//   - handler set ContentLength           -> Content-Length, enforced: a byte too many throws, too few
//                                            aborts the connection (a reset, not a FIN)
//   - flushed, or over 64 KiB, no length  -> chunked (HTTP/1.1) or close-delimited (HTTP/1.0)
//   - HEAD, 1xx, 204, 304                 -> the same headers, never a body
// Until the response streams, it never flushes the connection's PipeWriter on its own: the connection
// flushes once per batch of pipelined requests. Once it streams, the Write*Async methods flush whenever
// 64 KiB are unsent, so a handler writing a large body in a loop waits for a slow client (backpressure).

internal interface IResponseOwner
{
    PipeWriter Output { get; }
    /// <summary>Asked once, as the head is written: may this connection stay open after the response?</summary>
    bool KeepAliveAtResponseStart(HttpResponse response);
    /// <summary>The transport's zero-copy file send, when it offers one (not through TLS, not in memory).</summary>
    Transports.ISendFileFeature? SendFile => null;
}

internal enum ResponseFraming : byte { NotStarted, ContentLength, Chunked, CloseDelimited, NoBody }

/// <summary>
/// The response a handler fills in. Pooled: reset per request and reused for later requests, on this connection
/// or another (Connections/RequestObjects.cs), so do not keep it after the handler has returned.
/// </summary>
public sealed class HttpResponse
{
    /// <summary>Bytes a handler may write before the response is started in chunked mode anyway.</summary>
    internal const int MaxBufferedBody = 64 * 1024;
    private static ReadOnlySpan<byte> ServerHeader => "Server: PipeServer\r\n"u8;

    private IResponseOwner _owner = null!;
    private bool _isHead;
    private HttpVersion _version;
    private int _statusCode = 200;
    private readonly ResponseBodyWriter _body;
    private Stream? _bodyStream;

    internal HttpResponse() => _body = new ResponseBodyWriter(this);

    /// <summary>The status code, 200 unless set; settable until the response starts.</summary>
    public int StatusCode
    {
        get => _statusCode;
        set
        {
            ThrowIfStarted();
            if (value is < 100 or > 999) throw new ArgumentOutOfRangeException(nameof(value), "A status code has three digits.");
            _statusCode = value;
        }
    }

    /// <summary>A reason phrase instead of the standard one for <see cref="StatusCode"/> (CR, LF or NUL in it: a 500 instead).</summary>
    public string? ReasonPhrase { get; set; }
    /// <summary>The response header fields; changes after the response started are not sent. Values with CR, LF or NUL are refused (a 500 instead).</summary>
    public HttpHeaders Headers { get; } = new();

    /// <summary>
    /// Set before the response starts to send the body with this Content-Length whatever its size (no
    /// chunking). Enforced: writing more throws (a 500 if nothing was sent yet); ending with fewer bytes
    /// aborts the connection (the client sees a reset, never a short body it could take for a whole one).
    /// </summary>
    public long? ContentLength
    {
        get => _contentLength;
        set
        {
            ThrowIfStarted();
            if (value < 0) throw new ArgumentOutOfRangeException(nameof(value), "A Content-Length is not negative.");
            _contentLength = value;
        }
    }
    private long? _contentLength;

    /// <summary>The Content-Type. Kept apart from <see cref="Headers"/> (it is set on almost every response), and wins over a Content-Type added there.</summary>
    public string? ContentType { get; set; }

    /// <summary>The body. Writes are buffered until the handler flushes or returns.</summary>
    public PipeWriter Body => _body;
    /// <summary>The body as a write-only <see cref="Stream"/> over <see cref="Body"/> (one per connection: do not dispose it or keep it).</summary>
    public Stream BodyStream => _bodyStream ??= _body.AsStream(leaveOpen: true);

    /// <summary>True once the status line and headers are decided (the first flush, more than 64 KiB written, or the handler returned): from then on status, headers and length cannot change.</summary>
    public bool HasStarted => Framing != ResponseFraming.NotStarted;
    internal ResponseFraming Framing { get; private set; }
    /// <summary>Decided when the response started: whether the connection stays open afterwards.</summary>
    public bool KeepAlive { get; private set; }
    /// <summary>Body bytes the handler has written so far.</summary>
    public long BodyBytesWritten => _body.Written;

    internal void Reset(IResponseOwner owner, bool isHead, HttpVersion version)
    {
        _owner = owner; _isHead = isHead; _version = version;
        _statusCode = 200; ReasonPhrase = null; _contentLength = null; ContentType = null;
        Headers.Clear();
        Framing = ResponseFraming.NotStarted;
        KeepAlive = false;
        _body.Reset(owner.Output);
    }

    /// <summary>
    /// Back to the pool (Connections/RequestObjects.cs): drops the handler's headers and every reference to the
    /// connection. <paramref name="keepStaging"/>: a small staging array stays (the set is a thread's spare).
    /// </summary>
    internal void Detach(bool keepStaging = false)
    {
        _owner = null!;
        ReasonPhrase = null; ContentType = null; _contentLength = null;
        Headers.Clear();
        _body.Detach(keepStaging);
    }

    /// <summary>
    /// Writes <paramref name="text"/> as UTF-8. May be called any number of times, mixed with the other
    /// writes: up to 64 KiB in all is buffered and sent with Content-Length when the handler returns; more,
    /// or a flush before, streams (chunked). Sets <see cref="ContentType"/> to <paramref name="contentType"/>,
    /// or to "text/plain; charset=utf-8" when none is set yet (and the response has not started).
    /// </summary>
    public ValueTask WriteTextAsync(string text, string? contentType = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        SetContentType(contentType, "text/plain; charset=utf-8");
        if (text.Length <= 4096)
        {
            // Small text (every response of the demo): one span of the staging buffer, no count pass.
            var span = _body.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length));
            _body.Advance(Encoding.UTF8.GetBytes(text, span));
        }
        else Encoding.UTF8.GetBytes(text.AsSpan(), (IBufferWriter<byte>)_body); // in pieces: the bound applies part way
        return _body.FlushIfStreamingBacklogAsync();
    }

    /// <summary>
    /// Writes <paramref name="bytes"/>; buffered and framed as <see cref="WriteTextAsync"/>. Sets
    /// <see cref="ContentType"/> to <paramref name="contentType"/>, or to "application/octet-stream" when none is set yet.
    /// </summary>
    public ValueTask WriteBytesAsync(ReadOnlySpan<byte> bytes, string? contentType = null)
    {
        SetContentType(contentType, "application/octet-stream");
        _body.Write(bytes);
        return _body.FlushIfStreamingBacklogAsync();
    }

    /// <summary>
    /// Serialises <paramref name="value"/> as JSON through source-generated metadata (no reflection; a
    /// <c>JsonSerializerContext</c>'s property, e.g. <c>MyJsonContext.Default.User</c>), buffered and framed
    /// as <see cref="WriteTextAsync"/>. Sets <see cref="ContentType"/> to "application/json" when none is set yet.
    /// </summary>
    public ValueTask WriteJsonAsync<T>(T value, JsonTypeInfo<T> typeInfo)
    {
        ArgumentNullException.ThrowIfNull(typeInfo);
        SetContentType(null, "application/json");
        // One writer per response object, reset per use: a Utf8JsonWriter is a class, and this is the hot path of /json.
        if (_jsonWriter is null) _jsonWriter = new Utf8JsonWriter((IBufferWriter<byte>)_body);
        else _jsonWriter.Reset((IBufferWriter<byte>)_body);
        JsonSerializer.Serialize(_jsonWriter, value, typeInfo);
        _jsonWriter.Flush();
        return _body.FlushIfStreamingBacklogAsync();
    }

    /// <summary>
    /// Copies <paramref name="source"/> to the end into the body. A short stream is sent with Content-Length
    /// like any small body; a longer one streams, each read sent as it comes (a slow client slows the copy).
    /// Sets <see cref="ContentType"/> to <paramref name="contentType"/>, or to "application/octet-stream" when none is set yet.
    /// Stops early, without an exception, if the client has gone (the connection is then closed).
    /// </summary>
    public async ValueTask CopyFromAsync(Stream source, string? contentType = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        SetContentType(contentType, "application/octet-stream");
        while (true)
        {
            var memory = _body.GetMemory();
            int n = await source.ReadAsync(memory, cancellationToken).ConfigureAwait(false);
            if (n == 0) return;
            _body.Advance(n);
            if (HasStarted)
            {
                var flush = await _body.FlushAsync(cancellationToken).ConfigureAwait(false);
                if (flush.IsCompleted) return;
            }
        }
    }

    private void SetContentType(string? contentType, string fallback)
    {
        if (HasStarted) return; // the head is sent: a later type could only be wrong
        if (contentType is not null) ContentType = contentType;
        else ContentType ??= fallback;
    }

    private Utf8JsonWriter? _jsonWriter;

    /// <summary>Sends the head and what is buffered now; later writes stream (chunked on HTTP/1.1, close-delimited on 1.0, unless <see cref="ContentLength"/> is set).</summary>
    public async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) =>
        await _body.FlushAsync(cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// For a response started with a Content-Length: sends <paramref name="count"/> bytes of <paramref name="file"/>
    /// from <paramref name="offset"/> as body, straight from the file to the socket when the transport can
    /// (sendfile), after flushing what precedes them (the head). False, having done nothing, when it cannot
    /// (TLS, in-memory, another framing): the caller then writes the bytes itself. True, having done nothing,
    /// for a response that has no body (HEAD, 304, 204): nothing is read or sent, as any write would be dropped.
    /// The file must stay open until the task completes; a connection that fails meanwhile fails it.
    /// </summary>
    internal ValueTask<bool> TrySendFileAsync(Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset, long count) =>
        _body.TrySendFileAsync(_owner.SendFile, file, offset, count);

    internal void ThrowIfStarted()
    {
        if (HasStarted) throw new InvalidOperationException("The response has already started; status and headers can no longer change.");
    }

    /// <summary>Writes the status line and headers into the output and fixes the framing. Called exactly once.</summary>
    internal void Start(long bufferedBodyLength, bool complete)
    {
        // One pass over the handler's headers: the response-splitting guard (a CR or LF in a name or value
        // would start a new header or a new response; failing here leaves the response unstarted, so the
        // client gets a clean 500), the framing headers that are ours to write, and the size of the head.
        bool handlerWantsClose = false, framingHeaders = false;
        int headerBytes = 0;
        foreach (var (name, value) in Headers)
        {
            if (!IsValidHeaderName(name) || !IsValidFieldValue(value))
                throw new InvalidOperationException($"Invalid response header '{name}'.");
            headerBytes += name.Length + value.Length + 4;
            if (name.Length is 10 or 12 or 14 or 17 &&
                (string.Equals(name, KnownHeaders.ContentLength, StringComparison.OrdinalIgnoreCase) ||
                 string.Equals(name, KnownHeaders.TransferEncoding, StringComparison.OrdinalIgnoreCase) ||
                 string.Equals(name, KnownHeaders.Connection, StringComparison.OrdinalIgnoreCase) ||
                 (ContentType is not null && string.Equals(name, KnownHeaders.ContentType, StringComparison.OrdinalIgnoreCase))))
                framingHeaders = true;
        }
        // The reason phrase goes into the status line: a CR or LF there would end it and start a header
        // (or a second response) of the handler's making, so it is held to the header-value rule.
        if (ReasonPhrase is { } reason && !IsValidFieldValue(reason)) throw new InvalidOperationException("Invalid reason phrase.");
        if (ContentType is { } contentType)
        {
            if (!IsValidFieldValue(contentType)) throw new InvalidOperationException("Invalid Content-Type.");
            headerBytes += contentType.Length + 16;
        }
        if (framingHeaders)
        {
            if (ContentType is not null) Headers.Remove(KnownHeaders.ContentType);
            if (Headers[KnownHeaders.ContentLength] is { } cl)
            {
                if (!long.TryParse(cl, System.Globalization.NumberStyles.None, null, out long parsed))
                    throw new InvalidOperationException("Invalid Content-Length header set by the handler.");
                _contentLength = parsed;
                Headers.Remove(KnownHeaders.ContentLength);
            }
            Headers.Remove(KnownHeaders.TransferEncoding);
            if (Headers[KnownHeaders.Connection] is { } connection)
            {
                handlerWantsClose = connection.Contains("close", StringComparison.OrdinalIgnoreCase);
                Headers.Remove(KnownHeaders.Connection);
            }
        }

        bool bodyAllowed = HttpStatus.AllowsBody(_statusCode);
        if (!bodyAllowed) Framing = ResponseFraming.NoBody;
        else if (ContentLength is not null) Framing = ResponseFraming.ContentLength;
        else if (complete) { _contentLength = bufferedBodyLength; Framing = ResponseFraming.ContentLength; }
        else Framing = _version == HttpVersion.Http11 ? ResponseFraming.Chunked : ResponseFraming.CloseDelimited;

        KeepAlive = !handlerWantsClose && Framing != ResponseFraming.CloseDelimited && _owner.KeepAliveAtResponseStart(this);

        // The whole head is written into one span of the output and committed with one Advance.
        var statusLine = HttpStatus.StatusLine(_statusCode, ReasonPhrase);
        var date = DateHeader.Line;
        var output = _owner.Output;
        var span = output.GetSpan(statusLine.Length + date.Length + ServerHeader.Length + 96 + headerBytes);
        int at = 0;
        Append(span, ref at, statusLine);
        Append(span, ref at, date);
        Append(span, ref at, ServerHeader);
        if (Framing == ResponseFraming.ContentLength || (Framing == ResponseFraming.NoBody && _statusCode == 304 && ContentLength is not null))
        {
            Append(span, ref at, "Content-Length: "u8);
            Utf8Formatter.TryFormat(ContentLength!.Value, span[at..], out int n);
            at += n;
            Append(span, ref at, "\r\n"u8);
        }
        else if (Framing == ResponseFraming.Chunked)
        {
            Append(span, ref at, "Transfer-Encoding: chunked\r\n"u8);
        }
        if (!KeepAlive) Append(span, ref at, "Connection: close\r\n"u8);
        else if (_version == HttpVersion.Http10) Append(span, ref at, "Connection: keep-alive\r\n"u8);

        if (ContentType is { } type)
        {
            Append(span, ref at, "Content-Type: "u8);
            at += Encoding.Latin1.GetBytes(type, span[at..]);
            Append(span, ref at, "\r\n"u8);
        }
        foreach (var (name, value) in Headers)
        {
            at += Encoding.Latin1.GetBytes(name, span[at..]);
            Append(span, ref at, ": "u8);
            at += Encoding.Latin1.GetBytes(value, span[at..]);
            Append(span, ref at, "\r\n"u8);
        }
        Append(span, ref at, "\r\n"u8);

        output.Advance(at);

        if (_isHead) Framing = ResponseFraming.NoBody;
    }

    private static void Append(Span<byte> span, ref int at, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(span[at..]);
        at += bytes.Length;
    }

    /// <summary>No CR, LF or NUL: the characters that would end the line early or truncate it for a C client.</summary>
    private static bool IsValidFieldValue(string value) => value.AsSpan().IndexOfAny('\r', '\n', '\0') < 0;

    private static bool IsValidHeaderName(string name)
    {
        if (name.Length == 0) return false;
        foreach (char c in name)
            if (c > 0x7F || !HttpCharacters.Token.Contains((byte)c)) return false;
        return true;
    }

    /// <summary>Writes a complete small response with no handler involved (rejections, 404, 500).</summary>
    internal void WriteSimple(int statusCode, string text)
    {
        _statusCode = statusCode;
        _contentLength = null;
        Headers.Clear();
        _body.DiscardBuffered();
        ContentType = "text/plain; charset=utf-8";
        if (text.Length > 0) WriteTextAsync(text);
    }

    /// <summary>Ends the response: starts it if needed, writes the chunked terminator, checks Content-Length.</summary>
    internal void Complete() => _body.CompleteResponse();

    internal bool IsHeadRequest => _isHead;
}

/// <summary>The response body PipeWriter: buffers before start, then frames per <see cref="ResponseFraming"/>.</summary>
internal sealed class ResponseBodyWriter(HttpResponse response) : PipeWriter
{
    private const int ChunkPrefixMax = 8 + 2; // up to 8 hex digits and CRLF for chunks under 4 GiB
    private PipeWriter _output = null!;
    private byte[] _buffer = [];
    private int _buffered;
    private Memory<byte> _chunkFull; // memory taken from the output in chunked mode: prefix + data + CRLF
    private int _chunkPrefixLength;
    private bool _responseCompleted;
    private long _unflushed; // body bytes put in the output since the last flush (after start)

    /// <summary>
    /// A staging array up to this size stays with the response object from one response to the next (the
    /// requests of a pipelined batch, and a loop thread's spare request objects: Connections/RequestObjects.cs)
    /// instead of an ArrayPool rent and return per response. A bigger one (a handler staged up to 64 KiB) goes
    /// back as soon as its bytes are in the output, so a streaming response never sits on it.
    /// </summary>
    private const int KeptStagingBytes = 4096;

    public long Written { get; private set; }

    public void Reset(PipeWriter output)
    {
        _output = output;
        _buffered = 0;
        Written = 0;
        _responseCompleted = false;
        _unflushed = 0;
        _chunkFull = default;
        if (_buffer.Length > KeptStagingBytes) ReturnStaging();
    }

    /// <summary>
    /// Forgets the connection's output, and gives back the staging array (one a response that never started
    /// still held, an aborted one, or the small one kept between responses) unless <paramref name="keepStaging"/>
    /// and it is small.
    /// </summary>
    public void Detach(bool keepStaging = false)
    {
        _output = null!;
        _chunkFull = default;
        _buffered = 0;
        if (!keepStaging || _buffer.Length > KeptStagingBytes) ReturnStaging();
    }

    private void ReturnStaging()
    {
        if (_buffer.Length > 0) ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }

    public void DiscardBuffered()
    {
        _buffered = 0;
        Written = 0;
    }

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        ThrowIfCompleted();
        switch (response.Framing)
        {
            case ResponseFraming.NotStarted:
                if (_buffered + Math.Max(sizeHint, 1) <= HttpResponse.MaxBufferedBody || !HttpStatus.AllowsBody(response.StatusCode))
                {
                    EnsureBuffer(Math.Max(sizeHint, 1));
                    return _buffer.AsMemory(_buffered);
                }
                // The bound: more than MaxBufferedBody is never staged. Start (chunked unless a length is
                // set) and let this write go to the output.
                StartAndMoveBuffered(complete: false);
                return GetMemory(sizeHint);
            case ResponseFraming.ContentLength:
            case ResponseFraming.CloseDelimited:
                return _output.GetMemory(sizeHint);
            case ResponseFraming.Chunked:
            {
                var memory = _output.GetMemory(Math.Max(sizeHint, 256) + ChunkPrefixMax + 2);
                int dataCapacity = Math.Min(memory.Length - ChunkPrefixMax - 2, int.MaxValue);
                _chunkPrefixLength = HexDigits(dataCapacity) + 2;
                _chunkFull = memory;
                return memory.Slice(_chunkPrefixLength, dataCapacity);
            }
            default: // NoBody: HEAD and bodiless statuses still accept writes, and drop them
                EnsureBuffer(Math.Max(sizeHint, 1));
                return _buffer.AsMemory(0);
        }
    }

    public override Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

    public override void Advance(int bytes)
    {
        switch (response.Framing)
        {
            case ResponseFraming.NotStarted:
                if (!HttpStatus.AllowsBody(response.StatusCode) && bytes > 0)
                    throw new InvalidOperationException($"A {response.StatusCode} response has no body.");
                _buffered += bytes;
                Written += bytes;
                CheckContentLength();
                if (_buffered > HttpResponse.MaxBufferedBody) StartAndMoveBuffered(complete: false);
                break;
            case ResponseFraming.ContentLength:
                Written += bytes;
                CheckContentLength();
                _output.Advance(bytes);
                _unflushed += bytes;
                break;
            case ResponseFraming.CloseDelimited:
                Written += bytes;
                _output.Advance(bytes);
                _unflushed += bytes;
                break;
            case ResponseFraming.Chunked:
                if (bytes == 0) return;
                // The chunk size is written into the space reserved before the data; leading zeros pad it
                // to the reserved width, which RFC 9112's 1*HEXDIG allows.
                var span = _chunkFull.Span;
                WritePaddedHex(span[.._chunkPrefixLength], bytes);
                span[_chunkPrefixLength + bytes] = (byte)'\r';
                span[_chunkPrefixLength + bytes + 1] = (byte)'\n';
                _output.Advance(_chunkPrefixLength + bytes + 2);
                Written += bytes;
                _unflushed += bytes;
                break;
            default:
                Written += bytes;
                break;
        }
    }

    private void CheckContentLength()
    {
        if (response.ContentLength is long cl && Written > cl && !response.IsHeadRequest)
            throw new InvalidOperationException($"Response body exceeds the declared Content-Length ({cl}).");
    }

    public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        if (response.Framing == ResponseFraming.NotStarted) StartAndMoveBuffered(complete: false);
        _unflushed = 0;
        return await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Once the response streams, the Write*Async helpers send what is pending whenever it passes the bound,
    /// so a handler writing in a loop waits for a slow client instead of growing the output without limit.
    /// Before that (and for a small streamed write) nothing is flushed: the connection flushes per batch.
    /// </summary>
    internal ValueTask FlushIfStreamingBacklogAsync()
    {
        if (_unflushed < HttpResponse.MaxBufferedBody || !response.HasStarted) return ValueTask.CompletedTask;
        return FlushBacklogAsync();
    }

    private async ValueTask FlushBacklogAsync() => await FlushAsync().ConfigureAwait(false);

    public override void CancelPendingFlush() => _output.CancelPendingFlush();

    internal ValueTask<bool> TrySendFileAsync(Transports.ISendFileFeature? sender, Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset, long count)
    {
        // A HEAD (or 304, 204) started without a body: "sent", as every write to it is dropped; reading the file
        // to drop it, or handing it to the transport, which would put it on the wire, are both wrong.
        if (response.Framing == ResponseFraming.NoBody) return new ValueTask<bool>(true);
        if (sender is null || response.Framing != ResponseFraming.ContentLength) return new ValueTask<bool>(false);
        ThrowIfCompleted();
        if (Written + count > response.ContentLength) throw new InvalidOperationException($"Response body exceeds the declared Content-Length ({response.ContentLength}).");
        return SendFileAsync(sender, file, offset, count);
    }

    private async ValueTask<bool> SendFileAsync(Transports.ISendFileFeature sender, Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset, long count)
    {
        _unflushed = 0;
        // The head (and whatever else precedes the file) goes first: the transport sends the file after what was flushed.
        var flush = await _output.FlushAsync().ConfigureAwait(false);
        if (flush.IsCompleted || flush.IsCanceled) return true; // the client is gone: the body stays short, and the connection records why
        await sender.SendFileAsync(file, offset, count).ConfigureAwait(false);
        Written += count;
        return true;
    }

    /// <summary>A handler completing the body writer means "no more body"; the connection ends the response.</summary>
    public override void Complete(Exception? exception = null) { }

    internal void CompleteResponse()
    {
        if (_responseCompleted) return;
        if (response.Framing == ResponseFraming.NotStarted) StartAndMoveBuffered(complete: true);
        _responseCompleted = true;
        if (response.Framing == ResponseFraming.Chunked) _output.Write("0\r\n\r\n"u8);
        else if (response.Framing == ResponseFraming.ContentLength && Written != response.ContentLength)
            throw new ResponseIncompleteException(response.ContentLength!.Value, Written);
    }

    private void StartAndMoveBuffered(bool complete)
    {
        response.Start(_buffered, complete);
        try { MoveBuffered(); }
        finally
        {
            // A large staging array goes back to the pool as soon as its bytes are in the output; a small one
            // stays for the next response (KeptStagingBytes). Either way an idle keep-alive connection holds
            // none: its request objects, this writer with them, go back when it goes idle.
            if (_buffer.Length > KeptStagingBytes) ReturnStaging();
            _buffered = 0;
        }
    }

    private void MoveBuffered()
    {
        var pending = _buffer.AsSpan(0, _buffered);
        if (pending.Length == 0) return;
        switch (response.Framing)
        {
            case ResponseFraming.ContentLength:
            case ResponseFraming.CloseDelimited:
                _output.Write(pending);
                break;
            case ResponseFraming.Chunked:
                var prefix = _output.GetSpan(ChunkPrefixMax);
                int n = FormatHex(pending.Length, prefix);
                prefix[n] = (byte)'\r'; prefix[n + 1] = (byte)'\n';
                _output.Advance(n + 2);
                _output.Write(pending);
                _output.Write("\r\n"u8);
                break;
        }
    }

    private void EnsureBuffer(int sizeHint)
    {
        if (_buffer.Length - _buffered >= sizeHint) return;
        // Doubling, but not past the bound (GetMemory starts the response rather than stage more than it).
        var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffered + sizeHint, Math.Min(Math.Max(512, _buffer.Length * 2), HttpResponse.MaxBufferedBody)));
        _buffer.AsSpan(0, _buffered).CopyTo(bigger);
        if (_buffer.Length > 0) ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = bigger;
    }

    private void ThrowIfCompleted()
    {
        if (_responseCompleted) throw new InvalidOperationException("The response has completed.");
    }

    private static int HexDigits(int value) => value <= 0 ? 1 : (32 - System.Numerics.BitOperations.LeadingZeroCount((uint)value) + 3) / 4;

    private static void WritePaddedHex(Span<byte> destination, int value)
    {
        // destination = digits + CRLF
        int digits = destination.Length - 2;
        for (int i = digits - 1; i >= 0; i--) { destination[i] = HexChar(value & 0xF); value >>= 4; }
        destination[digits] = (byte)'\r';
        destination[digits + 1] = (byte)'\n';
    }

    private static int FormatHex(int value, Span<byte> destination)
    {
        int digits = HexDigits(value);
        for (int i = digits - 1; i >= 0; i--) { destination[i] = HexChar(value & 0xF); value >>= 4; }
        return digits;
    }

    private static byte HexChar(int nibble) => (byte)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
}

/// <summary>The handler declared a Content-Length and wrote fewer bytes: the connection can only be aborted.</summary>
public sealed class ResponseIncompleteException(long declared, long written)
    : InvalidOperationException($"Response declared Content-Length {declared} but wrote {written} bytes.");
