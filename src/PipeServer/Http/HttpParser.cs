using System.Buffers;

namespace PipeServer.Http;

// Where this sits: step 1 of a request's journey. Http1Connection hands the bytes read so far to
// ParseRequestLine, then ParseHeaders, until both report Done. The parser is a pure function over a
// SequenceReader: no I/O, no allocation, no exceptions. "Need more data" leaves the reader where the
// incomplete line starts (nothing is consumed), bad input returns a typed RequestRejectionReason, and
// what was parsed is handed to an IHttpHeadHandler (RequestHead in production, a recorder in tests).

internal enum ParseStatus : byte
{
    /// <summary>The input ends inside a line: call again with more bytes; nothing was consumed.</summary>
    NeedMoreData,
    /// <summary>The element was parsed and consumed.</summary>
    Done,
    /// <summary>The input is not HTTP/1.1; the out reason says why.</summary>
    Rejected,
}

/// <summary>The request's protocol version (a higher 1.x is served as 1.1; any other major version is refused with 505).</summary>
public enum HttpVersion : byte
{
    /// <summary>HTTP/1.0.</summary>
    Http10,
    /// <summary>HTTP/1.1.</summary>
    Http11,
}

/// <summary>The four forms of a request target (RFC 9112 §3.2).</summary>
public enum RequestTargetForm : byte
{
    /// <summary>"/path?query": the usual form.</summary>
    Origin,
    /// <summary>"http://host/path": as sent to a proxy.</summary>
    Absolute,
    /// <summary>"host:port": CONNECT only.</summary>
    Authority,
    /// <summary>"*": OPTIONS only.</summary>
    Asterisk,
}

/// <summary>The request line, as spans over the connection's buffer: valid only during the callback.</summary>
internal readonly ref struct RequestLine
{
    public RequestLine(HttpMethod method, ReadOnlySpan<byte> methodBytes, ReadOnlySpan<byte> target, RequestTargetForm form, HttpVersion version)
    {
        Method = method; MethodBytes = methodBytes; Target = target; Form = form; Version = version;
    }
    public HttpMethod Method { get; }
    public ReadOnlySpan<byte> MethodBytes { get; }
    public ReadOnlySpan<byte> Target { get; }
    public RequestTargetForm Form { get; }
    public HttpVersion Version { get; }
}

/// <summary>Receives what the parser found. Returning a reason other than None rejects the request.</summary>
internal interface IHttpHeadHandler
{
    RequestRejectionReason OnRequestLine(in RequestLine line);
    RequestRejectionReason OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value);
}

/// <summary>Size limits the parser enforces while it reads (Kestrel's defaults).</summary>
internal readonly record struct HttpParserLimits(int MaxRequestLineSize = 8 * 1024, int MaxHeaderCount = 100, int MaxHeaderBytes = 32 * 1024)
{
    public HttpParserLimits() : this(8 * 1024, 100, 32 * 1024) { }
}

/// <summary>Progress through a header section that arrives over several reads.</summary>
internal struct HeaderParseState
{
    /// <summary>Header-section bytes consumed so far, CRLFs included.</summary>
    public int Bytes;
    public int Count;
    public void Reset() { Bytes = 0; Count = 0; }
}

internal static class HttpParser
{
    private const byte CR = (byte)'\r', LF = (byte)'\n', SP = (byte)' ', HT = (byte)'\t', Colon = (byte)':';

