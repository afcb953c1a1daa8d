using System.Collections.Frozen;

namespace PipeServer.StaticFiles;

// Where this sits: consulted by StaticFileHandler once per file response. The Content-Type comes from the
// extension alone (no sniffing of the content: a browser must not be talked into running an upload as HTML),
// compared case-insensitively. Text types name their charset: UTF-8 is what a web tree is written in, and a
// missing charset lets a browser guess.

/// <summary>The media type for a file name's extension; unknown extensions are <c>application/octet-stream</c>.</summary>
internal static class ContentTypes
{
    public const string Default = "application/octet-stream";

    private static readonly FrozenDictionary<string, string> ByExtension = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        // documents and code
        [".html"] = "text/html; charset=utf-8", [".htm"] = "text/html; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8", [".mjs"] = "text/javascript; charset=utf-8",
        [".json"] = "application/json", [".map"] = "application/json",
        [".webmanifest"] = "application/manifest+json",
        [".xml"] = "application/xml", [".xhtml"] = "application/xhtml+xml",
        [".txt"] = "text/plain; charset=utf-8", [".md"] = "text/markdown; charset=utf-8",
        [".csv"] = "text/csv; charset=utf-8", [".ics"] = "text/calendar; charset=utf-8",
        [".wasm"] = "application/wasm",
        [".pdf"] = "application/pdf",
        [".rss"] = "application/rss+xml", [".atom"] = "application/atom+xml",
        // images
        [".png"] = "image/png", [".jpg"] = "image/jpeg", [".jpeg"] = "image/jpeg", [".gif"] = "image/gif",
        [".webp"] = "image/webp", [".avif"] = "image/avif", [".svg"] = "image/svg+xml", [".ico"] = "image/x-icon",
        [".bmp"] = "image/bmp", [".tif"] = "image/tiff", [".tiff"] = "image/tiff",
        // fonts
        [".woff"] = "font/woff", [".woff2"] = "font/woff2", [".ttf"] = "font/ttf", [".otf"] = "font/otf",
        // audio and video
        [".mp3"] = "audio/mpeg", [".ogg"] = "audio/ogg", [".oga"] = "audio/ogg", [".wav"] = "audio/wav",
        [".flac"] = "audio/flac", [".m4a"] = "audio/mp4", [".aac"] = "audio/aac", [".opus"] = "audio/opus",
        [".mp4"] = "video/mp4", [".webm"] = "video/webm", [".ogv"] = "video/ogg", [".mov"] = "video/quicktime",
        [".m3u8"] = "application/vnd.apple.mpegurl", [".ts"] = "video/mp2t", [".vtt"] = "text/vtt; charset=utf-8",
        // archives and binaries
        [".zip"] = "application/zip", [".gz"] = "application/gzip", [".tgz"] = "application/gzip",
        [".tar"] = "application/x-tar", [".bz2"] = "application/x-bzip2", [".xz"] = "application/x-xz",
        [".zst"] = "application/zstd", [".7z"] = "application/x-7z-compressed",
        [".bin"] = Default, [".exe"] = Default, [".iso"] = Default,
    }.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);

    /// <summary>The Content-Type for <paramref name="fileName"/> (a name or a path: only the part after the last '.' of the last segment counts).</summary>
    public static string For(ReadOnlySpan<char> fileName)
    {
        int slash = fileName.LastIndexOf('/');
        var name = fileName[(slash + 1)..];
        int dot = name.LastIndexOf('.');
        if (dot <= 0) return Default; // no extension, or a dotfile's whole name (".bashrc" has no extension)
        return ByExtension.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(name[dot..], out var type) ? type : Default;
    }
}
