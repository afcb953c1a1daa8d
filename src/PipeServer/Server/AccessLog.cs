using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace PipeServer.Server;

// Where this sits: beside the request's journey, at its end. Http1Connection.RecordRequest fills one
// AccessLogEntry per finished or rejected request (only when --access-log is on: with it off, nothing here
// runs and nothing is allocated) and writes it as one Information event under "PipeServer.AccessLog".
//
// One event, two renderings:
//   message  the Combined Log Format line, plus the duration in seconds and a request id:
//              ADDR - - [dd/MMM/yyyy:HH:mm:ss +0000] "METHOD TARGET PROTOCOL" STATUS BYTES "REFERER" "USER-AGENT" SECONDS "REQUEST-ID"
//            escaped by nginx's escape=default rule (\xHH for '"', '\', bytes below 0x20 and from 0x7F), so no
//            byte a client sends can end the line early or fake a field. The target is logged as received
//            (percent-escapes kept), never the decoded path: "%0D%0A" stays six characters.
//   state    the same fields, unescaped, as properties (ClientAddress, PeerAddress, Time, Method, Target,
//            Protocol, Status, Bytes, Referer, UserAgent, DurationSeconds, RequestId, ConnectionId; plus
//            ClientPort, which CLF has no place for): what the
//            JSON console formatter writes under "State", with JSON's own escaping.
// Program.cs gives the category its own minimum level, so --log-level never hides access lines, and in text
// mode its own formatter, which writes the message alone (no timestamp/level prefix): pure CLF.

/// <summary>The access log's category, event id and line format.</summary>
public static class AccessLog
{
    /// <summary>The logger category of access log events.</summary>
    public const string Category = "PipeServer.AccessLog";
    /// <summary>The event id of every access log event.</summary>
    public static readonly EventId EventId = new(20, "Access");

    internal static void Write(ILogger logger, AccessLogEntry entry) =>
        logger.Log(LogLevel.Information, EventId, entry, null, static (e, _) => e.Line);

    /// <summary>nginx's escape=default: which bytes are written as \xHH.</summary>
    internal static bool NeedsEscape(int b) => b < 0x20 || b == '"' || b == '\\' || b >= 0x7F;

    /// <summary>Appends bytes as received, escaped.</summary>
    internal static void AppendEscaped(StringBuilder sb, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes) AppendByte(sb, b);
    }

    /// <summary>
    /// Appends a string whose chars are bytes (header values are decoded as Latin-1, one char per byte),
    /// escaped. A char above 0xFF (only from an embedder's string) is escaped as its UTF-8 bytes.
    /// </summary>
    internal static void AppendEscaped(StringBuilder sb, string value)
    {
        Span<byte> utf8 = stackalloc byte[4];
        foreach (char c in value)
        {
            if (c <= 0xFF) { AppendByte(sb, c); continue; }
            int n = Encoding.UTF8.GetBytes([c], utf8); // a lone surrogate becomes EF BF BD
            foreach (byte b in utf8[..n]) AppendByte(sb, b);
        }
    }

    internal static string Escape(string value)
    {
        var sb = new StringBuilder(value.Length + 8);
        AppendEscaped(sb, value);
        return sb.ToString();
    }

    private static void AppendByte(StringBuilder sb, int b)
    {
        if (!NeedsEscape(b)) { sb.Append((char)b); return; }
        sb.Append('\\').Append('x').Append(HexDigits[b >> 4]).Append(HexDigits[b & 0xF]);
    }

    private const string HexDigits = "0123456789ABCDEF";
}

/// <summary>
/// One access-log event: the fields as properties (structured logging) and <see cref="Line"/> as the
/// message. Made only when the access log is on; the line is formatted once, on first use.
/// </summary>
public sealed class AccessLogEntry : IReadOnlyList<KeyValuePair<string, object?>>
{
    private string? _line;

