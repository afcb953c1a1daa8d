using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

// systemd socket activation against the real executable, started by the real systemd-socket-activate (it
// binds each -l ADDR, names them with --fdname, and execs the server on the first connection with
// LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES set, as systemd does for a .socket unit).
public class SocketActivationTests
{
    private static string Activator => FactRequiringCommandAttribute.FindOnPath("systemd-socket-activate")!;

    private static string[] Server(string transport, params string[] args) =>
        ["dotnet", ServerProcess.ExecutablePath, "--heartbeat-interval", "0", "--transport", transport, .. args];

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static int FreePortV6()
    {
        using var l = new TcpListener(IPAddress.IPv6Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static string SocketPath() => Path.Combine(Path.GetTempPath(), $"pipeserver-{Guid.NewGuid():N}.sock");

    /// <summary>
    /// The activator starts the server on the first connection, so the first connect may come before the
    /// server listens (it then waits in the backlog) or before the activator has even bound: retry, bounded.
    /// </summary>
    private static async Task<RawConnection> ConnectAsync(ServerProcess server, Func<Task<RawConnection>> connect)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            try { return await connect(); }
            catch (SocketException) when (DateTime.UtcNow < deadline && !server.HasExited) { await Task.Delay(50); }
        }
    }

    private static async Task AssertServesAsync(RawConnection c)
    {
        await using (c)
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(20)); // the first one waits for the server's start
            Assert.Equal(200, r.Status);
            Assert.Equal("Hello, World!", r.BodyText);
        }
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Serves_on_the_tcp_socket_systemd_passes(string transport)
    {
        int port = FreePort();
        using var server = ServerProcess.RunCommand(Activator, ["-l", $"127.0.0.1:{port}", .. Server(transport, "--port", "1")]);
        await AssertServesAsync(await ConnectAsync(server, () => RawConnection.ConnectAsync(port)));
        await server.WaitForOutputAsync($"Listening on http://127.0.0.1:{port}"); // its real address, not port 1: nothing was bound
        Assert.Contains("1 socket(s) passed by systemd", server.Output);
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Serves_on_a_unix_socket_systemd_passes(string transport)
    {
        // ListenStream=/run/pipeserver.sock. Before the fix the first connection threw on NoDelay (a Unix
        // socket has no TCP options), the accept loop died and the process exited 1.
        var path = SocketPath();
        try
        {
            using var server = ServerProcess.RunCommand(Activator, ["-l", path, .. Server(transport, "--access-log")]);
            await AssertServesAsync(await ConnectAsync(server, () => RawConnection.ConnectUnixAsync(path)));
            await AssertServesAsync(await RawConnection.ConnectUnixAsync(path)); // the accept loop is still there
            await server.WaitForOutputAsync($"Listening on unix:{path}");
            // A Unix peer has no address: the access log says so as nginx does ("unix:"), not with a blank.
            await server.WaitForOutputAsync("unix: - - [");
            server.Signal(ServerProcess.SIGTERM);
            Assert.Equal(0, await server.WaitForExitAsync());
        }
        finally { File.Delete(path); }
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Serves_on_every_socket_passed_and_logs_each_with_its_name(string transport)
    {
        int v4 = FreePort(), v6 = FreePortV6();
        var path = SocketPath();
        try
        {
            using var server = ServerProcess.RunCommand(Activator,
                ["-l", $"127.0.0.1:{v4}", "-l", $"[::1]:{v6}", "-l", path, "--fdname=web4:web6:local",
                 .. Server(transport, "--address", "127.0.0.1", "--port", "1")]);
            await AssertServesAsync(await ConnectAsync(server, () => RawConnection.ConnectAsync(v4)));
            await AssertServesAsync(await ConnectV6Async(v6));
            await AssertServesAsync(await RawConnection.ConnectUnixAsync(path));
            await server.WaitForOutputAsync($"Listening on unix:{path}");
            Assert.Contains($"Listening on http://127.0.0.1:{v4} (fd 3, name web4)", server.Output);
            Assert.Contains($"Listening on http://[::1]:{v6} (fd 4, name web6)", server.Output);
            Assert.Contains($"Listening on unix:{path} (fd 5, name local)", server.Output);
            Assert.Contains("3 socket(s) passed by systemd", server.Output);
            // The flags were given and mean nothing now: say so, naming them.
            Assert.Contains("--address and --port are ignored", server.Output);
            server.Signal(ServerProcess.SIGTERM);
            Assert.Equal(0, await server.WaitForExitAsync());
        }
        finally { File.Delete(path); }
    }

    private static async Task<RawConnection> ConnectV6Async(int port)
    {
        // RawConnection speaks IPv4 loopback; an IPv6 one is wrapped through a connected socket of our own.
        var socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        using var cts = new CancellationTokenSource(RawConnection.DefaultTimeout);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.IPv6Loopback, port), cts.Token);
        return RawConnection.FromConnected(socket);
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Json_logs_announce_each_passed_socket_as_an_event_and_warn_about_ignored_environment(string transport)
    {
        int port = FreePort();
        var path = SocketPath();
        try
        {
            using var server = ServerProcess.RunCommand(Activator,
                // The activator hands its child a fresh environment: -E passes a variable on.
                ["-l", $"127.0.0.1:{port}", "-l", path, "--fdname=web:local", "-E", "PIPESERVER_PORT=9", .. Server(transport, "--log-format", "json")]);
            await AssertServesAsync(await ConnectAsync(server, () => RawConnection.ConnectAsync(port)));
            await server.WaitForOutputAsync($"unix:{path}");
            server.Signal(ServerProcess.SIGTERM);
            Assert.Equal(0, await server.WaitForExitAsync());
            var docs = server.StandardOutputLines.Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            var listening = docs.Where(d => d.GetProperty("Category").GetString() == "PipeServer.Listening").ToList();
            Assert.Equal(2, listening.Count);
            Assert.Equal($"http://127.0.0.1:{port}", listening[0].GetProperty("State").GetProperty("Url").GetString());
            Assert.Equal("web", listening[0].GetProperty("State").GetProperty("FdName").GetString());
            Assert.Equal($"unix:{path}", listening[1].GetProperty("State").GetProperty("Url").GetString());
            Assert.Equal("local", listening[1].GetProperty("State").GetProperty("FdName").GetString());
            Assert.Contains(docs, d => d.GetProperty("LogLevel").GetString() == "Warning" && d.GetProperty("Message").GetString()!.Contains("PIPESERVER_PORT is ignored", StringComparison.Ordinal));
        }
        finally { File.Delete(path); }
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Passed_descriptors_that_are_not_listening_stream_sockets_are_skipped_with_a_warning(string transport)
    {
        // systemd can pass FIFOs (ListenFIFO=), datagram sockets (ListenDatagram=) and more beside the stream
        // socket; the activator passes only sockets of one kind, so a shell between it and the server (exec
        // keeps the PID that LISTEN_PID names) opens a UDP socket as fd 4 and a FIFO as fd 5 and counts them in.
        int port = FreePort();
        var fifo = Path.Combine(Path.GetTempPath(), $"pipeserver-{Guid.NewGuid():N}.fifo");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo]))
        {
            Assert.True(mkfifo.WaitForExit(10_000) && mkfifo.ExitCode == 0, "mkfifo failed");
        }
        try
        {
            var serverArgs = string.Join(' ', Server(transport).Select(a => $"'{a}'"));
            using var server = ServerProcess.RunCommand(Activator,
                ["-l", $"127.0.0.1:{port}", "--fdname=web", "bash", "-c",
                 $"exec 4<>/dev/udp/127.0.0.1/9 5<>'{fifo}'; export LISTEN_FDS=3 LISTEN_FDNAMES=web:udp:fifo; exec {serverArgs}"]);
            await AssertServesAsync(await ConnectAsync(server, () => RawConnection.ConnectAsync(port)));
            await server.WaitForOutputAsync($"Listening on http://127.0.0.1:{port} (fd 3, name web)");
            Assert.Contains("fd 4 (udp) is not a listening stream socket: a datagram socket; ignored", server.Output);
            Assert.Contains("fd 5 (fifo) is not a listening stream socket: not a socket; ignored", server.Output);
            Assert.Contains("1 socket(s) passed by systemd", server.Output);
            server.Signal(ServerProcess.SIGTERM);
            Assert.Equal(0, await server.WaitForExitAsync());
        }
        finally { File.Delete(fifo); }
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Only_a_datagram_socket_passed_is_a_clear_start_failure(string transport)
    {
        int port = FreePort();
        using var server = ServerProcess.RunCommand(Activator, ["-d", "-l", $"127.0.0.1:{port}", .. Server(transport)]);
        // The activator starts the server when the socket becomes readable: send datagrams until it has.
        using var udp = new UdpClient();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!server.Output.Contains("no listening stream socket", StringComparison.Ordinal) && !server.HasExited && DateTime.UtcNow < deadline)
        {
            await udp.SendAsync(new byte[] { 1 }, new IPEndPoint(IPAddress.Loopback, port));
            await Task.Delay(50);
        }
        Assert.Equal(1, await server.WaitForExitAsync());
        Assert.Contains("fd 3 (unknown) is not a listening stream socket: a datagram socket", server.Output);
        Assert.Contains("no listening stream socket", server.Output);
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Accept_yes_passes_a_connected_socket_which_is_refused_with_the_fix_named(string transport)
    {
        // Accept=yes (the activator's -a): one instance per connection, fd 3 the connection itself. PipeServer
        // is a server with its own accept loop: it says to use Accept=no, and exits 1.
        int port = FreePort();
        using var activator = ServerProcess.RunCommand(Activator, ["-a", "-l", $"127.0.0.1:{port}", .. Server(transport)]);
        await using var c = await ConnectAsync(activator, () => RawConnection.ConnectAsync(port));
        Assert.Contains(await c.WaitForCloseAsync(TimeSpan.FromSeconds(20)), RawConnection.ClosedWithoutAnswer); // the instance exits
        await activator.WaitForOutputAsync("fd 3 (unknown) is not a listening stream socket: a stream socket that is not listening (a connected one, as Accept=yes passes: use Accept=no); ignored");
        Assert.Contains("no listening stream socket", activator.Output);
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Sigterm_drains_a_response_in_flight_on_a_unix_socket_and_exits_0(string transport)
    {
        var path = SocketPath();
        try
        {
            using var server = ServerProcess.RunCommand(Activator, ["-l", path, .. Server(transport)]);
            await using var c = await ConnectAsync(server, () => RawConnection.ConnectUnixAsync(path));
            await c.SendAsync("GET /stream?count=100&interval=100 HTTP/1.1\r\nHost: a\r\n\r\n");
            var head = await c.ReadHeadAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(200, head.Status);
            Assert.NotNull(await c.ReadChunkAsync()); // in flight
            server.Signal(ServerProcess.SIGTERM);
            // The stream ends early and cleanly on drain: a last chunk, then the close.
            int chunks = 1;
            while (await c.ReadChunkAsync() is not null) Assert.True(++chunks < 100, "the stream did not end early on drain");
            Assert.Equal(0, await server.WaitForExitAsync());
            Assert.Contains("all connections drained", server.Output);
        }
        finally { File.Delete(path); }
    }

    public static TheoryData<string> ProxyModes => new() { "send-proxy", "send-proxy-v2" };

    [TheoryRequiringCommand("systemd-socket-activate", "systemd", "haproxy", "haproxy")]
    [MemberData(nameof(TransportData.Cross), typeof(SocketActivationTests), nameof(ProxyModes), MemberType = typeof(TransportData))]
    public async Task Haproxy_send_proxy_to_a_unix_socket_names_the_client_with_trusted_proxies_unix(string mode, string transport)
    {
        // `server s1 unix@/run/pipeserver.sock send-proxy`: the balancer's PROXY header over a Unix socket,
        // believed because --trusted-proxies lists unix:. The client port proves the header was read.
        var path = SocketPath();
        int front = FreePort();
        var config = Path.Combine(Path.GetTempPath(), $"pipeserver-haproxy-{Guid.NewGuid():N}.cfg");
        File.WriteAllText(config, $"""
            global
                maxconn 100
            defaults
                mode http
                timeout connect 2s
                timeout client 20s
                timeout server 20s
            frontend f
                bind 127.0.0.1:{front}
                default_backend b
            backend b
                http-reuse never
                server s1 unix@{path} {mode}
            """ + "\n"); // HAProxy refuses a last line without LF
        try
        {
            using var server = ServerProcess.RunCommand(Activator,
                ["-l", path, .. Server(transport, "--proxy-protocol", "--trusted-proxies", "unix:", "--access-log", "--log-format", "json")]);
            using var haproxy = ServerProcess.RunCommand(FactRequiringCommandAttribute.FindOnPath("haproxy")!, ["-f", config, "-db"]);
            await using (var c = await ConnectAsync(haproxy, () => RawConnection.ConnectAsync(front)))
            {
                int clientPort = ((IPEndPoint)c.Socket.LocalEndPoint!).Port;
                await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
                var r = await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(20)); // the first connection starts the server
                Assert.Equal(200, r.Status);
                // Directly on the Unix socket without a header: a trusted peer must send one, so it is refused.
                await using (var direct = await RawConnection.ConnectUnixAsync(path))
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
                Assert.Equal("unix:", access.GetProperty("PeerAddress").GetString());
            }
        }
        finally
        {
            File.Delete(config);
            File.Delete(path);
        }
    }
}
