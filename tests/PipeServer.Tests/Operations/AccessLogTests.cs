using System.Net;
using System.Text.RegularExpressions;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

// Issue 10, "Logs": the access log over real sockets, read through a capturing ILogger. Text mode is the
// Combined Log Format plus duration and request id, escaped by nginx's escape=default rules; the same
// fields are the event's structured state (what the JSON console formatter writes as properties).
public class AccessLogTests
{
    /// <summary>CLF: ADDR - - [dd/MMM/yyyy:HH:mm:ss +0000] "REQUEST" STATUS BYTES "REFERER" "USER-AGENT" SECONDS "REQUEST-ID".</summary>
    private static readonly Regex Combined = new(
        @"^(?<addr>\S+) - - \[(?<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000)\] ""(?<request>[^""]*)"" (?<status>\d{3}) (?<bytes>\d+) ""(?<referer>[^""]*)"" ""(?<ua>[^""]*)"" (?<seconds>\d+\.\d{6}) ""(?<id>[^""]*)""$");

    internal static async Task<(HttpServer Server, CapturingLogger Log)> StartAsync(Func<HttpServerOptions, HttpServerOptions>? configure = null, Action<Router>? routes = null)
    {
        var options = new HttpServerOptions { Address = IPAddress.Loopback, Port = 0, ShutdownTimeout = TimeSpan.FromSeconds(5), AccessLog = true };
        if (configure is not null) options = configure(options);
        var router = new Router();
        var log = new CapturingLogger("PipeServer.AccessLog");
        var server = new HttpServer(options, router.HandleAsync, accessLogger: log);
        DemoEndpoints.Map(router, server.Lifetime);
        routes?.Invoke(router);
        await server.StartAsync();
        return (server, log);
    }

    private static Match Parse(CapturedLog e)
    {
        var m = Combined.Match(e.Message);
        Assert.True(m.Success, $"not a combined-format line: {e.Message}");
        return m;
    }

    [Fact]
    public async Task A_request_is_one_combined_log_line_with_query_version_referer_agent_duration_and_id()
    {
        var (server, log) = await StartAsync();
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync("GET /plaintext?x=1&y=%41 HTTP/1.1\r\nHost: a\r\nReferer: http://ref.example/page\r\nUser-Agent: curl/8.5.0\r\n\r\n" +
                              "GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            await c.ReadResponseAsync();
            await c.ReadResponseAsync();
            var events = await log.WaitForAsync(2);
            var before = DateTime.UtcNow;

            var first = Parse(events[0]);
            Assert.Equal("127.0.0.1", first.Groups["addr"].Value);
            Assert.Equal("GET /plaintext?x=1&y=%41 HTTP/1.1", first.Groups["request"].Value);
            Assert.Equal("200", first.Groups["status"].Value);
            Assert.Equal("13", first.Groups["bytes"].Value);
            Assert.Equal("http://ref.example/page", first.Groups["referer"].Value);
            Assert.Equal("curl/8.5.0", first.Groups["ua"].Value);
            var time = DateTime.ParseExact(first.Groups["time"].Value, "dd/MMM/yyyy:HH:mm:ss zzzz", System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.AdjustToUniversal);
            Assert.InRange(time, before.AddMinutes(-1), before.AddMinutes(1));
            Assert.InRange(double.Parse(first.Groups["seconds"].Value, System.Globalization.CultureInfo.InvariantCulture), 0, 5);

            var second = Parse(events[1]);
            Assert.Equal("GET /nope HTTP/1.0", second.Groups["request"].Value);
            Assert.Equal("404", second.Groups["status"].Value);
            Assert.Equal("-", second.Groups["referer"].Value);
            Assert.Equal("-", second.Groups["ua"].Value);
            // One id per request: same connection, different requests.
            Assert.NotEqual(first.Groups["id"].Value, second.Groups["id"].Value);
            Assert.NotEmpty(first.Groups["id"].Value);
        }
    }

