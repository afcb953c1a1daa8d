namespace PipeServer.StaticFiles;

// Where this sits: the application layer. These options configure StaticFileHandler, the RequestHandler that
// answers GET and HEAD from a directory (the executable's --root). Every default is the safe one: an operator
// turns a risk on by name, never off.

/// <summary>How <see cref="StaticFileHandler"/> serves a directory. Immutable; every default is the safe choice.</summary>
public sealed record StaticFileOptions
{
    /// <summary>The directory served. Must exist and be readable; resolved to its real path (symbolic links followed) once, at construction.</summary>
    public required string Root { get; init; }

    /// <summary>The file served for a request to a directory (with its trailing slash). Default <c>index.html</c>; null serves none.</summary>
    public string? IndexFile { get; init; } = "index.html";

    /// <summary>List a directory that has no index file (an HTML page of its entries). Default off: a directory without an index is 404.</summary>
    public bool DirectoryListing { get; init; }

    /// <summary>Serve files and directories whose name starts with '.' (<c>.git/</c>, <c>.env</c>). Default off: they are 404.</summary>
    public bool ServeDotFiles { get; init; }

    /// <summary>Follow symbolic links whose target is outside <see cref="Root"/>. Default off: such a link is 404 (links inside the root are followed).</summary>
    public bool FollowSymlinksOutsideRoot { get; init; }

    /// <summary>
    /// The most ranges one request may ask for, 1 to 1000 (default 16). A request for more (or for ranges that
    /// overlap to more bytes than the file holds) gets the whole file with 200, as RFC 9110 §14.2 allows: a
    /// long list of tiny ranges costs the server far more than it costs the client.
    /// </summary>
    public int MaxRanges { get; init; } = 16;

    /// <summary>The Cache-Control value sent with every file, or null for none (default null: caches revalidate with the ETag).</summary>
    public string? CacheControl { get; init; }

    internal void Validate()
    {
        if (string.IsNullOrEmpty(Root)) throw new ArgumentException("StaticFileOptions.Root is required.");
        if (MaxRanges is < 1 or > 1000) throw new ArgumentException("StaticFileOptions.MaxRanges must be 1 to 1000.");
        if (IndexFile is { } index && (index.Length == 0 || index.Contains('/') || index.Contains('\\') || index is "." or ".."))
            throw new ArgumentException("StaticFileOptions.IndexFile must be a plain file name.");
    }
}
