using System.Text;

namespace PipeServer.Http;

// Where this sits: step 2 of a request's journey. HttpParser calls into this handler for the request
// line and each header; here the head is turned into strings the application sees, and the fields that
// decide message framing (Host, Content-Length, Transfer-Encoding, Connection, Expect) are checked by the
// rules of RFC 9112 §6 before any body byte is read. Pooled with the request (Connections/RequestObjects.cs), reset per request.

/// <summary>The parsed and validated request line and header section of one request.</summary>
/// <remarks>
/// The parser's spans point into the connection's buffer, which is released as soon as the head is
/// consumed, so the head's bytes are copied once into a per-connection array. Strings (target, path,
/// query, header names and values) are made from those bytes only when something asks for them: a
/// handler that never reads a header never pays for one, and the router matches the path as bytes.
/// </remarks>
internal sealed class RequestHead : IHttpHeadHandler
{
    private struct HeaderSlot
    {
        public string? KnownName;
        public int NameStart, NameLength, ValueStart, ValueLength;
    }

    private int _hostCount;
    private bool _sawTransferEncoding, _unknownCoding, _chunkedNotLast;
    private int _chunkedCount;

    // The head's bytes, copied from the parser's spans: [target][custom method][header names and values].
    private byte[] _raw = [];   // rented from the pool by the first request of a batch, kept until the connection goes idle (see Release)
    private int _rawLength;
    private int _targetStart, _targetLength, _pathStart, _pathLength, _queryStart, _queryLength, _methodStart, _methodLength;
    private bool _pathHasEscapes;
    private HeaderSlot[] _slots = [];   // rented and kept the same way: an idle connection holds none
    private const int KeptRawBytes = 4096, KeptSlots = 32; // what a thread's spare set may keep (Release)
    private int _slotCount;

    // Strings made on first use, until the next Reset.
    private string? _methodName, _target, _path, _query;
    private readonly HttpHeaders _headers = new();
    private bool _headersMaterialized;

    public HttpMethod Method { get; private set; }
    public string MethodName => _methodName ??= Method == HttpMethod.Custom
        ? Encoding.ASCII.GetString(_raw, _methodStart, _methodLength) : HttpMethods.ToName(Method);
    /// <summary>The request target exactly as sent.</summary>
    public string Target => _target ??= Encoding.ASCII.GetString(_raw, _targetStart, _targetLength);
    public RequestTargetForm TargetForm { get; private set; }
    /// <summary>The request target as received, as bytes (what the access log writes, escaped).</summary>
    public ReadOnlySpan<byte> RawTarget => _raw.AsSpan(_targetStart, _targetLength);
    /// <summary>The path, percent-decoded as UTF-8 except that "%2F" stays encoded so it cannot become a segment separator.</summary>
    public string Path => _path ??= _pathHasEscapes ? DecodePath(RawPath) : Encoding.ASCII.GetString(RawPath);
    /// <summary>The path as sent (before percent-decoding), as bytes.</summary>
    public ReadOnlySpan<byte> RawPath => _raw.AsSpan(_pathStart, _pathLength);
    /// <summary>True when the path contains percent-escapes (so <see cref="RawPath"/> differs from <see cref="Path"/>).</summary>
    public bool PathHasEscapes => _pathHasEscapes;
    /// <summary>The query without its leading '?', or empty.</summary>
    public string Query => _query ??= _queryLength == 0 ? "" : Encoding.ASCII.GetString(_raw, _queryStart, _queryLength);
    public HttpVersion Version { get; private set; }

    /// <summary>The header fields, in order (made into strings on first access).</summary>
    public HttpHeaders Headers
    {
        get
        {
            if (!_headersMaterialized)
            {
                _headersMaterialized = true;
                for (int i = 0; i < _slotCount; i++)
                {
                    ref var slot = ref _slots[i];
                    _headers.Add(slot.KnownName ?? Encoding.ASCII.GetString(_raw, slot.NameStart, slot.NameLength),
                        Encoding.Latin1.GetString(_raw, slot.ValueStart, slot.ValueLength));
                }
            }
            return _headers;
        }
    }

    /// <summary>The first value of a header, or null, without materialising the others.</summary>
    public string? GetHeader(string name)
    {
        if (_headersMaterialized) return _headers[name];
        for (int i = 0; i < _slotCount; i++)
        {
            ref var slot = ref _slots[i];
            if (slot.KnownName is { } known ? string.Equals(known, name, StringComparison.OrdinalIgnoreCase)
                : Ascii.EqualsIgnoreCase(_raw.AsSpan(slot.NameStart, slot.NameLength), name))
                return Encoding.Latin1.GetString(_raw, slot.ValueStart, slot.ValueLength);
        }
        return null;
    }

