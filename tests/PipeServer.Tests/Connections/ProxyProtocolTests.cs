using System.Buffers;
using System.Net;
using System.Text;
using PipeServer.Connections;
using PipeServer.Tests.Infrastructure;
using PipeServer.Tests.Operations;
using Xunit;

namespace PipeServer.Tests.Connections;

// The PROXY protocol (haproxy doc/proxy-protocol.txt): the parser as a pure function, whole and one byte per
// segment, and the server's rules over real sockets (required from trusted balancers, refused from others).
public class ProxyProtocolTests
{
    private static readonly byte[] V2Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    private static byte[] V2(byte versionCommand, byte familyTransport, byte[] payload)
    {
        var bytes = new List<byte>(V2Signature) { versionCommand, familyTransport, (byte)(payload.Length >> 8), (byte)payload.Length };
        bytes.AddRange(payload);
        return bytes.ToArray();
    }

    private static byte[] V2Inet(string source, string destination, int sourcePort, int destinationPort, byte[]? tlvs = null)
    {
        var payload = new List<byte>();
        payload.AddRange(IPAddress.Parse(source).GetAddressBytes());
        payload.AddRange(IPAddress.Parse(destination).GetAddressBytes());
        payload.AddRange([(byte)(sourcePort >> 8), (byte)sourcePort, (byte)(destinationPort >> 8), (byte)destinationPort]);
        if (tlvs is not null) payload.AddRange(tlvs);
        bool v6 = IPAddress.Parse(source).AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        return V2(0x21, v6 ? (byte)0x21 : (byte)0x11, payload.ToArray());
    }

    /// <summary>Parses the input whole, then in one-byte segments, then growing one byte at a time (every prefix must ask for more).</summary>
    private static (ProxyParseStatus Status, ProxyHeader Header, ProxyRejectionReason Reason, long Consumed) ParseEveryWay(byte[] input)
    {
        var whole = new ReadOnlySequence<byte>(input);
        var status = ProxyProtocolParser.Parse(whole, out var consumed, out var header, out var reason);
        long consumedBytes = whole.Slice(0, consumed).Length;

        var segmented = Sequences.Segmented(input, 1);
        Assert.Equal(status, ProxyProtocolParser.Parse(segmented, out var c2, out var h2, out var r2));
        Assert.Equal(header, h2);
        Assert.Equal(reason, r2);
        Assert.Equal(consumedBytes, segmented.Slice(0, c2).Length);

        if (status is ProxyParseStatus.Done)
        {
            for (int n = 0; n < consumedBytes; n++)
                Assert.Equal(ProxyParseStatus.NeedMoreData, ProxyProtocolParser.Parse(Sequences.Segmented(input.AsSpan(0, n), 1), out _, out _, out _));
        }
        return (status, header, reason, consumedBytes);
    }

