namespace PipeServer.StaticFiles;

// Where this sits: a pure function StaticFileHandler calls when a GET carries a Range field (after the
// conditionals, and only when If-Range allows it). No I/O, no state: the unit tests drive every rule of
// RFC 9110 §14 directly.
//
//   Range: bytes=0-99          first 100 bytes            -> 206, Content-Range: bytes 0-99/LEN
//   Range: bytes=-500          last 500 bytes (suffix)    -> 206
//   Range: bytes=9500-         from 9500 to the end (open)-> 206
//   Range: bytes=0-999999      an end past the length is the last byte
//   Range: bytes=99999-        first-pos at or past LEN   -> 416, Content-Range: bytes */LEN
//   Range: items=0-1           an unknown unit            -> ignored: 200 and the whole file (a MUST, §14.2)
//   Range: bytes=a-b           bad syntax                 -> ignored (§14.2 lets a server ignore a Range it cannot parse)

/// <summary>One satisfiable byte range, both ends inclusive (as Content-Range writes them).</summary>
internal readonly record struct ByteRange(long First, long Last)
{
    public long Length => Last - First + 1;
}

/// <summary>What a Range field asks of a representation of a given length.</summary>
internal enum RangeOutcome
{
    /// <summary>Serve the whole representation with 200: no Range, an unknown unit, bad syntax, or too many ranges.</summary>
    Whole,
    /// <summary>Serve the ranges with 206.</summary>
    Partial,
    /// <summary>Nothing asked for is inside the representation: 416 with <c>Content-Range: bytes */LEN</c>.</summary>
    Unsatisfiable,
}

internal static class ByteRanges
{
    /// <summary>
    /// Parses <paramref name="header"/> against a representation of <paramref name="length"/> bytes. Ranges
    /// that are not satisfiable are dropped (§14.1.1: satisfiable if any one is); the rest are returned in the
    /// order asked. More than <paramref name="maxRanges"/> range specs, or ranges whose lengths add up to more
    /// than <paramref name="length"/> (overlaps), give <see cref="RangeOutcome.Whole"/>: the bound on what one
    /// request can make the server do.
    /// </summary>
    public static RangeOutcome Parse(ReadOnlySpan<char> header, long length, int maxRanges, List<ByteRange> ranges)
    {
        ranges.Clear();
        header = Trim(header);
        int eq = header.IndexOf('=');
        if (eq < 0) return RangeOutcome.Whole;
        if (!header[..eq].Equals("bytes", StringComparison.OrdinalIgnoreCase)) return RangeOutcome.Whole; // unknown unit: ignore
        var set = header[(eq + 1)..];
        int specs = 0;
        long total = 0;
        while (true)
        {
            int comma = set.IndexOf(',');
            var spec = Trim(comma < 0 ? set : set[..comma]);
            set = comma < 0 ? [] : set[(comma + 1)..];
            if (spec.Length > 0) // 1#range-spec allows empty list elements ("0-1, ,2-3"); they count for nothing
            {
                if (++specs > maxRanges) { ranges.Clear(); return RangeOutcome.Whole; }
                if (!TryParseSpec(spec, length, out var range, out bool satisfiable)) { ranges.Clear(); return RangeOutcome.Whole; }
                if (satisfiable)
                {
                    ranges.Add(range);
                    total += range.Length;
                    if (total > length) { ranges.Clear(); return RangeOutcome.Whole; }
                }
            }
            if (comma < 0) break;
        }
        if (specs == 0) return RangeOutcome.Whole; // "bytes=" alone is not a range-set
        return ranges.Count == 0 ? RangeOutcome.Unsatisfiable : RangeOutcome.Partial;
    }

    /// <summary>int-range = first-pos "-" [ last-pos ] / suffix-range = "-" suffix-length. False on bad syntax.</summary>
    private static bool TryParseSpec(ReadOnlySpan<char> spec, long length, out ByteRange range, out bool satisfiable)
    {
        range = default;
        satisfiable = false;
        int dash = spec.IndexOf('-');
        if (dash < 0) return false;
        var firstText = spec[..dash];
        var lastText = spec[(dash + 1)..];
        if (firstText.Length == 0)
        {
            // suffix-range: the last N bytes; N = 0 or an empty representation is not satisfiable (§14.1.3)
            if (!TryParseDigits(lastText, out long suffix)) return false;
            if (suffix == 0 || length == 0) return true;
            range = new ByteRange(Math.Max(0, length - suffix), length - 1);
            satisfiable = true;
            return true;
        }
        if (!TryParseDigits(firstText, out long first)) return false;
        long last = long.MaxValue;
        if (lastText.Length > 0)
        {
            if (!TryParseDigits(lastText, out last)) return false;
            if (last < first) return false; // invalid, not merely unsatisfiable (§14.1.1)
        }
        if (first >= length) return true;
        range = new ByteRange(first, Math.Min(last, length - 1));
        satisfiable = true;
        return true;
    }

    /// <summary>1*DIGIT; more digits than a long holds is bad syntax, not a huge number.</summary>
    private static bool TryParseDigits(ReadOnlySpan<char> text, out long value)
    {
        value = 0;
        if (text.Length is 0 or > 18) return false;
        foreach (char c in text)
        {
            uint digit = (uint)(c - '0');
            if (digit > 9) return false;
            value = value * 10 + digit;
        }
        return true;
    }

    private static ReadOnlySpan<char> Trim(ReadOnlySpan<char> s) => s.Trim([' ', '\t']);
}
