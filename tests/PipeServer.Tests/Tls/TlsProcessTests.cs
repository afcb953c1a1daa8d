using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Tls;

// HTTPS from outside the process: the real executable with --tls-cert/--tls-key, real signals. The
// in-flight request and the deadline behave as in Lifecycle/ShutdownProcessTests.cs, over TLS; the
// renewal poll runs on its real timer (2 s).
public sealed partial class TlsProcessTests : IDisposable
{
    private readonly TestCertificate _cert = TestCertificate.Create();

    public void Dispose() => _cert.Dispose();

    private Task<ServerProcess> StartAsync(string transport, params string[] args) =>
        ServerProcess.StartOnAsync(transport, ["--tls-cert", _cert.CertPath, "--tls-key", _cert.KeyPath, "--metrics", .. args]);

    [GeneratedRegex(@"^http_server_active_requests\{[^}]*\} (\d+)", RegexOptions.Multiline)]
    private static partial Regex ActiveRequests();

    /// <summary>Polls /metrics over TLS until a request besides the scrape is in its handler.</summary>
    private static async Task WaitForRequestInHandlerAsync(ServerProcess server)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            await using var c = await TlsClient.ConnectAsync(server.Port);
            await c.SendAsync("GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            var r = await c.ReadResponseAsync();
            await c.ClosedCleanlyAsync(); // the scrape's connection is gone (or going) before the caller acts
            if (ActiveRequests().Matches(r.BodyText).Sum(m => long.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)) - 1 >= 1) return;
            if (clock.Elapsed > TimeSpan.FromSeconds(10)) throw new TimeoutException($"the request never reached its handler; output:\n{server.Output}");
            await Task.Delay(10);
        }
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Listens_on_https_and_an_in_flight_request_at_sigterm_completes_with_connection_close_and_exit_0(string transport)
    {
        using var server = await StartAsync(transport);
        Assert.Contains($"Listening on https://127.0.0.1:{server.Port}", server.Output);
        await using var c = await TlsClient.ConnectAsync(server.Port);
        await c.SendAsync("GET /slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n");
        await WaitForRequestInHandlerAsync(server);
        server.Signal(ServerProcess.SIGTERM);
        var r = await c.ReadResponseAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(200, r.Status);
        Assert.Equal("waited 1500 ms\n", r.BodyText);
        Assert.True(r.ConnectionClose);
        Assert.True(await c.ClosedCleanlyAsync());
        Assert.Equal(0, await server.WaitForExitAsync());
        Assert.Contains("connection(s) drained, 0 aborted", server.Output);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task The_deadline_resets_a_long_request_over_tls_and_exits_2(string transport)
    {
        using var server = await StartAsync(transport, "--shutdown-timeout", "0.5");
        await using var c = await TlsClient.ConnectAsync(server.Port);
        await c.SendAsync("GET /slow?ms=30000 HTTP/1.1\r\nHost: a\r\n\r\n");
        await WaitForRequestInHandlerAsync(server);
        var clock = Stopwatch.StartNew();
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(2, await server.WaitForExitAsync());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"exit took {clock.Elapsed}");
        Assert.False(await c.ClosedCleanlyAsync(TimeSpan.FromSeconds(2)), "an aborted TLS connection must be reset, not closed with close_notify");
        // The long request is the one aborted; a scrape's connection may still have been closing at stop-accepting (drained).
        Assert.Matches(@"Shutdown complete: \d+ connection\(s\) drained, 1 aborted", server.Output);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_renewed_certificate_is_served_to_new_connections_within_seconds_and_a_broken_one_is_warned_about(string transport)
    {
        using var server = await StartAsync(transport);
        var first = _cert.Current;
        await using var old = await TlsClient.ConnectAsync(server.Port);
        Assert.True(TestCertificate.Same(old.RemoteCertificate, first));

        // A broken write: the server warns and keeps serving the old pair.
        File.WriteAllText(_cert.CertPath, "-----BEGIN CERTIFICATE-----\ntruncated");
        await server.WaitForOutputAsync("cannot be used", TimeSpan.FromSeconds(10));
        await using (var during = await TlsClient.ConnectAsync(server.Port))
            Assert.True(TestCertificate.Same(during.RemoteCertificate, first));

        var renewed = _cert.Renew();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            await using var c = await TlsClient.ConnectAsync(server.Port);
            if (TestCertificate.Same(c.RemoteCertificate, renewed)) break;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the renewed certificate was not served within 10 s; output:\n{server.Output}");
            await Task.Delay(100);
        }
        // The line is logged after the swap, through the console logger's queue: a handshake can see the new
        // certificate before the line reaches our copy of the output, so it is waited for (bounded), not assumed.
        await server.WaitForOutputAsync("new connections get", TimeSpan.FromSeconds(5));
        await old.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await old.ReadResponseAsync()).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_second_signal_resets_tls_connections_and_exits_3_and_metrics_count_handshakes(string transport)
    {
        using var server = await StartAsync(transport);
        // A plain-HTTP probe and a good handshake, both counted on /metrics.
        await using (var plain = await RawConnection.ConnectAsync(server.Port))
        {
            await plain.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(400, (await plain.ReadResponseAsync()).Status);
        }
        await using var c = await TlsClient.ConnectAsync(server.Port);
        await c.SendAsync("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n");
        var metrics = (await c.ReadResponseAsync()).BodyText;
        Assert.Contains("pipeserver_tls_handshakes_total{tls_protocol_version=\"\",error_type=\"plain_http\"} 1", metrics);
        Assert.Contains("pipeserver_tls_handshakes_total{tls_protocol_version=\"1.3\",error_type=\"\"}", metrics);

        await c.SendAsync("GET /slow?ms=30000 HTTP/1.1\r\nHost: a\r\n\r\n");
        await WaitForRequestInHandlerAsync(server);
        server.Signal(ServerProcess.SIGTERM);
        await server.WaitForOutputAsync("request-close");
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(3, await server.WaitForExitAsync());
        Assert.False(await c.ClosedCleanlyAsync(TimeSpan.FromSeconds(2)), "a forced exit must reset, not close_notify");
    }

    [Fact]
    public async Task A_bad_pair_is_a_clear_message_and_exit_1()
    {
        using (var p = ServerProcess.Run(["--tls-cert", _cert.CertPath]))
        {
            Assert.Equal(1, await p.WaitForExitAsync());
            Assert.Contains("PipeServer: --tls-cert: needs --tls-key", p.Output);
        }
        var (_, otherKey, _) = TestCertificate.Generate();
        var keyPath = Path.Combine(_cert.Directory, "other.pem");
        File.WriteAllText(keyPath, otherKey);
        using (var p = ServerProcess.Run(["--port", "0", "--tls-cert", _cert.CertPath, "--tls-key", keyPath]))
        {
            Assert.Equal(1, await p.WaitForExitAsync());
            Assert.Contains("does not match the certificate", p.Output);
            Assert.DoesNotContain("Listening on", p.Output);
        }
    }
}
