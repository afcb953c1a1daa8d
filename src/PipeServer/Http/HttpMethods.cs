namespace PipeServer.Http;

public enum HttpMethod : byte { Custom, Get, Head, Post, Put, Delete, Options, Patch, Trace, Connect }

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
