using System.Diagnostics.Metrics;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

// Issue 10, "Metrics": url.scheme on the request instruments, error.type = the status code for a 5xx answered
// without an exception (OpenTelemetry's HTTP semantic conventions), the convention's advised duration
// buckets exactly, and connection-duration buckets that reach past 300 s.
public class MetricsConventionTests
{
    /// <summary>OpenTelemetry semantic conventions, HTTP metrics, http.server.request.duration: "explicit bucket boundaries".</summary>
    private static readonly double[] OpenTelemetryAdvice = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Request_duration_buckets_are_exactly_the_conventions_advice(string transport)
    {
        Assert.Equal(OpenTelemetryAdvice, ServerMetrics.RequestDurationBuckets);
        await using var server = await TestServer.StartAsync(transport);
        using var recorder = new MeasurementRecorder(server.Server.Metrics.Meter);
        var histogram = Assert.IsType<Histogram<double>>(recorder.Instruments["http.server.request.duration"]);
        Assert.Equal(OpenTelemetryAdvice, histogram.Advice!.HistogramBucketBoundaries!);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Connection_duration_buckets_reach_an_hour(string transport)
    {
        Assert.True(ServerMetrics.ConnectionDurationBuckets[^1] >= 3600, $"last bucket {ServerMetrics.ConnectionDurationBuckets[^1]} s");
        Assert.Contains(600.0, ServerMetrics.ConnectionDurationBuckets); // between 300 s and an hour too
        Assert.Equal(ServerMetrics.ConnectionDurationBuckets.Order(), ServerMetrics.ConnectionDurationBuckets);
        await using var server = await TestServer.StartAsync(transport);
        using var recorder = new MeasurementRecorder(server.Server.Metrics.Meter);
        var histogram = Assert.IsType<Histogram<double>>(recorder.Instruments["pipeserver.connection.duration"]);
        Assert.Equal(ServerMetrics.ConnectionDurationBuckets, histogram.Advice!.HistogramBucketBoundaries!);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Request_instruments_carry_url_scheme_and_5xx_without_exception_gets_its_status_as_error_type(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: r => r
            .MapGet("/unavailable", (req, res) => { res.StatusCode = 503; return ValueTask.CompletedTask; })
            .MapGet("/gateway", (req, res) => { res.StatusCode = 502; return ValueTask.CompletedTask; })
            .MapGet("/throws", (req, res) => throw new InvalidOperationException("boom")));
        using var recorder = new MeasurementRecorder(server.Server.Metrics.Meter);
        await using (var c = await server.ConnectAsync())
        {
            foreach (var path in new[] { "/plaintext", "/unavailable", "/gateway" })
            {
                await c.SendAsync($"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
                await c.ReadResponseAsync();
            }
            await c.SendAsync("GET /throws HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(500, (await c.ReadResponseAsync()).Status);
        }
        await server.WaitForConnectionCountAsync(0);

        var durations = recorder.Of("http.server.request.duration");
        Assert.Equal(4, durations.Count);
        Assert.All(durations, d => Assert.Equal("http", d.Tags.GetValueOrDefault("url.scheme")));
        Assert.All(recorder.Of("http.server.active_requests"), d => Assert.Equal("http", d.Tags.GetValueOrDefault("url.scheme")));
        Assert.False(Assert.Single(durations, d => Equals(d.Tags["http.response.status_code"], 200)).Tags.ContainsKey("error.type"));
        Assert.Equal("503", Assert.Single(durations, d => Equals(d.Tags["http.response.status_code"], 503)).Tags["error.type"]);
        Assert.Equal("502", Assert.Single(durations, d => Equals(d.Tags["http.response.status_code"], 502)).Tags["error.type"]);
        // With an exception, the exception's type stays the error.type (the convention's first choice).
        Assert.Equal(typeof(InvalidOperationException).FullName, Assert.Single(durations, d => Equals(d.Tags["http.response.status_code"], 500)).Tags["error.type"]);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task The_prometheus_exposition_has_a_url_scheme_label(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, routes: r => r
            .MapGet("/unavailable", (req, res) => { res.StatusCode = 503; return ValueTask.CompletedTask; }));
        using var endpoint = new MetricsEndpoint(server.Server.Metrics);
        endpoint.Map(server.Router);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET /unavailable HTTP/1.1\r\nHost: a\r\n\r\n");
        await c.ReadResponseAsync();
        await c.SendAsync("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        var text = (await c.ReadResponseAsync()).BodyText;
        Assert.Contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"503\",http_route=\"/unavailable\",error_type=\"503\",url_scheme=\"http\"} 1", text);
        Assert.Contains("http_server_active_requests{http_request_method=\"GET\",url_scheme=\"http\"} 1", text);
    }
}