    [Fact]
    public async Task The_target_is_logged_as_received_so_an_encoded_CR_LF_cannot_forge_a_line()
    {
        var (server, log) = await StartAsync();
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync("GET /a%0D%0A127.0.0.1%20-%20-%20forged HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(404, (await c.ReadResponseAsync()).Status);
            var e = Assert.Single(await log.WaitForAsync(1));
            Assert.DoesNotContain('\r', e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.Equal("GET /a%0D%0A127.0.0.1%20-%20-%20forged HTTP/1.1", Parse(e).Groups["request"].Value);
        }
    }

    [Fact]
    public async Task Quotes_backslashes_controls_and_high_bytes_in_headers_are_escaped_nginx_style()
    {
        var (server, log) = await StartAsync();
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            // Header values may carry HTAB and obs-text (0x80-0xFF); quotes and backslashes are ordinary bytes there.
            await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: evil\" 200 0 \"x\\y\tz\u00ff\r\nReferer: \"\r\n\r\n");
            await c.ReadResponseAsync();
            var e = Assert.Single(await log.WaitForAsync(1));
            var m = Parse(e);
            Assert.Equal(@"evil\x22 200 0 \x22x\x5Cy\x09z\xFF", m.Groups["ua"].Value);
            Assert.Equal(@"\x22", m.Groups["referer"].Value);
            Assert.All(e.Message, ch => Assert.InRange(ch, ' ', '~'));
        }
    }

    [Fact]
    public async Task The_structured_state_carries_the_same_fields_unescaped()
    {
        var (server, log) = await StartAsync();
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync("POST /echo?q=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: a \"b\"\r\nContent-Length: 2\r\n\r\nhi");
            await c.ReadResponseAsync();
            var e = Assert.Single(await log.WaitForAsync(1));
            Assert.Equal("127.0.0.1", e.State["ClientAddress"]);
            Assert.Equal("127.0.0.1", e.State["PeerAddress"]);
            Assert.Equal("POST", e.State["Method"]);
            Assert.Equal("/echo?q=1", e.State["Target"]);
            Assert.Equal("HTTP/1.1", e.State["Protocol"]);
            Assert.Equal(200, e.State["Status"]);
            Assert.Equal(2L, e.State["Bytes"]);
            Assert.Null(e.State["Referer"]);
            Assert.Equal("a \"b\"", e.State["UserAgent"]);
            Assert.IsType<double>(e.State["DurationSeconds"]);
            Assert.Matches(@"^\d+-1$", (string)e.State["RequestId"]!);
            Assert.IsType<long>(e.State["ConnectionId"]);
            Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", (string)e.State["Time"]!); // ISO 8601: the JSON formatter writes it as is
        }
    }

    [Fact]
    public async Task A_rejected_request_is_logged_too_with_what_was_parsed()
    {
        var (server, log) = await StartAsync();
        await using (server)
        {
            await using (var c = await RawConnection.ConnectAsync(server.EndPoint!.Port))
            {
                await c.SendAsync("GET /x?y HTTP/1.1\r\n\r\n"); // no Host: 400
                Assert.Equal(400, (await c.ReadResponseAsync()).Status);
            }
            await using (var c = await RawConnection.ConnectAsync(server.EndPoint!.Port))
            {
                await c.SendAsync("GET / HTTP/1.1\n\n"); // bare LF: the line never parses
                Assert.Equal(400, (await c.ReadResponseAsync()).Status);
            }
            var events = await log.WaitForAsync(2);
            Assert.Equal("GET /x?y HTTP/1.1", Parse(events[0]).Groups["request"].Value);
            Assert.Equal("400", Parse(events[0]).Groups["status"].Value);
            Assert.Equal("-", Parse(events[1]).Groups["request"].Value);
        }
    }

    [Fact]
    public async Task With_the_access_log_off_nothing_is_logged()
    {
        var (server, log) = await StartAsync(o => o with { AccessLog = false });
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            await c.ReadResponseAsync();
        }
        Assert.Empty(log.Events);
    }
}
