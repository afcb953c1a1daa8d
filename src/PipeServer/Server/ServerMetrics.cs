using System.Diagnostics;
using System.Diagnostics.Metrics;
using PipeServer.Connections;

namespace PipeServer.Server;

// Where this sits: beside the request's journey, not in it. Http1Connection records one duration per
// request; HttpServer records connection counts and durations. Names, units (seconds) and attribute keys
// follow OpenTelemetry's HTTP semantic conventions, and the connection instruments follow Kestrel's
// (kestrel.active_connections, kestrel.connection.duration, kestrel.rejected_connections).
//
// Recording must not allocate on the hot path: attributes go in a TagList (a struct holding up to eight
// tags inline), status codes are pre-boxed once, and methods and routes are constant strings.

/// <summary>The server's System.Diagnostics.Metrics instruments, on a meter named "PipeServer".</summary>
public sealed class ServerMetrics
{
    /// <summary>The name of the <see cref="System.Diagnostics.Metrics.Meter"/> every server instance records on.</summary>
    public const string MeterName = "PipeServer";
    private static readonly object[] BoxedStatus = Enumerable.Range(0, 600).Select(i => (object)i).ToArray();

    private readonly Histogram<double> _requestDuration;
    private readonly UpDownCounter<long> _activeRequests;
    private readonly UpDownCounter<long> _activeConnections;
    private readonly Histogram<double> _connectionDuration;
    private readonly Counter<long> _rejectedConnections;

    /// <summary>
    /// Seconds, 5 ms to 10 s: exactly OpenTelemetry's advised explicit bucket boundaries for
    /// http.server.request.duration (semantic conventions, HTTP metrics), so dashboards built for other
    /// servers' histograms line up. Sub-5 ms requests (most of /plaintext) all land in the first bucket.
    /// </summary>
    public static readonly double[] RequestDurationBuckets = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
    /// <summary>
    /// Seconds, 10 ms to 1 h: Kestrel's advice for kestrel.connection.duration (which stops at 300 s) extended
    /// by 600, 1800 and 3600, because keep-alive connections from a balancer's pool live for many minutes.
    /// </summary>
    public static readonly double[] ConnectionDurationBuckets = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
    /// <summary>error.type for a 5xx answered without an exception: the status code as a string (OpenTelemetry's rule).</summary>
    private static readonly string[] ServerErrorStatus = Enumerable.Range(500, 100).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    internal ServerMetrics()
    {
        Meter = new Meter(MeterName, "1.0");
        _requestDuration = Meter.CreateHistogram<double>("http.server.request.duration", "s", "Duration of HTTP server requests.",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = RequestDurationBuckets });
        _activeRequests = Meter.CreateUpDownCounter<long>("http.server.active_requests", "{request}", "Number of active HTTP server requests.");
        _activeConnections = Meter.CreateUpDownCounter<long>("pipeserver.active_connections", "{connection}", "Number of connections that are currently active on the server.");
        _connectionDuration = Meter.CreateHistogram<double>("pipeserver.connection.duration", "s", "The duration of connections on the server.",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = ConnectionDurationBuckets });
        _rejectedConnections = Meter.CreateCounter<long>("pipeserver.rejected_connections", "{connection}", "Connections rejected because the server was at its connection limit.");
    }

    /// <summary>This server's meter (named <see cref="MeterName"/>): give it to a MeterListener or an exporter.</summary>
    public Meter Meter { get; }

    /// <summary>Whether anything listens to the request instruments (if not, the connection skips even the clock reads).</summary>
    internal bool RequestsObserved => _requestDuration.Enabled || _activeRequests.Enabled;

    /// <param name="method">A known method's name or "_OTHER".</param>
    /// <param name="scheme">url.scheme: the listener's ("http"; "https" once TLS exists).</param>
    internal void RequestStarted(string method, string scheme)
    {
        if (_activeRequests.Enabled) _activeRequests.Add(1, new KeyValuePair<string, object?>("http.request.method", method), new KeyValuePair<string, object?>("url.scheme", scheme));
    }

    /// <summary>
    /// Records one request's duration. <paramref name="wasActive"/> is false for a request refused before its
    /// handler ran (it never counted as active). <paramref name="errorType"/> is the exception type or a
    /// server-side reason; when it is null, a 5xx status becomes the error.type (OpenTelemetry's rule).
    /// </summary>
    internal void RequestStopped(string method, string scheme, int statusCode, string? route, string? errorType, long startTimestamp, bool wasActive = true)
    {
        if (wasActive && _activeRequests.Enabled) _activeRequests.Add(-1, new KeyValuePair<string, object?>("http.request.method", method), new KeyValuePair<string, object?>("url.scheme", scheme));
        if (!_requestDuration.Enabled || startTimestamp == 0) return;
        var tags = new TagList
        {
            { "http.request.method", method },
            { "url.scheme", scheme },
            { "http.response.status_code", (uint)statusCode < BoxedStatus.Length ? BoxedStatus[statusCode] : statusCode },
        };
        if (route is not null) tags.Add("http.route", route);
        errorType ??= statusCode is >= 500 and <= 599 ? ServerErrorStatus[statusCode - 500] : null;
        if (errorType is not null) tags.Add("error.type", errorType);
        _requestDuration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, tags);
    }

    internal void ConnectionStarted()
    {
        if (_activeConnections.Enabled) _activeConnections.Add(1);
    }

    internal void ConnectionStopped(ConnectionEndReason reason, long startTimestamp)
    {
        if (_activeConnections.Enabled) _activeConnections.Add(-1);
        if (!_connectionDuration.Enabled) return;
        var error = ErrorType(reason);
        var elapsed = Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds;
        if (error is null) _connectionDuration.Record(elapsed);
        else _connectionDuration.Record(elapsed, new KeyValuePair<string, object?>("error.type", error));
    }

    internal void ConnectionRejected()
    {
        if (_rejectedConnections.Enabled) _rejectedConnections.Add(1);
    }

    /// <summary>Kestrel-style error.type for a connection end; null for the normal ends.</summary>
    internal static string? ErrorType(ConnectionEndReason reason) => reason switch
    {
        ConnectionEndReason.ClientClosed or ConnectionEndReason.ConnectionCloseRequested or ConnectionEndReason.ServerDrained => null,
        ConnectionEndReason.ClientAborted => "connection_reset",
        ConnectionEndReason.KeepAliveTimeout => "keep_alive_timeout",
        ConnectionEndReason.RequestHeadersTimeout => "request_headers_timeout",
        ConnectionEndReason.RequestBodyTimeout => "min_request_body_data_rate",
        ConnectionEndReason.ResponseTimeout => "min_response_data_rate",
        ConnectionEndReason.BadRequest => "invalid_request",
        ConnectionEndReason.ApplicationError => "app_error",
        ConnectionEndReason.Aborted => "shutdown_deadline",
        ConnectionEndReason.MaxConnectionsReached => "max_connections",
        ConnectionEndReason.UnreadBodyTooLarge => "unread_body_too_large",
        _ => "unknown",
    };

    // Internal, and the type is not IDisposable: the server that made it disposes the meter when it is disposed.
    internal void Dispose() => Meter.Dispose();
}
