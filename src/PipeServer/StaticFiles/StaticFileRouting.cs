using PipeServer.Routing;

namespace PipeServer.StaticFiles;

// Where this sits: how an embedder puts files into a route table beside its own endpoints (the executable's
// --root uses ProbesThenFiles instead, so that it does not depend on templates). One catch-all route per
// mount point; the router's precedence (literal, then parameter, then catch-all) keeps the embedder's own
// routes in front of it.

/// <summary>Mounts a <see cref="StaticFileHandler"/> in a <see cref="PipeServer.Routing.Router"/>.</summary>
public static class StaticFileRouting
{
    /// <summary>
    /// Serves <see cref="StaticFileOptions.Root"/> under <paramref name="prefix"/> ("/" for the whole path
    /// space, or "/static" to serve <c>/static/app.js</c> from <c>ROOT/app.js</c>) for GET and HEAD. Other
    /// methods get the router's 405. Throws as <see cref="StaticFileHandler"/>'s constructor does for a bad root.
    /// </summary>
    public static Router MapStaticFiles(this Router router, string prefix, StaticFileOptions options)
    {
        if (prefix.Length == 0 || prefix[0] != '/' || (prefix.Length > 1 && prefix[^1] == '/') || prefix.Contains('{') || prefix.Contains("//", StringComparison.Ordinal))
            throw new ArgumentException("A static-file prefix is \"/\" or \"/name[/name...]\" without a trailing slash or parameters.", nameof(prefix));
        int segments = prefix == "/" ? 0 : prefix.Count(c => c == '/');
        var handler = new StaticFileHandler(options, segments);
        return router.MapGet((prefix == "/" ? "" : prefix) + "/{*file}", handler.HandleAsync);
    }
}
