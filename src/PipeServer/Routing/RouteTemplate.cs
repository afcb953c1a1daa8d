using System.Text;
using PipeServer.Http;

namespace PipeServer.Routing;

// Where this sits: inside the router, between the connection and the application. A template such as
// "/users/{id}" or "/files/{*rest}" is parsed once, when it is mapped; at request time Router tries the
// templates in precedence order against the raw path bytes, after the literal table (which stays a plain
// dictionary lookup, so a literal route never pays for templates). Matching allocates only the strings of
// a successful match's values.

/// <summary>
/// A parsed route template: literal segments, <c>{name}</c> parameters (one non-empty segment each) and at
/// most one <c>{*name}</c> catch-all, which must be last and matches the rest of the path (possibly empty).
/// </summary>
internal sealed class RouteTemplate
{
    private enum Kind : byte { Literal = 0, Parameter = 1, CatchAll = 2 }

    private readonly record struct Segment(Kind Kind, string Text, byte[] Utf8);

    /// <summary>More segments than this in a request path cannot match a template (a bound on the stack buffer).</summary>
    internal const int MaxSegments = 32;

    private readonly Segment[] _segments;

    public string Text { get; }
    public bool HasParameters { get; }
    private bool EndsWithCatchAll => _segments.Length > 0 && _segments[^1].Kind == Kind.CatchAll;

    private RouteTemplate(string text, Segment[] segments)
    {
        Text = text;
        _segments = segments;
        HasParameters = segments.Any(s => s.Kind != Kind.Literal);
    }

