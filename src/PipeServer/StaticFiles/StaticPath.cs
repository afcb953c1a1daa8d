using System.Runtime.InteropServices;
using System.Text;
using System.Text.Unicode;

namespace PipeServer.StaticFiles;

// Where this sits: the first thing StaticFileHandler does with a request, before any file system call.
// Two steps, both refusing rather than repairing:
//
//   1. MapRequestPath (pure): the raw request path (as sent, percent-escapes and all) → a relative path of
//      plain segments. Decoded exactly once, so "%252e%252e" stays the literal name "%2e%2e" (it can
//      never become ".."). Refused with 400: a dot segment ("." or "..", raw or %2e-encoded), a backslash
//      (raw or %5c), an encoded '/', NUL and every other control character, invalid or overlong UTF-8
//      (%c0%ae is not '.'). Refused with 404 (unless ServeDotFiles): a segment starting with '.'.
//   2. Resolve (file system): the real path of root + relative, every symbolic link followed (realpath(3)),
//      must be the root or under it — the check is on what the kernel will open, not on the string — unless
//      FollowSymlinksOutsideRoot. A link inside the root that lands on a dotfile is refused as one.
//
// What is not closed: a directory higher up swapped for a link between Resolve and the open (TOCTOU; the
// last component is covered by FileOpener's O_NOFOLLOW) by someone who can write under the root. Whoever
// can write there can already publish any file, so it is no escalation.

internal enum PathVerdict : byte { Ok, BadRequest, NotFound }

internal static partial class StaticPath
{
    /// <summary>Longest request path looked at; a longer one is 404 without decoding (PATH_MAX is 4096).</summary>
    internal const int MaxPathBytes = 4096;

    /// <summary>
    /// Step 1. <paramref name="relative"/> is the decoded path without its leading '/', segments joined by
    /// '/', empty segments dropped ("a//b" is "a/b"); <paramref name="trailingSlash"/> says whether the
    /// request named a directory.
    /// </summary>
    public static PathVerdict MapRequestPath(ReadOnlySpan<byte> rawPath, bool serveDotFiles, out string relative, out bool trailingSlash)
    {
        relative = "";
        Span<byte> normal = stackalloc byte[Math.Min(rawPath.Length, MaxPathBytes)];
        var verdict = MapRequestPath(rawPath, serveDotFiles, normal, out int length, out trailingSlash);
        if (verdict == PathVerdict.Ok && length > 0) relative = Encoding.UTF8.GetString(normal[..length]);
        return verdict;
    }

    /// <summary>
    /// Step 1 without a string: the relative path's UTF-8 bytes into <paramref name="relative"/>, which needs
    /// room for min(rawPath.Length, <see cref="MaxPathBytes"/>) bytes; <paramref name="length"/> of them are used.
    /// </summary>
    public static PathVerdict MapRequestPath(ReadOnlySpan<byte> rawPath, bool serveDotFiles, Span<byte> relative, out int length, out bool trailingSlash)
    {
        length = 0;
        trailingSlash = rawPath.Length > 0 && rawPath[^1] == (byte)'/';
        if (rawPath.Length == 0 || rawPath[0] != (byte)'/') return PathVerdict.BadRequest;
        if (rawPath.Length > MaxPathBytes) return PathVerdict.NotFound;

        Span<byte> decoded = stackalloc byte[rawPath.Length];
        int n = 0;
        for (int i = 0; i < rawPath.Length; i++)
        {
            byte b = rawPath[i];
            bool escaped = false;
            if (b == (byte)'%')
            {
                if (i + 2 >= rawPath.Length || !TryHex(rawPath[i + 1], rawPath[i + 2], out b)) return PathVerdict.BadRequest;
                i += 2;
                escaped = true;
                if (b == (byte)'/') return PathVerdict.BadRequest; // an encoded separator: one name or two? Neither.
            }
            if (b < 0x20 || b == 0x7F || b == (byte)'\\') return PathVerdict.BadRequest;
            if (!escaped && b >= 0x80) return PathVerdict.BadRequest; // the parser admits only ASCII raw; be explicit
            decoded[n++] = b;
        }
        decoded = decoded[..n];
        // Strict UTF-8: overlong forms (C0 AE for '.'), surrogates and truncated sequences are invalid.
        if (!Utf8.IsValid(decoded)) return PathVerdict.BadRequest;

        // The segments again, empty ones dropped, into the caller's buffer: nothing allocated, per segment or at the end.
        var normal = relative;
        var rest = decoded[1..];
        while (rest.Length > 0)
        {
            int slash = rest.IndexOf((byte)'/');
            var segment = slash < 0 ? rest : rest[..slash];
            rest = slash < 0 ? [] : rest[(slash + 1)..];
            if (segment.Length == 0) continue;
            if (segment.SequenceEqual("."u8) || segment.SequenceEqual(".."u8)) return PathVerdict.BadRequest;
            if (segment[0] == (byte)'.' && !serveDotFiles) return PathVerdict.NotFound;
            if (length > 0) normal[length++] = (byte)'/';
            segment.CopyTo(normal[length..]);
            length += segment.Length;
        }
        return PathVerdict.Ok;
    }

