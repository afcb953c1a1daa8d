using Microsoft.Extensions.Logging;
using PipeServer.Http;
using PipeServer.Server;

namespace PipeServer.Connections;

// Where this sits: beside Http1Connection. What every connection of one server reads and never changes (the
// options and the parser limits derived from them, the handler, the lifetime, the logs, the metrics, the
// server's abort token) is one object per server, made by HttpServer, rather than nine fields in each
// connection: ~70 B of every idle keep-alive connection (0.7 MB at 10,000). Immutable; any thread may read it.

/// <summary>The per-server constants an <see cref="Http1Connection"/> works with.</summary>
internal sealed class Http1ConnectionSettings(HttpServerOptions options, RequestHandler app, ServerLifetime lifetime, ILogger logger,
    CancellationToken serverAbort, ServerMetrics? metrics, ILogger? accessLog)
{
    public readonly HttpServerOptions Options = options;
    public readonly HttpParserLimits Limits = new(options.MaxRequestLineSize, options.MaxRequestHeaderCount, options.MaxRequestHeadersTotalSize);
    public readonly RequestHandler App = app;
    public readonly ServerLifetime Lifetime = lifetime;
    public readonly ILogger Logger = logger;
    public readonly CancellationToken ServerAbort = serverAbort;
    public readonly ServerMetrics? Metrics = metrics;
    public readonly ILogger? AccessLog = accessLog;
}