    /// <summary>The Content-Length, or -1 when none was sent.</summary>
    public long ContentLength { get; private set; } = -1;
    public bool IsChunked { get; private set; }
    /// <summary>The client sent "Expect: 100-continue" in an HTTP/1.1 request (always false for HTTP/1.0).</summary>
    public bool ExpectContinue { get; private set; }
    /// <summary>Whether the client allows the connection to stay open after this request.</summary>
    public bool KeepAlive { get; private set; }

    private bool _connectionClose, _connectionKeepAlive;

    public void Reset()
    {
        if (_headersMaterialized) _headers.Clear();
        _headersMaterialized = false;
        _slotCount = 0;
        _rawLength = 0;
        _methodName = _target = _path = _query = null;
        _targetStart = _targetLength = _pathStart = _pathLength = _queryStart = _queryLength = 0;
        _pathHasEscapes = false;
        _hostCount = 0; _sawTransferEncoding = false; _unknownCoding = false; _chunkedNotLast = false; _chunkedCount = 0;
        ContentLength = -1; IsChunked = false; ExpectContinue = false; KeepAlive = false;
        _connectionClose = false; _connectionKeepAlive = false;
    }

    /// <summary>
    /// Returns the head's arrays to the pool when the request objects go back to theirs (the connection is
    /// idle or has ended), so an idle keep-alive connection holds none; the requests of a pipelined batch
    /// reuse them (Reset). Strings not yet made from them cannot be made afterwards.
    /// </summary>
    /// <param name="keepSmall">Keep arrays of the usual size (the set is a thread's spare, rented again next: RequestObjects).</param>
    public void Release(bool keepSmall = false)
    {
        // Kept arrays are not cleared: the slots hold only the known names, static strings.
        if (!keepSmall || _raw.Length > KeptRawBytes || _slots.Length > KeptSlots)
        {
            if (_raw.Length > 0) System.Buffers.ArrayPool<byte>.Shared.Return(_raw);
            _raw = [];
            ReturnSlots();
            _slots = [];
        }
        _rawLength = 0;
        _slotCount = 0;
        _targetStart = _targetLength = _pathStart = _pathLength = _queryStart = _queryLength = _methodStart = _methodLength = 0;
    }

    private void ReturnSlots()
    {
        if (_slots.Length == 0) return;
        Array.Clear(_slots, 0, _slotCount); // drop the string references before pooling
        System.Buffers.ArrayPool<HeaderSlot>.Shared.Return(_slots);
    }