    /// <summary>The real path of <paramref name="path"/> (every link followed; it must exist); null when it does not resolve.</summary>
    public static string? RealPath(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            // No realpath(3): follow a final link, which is as far as the managed API goes.
            try
            {
                var full = Path.GetFullPath(path);
                if (!File.Exists(full) && !Directory.Exists(full)) return null;
                var target = new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true);
                return target?.FullName ?? full;
            }
            catch (IOException) { return null; }
            catch (UnauthorizedAccessException) { return null; }
        }
        // realpath(3) writes into our PATH_MAX buffer (one per thread, reused): no native allocation to free, and
        // when the answer is the path we asked about (no link on the way, the common case) no new string either.
        var buffer = t_realPathBuffer ??= new byte[PathMax];
        if (realpath(path, buffer) == 0) return null; // ENOENT, ENOTDIR, EACCES, ELOOP, ENAMETOOLONG: all "not here"
        var answer = buffer.AsSpan(0, Math.Max(0, buffer.AsSpan().IndexOf((byte)0)));
        return SameUtf8(path, answer) ? path : Encoding.UTF8.GetString(answer);
    }

    /// <summary>PATH_MAX on Linux: realpath(3) with a buffer needs at least this many bytes.</summary>
    private const int PathMax = 4096;
    [ThreadStatic] private static byte[]? t_realPathBuffer;

    private static bool SameUtf8(string text, ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length < text.Length || utf8.Length > 3 * text.Length) return false;
        byte[]? rented = null;
        Span<byte> encoded = utf8.Length <= 1024 ? stackalloc byte[1024] : (rented = System.Buffers.ArrayPool<byte>.Shared.Rent(3 * text.Length));
        try
        {
            return Encoding.UTF8.TryGetBytes(text, encoded, out int written) && encoded[..written].SequenceEqual(utf8);
        }
        finally
        {
            if (rented is not null) System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Step 2. The real path of <paramref name="realRoot"/>/<paramref name="relative"/>, or null (404) when it
    /// does not exist, resolves outside the root (and that is not allowed), or lands on a dotfile.
    /// </summary>
    public static string? Resolve(string realRoot, string relative, bool followOutside, bool serveDotFiles)
    {
        var candidate = relative.Length == 0 ? realRoot : realRoot + "/" + relative;
        var real = RealPath(candidate);
        if (real is null) return null;
        if (real == realRoot) return real;
        bool inside = real.Length > realRoot.Length && real.StartsWith(realRoot, StringComparison.Ordinal) &&
                      (real[realRoot.Length] == Path.DirectorySeparatorChar || realRoot.EndsWith(Path.DirectorySeparatorChar));
        if (!inside) return followOutside ? real : null;
        if (!serveDotFiles && real.AsSpan(realRoot.Length).Contains("/.", StringComparison.Ordinal)) return null;
        return real;
    }

    private static bool TryHex(byte high, byte low, out byte value)
    {
        int h = HexValue(high), l = HexValue(low);
        value = (byte)(h << 4 | l);
        return h >= 0 && l >= 0;
    }

    private static int HexValue(byte b) => (uint)(b - '0') <= 9 ? b - '0' : (uint)((b | 0x20) - 'a') <= 5 ? (b | 0x20) - 'a' + 10 : -1;

    [LibraryImport("libc", EntryPoint = "realpath", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint realpath(string path, [Out] byte[] resolved);
}
