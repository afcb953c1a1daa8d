using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace PipeServer.Testing;

/// <summary>
/// One HTTP/1.1 response as its bytes said it, read by <see cref="TestConnection.ReadResponseAsync"/>: the
/// status line, the header fields in order, the body with its framing removed (Content-Length, chunked or
/// close-delimited), and the trailers of a chunked body.
/// </summary>
public sealed class TestResponse
{
    internal TestResponse(string version, int statusCode, string reasonPhrase, IReadOnlyList<KeyValuePair<string, string>> headers,
        byte[] body, bool isChunked, IReadOnlyList<KeyValuePair<string, string>> trailers)
    {
        Version = version; StatusCode = statusCode; ReasonPhrase = reasonPhrase; Headers = headers;
        Body = body; IsChunked = isChunked; Trailers = trailers;
    }

    /// <summary>"HTTP/1.1" or "HTTP/1.0", as the status line said.</summary>
    public string Version { get; }
    /// <summary>The status code.</summary>
    public int StatusCode { get; }
    /// <summary>The reason phrase as sent.</summary>
    public string ReasonPhrase { get; }
    /// <summary>The header fields in the order they were sent, framing fields (Content-Length, Transfer-Encoding, Connection) included.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; }
    /// <summary>The body without its framing (empty for HEAD, 204 and 304).</summary>
    public byte[] Body { get; }
    /// <summary>The body as UTF-8 text.</summary>
    public string BodyText => Encoding.UTF8.GetString(Body);
    /// <summary>The body came with Transfer-Encoding: chunked.</summary>
    public bool IsChunked { get; }
    /// <summary>Trailer fields after a chunked body (usually empty).</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Trailers { get; }

    /// <summary>The first value of header <paramref name="name"/> (case-insensitive), or null.</summary>
    public string? GetHeader(string name)
    {
        foreach (var (key, value) in Headers)
            if (string.Equals(key, name, StringComparison.OrdinalIgnoreCase)) return value;
        return null;
    }

    /// <summary>Every value of header <paramref name="name"/>, in order.</summary>
    public IReadOnlyList<string> GetHeaderValues(string name) =>
        Headers.Where(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Select(h => h.Value).ToArray();

    /// <summary>The Content-Length the response declared, or null (chunked, close-delimited).</summary>
    public long? ContentLength => GetHeader("Content-Length") is { } value && long.TryParse(value, System.Globalization.NumberStyles.None, null, out long n) ? n : null;

    /// <summary>The server said it closes the connection after this response.</summary>
    public bool ConnectionClose => GetHeader("Connection")?.Contains("close", StringComparison.OrdinalIgnoreCase) == true;

    /// <summary>The body deserialised as JSON through source-generated metadata (the same as the server's WriteJsonAsync).</summary>
    public T? ReadJson<T>(JsonTypeInfo<T> typeInfo) => JsonSerializer.Deserialize(Body, typeInfo);

    /// <summary>The status line and body size, for assertion messages.</summary>
    public override string ToString() => $"{Version} {StatusCode} {ReasonPhrase} ({Body.Length} body bytes)";
}
