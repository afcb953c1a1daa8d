namespace PipeServer.Http;

// Where this sits: behind HttpRequest.GetQueryValue/GetQueryValues, at the application's end of a request's
// journey. The query is kept exactly as sent (HttpRequest.Query); a handler that asks for one parameter gets
// it decoded here, by the application/x-www-form-urlencoded rules browsers use for a query ('+' is a space,
// then percent-decoding as UTF-8). Nothing is parsed or allocated unless a handler asks, and then only the
// strings it gets back.

internal static class QueryString
{
    /// <summary>The first value of <paramref name="name"/> (decoded; "" for "?name" or "?name="), or null when absent.</summary>
    public static string? GetValue(string query, string name)
    {
        var rest = query.AsSpan();
        while (TryNext(ref rest, out var key, out var value))
            if (KeyEquals(key, name)) return Decode(value);
        return null;
    }

    /// <summary>Every value of <paramref name="name"/>, in order (empty when absent).</summary>
    public static IReadOnlyList<string> GetValues(string query, string name)
    {
        List<string>? values = null;
        var rest = query.AsSpan();
        while (TryNext(ref rest, out var key, out var value))
            if (KeyEquals(key, name)) (values ??= []).Add(Decode(value));
        return values is null ? [] : values;
    }

    /// <summary>The next "key=value" pair of '&amp;'-separated pairs; empty pairs ("a&amp;&amp;b") are skipped.</summary>
    private static bool TryNext(ref ReadOnlySpan<char> rest, out ReadOnlySpan<char> key, out ReadOnlySpan<char> value)
    {
        while (rest.Length > 0)
        {
            int amp = rest.IndexOf('&');
            var pair = amp < 0 ? rest : rest[..amp];
            rest = amp < 0 ? [] : rest[(amp + 1)..];
            if (pair.Length == 0) continue;
            int eq = pair.IndexOf('=');
            key = eq < 0 ? pair : pair[..eq];
            value = eq < 0 ? [] : pair[(eq + 1)..];
            return true;
        }
        key = value = default;
        return false;
    }

    private static bool KeyEquals(ReadOnlySpan<char> rawKey, string name) =>
        rawKey.IndexOfAny('%', '+') < 0 ? rawKey.SequenceEqual(name) : string.Equals(Decode(rawKey), name, StringComparison.Ordinal);

    /// <summary>'+' as a space, then percent-escapes as UTF-8; an escape that is not valid stays as it was sent.</summary>
    private static string Decode(ReadOnlySpan<char> raw)
    {
        if (raw.IndexOfAny('%', '+') < 0) return raw.ToString();
        Span<char> spaced = raw.Length <= 512 ? stackalloc char[raw.Length] : new char[raw.Length];
        raw.CopyTo(spaced);
        spaced.Replace('+', ' ');
        return Uri.UnescapeDataString(spaced);
    }
}