    /// <summary>Copies bytes into the head's own array; returns where they start.</summary>
    private int Store(ReadOnlySpan<byte> bytes)
    {
        if (_rawLength + bytes.Length > _raw.Length)
        {
            var bigger = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(Math.Max(_raw.Length * 2, 512), _rawLength + bytes.Length));
            _raw.AsSpan(0, _rawLength).CopyTo(bigger);
            if (_raw.Length > 0) System.Buffers.ArrayPool<byte>.Shared.Return(_raw);
            _raw = bigger;
        }
        int start = _rawLength;
        bytes.CopyTo(_raw.AsSpan(start));
        _rawLength += bytes.Length;
        return start;
    }

    public RequestRejectionReason OnRequestLine(in RequestLine line)
    {
        Method = line.Method;
        Version = line.Version;
        TargetForm = line.Form;
        _targetStart = Store(line.Target);
        _targetLength = line.Target.Length;
        if (line.Method == HttpMethod.Custom)
        {
            _methodStart = Store(line.MethodBytes);
            _methodLength = line.MethodBytes.Length;
        }

        if (line.Form is RequestTargetForm.Asterisk or RequestTargetForm.Authority)
        {
            _pathStart = _targetStart;
            _pathLength = _targetLength;
            return RequestRejectionReason.None;
        }

        int offset = 0;
        ReadOnlySpan<byte> pathAndQuery = line.Target;
        if (line.Form == RequestTargetForm.Absolute)
        {
            // absolute-form: skip "scheme://authority"; the path starts at the next '/' (or is "/").
            int authorityStart = pathAndQuery.IndexOf("://"u8) + 3;
            int slash = pathAndQuery[authorityStart..].IndexOfAny((byte)'/', (byte)'?');
            if (slash < 0) { offset = -1; pathAndQuery = default; }
            else { offset = authorityStart + slash; pathAndQuery = pathAndQuery[offset..]; }
        }

        int q = pathAndQuery.IndexOf((byte)'?');
        int pathLength = q < 0 ? pathAndQuery.Length : q;
        if (offset < 0 || pathLength == 0)
        {
            _pathStart = Store("/"u8);
            _pathLength = 1;
        }
        else
        {
            _pathStart = _targetStart + offset;
            _pathLength = pathLength;
        }
        if (q >= 0)
        {
            _queryStart = _targetStart + offset + q + 1;
            _queryLength = pathAndQuery.Length - q - 1;
        }
        _pathHasEscapes = RawPath.IndexOf((byte)'%') >= 0;
        if (_pathHasEscapes && !IsValidEscapedPath(RawPath)) return RequestRejectionReason.InvalidRequestTarget;
        return RequestRejectionReason.None;
    }

    public RequestRejectionReason OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        string? headerName = KnownHeaders.TryGetName(name);
        switch (headerName)
        {
            case KnownHeaders.Host:
                if (++_hostCount > 1) return RequestRejectionReason.MultipleHost;
                if (value.IndexOfAnyExcept(HttpCharacters.HostChar) >= 0) return RequestRejectionReason.InvalidHost;
                break;
            case KnownHeaders.ContentLength:
                if (ContentLength >= 0) return RequestRejectionReason.MultipleContentLength;
                if (!TryParseContentLength(value, out long length)) return RequestRejectionReason.InvalidContentLength;
                ContentLength = length;
                break;
            case KnownHeaders.TransferEncoding:
                _sawTransferEncoding = true;
                ParseTransferCodings(value);
                break;
            case KnownHeaders.Connection:
                foreach (var option in new TokenList(value))
                {
                    if (Ascii.EqualsIgnoreCase(option, "close"u8)) _connectionClose = true;
                    else if (Ascii.EqualsIgnoreCase(option, "keep-alive"u8)) _connectionKeepAlive = true;
                }
                break;
            case KnownHeaders.Expect:
                // RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0 request
                // (an HTTP/1.0 client knows no interim responses). The request line is parsed before any header.
                if (Version == HttpVersion.Http11 && Ascii.EqualsIgnoreCase(value, "100-continue"u8)) ExpectContinue = true;
                break;
        }
        if (_slotCount == _slots.Length)
        {
            var bigger = System.Buffers.ArrayPool<HeaderSlot>.Shared.Rent(Math.Max(8, _slots.Length * 2));
            _slots.AsSpan(0, _slotCount).CopyTo(bigger);
            ReturnSlots();
            _slots = bigger;
        }
        ref var slot = ref _slots[_slotCount++];
        slot.KnownName = headerName;
        slot.NameStart = headerName is null ? Store(name) : 0;
        slot.NameLength = name.Length;
        slot.ValueStart = Store(value);
        slot.ValueLength = value.Length;
        return RequestRejectionReason.None;
    }

    /// <summary>The checks that need the whole header section (RFC 9112 §3.2, §6.1, §6.3).</summary>
    public RequestRejectionReason OnHeadersComplete()
    {
        if (Version == HttpVersion.Http11 && _hostCount == 0) return RequestRejectionReason.MissingHost;
        if (_sawTransferEncoding)
        {
            // Both framings at once is the classic request-smuggling setup: refuse rather than pick one.
            if (ContentLength >= 0) return RequestRejectionReason.ContentLengthWithTransferEncoding;
            if (Version == HttpVersion.Http10) return RequestRejectionReason.TransferEncodingInHttp10;
            if (_unknownCoding) return RequestRejectionReason.UnsupportedTransferCoding;
            if (_chunkedCount != 1 || _chunkedNotLast) return RequestRejectionReason.FinalTransferCodingNotChunked;
            IsChunked = true;
        }
        KeepAlive = Version == HttpVersion.Http11 ? !_connectionClose : _connectionKeepAlive && !_connectionClose;
        return RequestRejectionReason.None;
    }

    private void ParseTransferCodings(ReadOnlySpan<byte> value)
    {
        foreach (var element in new TokenList(value))
        {
            var coding = element;
            int semicolon = coding.IndexOf((byte)';');
            bool hasParameters = semicolon >= 0;
            if (hasParameters) coding = HttpCharacters.TrimWhitespace(coding[..semicolon]);

            if (_chunkedCount > 0) _chunkedNotLast = true; // anything after chunked
            if (Ascii.EqualsIgnoreCase(coding, "chunked"u8))
            {
                _chunkedCount++;
                if (hasParameters) _chunkedNotLast = true; // chunked takes no parameters
            }
            else if (!(Ascii.EqualsIgnoreCase(coding, "gzip"u8) || Ascii.EqualsIgnoreCase(coding, "x-gzip"u8) ||
                       Ascii.EqualsIgnoreCase(coding, "deflate"u8) || Ascii.EqualsIgnoreCase(coding, "compress"u8) ||
                       Ascii.EqualsIgnoreCase(coding, "x-compress"u8)))
            {
                _unknownCoding = true;
            }
        }
    }

    /// <summary>1*DIGIT and nothing else: no sign, no whitespace, no list, no overflow.</summary>
    internal static bool TryParseContentLength(ReadOnlySpan<byte> value, out long length)
    {
        length = 0;
        if (value.Length == 0 || value.Length > 18) return false; // 18 digits cannot overflow a long
        foreach (byte b in value)
        {
            uint digit = (uint)(b - '0');
            if (digit > 9) return false;
            length = length * 10 + digit;
        }
        return true;
    }

    /// <summary>Every '%' starts a valid escape and the decoded bytes are valid UTF-8 — checked without allocating.</summary>
    private static bool IsValidEscapedPath(ReadOnlySpan<byte> raw)
    {
        Span<byte> buffer = raw.Length <= 1024 ? stackalloc byte[raw.Length] : new byte[raw.Length];
        int n = PercentDecode(raw, buffer);
        return n >= 0 && System.Text.Unicode.Utf8.IsValid(buffer[..n]);
    }

    /// <summary>The decoded path; only called for a path <see cref="IsValidEscapedPath"/> accepted.</summary>
    private static string DecodePath(ReadOnlySpan<byte> raw)
    {
        Span<byte> buffer = raw.Length <= 1024 ? stackalloc byte[raw.Length] : new byte[raw.Length];
        return Encoding.UTF8.GetString(buffer[..PercentDecode(raw, buffer)]);
    }

    /// <summary>
    /// Decodes percent-escapes into <paramref name="destination"/> (at least as long as the input), keeping
    /// "%2F" and "%00" encoded so they cannot become a segment separator or a terminator. Returns the decoded
    /// length, or -1 when an escape is malformed.
    /// </summary>
    private static int PercentDecode(ReadOnlySpan<byte> raw, Span<byte> destination)
    {
        int n = 0;
        for (int i = 0; i < raw.Length; i++)
        {
            if (raw[i] != (byte)'%') { destination[n++] = raw[i]; continue; }
            if (i + 2 >= raw.Length || !IsHex(raw[i + 1]) || !IsHex(raw[i + 2])) return -1;
            byte decoded = (byte)(HexValue(raw[i + 1]) << 4 | HexValue(raw[i + 2]));
            if (decoded == (byte)'/' || decoded == 0) { destination[n++] = raw[i]; continue; }
            destination[n++] = decoded;
            i += 2;
        }
        return n;
    }

    private static bool IsHex(byte b) => (uint)(b - '0') <= 9 || (uint)((b | 0x20) - 'a') <= 5;
    private static int HexValue(byte b) => (uint)(b - '0') <= 9 ? b - '0' : (b | 0x20) - 'a' + 10;
}