    /// <summary>Parses a template; a malformed one is an <see cref="ArgumentException"/> naming what is wrong.</summary>
    public static RouteTemplate Parse(string template)
    {
        if (!template.StartsWith('/')) throw new ArgumentException($"A route path starts with '/': '{template}'.", nameof(template));
        var parts = template.Length == 1 ? [] : template[1..].Split('/');
        if (parts.Length > MaxSegments) throw new ArgumentException($"A route has at most {MaxSegments} segments: '{template}'.", nameof(template));
        var segments = new Segment[parts.Length];
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (int i = 0; i < parts.Length; i++)
        {
            var part = parts[i];
            if (part.StartsWith('{') && part.EndsWith('}'))
            {
                bool catchAll = part.Length > 2 && part[1] == '*';
                var name = part[(catchAll ? 2 : 1)..^1];
                if (name.Length == 0 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
                    throw new ArgumentException($"A route parameter name is letters, digits or '_': '{part}' in '{template}'.", nameof(template));
                if (!names.Add(name)) throw new ArgumentException($"Route parameter '{name}' appears twice in '{template}'.", nameof(template));
                if (catchAll && i != parts.Length - 1) throw new ArgumentException($"A catch-all parameter must be the last segment: '{template}'.", nameof(template));
                segments[i] = new Segment(catchAll ? Kind.CatchAll : Kind.Parameter, name, []);
            }
            else
            {
                if (part.Contains('{') || part.Contains('}'))
                    throw new ArgumentException($"A segment is either literal text or one whole '{{name}}' parameter: '{part}' in '{template}'.", nameof(template));
                if (part.Length == 0 && i != parts.Length - 1)
                    throw new ArgumentException($"A route has no empty segments: '{template}'.", nameof(template));
                segments[i] = new Segment(Kind.Literal, part, Encoding.UTF8.GetBytes(part));
            }
        }
        return new RouteTemplate(template, segments);
    }

    /// <summary>
    /// Precedence, segment by segment from the left: a literal segment beats a parameter, which beats a
    /// catch-all. Negative when this template is tried before <paramref name="other"/>.
    /// </summary>
    public int ComparePrecedence(RouteTemplate other)
    {
        int n = Math.Min(_segments.Length, other._segments.Length);
        for (int i = 0; i < n; i++)
        {
            int c = _segments[i].Kind.CompareTo(other._segments[i].Kind);
            if (c != 0) return c;
        }
        // Same kinds over the common prefix: the longer one is the more specific.
        return other._segments.Length.CompareTo(_segments.Length);
    }

    /// <summary>True when both match exactly the same paths (same shape, same literals): mapping both would be ambiguous.</summary>
    public bool IsEquivalentTo(RouteTemplate other)
    {
        if (_segments.Length != other._segments.Length) return false;
        for (int i = 0; i < _segments.Length; i++)
        {
            var (a, b) = (_segments[i], other._segments[i]);
            if (a.Kind != b.Kind || (a.Kind == Kind.Literal && !string.Equals(a.Text, b.Text, StringComparison.Ordinal))) return false;
        }
        return true;
    }

    /// <summary>
    /// Matches the raw (still percent-encoded) path, split into <paramref name="segments"/> ranges of
    /// <paramref name="rawPath"/> (without the leading '/'). On a match, adds the values to <paramref name="values"/>.
    /// </summary>
    public bool TryMatch(ReadOnlySpan<byte> rawPath, ReadOnlySpan<Range> segments, RouteValues values)
    {
        bool catchAll = EndsWithCatchAll;
        int fixedCount = catchAll ? _segments.Length - 1 : _segments.Length;
        if (catchAll ? segments.Length < fixedCount : segments.Length != fixedCount) return false;
        for (int i = 0; i < fixedCount; i++)
        {
            var template = _segments[i];
            var raw = rawPath[segments[i]];
            if (template.Kind == Kind.Literal ? !LiteralEquals(template.Utf8, raw) : raw.Length == 0) return false;
        }
        // Matched: only now are strings made.
        for (int i = 0; i < fixedCount; i++)
            if (_segments[i].Kind == Kind.Parameter) values.Add(_segments[i].Text, DecodeSegment(rawPath[segments[i]]));
        if (catchAll)
        {
            // The rest of the path, decoded as HttpRequest.Path is ("%2F" stays encoded, so it cannot be taken for a separator).
            var rest = segments.Length > fixedCount ? rawPath[segments[fixedCount].Start.Value..] : [];
            values.Add(_segments[^1].Text, DecodeSegment(rest, keepSlashEscaped: true));
        }
        return true;
    }

    /// <summary>Splits "/a/b/c" into ranges of "a", "b", "c"; false when there are more than <see cref="MaxSegments"/>.</summary>
    public static bool TrySplit(ReadOnlySpan<byte> rawPath, Span<Range> segments, out int count)
    {
        count = 0;
        if (rawPath.Length <= 1) return true; // "/" has no segments
        int start = 1;
        while (true)
        {
            if (count == segments.Length) return false;
            int slash = rawPath[start..].IndexOf((byte)'/');
            int end = slash < 0 ? rawPath.Length : start + slash;
            segments[count++] = new Range(start, end);
            if (slash < 0) return true;
            start = end + 1;
        }
    }

    private static bool LiteralEquals(byte[] literal, ReadOnlySpan<byte> raw)
    {
        if (raw.IndexOf((byte)'%') < 0) return raw.SequenceEqual(literal);
        if (raw.Length > 1024) return false;
        Span<byte> decoded = stackalloc byte[raw.Length];
        int n = PercentDecode(raw, decoded, keepSlashEscaped: false);
        return n >= 0 && decoded[..n].SequenceEqual(literal);
    }

    /// <summary>
    /// A segment's value, percent-decoded as UTF-8. Within one segment a "%2F" is data, not a separator, so a
    /// parameter's value gets it decoded; the catch-all keeps it encoded, like <see cref="HttpRequest.Path"/>.
    /// The head validator has already refused malformed escapes and invalid UTF-8.
    /// </summary>
    private static string DecodeSegment(ReadOnlySpan<byte> raw, bool keepSlashEscaped = false)
    {
        if (raw.IndexOf((byte)'%') < 0) return Encoding.UTF8.GetString(raw);
        var buffer = raw.Length <= 1024 ? stackalloc byte[raw.Length] : new byte[raw.Length];
        int n = PercentDecode(raw, buffer, keepSlashEscaped);
        return n < 0 ? Encoding.UTF8.GetString(raw) : Encoding.UTF8.GetString(buffer[..n]);
    }

    private static int PercentDecode(ReadOnlySpan<byte> raw, Span<byte> destination, bool keepSlashEscaped)
    {
        int n = 0;
        for (int i = 0; i < raw.Length; i++)
        {
            if (raw[i] != (byte)'%') { destination[n++] = raw[i]; continue; }
            if (i + 2 >= raw.Length || !IsHex(raw[i + 1]) || !IsHex(raw[i + 2])) return -1;
            byte decoded = (byte)(HexValue(raw[i + 1]) << 4 | HexValue(raw[i + 2]));
            if (decoded == 0 || (keepSlashEscaped && decoded == (byte)'/')) { destination[n++] = raw[i]; continue; }
            destination[n++] = decoded;
            i += 2;
        }
        return n;
    }

    private static bool IsHex(byte b) => (uint)(b - '0') <= 9 || (uint)((b | 0x20) - 'a') <= 5;
    private static int HexValue(byte b) => (uint)(b - '0') <= 9 ? b - '0' : (b | 0x20) - 'a' + 10;
}
