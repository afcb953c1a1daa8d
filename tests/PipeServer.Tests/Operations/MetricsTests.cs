using System.Diagnostics.Metrics;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

public class MetricsTests
{
    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Instruments_follow_the_semantic_conventions_after_known_traffic(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        using var recorder = new MeasurementRecorder(server.Server.Metrics.Meter);
        await using (var c = await server.ConnectAsync())
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi");
            for (int i = 0; i < 4; i++) await c.ReadResponseAsync();
        }
        await using (var bad = await server.ConnectAsync())
        {
            await bad.SendAsync("GET / HTTP/1.1\n\n");
            await bad.ReadResponseAsync();
        }
        await server.WaitForConnectionCountAsync(0);

        var durations = recorder.Of("http.server.request.duration");
        Assert.Equal(5, durations.Count);
        Assert.All(durations, d => Assert.InRange(d.Value, 0, 5)); // seconds, not milliseconds
        var plaintext = durations.Where(d => d.Tags.GetValueOrDefault("http.route") as string == "/plaintext").ToList();
        Assert.Equal(2, plaintext.Count);
        Assert.All(plaintext, d => { Assert.Equal("GET", d.Tags["http.request.method"]); Assert.Equal(200, d.Tags["http.response.status_code"]); });
        var notFound = Assert.Single(durations, d => Equals(d.Tags["http.response.status_code"], 404));
        Assert.False(notFound.Tags.ContainsKey("http.route"));
        Assert.Single(durations, d => Equals(d.Tags["http.response.status_code"], 400) && d.Tags["error.type"] as string == "invalid_request");

        Assert.Equal(0, recorder.Of("http.server.active_requests").Sum(m => m.Value));
        Assert.Equal(0, recorder.Of("pipeserver.active_connections").Sum(m => m.Value));
        Assert.Equal(4, recorder.Of("pipeserver.active_connections").Count); // +1 and -1 for each of two connections
        var connections = recorder.Of("pipeserver.connection.duration");
        Assert.Equal(2, connections.Count);
        Assert.Single(connections, m => m.Tags.TryGetValue("error.type", out var e) && (string?)e == "invalid_request");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Rejected_connections_are_counted(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxConnections = 1 });
        using var recorder = new MeasurementRecorder(server.Server.Metrics.Meter);
        await using var a = await server.ConnectAsync();
        await server.WaitForConnectionCountAsync(1);
        await using var b = await server.ConnectAsync();
        Assert.Equal(503, (await b.ReadResponseAsync()).Status);
        Assert.Equal(1, recorder.Of("pipeserver.rejected_connections").Sum(m => m.Value));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Metrics_endpoint_serves_the_prometheus_text_format(string transport)
    {
        await using var server = await TestServer.StartAsync(transport);
        using var endpoint = new MetricsEndpoint(server.Server.Metrics);
        endpoint.Map(server.Router);
        await using var c = await server.ConnectAsync();
        for (int i = 0; i < 3; i++)
        {
            await c.SendAsync("GET /json HTTP/1.1\r\nHost: a\r\n\r\n");
            await c.ReadResponseAsync();
        }
        await c.SendAsync("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        Assert.StartsWith("text/plain; version=0.0.4", r.Header("Content-Type"));
        var text = r.BodyText;
        Assert.Contains("# TYPE http_server_request_duration_seconds histogram", text);
        Assert.Contains("http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/json\",error_type=\"\",url_scheme=\"http\"} 3", text);
        Assert.Contains("http_server_active_requests{http_request_method=\"GET\",url_scheme=\"http\"} 1", text); // the scrape itself is in flight
        Assert.Contains("pipeserver_active_connections 1", text);
        Assert.Contains("pipeserver_rejected_connections_total 0", text);
        Assert.Contains("process_cpu_seconds_total", text);
    }
}