/// <summary>Splits a comma-separated header value into trimmed, non-empty elements (RFC 9110 §5.6.1).</summary>
internal ref struct TokenList(ReadOnlySpan<byte> value)
{
    private ReadOnlySpan<byte> _rest = value;
    public ReadOnlySpan<byte> Current { get; private set; }
    public readonly TokenList GetEnumerator() => this;

    public bool MoveNext()
    {
        while (_rest.Length > 0)
        {
            int comma = _rest.IndexOf((byte)',');
            var element = comma < 0 ? _rest : _rest[..comma];
            _rest = comma < 0 ? default : _rest[(comma + 1)..];
            element = HttpCharacters.TrimWhitespace(element);
            if (element.Length > 0) { Current = element; return true; }
        }
        return false;
    }
}

/// <summary>Canonical names of common headers, matched as bytes so they cost no allocation.</summary>
internal static class KnownHeaders
{
    public const string Host = "Host";
    public const string ContentLength = "Content-Length";
    public const string TransferEncoding = "Transfer-Encoding";
    public const string Connection = "Connection";
    public const string Expect = "Expect";
    public const string ContentType = "Content-Type";
    public const string Date = "Date";
    public const string Server = "Server";
    public const string Allow = "Allow";

    private static readonly string[] Common =
    [
        Host, ContentLength, TransferEncoding, Connection, Expect, ContentType,
        "Accept", "Accept-Encoding", "Accept-Language", "User-Agent", "Cookie", "Cache-Control",
        "Upgrade-Insecure-Requests", "Referer", "Origin", "Authorization", "Pragma", "Upgrade", "TE", "Trailer",
        "If-None-Match", "If-Modified-Since", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id",
    ];
    private static readonly byte[][] CommonBytes = Common.Select(Encoding.ASCII.GetBytes).ToArray();

    public static string Name(ReadOnlySpan<byte> name) => TryGetName(name) ?? Encoding.ASCII.GetString(name);

    /// <summary>The canonical name of a common header, or null for any other.</summary>
    public static string? TryGetName(ReadOnlySpan<byte> name)
    {
        for (int i = 0; i < CommonBytes.Length; i++)
            if (CommonBytes[i].Length == name.Length && Ascii.EqualsIgnoreCase(name, CommonBytes[i])) return Common[i];
        return null;
    }
}
