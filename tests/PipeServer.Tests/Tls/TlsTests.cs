using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using PipeServer.Connections;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using PipeServer.Tls;
using Xunit;

namespace PipeServer.Tests.Tls;

// HTTPS in-process, on every transport: a certificate made in the test (Infrastructure/TestCertificate.cs),
// the server's TlsConnection between the transport and Http1Connection, real TLS clients (SslStream,
// HttpClient, curl, openssl s_client) on loopback. What a client sees is checked at the byte level where
// it matters: no plaintext on a TLS socket, close_notify before the FIN, a clean FIN before a handshake.
public sealed class TlsTests : IDisposable
{
    private readonly TestCertificate _cert = TestCertificate.Create();

    public void Dispose() => _cert.Dispose();

    private Task<TestServer> StartAsync(string transport, Func<HttpServerOptions, HttpServerOptions>? configure = null) =>
        TestServer.StartAsync(transport, o =>
        {
            o = o with { Tls = new TlsOptions(_cert.CertPath, _cert.KeyPath) { ReloadInterval = TimeSpan.Zero } }; // no timer: tests poll by hand
            return configure?.Invoke(o) ?? o;
        }, routes: r => r.MapGet("/scheme", (req, res) => res.WriteTextAsync(req.Scheme)));

    /// <summary>Counts pipeserver.tls.handshakes of one server by outcome ("1.2", "1.3", or the error.type).</summary>
    private sealed class Handshakes : IDisposable
    {
        private readonly MeterListener _listener = new();
        public ConcurrentDictionary<string, int> Counts { get; } = new();

        public Handshakes(Meter meter)
        {
            _listener.InstrumentPublished = (i, l) => { if (ReferenceEquals(i.Meter, meter) && i.Name == "pipeserver.tls.handshakes") l.EnableMeasurementEvents(i); };
            _listener.SetMeasurementEventCallback<long>((_, v, tags, _) =>
            {
                string key = "?";
                foreach (var t in tags) if (t.Key is "error.type" or "tls.protocol.version") key = (string)t.Value!;
                Counts.AddOrUpdate(key, (int)v, (_, c) => c + (int)v);
            });
            _listener.Start();
        }

