using System.Buffers;

namespace PipeServer.Http;

// Character classes of RFC 9110 §5.6.2 (token), §5.5 (field values) and RFC 3986 (targets, hosts),
// as vectorised SearchValues so validation is a single IndexOfAnyExcept per field.
internal static class HttpCharacters
{
    private const string Alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// <summary>tchar: the characters of a method or a header name.</summary>
    public static readonly SearchValues<byte> Token =
        SearchValues.Create("!#$%&'*+-.^_`|~"u8.ToArray().Concat(System.Text.Encoding.ASCII.GetBytes(Alnum)).ToArray());

    /// <summary>A request target: visible ASCII only (no space, no control, no DEL, no bytes above 0x7E).</summary>
    public static readonly SearchValues<byte> TargetChar = SearchValues.Create(Range(0x21, 0x7E));

    /// <summary>field-vchar / SP / HTAB / obs-text: everything but controls (HTAB allowed) and DEL.</summary>
    public static readonly SearchValues<byte> FieldValueChar =
        SearchValues.Create([(byte)'\t', .. Range(0x20, 0x7E), .. Range(0x80, 0xFF)]);

    /// <summary>Host = uri-host [ ":" port ]: reg-name, IPv4 or an IP-literal in brackets.</summary>
    public static readonly SearchValues<byte> HostChar =
        SearchValues.Create(System.Text.Encoding.ASCII.GetBytes(Alnum + "-._~!$&'()*+,;=%:[]"));

    public static readonly SearchValues<byte> Whitespace = SearchValues.Create(" \t"u8);

    public static bool IsToken(ReadOnlySpan<byte> s) => s.Length > 0 && s.IndexOfAnyExcept(Token) < 0;

    private static byte[] Range(int first, int last)
    {
        var bytes = new byte[last - first + 1];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(first + i);
        return bytes;
    }

    public static ReadOnlySpan<byte> TrimWhitespace(ReadOnlySpan<byte> s)
    {
        int start = 0, end = s.Length;
        while (start < end && (s[start] == ' ' || s[start] == '\t')) start++;
        while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
        return s[start..end];
    }
}
