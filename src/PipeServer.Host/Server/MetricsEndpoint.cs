using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using PipeServer.Routing;
using Prometheus;

namespace PipeServer.Server;

// GET /metrics (with --metrics): the server's own meter, plus process and runtime statistics, in the
// Prometheus text format. prometheus-net does the exposition (escaping, histogram buckets, HELP/TYPE,
// content negotiation-free text format 0.0.4); a MeterListener of ours feeds it from the "PipeServer"
// meter, so the names and labels are fixed and documented here rather than derived:
//
//   http.server.request.duration  -> http_server_request_duration_seconds{http_request_method, http_response_status_code, http_route, error_type, url_scheme}
//   http.server.active_requests   -> http_server_active_requests{http_request_method, url_scheme}
//   pipeserver.active_connections -> pipeserver_active_connections
//   pipeserver.connection.duration-> pipeserver_connection_duration_seconds{error_type}
//   pipeserver.rejected_connections -> pipeserver_rejected_connections_total
//   pipeserver.tls.handshakes     -> pipeserver_tls_handshakes_total{tls_protocol_version, error_type} (with TLS, Tls/TlsServer.cs)
//
// Children are cached per label set, so a scrape-enabled server does not allocate per request either.

/// <summary>Serves the Prometheus exposition of one server's metrics.</summary>
public sealed class MetricsEndpoint : IDisposable
{
    private static readonly string[] StatusText = Enumerable.Range(0, 600).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly MeterListener _listener = new();
    private readonly Histogram _requestDuration;
    private readonly Gauge _activeRequests;
    private readonly Gauge _activeConnections;
    private readonly Histogram _connectionDuration;
    private readonly Counter _rejectedConnections;
    private readonly Counter _tlsHandshakes;
    private readonly ConcurrentDictionary<(string, string), Counter.Child> _tlsHandshakeChildren = new();
    private readonly ConcurrentDictionary<(string, string, string, string, string), Histogram.Child> _requestChildren = new();
    private readonly ConcurrentDictionary<(string, string), Gauge.Child> _activeRequestChildren = new();
    private readonly ConcurrentDictionary<string, Histogram.Child> _connectionChildren = new();

    public MetricsEndpoint(ServerMetrics metrics)
    {
        var factory = Prometheus.Metrics.WithCustomRegistry(_registry);
        _requestDuration = factory.CreateHistogram("http_server_request_duration_seconds", "Duration of HTTP server requests.",
            ["http_request_method", "http_response_status_code", "http_route", "error_type", "url_scheme"],
            new HistogramConfiguration { Buckets = ServerMetrics.RequestDurationBuckets });
        _activeRequests = factory.CreateGauge("http_server_active_requests", "Number of active HTTP server requests.", ["http_request_method", "url_scheme"]);
        _activeConnections = factory.CreateGauge("pipeserver_active_connections", "Number of connections that are currently active on the server.");
        _connectionDuration = factory.CreateHistogram("pipeserver_connection_duration_seconds", "The duration of connections on the server.",
            ["error_type"], new HistogramConfiguration { Buckets = ServerMetrics.ConnectionDurationBuckets });
        _rejectedConnections = factory.CreateCounter("pipeserver_rejected_connections_total", "Connections rejected because the server was at its connection limit.");
        _tlsHandshakes = factory.CreateCounter("pipeserver_tls_handshakes_total", "TLS handshakes, by protocol version when they succeeded and by error.type when they failed.",
            ["tls_protocol_version", "error_type"]);
        DotNetStats.Register(_registry);

        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter)) listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<double>(OnDouble);
        _listener.SetMeasurementEventCallback<long>(OnLong);
        _listener.Start();
    }

    public Router Map(Router router) => router.MapGet("/metrics", async (req, res) =>
    {
        res.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await _registry.CollectAndExportAsTextAsync(res.BodyStream, req.Aborted);
    });

    private void OnDouble(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        switch (instrument.Name)
        {
            case "http.server.request.duration":
                string method = "", status = "", route = "", error = "", scheme = "";
                foreach (var tag in tags)
                {
                    switch (tag.Key)
                    {
                        case "http.request.method": method = tag.Value as string ?? ""; break;
                        case "http.response.status_code": status = tag.Value is int s && (uint)s < StatusText.Length ? StatusText[s] : tag.Value?.ToString() ?? ""; break;
                        case "http.route": route = tag.Value as string ?? ""; break;
                        case "error.type": error = tag.Value as string ?? ""; break;
                        case "url.scheme": scheme = tag.Value as string ?? ""; break;
                    }
                }
                _requestChildren.GetOrAdd((method, status, route, error, scheme), static (k, h) => h.WithLabels(k.Item1, k.Item2, k.Item3, k.Item4, k.Item5), _requestDuration).Observe(value);
                break;
            case "pipeserver.connection.duration":
                string errorType = "";
                foreach (var tag in tags) if (tag.Key == "error.type") errorType = tag.Value as string ?? "";
                _connectionChildren.GetOrAdd(errorType, static (k, h) => h.WithLabels(k), _connectionDuration).Observe(value);
                break;
        }
    }

    private void OnLong(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        switch (instrument.Name)
        {
            case "http.server.active_requests":
                string method = "", scheme = "";
                foreach (var tag in tags)
                {
                    if (tag.Key == "http.request.method") method = tag.Value as string ?? "";
                    else if (tag.Key == "url.scheme") scheme = tag.Value as string ?? "";
                }
                _activeRequestChildren.GetOrAdd((method, scheme), static (k, g) => g.WithLabels(k.Item1, k.Item2), _activeRequests).Inc(value);
                break;
            case "pipeserver.active_connections": _activeConnections.Inc(value); break;
            case "pipeserver.rejected_connections": _rejectedConnections.Inc(value); break;
            case "pipeserver.tls.handshakes":
                string version = "", error = "";
                foreach (var tag in tags)
                {
                    if (tag.Key == "tls.protocol.version") version = tag.Value as string ?? "";
                    else if (tag.Key == "error.type") error = tag.Value as string ?? "";
                }
                _tlsHandshakeChildren.GetOrAdd((version, error), static (k, c) => c.WithLabels(k.Item1, k.Item2), _tlsHandshakes).Inc(value);
                break;
        }
    }

    public void Dispose() => _listener.Dispose();
}