        public Task WaitForAsync(string outcome) => TestServer.WaitUntilAsync(() => Counts.ContainsKey(outcome), $"a handshake counted as {outcome} (have {string.Join(", ", Counts)})");
        public void Dispose() => _listener.Dispose();
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task HttpClient_gets_200_over_http11_and_the_handler_sees_https(string transport)
    {
        await using var server = await StartAsync(transport);
        using var handler = new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback = (_, c, _, _) => TestCertificate.Same(c, _cert.Current) },
        };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        using var response = await client.GetAsync($"https://localhost:{server.Port}/scheme");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version11, response.Version);
        Assert.Equal("https", await response.Content.ReadAsStringAsync());
        // Keep-alive: a second request on the same pool goes over the same TLS connection.
        using var again = await client.GetAsync($"https://localhost:{server.Port}/plaintext");
        Assert.Equal("Hello, World!", await again.Content.ReadAsStringAsync());
        Assert.Equal(1, server.Server.TotalConnections);
        Assert.Equal("https://127.0.0.1:" + server.Port, Assert.Single(server.Server.Listeners).Url);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Alpn_picks_http11_when_the_client_offers_h2_first(string transport)
    {
        await using var server = await StartAsync(transport);
        await using var c = await TlsClient.ConnectAsync(server.Port, alpn: [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11]);
        Assert.Equal(SslApplicationProtocol.Http11, c.Stream.NegotiatedApplicationProtocol);
        Assert.True(TestCertificate.Same(c.RemoteCertificate, _cert.Current));
        await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await c.ReadResponseAsync()).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Tls12_and_tls13_are_both_served(string transport)
    {
        await using var server = await StartAsync(transport);
        using var handshakes = new Handshakes(server.Server.Metrics.Meter);
        foreach (var (protocol, name) in new[] { (SslProtocols.Tls12, "1.2"), (SslProtocols.Tls13, "1.3") })
        {
            await using var c = await TlsClient.ConnectAsync(server.Port, protocol);
            Assert.Equal(protocol, c.Stream.SslProtocol);
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal("Hello, World!", (await c.ReadResponseAsync()).BodyText);
            await handshakes.WaitForAsync(name);
        }
    }

    [TheoryRequiringCommand("curl", "curl"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Curl_with_cacert_gets_200_over_http11(string transport)
    {
        await using var server = await StartAsync(transport);
        var (code, stdout, stderr) = await Tools.RunAsync("curl", "-sS", "--cacert", _cert.CertPath, "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
            $"https://localhost:{server.Port}/plaintext");
        Assert.True(code == 0, $"curl exited {code}: {stderr}");
        Assert.Equal("200 1.1", stdout.Trim());
    }

    public static TheoryData<string> OldProtocols => new() { "-tls1", "-tls1_1" };

    public static IEnumerable<object?[]> OldProtocolsOnEveryTransport => TransportData.Cross(typeof(TlsTests), nameof(OldProtocols));

    [TheoryRequiringCommand("openssl", "openssl"), MemberData(nameof(OldProtocolsOnEveryTransport))]
    public async Task Tls10_and_tls11_are_refused(string flag, string transport)
    {
        await using var server = await StartAsync(transport);
        using var handshakes = new Handshakes(server.Server.Metrics.Meter);
        // SECLEVEL=0: OpenSSL 3 will not even offer TLS 1.0/1.1 otherwise, and the test would prove nothing
        // about the server. Then the server alone refuses them.
        var (code, stdout, stderr) = await Tools.RunAsync("openssl", "s_client", "-connect", $"127.0.0.1:{server.Port}", flag, "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost");
        Assert.NotEqual(0, code);
        Assert.DoesNotContain("BEGIN CERTIFICATE", stdout); // no handshake got as far as the certificate
        await handshakes.WaitForAsync("handshake");
        Assert.False(handshakes.Counts.ContainsKey("1.2") || handshakes.Counts.ContainsKey("1.3"));
        Assert.Contains("alert", stderr + stdout, StringComparison.OrdinalIgnoreCase);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_silent_client_is_closed_by_the_header_timeout_without_a_byte(string transport)
    {
        await using var server = await StartAsync(transport, o => o with { RequestHeaderTimeout = TimeSpan.FromSeconds(1) });
        using var handshakes = new Handshakes(server.Server.Metrics.Meter);
        using var ends = server.WatchConnectionEnds();
        await using var c = await server.ConnectAsync();
        var clock = Stopwatch.StartNew();
        Assert.Empty(await c.ReadToEndAsync(TimeSpan.FromSeconds(6)));
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(800), TimeSpan.FromSeconds(4));
        await ends.AssertNextAsync(ConnectionEndReason.RequestHeadersTimeout);
        await handshakes.WaitForAsync("timeout");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_handshake_stalled_half_way_is_closed_by_the_header_timeout(string transport)
    {
        await using var server = await StartAsync(transport, o => o with { RequestHeaderTimeout = TimeSpan.FromSeconds(1) });
        using var handshakes = new Handshakes(server.Server.Metrics.Meter);
        await using var c = await server.ConnectAsync();
        // A handshake record header announcing 512 bytes, and 4 of them: the ClientHello never completes.
        await c.SendAsync([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]);
        var clock = Stopwatch.StartNew();
        Assert.Empty(await c.ReadToEndAsync(TimeSpan.FromSeconds(6)));
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(800), TimeSpan.FromSeconds(4));
        await handshakes.WaitForAsync("timeout");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Plain_http_on_the_tls_port_gets_a_plain_text_400_and_a_close(string transport)
    {
        await using var server = await StartAsync(transport);
        using var handshakes = new Handshakes(server.Server.Metrics.Meter);
        await using var c = await server.ConnectAsync();
        await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(400, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.Contains("https://", r.BodyText);
        Assert.True(await c.ClosedWithFinAsync());
        await handshakes.WaitForAsync("plain_http");
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Garbage_that_is_not_a_handshake_is_closed_and_counted_and_the_server_serves_on(string transport)
    {
        await using var server = await StartAsync(transport);
        using var handshakes = new Handshakes(server.Server.Metrics.Meter);
        await using (var c = await server.ConnectAsync())
        {
            await c.SendAsync([0x00, 0xff, 0x13, 0x37]);
            Assert.Empty(await c.ReadToEndAsync());
        }
        await handshakes.WaitForAsync("not_tls");
        // A handshake record with a broken body: a TLS failure, not a crash.
        await using (var c = await server.ConnectAsync())
        {
            await c.SendAsync([0x16, 0x03, 0x01, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]);
            await c.ReadToEndAsync(); // an alert, then the close
        }
        await handshakes.WaitForAsync("handshake");
        await using var ok = await TlsClient.ConnectAsync(server.Port);
        await ok.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await ok.ReadResponseAsync()).Status);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Graceful_close_sends_close_notify_before_the_fin(string transport)
    {
        await using var server = await StartAsync(transport);
        await using var c = await TlsClient.ConnectAsync(server.Port, SslProtocols.Tls12); // 1.2: the alert's record type is visible
        await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.True(r.ConnectionClose);
        Assert.True(await c.ClosedCleanlyAsync());
        Assert.Equal(21, c.ReceivedRecordTypes()[^1]); // the last record before EOF: an alert (close_notify)
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Over_capacity_a_tls_connection_is_closed_cleanly_with_no_plaintext_503(string transport)
    {
        await using var server = await StartAsync(transport, o => o with { MaxConnections = 1 });
        await using var first = await TlsClient.ConnectAsync(server.Port);
        await first.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await first.ReadResponseAsync()).Status);
        await using var second = await server.ConnectAsync();
        Assert.Empty(await second.ReadToEndAsync());
        Assert.Equal(1, server.Server.RejectedConnections);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task At_shutdown_an_in_flight_request_completes_with_connection_close_and_idle_ones_get_close_notify(string transport)
    {
        await using var server = await StartAsync(transport);
        await using var busy = await TlsClient.ConnectAsync(server.Port);
        await using var idle = await TlsClient.ConnectAsync(server.Port, SslProtocols.Tls12);
        await idle.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await idle.ReadResponseAsync()).Status);
        await using var silent = await server.ConnectAsync(); // connected, no ClientHello yet
        await busy.SendAsync("GET /slow?ms=800 HTTP/1.1\r\nHost: a\r\n\r\n");
        await TestServer.WaitUntilAsync(() => server.Server.Connections.Any(x => x.State == ConnectionState.Active), "the slow request is in its handler");

        var shutdown = server.Server.ShutdownAsync();
        Assert.True(await idle.ClosedCleanlyAsync());
        Assert.Equal(21, idle.ReceivedRecordTypes()[^1]);
        Assert.Empty(await silent.ReadToEndAsync()); // mid-(or pre-)handshake: a clean close, no TLS byte
        var r = await busy.ReadResponseAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(200, r.Status);
        Assert.True(r.ConnectionClose);
        Assert.True(await busy.ClosedCleanlyAsync());
        var report = await shutdown.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(report.AllDrained);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_handshake_under_way_at_the_drain_is_left_its_header_timeout_then_closed_without_a_byte(string transport)
    {
        await using var server = await StartAsync(transport, o => o with { RequestHeaderTimeout = TimeSpan.FromSeconds(1.5) });
        await using var c = await server.ConnectAsync();
        await c.SendAsync([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]); // a ClientHello under way
        await TestServer.WaitUntilAsync(() => server.Server.Connections.Count == 1, "the connection is registered");
        var clock = Stopwatch.StartNew();
        var shutdown = server.Server.ShutdownAsync();
        // Like a half-sent plaintext request, it may still become a request: not closed at the drain...
        Assert.Equal(CloseKind.StillOpen, await c.WaitForCloseAsync(TimeSpan.FromMilliseconds(500)));
        // ...but bounded by the header timeout, and closed without any TLS or plaintext byte.
        Assert.Empty(await c.ReadToEndAsync(TimeSpan.FromSeconds(5)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4), $"closed after {clock.Elapsed}");
        Assert.True((await shutdown.WaitAsync(TimeSpan.FromSeconds(10))).AllDrained);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Renewal_new_connections_get_the_new_certificate_existing_ones_keep_theirs_and_bad_pairs_are_ignored(string transport)
    {
        await using var server = await StartAsync(transport);
        var source = server.Server.Tls!.Certificates;
        var first = _cert.Current;
        await using var old = await TlsClient.ConnectAsync(server.Port);
        Assert.True(TestCertificate.Same(old.RemoteCertificate, first));

        // Half-written: a new certificate cut short, its key not written yet.
        var (nextCert, nextKey, next) = TestCertificate.Generate();
        File.WriteAllText(_cert.CertPath, nextCert[..(nextCert.Length / 2)]);
        source.Poll();
        Assert.Equal(first.Thumbprint, source.Current.Leaf.Thumbprint);
        // Whole certificate, old key: a mismatched pair.
        File.WriteAllText(_cert.CertPath, nextCert);
        source.Poll();
        Assert.Equal(first.Thumbprint, source.Current.Leaf.Thumbprint);
        await using (var during = await TlsClient.ConnectAsync(server.Port))
            Assert.True(TestCertificate.Same(during.RemoteCertificate, first));
        // The key arrives: the pair is whole, and new connections get it.
        File.WriteAllText(_cert.KeyPath, nextKey);
        source.Poll();
        Assert.Equal(next.Thumbprint, source.Current.Leaf.Thumbprint);
        await using var fresh = await TlsClient.ConnectAsync(server.Port);
        Assert.True(TestCertificate.Same(fresh.RemoteCertificate, next));
        await fresh.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await fresh.ReadResponseAsync()).Status);
        // The connection from before goes on with its own session.
        await old.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await old.ReadResponseAsync()).Status);
        Assert.True(TestCertificate.Same(old.RemoteCertificate, first));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_proxy_protocol_header_before_the_client_hello_names_the_client(string transport)
    {
        // HAProxy in TCP mode with send-proxy in front of a TLS server: the header is plain text, then TLS.
        await using var server = await StartAsync(transport, o => o with { ProxyProtocol = true, TrustedProxies = [IPNetwork.Parse("127.0.0.1/32")] });
        server.Router.MapGet("/client", (req, res) => res.WriteTextAsync(req.ClientAddress?.ToString() ?? "-"));
        await using var c = await TlsClient.ConnectAsync(server.Port, prelude: System.Text.Encoding.ASCII.GetBytes("PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n"));
        await c.SendAsync("GET /client HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal("203.0.113.7", (await c.ReadResponseAsync()).BodyText);
        // Drained while idle: close_notify, then the end, no waiting for a request that is not coming.
        var shutdown = server.Server.ShutdownAsync();
        Assert.True(await c.ClosedCleanlyAsync());
        Assert.True((await shutdown.WaitAsync(TimeSpan.FromSeconds(10))).AllDrained);
    }

    [Fact]
    public async Task The_poll_timer_picks_a_renewal_up_within_seconds()
    {
        await using var server = await TestServer.StartAsync("sockets", o => o with { Tls = new TlsOptions(_cert.CertPath, _cert.KeyPath) { ReloadInterval = TimeSpan.FromMilliseconds(200) } });
        var renewed = _cert.Renew();
        var clock = Stopwatch.StartNew();
        while (true)
        {
            await using var c = await TlsClient.ConnectAsync(server.Port);
            if (TestCertificate.Same(c.RemoteCertificate, renewed)) break;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "the renewed certificate was not served within 5 s");
            await Task.Delay(50);
        }
    }
}
