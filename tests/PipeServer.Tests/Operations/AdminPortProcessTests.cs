using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using PipeServer.Admin;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

// Issue 10, "An admin port for probes and metrics", against the real executable on every transport: the
// admin port answers while the traffic port is full and while it drains (until exit), has a cap of its own,
// can take the probes off the traffic port, fails the start clearly when taken, announces itself as a JSON
// event with --log-format json, and can be a socket systemd passes with the name "admin".
public partial class AdminPortProcessTests
{
    private static readonly TimeSpan PollDeadline = TimeSpan.FromSeconds(10);

    /// <summary>One request on a connection of its own (Connection: close).</summary>
    private static async Task<RawResponse> GetAsync(int port, string path)
    {
        await using var c = await RawConnection.ConnectAsync(port);
        await c.SendAsync($"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        return await c.ReadResponseAsync();
    }

    private static int AdminPortOf(ServerProcess server) => server.AdminPort ?? throw new InvalidOperationException("no 'Admin listening on' line; output:\n" + server.Output);

    [GeneratedRegex(@"^(\w+)(?:\{[^}]*\})? (\d+)", RegexOptions.Multiline)]
    private static partial Regex MetricLine();

    private static long Metric(string exposition, string name) =>
        MetricLine().Matches(exposition).Where(m => m.Groups[1].Value == name).Sum(m => long.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Probes_and_metrics_on_the_admin_port_answer_while_the_traffic_port_is_at_its_connection_cap(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--max-connections", "2", "--admin-port", "0");
        int admin = AdminPortOf(server);
        var held = new List<RawConnection>();
        try
        {
            for (int i = 0; i < 2; i++)
            {
                var c = await RawConnection.ConnectAsync(server.Port);
                held.Add(c);
                await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
                Assert.Equal(200, (await c.ReadResponseAsync()).Status); // answered: registered, holding a slot
            }
            // The traffic port is full: its own /healthz gets the over-capacity 503 (what made a kubelet restart a healthy pod).
            Assert.Equal(503, (await GetAsync(server.Port, "/healthz")).Status);

            Assert.Equal(200, (await GetAsync(admin, "/healthz")).Status);
            var ready = await GetAsync(admin, "/readyz");
            Assert.Equal((200, "ready\n"), (ready.Status, ready.BodyText));
            // /metrics without --metrics: the admin port always has it, and it is the traffic server's meter.
            var metrics = await GetAsync(admin, "/metrics");
            Assert.Equal(200, metrics.Status);
            Assert.Equal(1, Metric(metrics.BodyText, "pipeserver_rejected_connections_total"));
            Assert.Equal(2, Metric(metrics.BodyText, "pipeserver_active_connections")); // the admin's own connection is not counted
        }
        finally { foreach (var c in held) await c.DisposeAsync(); }
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Through_the_drain_the_admin_port_answers_readyz_503_and_healthz_200_after_the_traffic_port_stopped_accepting(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--admin-port", "0", "--drain-delay", "0.3", "--shutdown-timeout", "30");
        int admin = AdminPortOf(server);
        await using var slow = await RawConnection.ConnectAsync(server.Port);
        await slow.SendAsync("GET /slow?ms=6000 HTTP/1.1\r\nHost: a\r\n\r\n");
        // In its handler: read from the admin port's /metrics (the scrape there is not in the traffic meter).
        var clock = Stopwatch.StartNew();
        while (Metric((await GetAsync(admin, "/metrics")).BodyText, "http_server_active_requests") < 1)
        {
            if (clock.Elapsed > PollDeadline) throw new TimeoutException("the /slow request never reached its handler; output:\n" + server.Output);
            await Task.Delay(10);
        }

        server.Signal(ServerProcess.SIGTERM);
        await server.WaitForOutputAsync("Shutdown phase drain-delay");
        Assert.Equal(503, (await GetAsync(admin, "/readyz")).Status);
        await server.WaitForOutputAsync("Shutdown phase stop-accepting");
        await Assert.ThrowsAnyAsync<SocketException>(() => RawConnection.ConnectAsync(server.Port)); // the traffic port refuses now

        var ready = await GetAsync(admin, "/readyz");
        Assert.Equal((503, "shutting down\n"), (ready.Status, ready.BodyText));
        Assert.Equal(200, (await GetAsync(admin, "/healthz")).Status);
        var metrics = await GetAsync(admin, "/metrics"); // the drain itself can be scraped
        Assert.Equal(200, metrics.Status);
        Assert.Equal(1, Metric(metrics.BodyText, "http_server_active_requests"));
        Assert.False(server.Output.Contains("Shutdown complete", StringComparison.Ordinal), "the drain ended before the probes: the test proved nothing");

        var done = await slow.ReadResponseAsync(timeout: TimeSpan.FromSeconds(10));
        Assert.Equal(200, done.Status);
        Assert.Equal(0, await server.WaitForExitAsync());
        // Closed after the traffic server's shutdown had finished, not with it.
        var lines = server.Output.Split('\n');
        Assert.True(Array.FindIndex(lines, l => l.Contains("Service admin stopped", StringComparison.Ordinal))
            > Array.FindIndex(lines, l => l.Contains("Service http stopped", StringComparison.Ordinal)), server.Output);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task The_admin_port_has_its_own_cap_and_the_next_connection_gets_503(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--admin-port", "0", "--max-connections", "100");
        int admin = AdminPortOf(server);
        var held = new List<RawConnection>();
        try
        {
            for (int i = 0; i < AdminListener.MaxConnections; i++)
            {
                var c = await RawConnection.ConnectAsync(admin);
                held.Add(c);
                await c.SendAsync("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
                Assert.Equal(200, (await c.ReadResponseAsync()).Status);
            }
            var refused = await GetAsync(admin, "/healthz");
            Assert.Equal(503, refused.Status);
            Assert.True(refused.ConnectionClose);
            // The traffic port's cap is another one: it still serves.
            Assert.Equal(200, (await GetAsync(server.Port, "/plaintext")).Status);
        }
        finally { foreach (var c in held) await c.DisposeAsync(); }
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Admin_on_traffic_port_false_leaves_the_probes_and_metrics_to_the_admin_port(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--admin-port", "0", "--admin-on-traffic-port", "false", "--metrics");
        int admin = AdminPortOf(server);
        foreach (var path in (string[])["/healthz", "/readyz", "/metrics"])
        {
            Assert.Equal(404, (await GetAsync(server.Port, path)).Status);
            Assert.Equal(200, (await GetAsync(admin, path)).Status);
        }
        Assert.Equal(200, (await GetAsync(server.Port, "/plaintext")).Status);
        // The admin port is only the operator's endpoints.
        Assert.Equal(404, (await GetAsync(admin, "/plaintext")).Status);
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Without_an_admin_port_the_traffic_port_keeps_the_probes_and_turning_them_off_is_refused(string transport)
    {
        using (var server = await ServerProcess.StartOnAsync(transport))
        {
            Assert.Null(server.AdminPort);
            Assert.Equal(200, (await GetAsync(server.Port, "/healthz")).Status);
            Assert.Equal(200, (await GetAsync(server.Port, "/readyz")).Status);
            server.Signal(ServerProcess.SIGTERM);
            Assert.Equal(0, await server.WaitForExitAsync());
        }
        using var refused = ServerProcess.Run(["--address", "127.0.0.1", "--port", "0", "--transport", transport, "--admin-on-traffic-port", "false"]);
        Assert.Equal(1, await refused.WaitForExitAsync());
        Assert.Contains("--admin-on-traffic-port false needs an admin port", refused.Output);
        Assert.DoesNotContain("Listening on", refused.Output);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_taken_admin_port_is_a_clear_start_failure_with_exit_1(string transport)
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        using var server = ServerProcess.Run(["--address", "127.0.0.1", "--port", "0", "--heartbeat-interval", "0", "--transport", transport, "--admin-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.Equal(1, await server.WaitForExitAsync());
        Assert.Contains($"Service admin failed to start: admin port 127.0.0.1:{port} (--admin-port): the address and port are already in use", server.Output);
        Assert.DoesNotContain("Listening on", server.Output); // the traffic port was never opened
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Json_logs_announce_the_admin_port_as_an_event_of_its_own(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--admin-port", "0", "--log-format", "json");
        int admin = AdminPortOf(server);
        Assert.Equal(200, (await GetAsync(admin, "/healthz")).Status);
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());

        var docs = new List<JsonElement>();
        foreach (var line in server.StandardOutputLines.Where(l => l.Length > 0))
        {
            try { docs.Add(JsonDocument.Parse(line).RootElement); }
            catch (JsonException ex) { Assert.Fail($"not a JSON object: {line} ({ex.Message})"); }
        }
        var listening = docs.Where(d => d.GetProperty("Category").GetString() == "PipeServer.Listening").ToList();
        Assert.Equal(2, listening.Count);
        var adminEvent = Assert.Single(listening, d => d.GetProperty("EventId").GetInt32() == 3);
        Assert.Equal($"Admin listening on http://127.0.0.1:{admin}", adminEvent.GetProperty("Message").GetString());
        Assert.Equal($"http://127.0.0.1:{admin}", adminEvent.GetProperty("State").GetProperty("Url").GetString());
        var trafficEvent = Assert.Single(listening, d => d.GetProperty("EventId").GetInt32() == 1);
        Assert.Equal($"http://127.0.0.1:{server.Port}", trafficEvent.GetProperty("State").GetProperty("Url").GetString());
    }

    [TheoryRequiringCommand("systemd-socket-activate", "systemd"), MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_socket_passed_with_the_name_admin_is_the_admin_listener(string transport)
    {
        int traffic = FreePort(), admin = FreePort();
        var activator = FactRequiringCommandAttribute.FindOnPath("systemd-socket-activate")!;
        using var server = ServerProcess.RunCommand(activator,
            ["-l", $"127.0.0.1:{traffic}", "-l", $"127.0.0.1:{admin}", "--fdname=http:admin",
             "dotnet", ServerProcess.ExecutablePath, "--heartbeat-interval", "0", "--transport", transport, "--admin-port", "1", "--admin-on-traffic-port", "false"]);
        // The first connection starts the server; until it listens the connection waits in the backlog (the
        // activator may not have bound yet either: retry the connect, bounded), and its answer waits for the start.
        var deadline = DateTime.UtcNow.AddSeconds(20);
        RawConnection c;
        while (true)
        {
            try { c = await RawConnection.ConnectAsync(traffic); break; }
            catch (SocketException) when (DateTime.UtcNow < deadline && !server.HasExited) { await Task.Delay(50); }
        }
        await using (c)
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
            Assert.Equal(200, (await c.ReadResponseAsync(timeout: TimeSpan.FromSeconds(20))).Status);
        }
        await server.WaitForOutputAsync($"Admin listening on http://127.0.0.1:{admin} (fd 4, name admin)");
        Assert.Equal(200, (await GetAsync(admin, "/readyz")).Status);
        Assert.Equal(404, (await GetAsync(traffic, "/readyz")).Status); // admin only: the passed admin socket counts as the admin port
        Assert.Contains("1 socket(s) passed by systemd", server.Output);
        Assert.Contains("--admin-port is ignored", server.Output);
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
