namespace PipeServer.Http;

/// <summary>The request methods known by name; any other is <see cref="Custom"/> (read <see cref="HttpRequest.Method"/>).</summary>
public enum HttpMethod : byte
{
    /// <summary>A method not listed here: its name is in <see cref="HttpRequest.Method"/>.</summary>
    Custom,
    /// <summary>GET.</summary>
    Get,
    /// <summary>HEAD.</summary>
    Head,
    /// <summary>POST.</summary>
    Post,
    /// <summary>PUT.</summary>
    Put,
    /// <summary>DELETE.</summary>
    Delete,
    /// <summary>OPTIONS.</summary>
    Options,
    /// <summary>PATCH.</summary>
    Patch,
    /// <summary>TRACE.</summary>
    Trace,
    /// <summary>CONNECT.</summary>
    Connect,
}

/// <summary>Known methods matched as bytes, so a known method costs no string allocation.</summary>
internal static class HttpMethods
{
    public static HttpMethod Parse(ReadOnlySpan<byte> m) => m.Length switch
    {
        3 when m.SequenceEqual("GET"u8) => HttpMethod.Get,
        3 when m.SequenceEqual("PUT"u8) => HttpMethod.Put,
        4 when m.SequenceEqual("HEAD"u8) => HttpMethod.Head,
        4 when m.SequenceEqual("POST"u8) => HttpMethod.Post,
        5 when m.SequenceEqual("PATCH"u8) => HttpMethod.Patch,
        5 when m.SequenceEqual("TRACE"u8) => HttpMethod.Trace,
        6 when m.SequenceEqual("DELETE"u8) => HttpMethod.Delete,
        7 when m.SequenceEqual("OPTIONS"u8) => HttpMethod.Options,
        7 when m.SequenceEqual("CONNECT"u8) => HttpMethod.Connect,
        _ => HttpMethod.Custom,
    };

    public static string ToName(HttpMethod method) => method switch
    {
        HttpMethod.Get => "GET",
        HttpMethod.Head => "HEAD",
        HttpMethod.Post => "POST",
        HttpMethod.Put => "PUT",
        HttpMethod.Delete => "DELETE",
        HttpMethod.Options => "OPTIONS",
        HttpMethod.Patch => "PATCH",
        HttpMethod.Trace => "TRACE",
        HttpMethod.Connect => "CONNECT",
        _ => throw new ArgumentOutOfRangeException(nameof(method)),
    };
}
