using System.Text;

namespace PipeServer.Http;

/// <summary>Status lines as preformatted bytes: "HTTP/1.1 200 OK\r\n" costs a table look-up, not a format.</summary>
internal static class HttpStatus
{
    private static readonly byte[]?[] StatusLines = new byte[600][];

    static HttpStatus()
    {
        foreach (int code in new[] { 100, 101, 200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 410, 411, 412, 413, 414, 415, 417, 422, 426, 429, 431, 500, 501, 502, 503, 504, 505 })
            StatusLines[code] = Encoding.ASCII.GetBytes($"HTTP/1.1 {code} {ReasonPhrase(code)}\r\n");
    }

    public static ReadOnlySpan<byte> StatusLine(int code, string? reasonPhrase)
    {
        if (reasonPhrase is null && (uint)code < StatusLines.Length && StatusLines[code] is { } cached) return cached;
        return Encoding.ASCII.GetBytes($"HTTP/1.1 {code} {reasonPhrase ?? ReasonPhrase(code)}\r\n");
    }

    /// <summary>1xx, 204 and 304 responses never carry a body (RFC 9110 §6.4.1).</summary>
    public static bool AllowsBody(int code) => code >= 200 && code != 204 && code != 304;

    public static string ReasonPhrase(int code) => code switch
    {
        100 => "Continue", 101 => "Switching Protocols",
        200 => "OK", 201 => "Created", 202 => "Accepted", 204 => "No Content", 206 => "Partial Content",
        301 => "Moved Permanently", 302 => "Found", 303 => "See Other", 304 => "Not Modified",
        307 => "Temporary Redirect", 308 => "Permanent Redirect",
        400 => "Bad Request", 401 => "Unauthorized", 403 => "Forbidden", 404 => "Not Found",
        405 => "Method Not Allowed", 408 => "Request Timeout", 409 => "Conflict", 410 => "Gone",
        411 => "Length Required", 412 => "Precondition Failed", 413 => "Content Too Large", 414 => "URI Too Long",
        415 => "Unsupported Media Type", 417 => "Expectation Failed", 422 => "Unprocessable Content",
        426 => "Upgrade Required", 429 => "Too Many Requests", 431 => "Request Header Fields Too Large",
        500 => "Internal Server Error", 501 => "Not Implemented", 502 => "Bad Gateway",
        503 => "Service Unavailable", 504 => "Gateway Timeout", 505 => "HTTP Version Not Supported",
        _ => "",
    };
}

/// <summary>
/// The "Date: ...\r\n" header line as cached bytes. Formatting an RFC 1123 date per response would cost an
/// allocation and a clock read; instead a timer reformats it once a second (Kestrel's DateHeaderValueManager
/// does the same from its heartbeat), and a response only reads a reference.
/// </summary>
internal static class DateHeader
{
    private static byte[] _line = Format(DateTimeOffset.UtcNow);
    // Aligned to just after each wall-clock second, so the header changes when the second does.
    private static readonly Timer Refresh = new(static _ => Tick(), null, 1000 - DateTimeOffset.UtcNow.Millisecond + 5, 1000);

    public static ReadOnlySpan<byte> Line => Volatile.Read(ref _line);

    private static void Tick()
    {
        GC.KeepAlive(Refresh);
        Volatile.Write(ref _line, Format(DateTimeOffset.UtcNow));
    }

    private static byte[] Format(DateTimeOffset now) =>
        Encoding.ASCII.GetBytes("Date: " + now.ToString("r", System.Globalization.CultureInfo.InvariantCulture) + "\r\n");
}