    /// <summary>The client: the socket peer, or what a trusted proxy said (PROXY header, X-Forwarded-For). "-" when unknown.</summary>
    public required string ClientAddress { get; init; }
    /// <summary>The client's port: the socket peer's or the PROXY header's; null when X-Forwarded-For named the client. Not in the CLF line.</summary>
    public int? ClientPort { get; init; }
    /// <summary>The socket peer (the balancer, when there is one).</summary>
    public required string PeerAddress { get; init; }
    /// <summary>When the request ended (UTC).</summary>
    public required DateTimeOffset Time { get; init; }
    /// <summary>Null when the request line never parsed (then the line shows "-" for the request).</summary>
    public string? Method { get; init; }
    /// <summary>The request target as received (bytes as Latin-1 chars), percent-escapes and query included.</summary>
    public string? Target { get; init; }
    /// <summary>The protocol of the request line ("HTTP/1.1"), or null.</summary>
    public string? Protocol { get; init; }
    /// <summary>The status code sent.</summary>
    public required int Status { get; init; }
    /// <summary>Body bytes sent (nginx's $body_bytes_sent).</summary>
    public required long Bytes { get; init; }
    /// <summary>The Referer header, or null.</summary>
    public string? Referer { get; init; }
    /// <summary>The User-Agent header, or null.</summary>
    public string? UserAgent { get; init; }
    /// <summary>From the request's first byte to the end of its response, in seconds.</summary>
    public required double DurationSeconds { get; init; }
    /// <summary>"CONNECTION-N" (the Nth request on that connection), or a trusted proxy's X-Request-ID.</summary>
    public required string RequestId { get; init; }
    /// <summary>The connection's number.</summary>
    public required long ConnectionId { get; init; }

    /// <summary>The Combined Log Format line (plus seconds and request id), escaped.</summary>
    public string Line => _line ??= Format();

    /// <inheritdoc cref="Line"/>
    public override string ToString() => Line; // the JSON console formatter writes State.Message from this

    private string Format()
    {
        var sb = new StringBuilder(160);
        AccessLog.AppendEscaped(sb, ClientAddress);
        sb.Append(" - - [");
        sb.Append(Time.UtcDateTime.ToString("dd/MMM/yyyy:HH:mm:ss", CultureInfo.InvariantCulture)).Append(" +0000] \"");
        if (Method is null) sb.Append('-');
        else
        {
            AccessLog.AppendEscaped(sb, Method);
            sb.Append(' ');
            AccessLog.AppendEscaped(sb, Target ?? "-");
            sb.Append(' ');
            AccessLog.AppendEscaped(sb, Protocol ?? "-");
        }
        sb.Append("\" ").Append(Status.ToString(CultureInfo.InvariantCulture));
        sb.Append(' ').Append(Bytes.ToString(CultureInfo.InvariantCulture));
        sb.Append(" \"");
        AccessLog.AppendEscaped(sb, Referer ?? "-");
        sb.Append("\" \"");
        AccessLog.AppendEscaped(sb, UserAgent ?? "-");
        sb.Append("\" ").Append(DurationSeconds.ToString("0.000000", CultureInfo.InvariantCulture));
        sb.Append(" \"");
        AccessLog.AppendEscaped(sb, RequestId);
        sb.Append('"');
        return sb.ToString();
    }

    /// <summary>The number of structured fields (State in a JSON log).</summary>
    public int Count => 14;

    /// <summary>The structured field at <paramref name="index"/>.</summary>
    public KeyValuePair<string, object?> this[int index] => index switch
    {
        0 => new("ClientAddress", ClientAddress),
        1 => new("PeerAddress", PeerAddress),
        2 => new("Time", Time.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture)),
        3 => new("Method", Method),
        4 => new("Target", Target),
        5 => new("Protocol", Protocol),
        6 => new("Status", Status),
        7 => new("Bytes", Bytes),
        8 => new("Referer", Referer),
        9 => new("UserAgent", UserAgent),
        10 => new("DurationSeconds", DurationSeconds),
        11 => new("RequestId", RequestId),
        12 => new("ConnectionId", ConnectionId),
        13 => new("ClientPort", ClientPort),
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    /// <summary>Enumerates the structured fields.</summary>
    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        for (int i = 0; i < Count; i++) yield return this[i];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