    [Fact]
    public void V1_tcp4_names_the_client_and_consumes_only_the_line()
    {
        var line = "PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080\r\n";
        var (status, header, _, consumed) = ParseEveryWay(Encoding.ASCII.GetBytes(line + "GET / HTTP/1.1\r\n"));
        Assert.Equal(ProxyParseStatus.Done, status);
        Assert.Equal(line.Length, consumed);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 56324), header.Source);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.0.2.1"), 8080), header.Destination);
        Assert.Equal(1, header.Version);
    }

    [Fact]
    public void V1_tcp6_and_unknown()
    {
        var (status, header, _, _) = ParseEveryWay("PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n"u8.ToArray());
        Assert.Equal(ProxyParseStatus.Done, status);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("2001:db8::7"), 65535), header.Source);

        var unknown = ParseEveryWay("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"u8.ToArray());
        Assert.Equal(ProxyParseStatus.Done, unknown.Status);
        Assert.Null(unknown.Header.Source); // the socket's addresses apply
        Assert.Equal(ProxyParseStatus.Done, ParseEveryWay("PROXY UNKNOWN\r\n"u8.ToArray()).Status);
    }

    [Theory]
    [InlineData("PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080\n")]          // bare LF
    [InlineData("PROXY TCP4 203.0.113.7  192.0.2.1 56324 8080\r\n")]       // two spaces
    [InlineData("PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n")]             // a field missing
    [InlineData("PROXY TCP4 203.0.113.7 192.0.2.1 56324 8080 9\r\n")]      // a field too many
    [InlineData("PROXY TCP4 203.0.113.7 192.0.2.1 65536 8080\r\n")]        // port out of range
    [InlineData("PROXY TCP4 203.0.113 192.0.2.1 1 2\r\n")]                 // not a dotted quad
    [InlineData("PROXY TCP4 1 192.0.2.1 1 2\r\n")]                         // IPAddress.TryParse would take "1"
    [InlineData("PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n")]               // family mismatch
    [InlineData("PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n")]
    [InlineData("PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n")]
    [InlineData("PROXY tcp4 203.0.113.7 192.0.2.1 1 2\r\n")]
    [InlineData("PROXY TCP4 203.0.113.7 192.0.2.1 -1 2\r\n")]
    [InlineData("PROXY UNKNOWNX\r\n")]
    public void V1_malformed_is_rejected(string line)
    {
        var (status, _, reason, _) = ParseEveryWay(Encoding.ASCII.GetBytes(line));
        Assert.Equal(ProxyParseStatus.Rejected, status);
        Assert.Equal(ProxyRejectionReason.V1Malformed, reason);
    }

    [Fact]
    public void V1_without_CRLF_within_107_bytes_is_rejected_not_buffered_forever()
    {
        var longLine = "PROXY UNKNOWN " + new string('x', 200);
        var (status, _, reason, _) = ParseEveryWay(Encoding.ASCII.GetBytes(longLine));
        Assert.Equal(ProxyParseStatus.Rejected, status);
        Assert.Equal(ProxyRejectionReason.V1TooLong, reason);
        // 106 bytes and no CRLF yet: still within bounds, so more data is needed.
        Assert.Equal(ProxyParseStatus.NeedMoreData, ParseEveryWay(Encoding.ASCII.GetBytes(longLine[..106])).Status);
        // Exactly 107 bytes with its CRLF is the largest allowed line.
        var max = "PROXY UNKNOWN " + new string('x', 107 - 16) + "\r\n";
        Assert.Equal(107, max.Length);
        Assert.Equal(ProxyParseStatus.Done, ParseEveryWay(Encoding.ASCII.GetBytes(max)).Status);
    }

    [Fact]
    public void V2_inet_and_inet6_with_tlvs_skipped()
    {
        byte[] tlvs = [0x01, 0x00, 0x02, (byte)'h', (byte)'2', 0x04, 0x00, 0x00]; // ALPN "h2", a NOOP
        var header = V2Inet("198.51.100.9", "192.0.2.1", 40000, 443, tlvs);
        var (status, parsed, _, consumed) = ParseEveryWay([.. header, .. "GET"u8.ToArray()]);
        Assert.Equal(ProxyParseStatus.Done, status);
        Assert.Equal(header.Length, consumed);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.9"), 40000), parsed.Source);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.0.2.1"), 443), parsed.Destination);
        Assert.Equal(2, parsed.Version);

        var v6 = ParseEveryWay(V2Inet("2001:db8::9", "2001:db8::1", 1, 2));
        Assert.Equal(ProxyParseStatus.Done, v6.Status);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("2001:db8::9"), 1), v6.Header.Source);
    }

    [Fact]
    public void V2_local_and_unspec_keep_the_socket_addresses()
    {
        var local = ParseEveryWay(V2(0x20, 0x00, []));            // a balancer's own health check
        Assert.Equal(ProxyParseStatus.Done, local.Status);
        Assert.Null(local.Header.Source);
        var localWithAddresses = ParseEveryWay(V2(0x20, 0x11, new byte[12])); // LOCAL: addresses are ignored
        Assert.Equal(ProxyParseStatus.Done, localWithAddresses.Status);
        Assert.Null(localWithAddresses.Header.Source);
        var unix = ParseEveryWay(V2(0x21, 0x31, new byte[216]));
        Assert.Equal(ProxyParseStatus.Done, unix.Status);
        Assert.Null(unix.Header.Source);
    }

    [Theory]
    [InlineData((byte)0x11, (byte)0x11, 12, ProxyRejectionReason.V2BadVersionOrCommand)] // version 1 in a v2 header
    [InlineData((byte)0x22, (byte)0x11, 12, ProxyRejectionReason.V2BadVersionOrCommand)] // command 2
    [InlineData((byte)0x21, (byte)0x41, 12, ProxyRejectionReason.V2BadFamily)]
    [InlineData((byte)0x21, (byte)0x13, 12, ProxyRejectionReason.V2BadFamily)]
    [InlineData((byte)0x21, (byte)0x11, 11, ProxyRejectionReason.V2AddressTooShort)]
    [InlineData((byte)0x21, (byte)0x21, 35, ProxyRejectionReason.V2AddressTooShort)]
    [InlineData((byte)0x21, (byte)0x11, 2049, ProxyRejectionReason.V2TooLarge)]
    public void V2_malformed_or_oversized_is_rejected_from_the_fixed_16_bytes(byte versionCommand, byte family, int length, object expected)
    {
        // Only the 16-byte fixed part is sent: the verdict must not wait for a payload that may never come.
        byte[] fixedPart = [.. V2Signature, versionCommand, family, (byte)(length >> 8), (byte)length];
        var (status, _, reason, _) = ParseEveryWay(fixedPart);
        Assert.Equal(ProxyParseStatus.Rejected, status);
        Assert.Equal((ProxyRejectionReason)expected, reason);
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\n")]
    [InlineData("POST / HTTP/1.1\r\n")]
    [InlineData("PROPFIND / HTTP/1.1\r\n")]
    [InlineData("\r\nGET / HTTP/1.1\r\n")]   // an allowed empty line before the request line
    [InlineData("\r\n\r\nX")]
    public void Http_is_not_a_proxy_header_decided_at_the_first_differing_byte(string http)
    {
        Assert.Equal(ProxyParseStatus.NotProxy, ParseEveryWay(Encoding.ASCII.GetBytes(http)).Status);
    }

    [Theory]
    [InlineData("P")]
    [InlineData("PROX")]
    [InlineData("\r\n\r\n")]
    public void A_prefix_of_a_signature_needs_more_data(string prefix) =>
        Assert.Equal(ProxyParseStatus.NeedMoreData, ParseEveryWay(Encoding.ASCII.GetBytes(prefix)).Status);

    // Over sockets: the client address a PROXY header sets is what the access log and the handler see.

    // The 2 s header timeout is for the tests that wait for it; one that sends a head byte by byte asks for more,
    // since a loaded machine can stretch its ~60 one-millisecond pauses past 2 s (it did once).
    private static Task<(PipeServer.Server.HttpServer Server, CapturingLogger Log)> StartAsync(string trusted, int headerTimeoutSeconds = 2) =>
        AccessLogTests.StartAsync(o => o with { ProxyProtocol = true, TrustedProxies = [IPNetwork.Parse(trusted)], RequestHeaderTimeout = TimeSpan.FromSeconds(headerTimeoutSeconds) },
            r => r.MapGet("/client", (req, res) => res.WriteTextAsync(req.ClientAddress + " " + req.RemoteEndPoint!.Address)));

    [Fact]
    public async Task A_trusted_balancers_v1_header_names_the_client_for_every_request_on_the_connection()
    {
        var (server, log) = await StartAsync("127.0.0.1/32", headerTimeoutSeconds: 30);
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendByteByByteAsync("PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\nGET /client HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal("203.0.113.7 127.0.0.1", (await c.ReadResponseAsync()).BodyText);
            await c.SendAsync("GET /client HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal("203.0.113.7 127.0.0.1", (await c.ReadResponseAsync()).BodyText);
            var events = await log.WaitForAsync(2);
            Assert.All(events, e => Assert.StartsWith("203.0.113.7 - - [", e.Message, StringComparison.Ordinal));
            Assert.All(events, e => Assert.Equal("127.0.0.1", e.State["PeerAddress"]));
        }
    }

    [Fact]
    public async Task A_trusted_balancers_v2_header_with_tlvs_works_too()
    {
        var (server, log) = await StartAsync("127.0.0.1/32");
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync([.. V2Inet("2001:db8::42", "::1", 1234, 80, [0x04, 0x00, 0x01, 0x00]), .. "GET /client HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray()]);
            Assert.Equal("2001:db8::42 127.0.0.1", (await c.ReadResponseAsync()).BodyText);
            Assert.StartsWith("2001:db8::42 - - [", Assert.Single(await log.WaitForAsync(1)).Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("GET /client HTTP/1.1\r\nHost: a\r\n\r\n")]                              // no header from a trusted peer
    [InlineData("PROXY TCP4 203.0.113.7 127.0.0.1 1\r\nGET /client HTTP/1.1\r\nHost: a\r\n\r\n")] // malformed
    public async Task A_trusted_peer_without_a_valid_header_is_closed_unanswered(string bytes)
    {
        var (server, log) = await StartAsync("127.0.0.1/32");
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync(bytes);
            Assert.Contains(await c.WaitForCloseAsync(), RawConnection.ClosedWithoutAnswer);
            for (var deadline = DateTime.UtcNow.AddSeconds(5); server.ConnectionCount > 0 && DateTime.UtcNow < deadline;) await Task.Delay(10);
            Assert.Equal(0, server.ConnectionCount);
            Assert.Empty(log.Events); // no request was read, so none is logged
        }
    }

    [Fact]
    public async Task An_untrusted_peer_speaks_plain_HTTP_and_a_PROXY_header_from_it_closes_the_connection()
    {
        var (server, _) = await StartAsync("10.0.0.0/8", headerTimeoutSeconds: 30); // the test client (127.0.0.1) is not a balancer
        await using (server)
        {
            await using (var plain = await RawConnection.ConnectAsync(server.EndPoint!.Port))
            {
                await plain.SendByteByByteAsync("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi");
                Assert.Equal("hi", (await plain.ReadResponseAsync()).BodyText);
                await plain.SendAsync("GET /client HTTP/1.1\r\nHost: a\r\n\r\n");
                Assert.Equal("127.0.0.1 127.0.0.1", (await plain.ReadResponseAsync()).BodyText);
            }
            await using (var spoof = await RawConnection.ConnectAsync(server.EndPoint!.Port))
            {
                await spoof.SendAsync("PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\nGET /client HTTP/1.1\r\nHost: a\r\n\r\n");
                Assert.Contains(await spoof.WaitForCloseAsync(), RawConnection.ClosedWithoutAnswer);
            }
        }
    }

    [Fact]
    public async Task A_trusted_peer_that_sends_nothing_is_closed_at_the_header_timeout()
    {
        var (server, _) = await StartAsync("127.0.0.1/32");
        await using (server)
        {
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync("PROX");
            Assert.Contains(await c.WaitForCloseAsync(TimeSpan.FromSeconds(10)), RawConnection.ClosedWithoutAnswer); // RequestHeaderTimeout is 2 s here
        }
    }
}
