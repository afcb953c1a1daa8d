using PipeServer.Http;

namespace PipeServer.StaticFiles;

// Where this sits: between the connection and the application, when the executable serves files (--root).
// A few exact paths (/healthz, /readyz, /metrics) go to the router that holds them, and every other request to
// the file handler — so an orchestrator's probes keep working whatever the served tree contains. It matches
// the raw path bytes against a short list (no string per request) and knows nothing of route templates.

/// <summary>Requests for <paramref name="paths"/> go to <paramref name="routes"/>; everything else to <paramref name="files"/>.</summary>
public sealed class ProbesThenFiles(IEnumerable<string> paths, RequestHandler routes, RequestHandler files)
{
    private readonly byte[][] _paths = paths.Select(p => System.Text.Encoding.ASCII.GetBytes(p)).ToArray();

    public ValueTask HandleAsync(HttpRequest request, HttpResponse response)
    {
        var raw = request.RawPath;
        foreach (var path in _paths)
            if (raw.SequenceEqual(path)) return routes(request, response);
        return files(request, response);
    }
}
