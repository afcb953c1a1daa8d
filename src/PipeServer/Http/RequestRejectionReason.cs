namespace PipeServer.Http;

// Where this sits: the parser (HttpParser), the head validator (RequestHead) and the body readers
// never throw on bad input; they return one of these reasons. The connection maps the reason to a
// status code (StatusCodeFor) and closes after answering, as Kestrel's RequestRejectionReason does.

/// <summary>Why a request was refused before (or while) its handler ran.</summary>
internal enum RequestRejectionReason : byte
{
    None = 0,

    // --- request line (400 unless noted) ---
    InvalidRequestLine,
    InvalidMethod,
    InvalidRequestTarget,
    InvalidHttpVersion,
    /// <summary>HTTP/0.x or HTTP/2+ over this HTTP/1 parser: 505.</summary>
    UnsupportedHttpVersion,
    /// <summary>Request line longer than the limit: 414.</summary>
    RequestLineTooLong,
    /// <summary>A line ended with LF alone (CVE-2025-55315 class of smuggling), or a CR not followed by LF.</summary>
    InvalidLineEnding,

    // --- headers (400 unless noted) ---
    InvalidHeaderName,
    InvalidHeaderValue,
    WhitespaceBeforeColon,
    ObsoleteLineFolding,
    /// <summary>Header section larger than the limit: 431.</summary>
    HeadersTooLarge,
    /// <summary>More header fields than the limit: 431.</summary>
    TooManyHeaders,
    MissingHost,
    MultipleHost,
    InvalidHost,

    // --- framing (400 unless noted) ---
    InvalidContentLength,
    MultipleContentLength,
    ContentLengthWithTransferEncoding,
    FinalTransferCodingNotChunked,
    /// <summary>A transfer coding we do not implement: 501.</summary>
    UnsupportedTransferCoding,
    TransferEncodingInHttp10,
    InvalidChunkSize,
    InvalidChunkExtension,
    ChunkExtensionsTooLarge,
    InvalidChunkTerminator,
    TrailersTooLarge,
    /// <summary>Declared or received body larger than the limit: 413.</summary>
    BodyTooLarge,
    /// <summary>The peer closed the connection in the middle of a body.</summary>
    UnexpectedEndOfBody,
    /// <summary>Asterisk-form on a method other than OPTIONS, or authority-form on one other than CONNECT.</summary>
    InvalidTargetForMethod,

    // --- timing ---
    /// <summary>The request head did not arrive within the header timeout: 408.</summary>
    RequestHeadersTimeout,
    /// <summary>The body arrived slower than the minimum data rate: 408.</summary>
    RequestBodyTimeout,
}

internal static class RequestRejection
{
    /// <summary>The status code a rejection is answered with.</summary>
    public static int StatusCodeFor(RequestRejectionReason reason) => reason switch
    {
        RequestRejectionReason.RequestLineTooLong => 414,
        RequestRejectionReason.HeadersTooLarge or RequestRejectionReason.TooManyHeaders => 431,
        RequestRejectionReason.BodyTooLarge => 413,
        RequestRejectionReason.UnsupportedTransferCoding => 501,
        RequestRejectionReason.UnsupportedHttpVersion => 505,
        RequestRejectionReason.RequestHeadersTimeout or RequestRejectionReason.RequestBodyTimeout => 408,
        _ => 400,
    };

    /// <summary>A short, fixed, human-readable text: never echoes request bytes back.</summary>
    public static string Describe(RequestRejectionReason reason) => reason switch
    {
        RequestRejectionReason.InvalidRequestLine => "Invalid request line.",
        RequestRejectionReason.InvalidMethod => "Invalid method.",
        RequestRejectionReason.InvalidRequestTarget => "Invalid request target.",
        RequestRejectionReason.InvalidHttpVersion => "Invalid HTTP version.",
        RequestRejectionReason.UnsupportedHttpVersion => "HTTP version not supported.",
        RequestRejectionReason.RequestLineTooLong => "Request line too long.",
        RequestRejectionReason.InvalidLineEnding => "Lines must end with CRLF.",
        RequestRejectionReason.InvalidHeaderName => "Invalid header name.",
        RequestRejectionReason.InvalidHeaderValue => "Invalid header value.",
        RequestRejectionReason.WhitespaceBeforeColon => "Whitespace between header name and colon.",
        RequestRejectionReason.ObsoleteLineFolding => "Obsolete line folding is not accepted.",
        RequestRejectionReason.HeadersTooLarge => "Request header fields too large.",
        RequestRejectionReason.TooManyHeaders => "Too many request header fields.",
        RequestRejectionReason.MissingHost => "Missing Host header.",
        RequestRejectionReason.MultipleHost => "Multiple Host headers.",
        RequestRejectionReason.InvalidHost => "Invalid Host header.",
        RequestRejectionReason.InvalidContentLength => "Invalid Content-Length.",
        RequestRejectionReason.MultipleContentLength => "Multiple Content-Length headers.",
        RequestRejectionReason.ContentLengthWithTransferEncoding => "Content-Length together with Transfer-Encoding.",
        RequestRejectionReason.FinalTransferCodingNotChunked => "The final transfer coding must be chunked.",
        RequestRejectionReason.UnsupportedTransferCoding => "Transfer coding not implemented.",
        RequestRejectionReason.TransferEncodingInHttp10 => "Transfer-Encoding is not allowed in HTTP/1.0.",
        RequestRejectionReason.InvalidChunkSize => "Invalid chunk size.",
        RequestRejectionReason.InvalidChunkExtension => "Invalid chunk extension.",
        RequestRejectionReason.ChunkExtensionsTooLarge => "Chunk extensions too large.",
        RequestRejectionReason.InvalidChunkTerminator => "Chunk data not followed by CRLF.",
        RequestRejectionReason.TrailersTooLarge => "Trailer section too large.",
        RequestRejectionReason.BodyTooLarge => "Request body too large.",
        RequestRejectionReason.UnexpectedEndOfBody => "Unexpected end of request body.",
        RequestRejectionReason.InvalidTargetForMethod => "Request target form not allowed for this method.",
        RequestRejectionReason.RequestHeadersTimeout => "Request headers not received in time.",
        RequestRejectionReason.RequestBodyTimeout => "Request body not received in time.",
        _ => "Bad request.",
    };
}

/// <summary>
/// Thrown out of the request body reader (the only place a rejection surfaces inside a handler) so that
/// handler code that is not watching for it still unwinds; the connection turns it into a status code.
/// </summary>
public sealed class BadHttpRequestException : IOException
{
    internal BadHttpRequestException(RequestRejectionReason reason) : base(RequestRejection.Describe(reason)) => Reason = reason;

    internal RequestRejectionReason Reason { get; }
    /// <summary>The status code the server answers with (400, 408, 413, 431, 501 …) if the response has not started; else the connection is reset.</summary>
    public int StatusCode => RequestRejection.StatusCodeFor(Reason);
}