    /// <summary>request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 §3).</summary>
    public static ParseStatus ParseRequestLine<THandler>(ref SequenceReader<byte> reader, THandler handler,
        in HttpParserLimits limits, out RequestRejectionReason reason) where THandler : IHttpHeadHandler
    {
        reason = RequestRejectionReason.None;
        if (!reader.TryReadTo(out ReadOnlySequence<byte> line, LF, advancePastDelimiter: true))
        {
            // No LF yet. Either wait for more, or give up once the line cannot fit the limit anyway.
            if (reader.Remaining >= limits.MaxRequestLineSize)
                return Reject(out reason, RequestRejectionReason.RequestLineTooLong);
            return ParseStatus.NeedMoreData;
        }
        if (line.Length + 1 > limits.MaxRequestLineSize)
            return Reject(out reason, RequestRejectionReason.RequestLineTooLong);

        byte[]? rented = null;
        try
        {
            var span = AsSpan(line, ref rented);
            if (span.Length == 0 || span[^1] != CR)
                return Reject(out reason, RequestRejectionReason.InvalidLineEnding);
            span = span[..^1];

            reason = ParseRequestLineSpan(span, handler);
            return reason == RequestRejectionReason.None ? ParseStatus.Done : ParseStatus.Rejected;
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static RequestRejectionReason ParseRequestLineSpan<THandler>(ReadOnlySpan<byte> span, THandler handler)
        where THandler : IHttpHeadHandler
    {
        int sp1 = span.IndexOf(SP);
        if (sp1 < 0) return span.IndexOf(CR) >= 0 ? RequestRejectionReason.InvalidLineEnding : RequestRejectionReason.InvalidRequestLine;
        var methodBytes = span[..sp1];
        if (!HttpCharacters.IsToken(methodBytes)) return RequestRejectionReason.InvalidMethod;

        var rest = span[(sp1 + 1)..];
        int sp2 = rest.IndexOf(SP);
        if (sp2 <= 0) return RequestRejectionReason.InvalidRequestLine;
        var target = rest[..sp2];
        var versionBytes = rest[(sp2 + 1)..];

        if (target.IndexOfAnyExcept(HttpCharacters.TargetChar) >= 0)
            return target.IndexOf(CR) >= 0 ? RequestRejectionReason.InvalidLineEnding : RequestRejectionReason.InvalidRequestTarget;

        var versionReason = ParseVersion(versionBytes, out var version);
        if (versionReason != RequestRejectionReason.None) return versionReason;

        var method = HttpMethods.Parse(methodBytes);
        RequestTargetForm form;
        if (target[0] == (byte)'/') form = RequestTargetForm.Origin;
        else if (target.Length == 1 && target[0] == (byte)'*') form = RequestTargetForm.Asterisk;
        else if (method == HttpMethod.Connect) form = RequestTargetForm.Authority;
        else if (StartsWithIgnoreCase(target, "http://"u8) || StartsWithIgnoreCase(target, "https://"u8)) form = RequestTargetForm.Absolute;
        else return RequestRejectionReason.InvalidRequestTarget;

        // RFC 9112 §3.2.3-4: '*' only for OPTIONS; CONNECT takes only authority-form.
        if ((form == RequestTargetForm.Asterisk && method != HttpMethod.Options) ||
            (method == HttpMethod.Connect && form != RequestTargetForm.Authority))
            return RequestRejectionReason.InvalidTargetForMethod;
        if (form == RequestTargetForm.Authority && target.IndexOfAnyExcept(HttpCharacters.HostChar) >= 0)
            return RequestRejectionReason.InvalidRequestTarget;

        return handler.OnRequestLine(new RequestLine(method, methodBytes, target, form, version));
    }

    /// <summary>HTTP-version = "HTTP/" DIGIT "." DIGIT; 1.x with x ≥ 1 is served as 1.1 (RFC 9110 §6.2).</summary>
    private static RequestRejectionReason ParseVersion(ReadOnlySpan<byte> v, out HttpVersion version)
    {
        version = HttpVersion.Http11;
        if (v.Length != 8 || !v.StartsWith("HTTP/"u8) || !IsDigit(v[5]) || v[6] != (byte)'.' || !IsDigit(v[7]))
            return v.IndexOf(CR) >= 0 ? RequestRejectionReason.InvalidLineEnding : RequestRejectionReason.InvalidHttpVersion;
        if (v[5] != (byte)'1') return RequestRejectionReason.UnsupportedHttpVersion;
        version = v[7] == (byte)'0' ? HttpVersion.Http10 : HttpVersion.Http11;
        return RequestRejectionReason.None;
    }

    /// <summary>
    /// Parses complete header lines, consuming each; Done once the empty line ending the section is consumed.
    /// Used for the request's header section and for a chunked body's trailer section.
    /// </summary>
    public static ParseStatus ParseHeaders<THandler>(ref SequenceReader<byte> reader, THandler handler,
        ref HeaderParseState state, in HttpParserLimits limits, out RequestRejectionReason reason,
        RequestRejectionReason tooLarge = RequestRejectionReason.HeadersTooLarge) where THandler : IHttpHeadHandler
    {
        reason = RequestRejectionReason.None;
        while (true)
        {
            if (!reader.TryReadTo(out ReadOnlySequence<byte> line, LF, advancePastDelimiter: true))
            {
                if (state.Bytes + reader.Remaining > limits.MaxHeaderBytes)
                    return Reject(out reason, tooLarge);
                return ParseStatus.NeedMoreData;
            }

            long lineBytes = line.Length + 1;
            if (state.Bytes + lineBytes > limits.MaxHeaderBytes)
                return Reject(out reason, tooLarge);
            state.Bytes += (int)lineBytes;

            byte[]? rented = null;
            try
            {
                var span = AsSpan(line, ref rented);
                if (span.Length == 0 || span[^1] != CR)
                    return Reject(out reason, RequestRejectionReason.InvalidLineEnding);
                span = span[..^1];
                if (span.Length == 0)
                    return ParseStatus.Done;

                if (++state.Count > limits.MaxHeaderCount)
                    return Reject(out reason, tooLarge == RequestRejectionReason.HeadersTooLarge ? RequestRejectionReason.TooManyHeaders : tooLarge);

                reason = ParseHeaderLine(span, handler);
                if (reason != RequestRejectionReason.None) return ParseStatus.Rejected;
            }
            finally
            {
                if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>field-line = field-name ":" OWS field-value OWS (RFC 9112 §5).</summary>
    private static RequestRejectionReason ParseHeaderLine<THandler>(ReadOnlySpan<byte> span, THandler handler)
        where THandler : IHttpHeadHandler
    {
        // RFC 9112 §5.2: obs-fold is rejected outright rather than unfolded.
        if (span[0] == SP || span[0] == HT) return RequestRejectionReason.ObsoleteLineFolding;

        int colon = span.IndexOf(Colon);
        if (colon < 0) return span.IndexOf(CR) >= 0 ? RequestRejectionReason.InvalidLineEnding : RequestRejectionReason.InvalidHeaderName;
        var name = span[..colon];
        if (name.Length == 0) return RequestRejectionReason.InvalidHeaderName;
        // RFC 9112 §5.1: whitespace between name and colon must be rejected (a classic smuggling vector).
        if (name[^1] == SP || name[^1] == HT) return RequestRejectionReason.WhitespaceBeforeColon;
        if (name.IndexOfAnyExcept(HttpCharacters.Token) >= 0)
            return name.IndexOf(CR) >= 0 ? RequestRejectionReason.InvalidLineEnding : RequestRejectionReason.InvalidHeaderName;

        var value = HttpCharacters.TrimWhitespace(span[(colon + 1)..]);
        // NUL, a bare CR, LF or any other control (HTAB aside) inside a value is refused, never stripped.
        if (value.IndexOfAnyExcept(HttpCharacters.FieldValueChar) >= 0)
            return value.IndexOf(CR) >= 0 ? RequestRejectionReason.InvalidLineEnding : RequestRejectionReason.InvalidHeaderValue;

        return handler.OnHeader(name, value);
    }

    private static ReadOnlySpan<byte> AsSpan(in ReadOnlySequence<byte> line, ref byte[]? rented)
    {
        if (line.IsSingleSegment) return line.FirstSpan;
        // A line split across segments is copied once; its length is already bounded by the limits.
        rented = ArrayPool<byte>.Shared.Rent((int)line.Length);
        line.CopyTo(rented);
        return rented.AsSpan(0, (int)line.Length);
    }

    private static ParseStatus Reject(out RequestRejectionReason reason, RequestRejectionReason value)
    {
        reason = value;
        return ParseStatus.Rejected;
    }

    private static bool IsDigit(byte b) => (uint)(b - '0') <= 9;

    private static bool StartsWithIgnoreCase(ReadOnlySpan<byte> s, ReadOnlySpan<byte> lowerPrefix)
    {
        if (s.Length < lowerPrefix.Length) return false;
        for (int i = 0; i < lowerPrefix.Length; i++)
            if ((s[i] | 0x20) != lowerPrefix[i]) return false;
        return true;
    }
}
