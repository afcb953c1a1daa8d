using System.Net;
using System.Text;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

// Who the client is: the socket peer, unless the peer is a trusted balancer; then X-Forwarded-For is walked
// from the right, skipping trusted hops. And the nginx escape=default rule and the CLF line, as units.
public class ClientAddressTests
{
    private static readonly IReadOnlyList<IPNetwork> Trusted = [IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("127.0.0.1/32"), IPNetwork.Parse("2001:db8:ffff::/48")];

    [Theory]
    [InlineData("127.0.0.1", "203.0.113.9", "203.0.113.9")]
    [InlineData("127.0.0.1", "203.0.113.9, 10.0.0.2", "203.0.113.9")]               // a trusted hop is skipped
    [InlineData("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.0.0.2", "203.0.113.9")] // left of the first untrusted: written by the client
    [InlineData("127.0.0.1", "10.1.1.1, 10.0.0.2", "10.1.1.1")]                     // all trusted: the left-most
    [InlineData("127.0.0.1", "unknown, 10.0.0.2", "10.0.0.2")]                       // not an address: stop at the hop that wrote it
    [InlineData("127.0.0.1", "203.0.113.9:4711", "203.0.113.9")]
    [InlineData("127.0.0.1", "[2001:db8::5]:80", "2001:db8::5")]
    [InlineData("127.0.0.1", "2001:db8::5", "2001:db8::5")]
    [InlineData("127.0.0.1", "1", "127.0.0.1")]                                      // "1" is no dotted quad
    [InlineData("127.0.0.1", "", "127.0.0.1")]
    [InlineData("192.0.2.50", "203.0.113.9", "192.0.2.50")]                           // untrusted peer: its header means nothing
    [InlineData("::ffff:127.0.0.1", "203.0.113.9", "203.0.113.9")]                    // a dual-mode socket's view of an IPv4 peer
    public void Forwarded_for_is_believed_only_through_trusted_hops(string peer, string header, string expected) =>
        Assert.Equal(IPAddress.Parse(expected), ClientAddress.FromForwardedFor(IPAddress.Parse(peer), [header], Trusted));

    [Fact]
    public void Several_forwarded_for_fields_are_one_list_in_order() =>
        Assert.Equal(IPAddress.Parse("203.0.113.9"), ClientAddress.FromForwardedFor(IPAddress.Parse("127.0.0.1"), ["198.51.100.1, 203.0.113.9", "10.0.0.2"], Trusted));

    [Fact]
    public void Nginx_escape_default_rule()
    {
        for (int b = 0; b < 256; b++)
        {
            var escaped = AccessLog.Escape(((char)b).ToString());
            bool expectEscape = b < 0x20 || b == '"' || b == '\\' || b >= 0x7F;
            Assert.Equal(expectEscape ? $"\\x{b:X2}" : ((char)b).ToString(), escaped);
        }
        Assert.Equal(@"\xE2\x82\xAC", AccessLog.Escape("\u20AC")); // a char above 0xFF: its UTF-8 bytes
        var sb = new StringBuilder();
        AccessLog.AppendEscaped(sb, "a\r\nb"u8);
        Assert.Equal(@"a\x0D\x0Ab", sb.ToString());
    }

    [Fact]
    public void The_combined_line_has_every_field_in_nginx_order()
    {
        var entry = new AccessLogEntry
        {
            ClientAddress = "203.0.113.9", PeerAddress = "10.0.0.2", Time = new DateTimeOffset(2026, 12, 2, 5, 6, 7, TimeSpan.Zero),
            Method = "GET", Target = "/a b\"", Protocol = "HTTP/1.1", Status = 200, Bytes = 13, Referer = null, UserAgent = "ua\\",
            DurationSeconds = 0.0012345, RequestId = "7-3", ConnectionId = 7,
        };
        Assert.Equal(@"203.0.113.9 - - [02/Dec/2026:05:06:07 +0000] ""GET /a b\x22 HTTP/1.1"" 200 13 ""-"" ""ua\x5C"" 0.001235 ""7-3""", entry.Line);
        Assert.Equal(entry.Line, entry.ToString());
        Assert.Equal(14, entry.Count);
        Assert.Equal(entry.Count, entry.Select(kv => kv.Key).Distinct().Count());
        var unparsed = new AccessLogEntry { ClientAddress = "-", PeerAddress = "-", Time = entry.Time, Status = 400, Bytes = 0, DurationSeconds = 0, RequestId = "1-1", ConnectionId = 1 };
        Assert.Contains(" \"-\" 400 0 ", unparsed.Line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Over_sockets_x_forwarded_for_from_a_trusted_peer_sets_the_logged_and_handler_visible_client()
    {
        var (server, log) = await AccessLogTests.StartAsync(o => o with { TrustedProxies = [IPNetwork.Parse("127.0.0.1/32")] },
            r => r.MapGet("/client", (req, res) => res.WriteTextAsync(req.ClientAddress!.ToString())));
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync("GET /client HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.9\r\nX-Request-ID: lb-abc\"1\r\n\r\n");
            Assert.Equal("203.0.113.9", (await c.ReadResponseAsync()).BodyText);
            await c.SendAsync("GET /client HTTP/1.1\r\nHost: a\r\n\r\n"); // the next request on the connection has its own answer
            Assert.Equal("127.0.0.1", (await c.ReadResponseAsync()).BodyText);
            var events = await log.WaitForAsync(2);
            Assert.StartsWith("203.0.113.9 - - [", events[0].Message, StringComparison.Ordinal);
            Assert.EndsWith(@" ""lb-abc\x221""", events[0].Message, StringComparison.Ordinal); // the balancer's request id, escaped
            Assert.StartsWith("127.0.0.1 - - [", events[1].Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Over_sockets_x_forwarded_for_and_x_request_id_from_an_untrusted_peer_are_ignored()
    {
        var (server, log) = await AccessLogTests.StartAsync(o => o with { TrustedProxies = [IPNetwork.Parse("10.0.0.0/8")] },
            r => r.MapGet("/client", (req, res) => res.WriteTextAsync(req.ClientAddress!.ToString())));
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync("GET /client HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.9\r\nX-Request-ID: forged\r\n\r\n");
            Assert.Equal("127.0.0.1", (await c.ReadResponseAsync()).BodyText);
            var e = Assert.Single(await log.WaitForAsync(1));
            Assert.StartsWith("127.0.0.1 - - [", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("forged", e.Message, StringComparison.Ordinal);
        }
    }
}
