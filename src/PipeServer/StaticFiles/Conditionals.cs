using System.Globalization;

namespace PipeServer.StaticFiles;

// Where this sits: pure functions StaticFileHandler calls once it knows a file's validators (its ETag and
// Last-Modified) and before it reads a byte of it. They follow the evaluation order of RFC 9110 §13.2.2:
//
//   1. If-Match            present: no strong match       -> 412
//   2. If-Unmodified-Since (only without If-Match): modified after the date -> 412
//   3. If-None-Match       present: a weak match (or *)    -> 304 for GET/HEAD (412 otherwise)
//   4. If-Modified-Since   (only without If-None-Match, GET/HEAD): not modified since -> 304
//   5. If-Range            (only with Range, GET): the validator must match, else the Range is ignored
//
// An invalid date is ignored (§13.1.3, §13.1.4 "MUST ignore"); a malformed entity-tag list matches nothing.

internal enum ConditionalOutcome { Proceed, NotModified, PreconditionFailed }

internal static class Conditionals
{
    /// <summary>Steps 1–4 of §13.2.2 for a representation whose strong ETag is <paramref name="etag"/> (with its quotes).</summary>
    public static ConditionalOutcome Evaluate(string? ifMatch, string? ifUnmodifiedSince, string? ifNoneMatch, string? ifModifiedSince,
        string etag, DateTimeOffset lastModified, bool isGetOrHead)
    {
        lastModified = TruncateToSeconds(lastModified);
        if (ifMatch is not null)
        {
            if (!ListMatches(ifMatch, etag, strong: true)) return ConditionalOutcome.PreconditionFailed;
        }
        else if (ifUnmodifiedSince is not null && TryParseHttpDate(ifUnmodifiedSince, out var unmodifiedSince) && lastModified > unmodifiedSince)
        {
            return ConditionalOutcome.PreconditionFailed;
        }

        if (ifNoneMatch is not null)
        {
            if (ListMatches(ifNoneMatch, etag, strong: false))
                return isGetOrHead ? ConditionalOutcome.NotModified : ConditionalOutcome.PreconditionFailed;
            return ConditionalOutcome.Proceed; // If-None-Match takes precedence: If-Modified-Since is not looked at (§13.1.3)
        }
        if (isGetOrHead && ifModifiedSince is not null && TryParseHttpDate(ifModifiedSince, out var since) && lastModified <= since)
            return ConditionalOutcome.NotModified;
        return ConditionalOutcome.Proceed;
    }

    /// <summary>
    /// §13.1.5: the Range applies only if If-Range's validator matches the current representation: an entity-tag
    /// by strong comparison (a weak tag never matches), or an HTTP-date exactly equal to Last-Modified. Anything
    /// else, an unparsable value included, means "send the whole representation".
    /// </summary>
    public static bool IfRangeAllows(string? ifRange, string etag, DateTimeOffset lastModified)
    {
        if (ifRange is null) return true;
        var value = ifRange.AsSpan().Trim([' ', '\t']);
        if (value.Length > 0 && (value[0] == '"' || value.StartsWith("W/", StringComparison.Ordinal)))
            return value[0] == '"' && value.SequenceEqual(etag);
        return TryParseHttpDate(ifRange, out var date) && date == TruncateToSeconds(lastModified);
    }

    /// <summary>
    /// Whether the list (<c>*</c> or 1#entity-tag) holds a tag equal to <paramref name="etag"/>: strong comparison
    /// (both strong, same opaque-tag) or weak (W/ ignored on either side), §8.8.3.2. A malformed list matches nothing.
    /// </summary>
    public static bool ListMatches(ReadOnlySpan<char> list, string etag, bool strong)
    {
        var rest = list.Trim([' ', '\t']);
        if (rest.SequenceEqual("*")) return true;
        bool etagWeak = etag.StartsWith("W/", StringComparison.Ordinal);
        var etagOpaque = etagWeak ? etag.AsSpan(2) : etag.AsSpan();
        while (true)
        {
            rest = rest.TrimStart([' ', '\t', ',']);
            if (rest.Length == 0) return false;
            bool weak = rest.StartsWith("W/", StringComparison.Ordinal);
            if (weak) rest = rest[2..];
            if (rest.Length < 2 || rest[0] != '"') return false;
            int close = rest[1..].IndexOf('"');
            if (close < 0) return false;
            var opaque = rest[..(close + 2)]; // with both quotes: etagc may contain a comma, so the quotes delimit
            rest = rest[(close + 2)..];
            if (opaque.SequenceEqual(etagOpaque) && (!strong || (!weak && !etagWeak))) return true;
            rest = rest.TrimStart([' ', '\t']);
            if (rest.Length > 0 && rest[0] != ',') return false;
        }
    }

    private static readonly string[] HttpDateFormats =
    [
        "ddd, dd MMM yyyy HH:mm:ss 'GMT'",  // IMF-fixdate, what every sender must send
        "dddd, dd-MMM-yy HH:mm:ss 'GMT'",   // obsolete RFC 850 form, which a recipient must still accept (§5.6.7)
        "ddd MMM d HH:mm:ss yyyy",          // obsolete asctime() form
        "ddd MMM dd HH:mm:ss yyyy",
    ];

    /// <summary>An HTTP-date (§5.6.7) in any of its three forms, as UTC; false for anything else.</summary>
    public static bool TryParseHttpDate(string value, out DateTimeOffset date) =>
        DateTimeOffset.TryParseExact(value.Trim(), HttpDateFormats, CultureInfo.InvariantCulture,
            DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal | DateTimeStyles.AllowInnerWhite, out date);

    /// <summary>HTTP-dates have one-second resolution: a file's mtime is compared at that resolution.</summary>
    public static DateTimeOffset TruncateToSeconds(DateTimeOffset time) => new(time.UtcTicks - time.UtcTicks % TimeSpan.TicksPerSecond, TimeSpan.Zero);

    /// <summary>The strong ETag for a file: its length and modification time (100 ns ticks), so it changes whenever either does.</summary>
    public static string ETagFor(long length, DateTimeOffset lastModified) =>
        string.Create(CultureInfo.InvariantCulture, $"\"{length:x}-{lastModified.UtcTicks:x}\"");
}
