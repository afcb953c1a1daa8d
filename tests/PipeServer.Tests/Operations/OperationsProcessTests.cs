using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

// Logs, systemd socket activation and sd_notify, against the real executable.
public class OperationsProcessTests
{
    [Fact]
    public async Task Json_logs_and_the_access_log_are_one_object_per_line()
    {
        using var server = await ServerProcess.StartAsync("--log-format", "json", "--access-log");
        await using (var c = await RawConnection.ConnectAsync(server.Port))
        {
            await c.SendAsync("GET /plaintext?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
            await c.ReadResponseAsync();
        }
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
        var jsonLines = server.Output.Split('\n').Where(l => l.StartsWith('{')).ToList();
        Assert.NotEmpty(jsonLines);
        var docs = jsonLines.Select(l => JsonDocument.Parse(l)).ToList();
        var access = Assert.Single(docs, d => d.RootElement.GetProperty("Category").GetString() == "PipeServer.AccessLog");
        var message = access.RootElement.GetProperty("Message").GetString()!;
        Assert.Matches(@"^127\.0\.0\.1 - - \[[^\]]+\] ""GET /plaintext\?x=1 HTTP/1\.1"" 200 13 ""-"" ""-"" [0-9.]+ ""\d+-1""$", message);
        Assert.Contains(docs, d => d.RootElement.GetProperty("Message").GetString()!.StartsWith("Shutdown complete", StringComparison.Ordinal));
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [Fact]
    public async Task Serves_on_the_socket_systemd_passes()
    {
        if (!File.Exists("/usr/bin/systemd-socket-activate")) Assert.Fail("systemd-socket-activate is part of Debian's systemd package and is expected here");
        int port = FreePort();
        using var server = ServerProcess.RunCommand("/usr/bin/systemd-socket-activate",
            ["-l", $"127.0.0.1:{port}", "dotnet", ServerProcess.ExecutablePath, "--port", "1", "--heartbeat-interval", "0"]);
        // systemd-socket-activate binds, then starts the server when the first connection arrives.
        RawConnection? c = null;
        for (int i = 0; i < 100 && c is null; i++)
        {
            try { c = await RawConnection.ConnectAsync(port); }
            catch (SocketException) { await Task.Delay(50); }
        }
        Assert.NotNull(c);
        await using (c)
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(20));
            Assert.Equal("Hello, World!", r.BodyText);
        }
        Assert.Contains("socket passed by systemd", server.Output);
        Assert.Contains($"Listening on http://127.0.0.1:{port}", server.Output); // not port 1: nothing was bound
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Fact]
    public async Task Notifies_systemd_ready_stopping_and_status()
    {
        var path = Path.Combine(Path.GetTempPath(), $"pipeserver-notify-{Guid.NewGuid():N}.sock");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        try
        {
            var messages = new List<string>();
            async Task<string> NextAsync()
            {
                var buffer = new byte[4096];
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                int n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                var m = Encoding.UTF8.GetString(buffer, 0, n);
                messages.Add(m);
                return m;
            }

            using var server = ServerProcess.Run(["--address", "127.0.0.1", "--port", "0", "--heartbeat-interval", "0"],
                new Dictionary<string, string> { ["NOTIFY_SOCKET"] = path });
            var ready = await NextAsync();
            Assert.StartsWith("READY=1\n", ready);
            Assert.Contains("STATUS=Listening on http://127.0.0.1:", ready);

            server.Signal(ServerProcess.SIGTERM);
            Assert.StartsWith("STOPPING=1", await NextAsync());
            while (!messages[^1].Contains("wait-for-drain", StringComparison.Ordinal)) await NextAsync();
            Assert.Contains(messages, m => m.StartsWith("STATUS=mark-not-ready", StringComparison.Ordinal));
            Assert.Contains(messages, m => m.StartsWith("STATUS=stop-accepting", StringComparison.Ordinal));
            Assert.Equal(0, await server.WaitForExitAsync());
        }
        finally { File.Delete(path); }
    }
}
