using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

// The PROXY protocol as the real HAProxy writes it (send-proxy = v1 text, send-proxy-v2 = binary), in front
// of the real executable with --proxy-protocol --trusted-proxies 127.0.0.1. HAProxy's health checks use
// check-send-proxy, so they carry the header too. Everything is on loopback, so the address alone cannot
// show the header was read: the client port can (HAProxy names the curl-side port it accepted from).
public class HaproxyProxyProtocolTests
{
    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public static TheoryData<string> Modes => new() { "send-proxy", "send-proxy-v2" };

    [TheoryRequiringCommand("haproxy", "haproxy")]
    [MemberData(nameof(TransportData.Cross), typeof(HaproxyProxyProtocolTests), nameof(Modes), MemberType = typeof(TransportData))]
    public async Task Requests_through_haproxy_carry_the_clients_address_in_the_proxy_header(string mode, string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--proxy-protocol", "--trusted-proxies", "127.0.0.1", "--access-log", "--log-format", "json");
        int front = FreePort();
        var config = Path.Combine(Path.GetTempPath(), $"pipeserver-haproxy-{Guid.NewGuid():N}.cfg");
        File.WriteAllText(config, $"""
            global
                maxconn 100
            defaults
                mode http
                timeout connect 2s
                timeout client 10s
                timeout server 10s
            frontend f
                bind 127.0.0.1:{front}
                default_backend b
            backend b
                http-reuse never
                server s1 127.0.0.1:{server.Port} {mode}
            """ + "\n"); // HAProxy refuses a last line without LF
        try
        {
            using var haproxy = ServerProcess.RunCommand(FactRequiringCommandAttribute.FindOnPath("haproxy")!, ["-f", config, "-db"]);
            RawConnection? c = null;
            for (var deadline = DateTime.UtcNow.AddSeconds(10); c is null && DateTime.UtcNow < deadline;)
            {
                try { c = await RawConnection.ConnectAsync(front); }
                catch (SocketException) { await Task.Delay(50); }
            }
            Assert.True(c is not null, $"haproxy did not listen on {front}: {haproxy.Output}");
            int clientPort;
            await using (c)
            {
                clientPort = ((IPEndPoint)c.Socket.LocalEndPoint!).Port;
                await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
                var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(10));
                Assert.Equal(200, r.Status);
                Assert.Equal("Hello, World!", r.BodyText);
            }

            // Directly, without a header, the same trusted address is refused: the header really is required.
            await using (var direct = await RawConnection.ConnectAsync(server.Port))
            {
                await direct.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
                Assert.Contains(await direct.WaitForCloseAsync(), RawConnection.ClosedWithoutAnswer);
            }

            server.Signal(ServerProcess.SIGTERM);
            Assert.Equal(0, await server.WaitForExitAsync());
            var access = server.StandardOutputLines.Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement)
                .Single(d => d.GetProperty("Category").GetString() == "PipeServer.AccessLog").GetProperty("State");
            Assert.Equal("127.0.0.1", access.GetProperty("ClientAddress").GetString());
            Assert.Equal(clientPort, access.GetProperty("ClientPort").GetInt32());
        }
        finally
        {
            File.Delete(config);
        }
    }
}
