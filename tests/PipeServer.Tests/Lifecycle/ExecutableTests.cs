using System.Net;
using System.Net.Sockets;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Lifecycle;

// The real executable, as an operator runs it: options, the "Listening on" line, exit codes.
public class ExecutableTests
{
    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Serves_requests_and_exits_0_on_sigterm(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport);
        await using (var c = await RawConnection.ConnectAsync(server.Port))
        {
            await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /readyz HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.StartsWith("Hello from PipeServer", (await c.ReadResponseAsync()).BodyText);
            Assert.Equal("Hello, World!", (await c.ReadResponseAsync()).BodyText);
            Assert.Equal(200, (await c.ReadResponseAsync()).Status);
            Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        }
        using (var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) })
        {
            var json = await http.GetStringAsync($"http://127.0.0.1:{server.Port}/json");
            Assert.Equal("{\"message\":\"Hello, World!\"}", json);
        }
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
        Assert.Contains($"Listening on http://127.0.0.1:{server.Port}", server.Output);
        Assert.Contains("Shutdown complete", server.Output);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_taken_port_exits_1_with_a_clear_message(string transport)
    {
        using var blocker = new TcpListener(IPAddress.Loopback, 0);
        blocker.Start();
        int port = ((IPEndPoint)blocker.LocalEndpoint).Port;
        using var server = ServerProcess.Run(["--address", "127.0.0.1", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--heartbeat-interval", "0",
            "--transport", transport]);
        Assert.Equal(1, await server.WaitForExitAsync());
        Assert.Contains("already in use", server.Output);
        Assert.DoesNotContain("   at ", server.Output); // no stack trace
    }

    [Theory]
    [InlineData("--port", "abc", "--port: 'abc'")]
    [InlineData("--port", "70000", "--port: '70000'")]
    [InlineData("--shutdown-timeout", "-1", "--shutdown-timeout: '-1'")]
    [InlineData("--keep-alive-timeout", "0", "--keep-alive-timeout: '0'")]
    [InlineData("--max-connections", "0", "--max-connections: '0'")]
    [InlineData("--address", "not-an-ip", "--address: 'not-an-ip'")]
    [InlineData("--bogus", "1", "unknown option '--bogus'")]
    public async Task Bad_options_exit_1_with_a_message(string flag, string value, string message)
    {
        using var server = ServerProcess.Run([flag, value]);
        Assert.Equal(1, await server.WaitForExitAsync());
        Assert.Contains(message, server.Output);
    }

    [Fact]
    public async Task Bad_environment_values_exit_1_and_flags_win_over_the_environment()
    {
        using (var bad = ServerProcess.Run([], new Dictionary<string, string> { ["PIPESERVER_DRAIN_DELAY"] = "soon" }))
        {
            Assert.Equal(1, await bad.WaitForExitAsync());
            Assert.Contains("--drain-delay: 'soon'", bad.Output);
        }
        // The environment says a bad port; the flag overrides it, so the server starts.
        using var good = ServerProcess.Run(["--address", "127.0.0.1", "--port", "0", "--heartbeat-interval", "0"],
            new Dictionary<string, string> { ["PIPESERVER_PORT"] = "99999" });
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!good.Output.Contains("Listening on", StringComparison.Ordinal) && !good.HasExited && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Contains("Listening on", good.Output);
        good.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await good.WaitForExitAsync());
    }

    [Fact]
    public async Task Help_prints_usage_and_exits_0()
    {
        using var server = ServerProcess.Run(["--help"]);
        Assert.Equal(0, await server.WaitForExitAsync());
        Assert.Contains("--shutdown-timeout", server.Output);
        Assert.Contains("PIPESERVER_", server.Output);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Startup_logs_which_transport_runs_and_with_how_many_loops(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport);
        string expected = transport == "linux"
            ? $"Transport linux: {PipeServer.Transports.Linux.LinuxTransport.UsableCpuCount()} event loop(s), one thread each"
            : "Transport sockets: connections run on the thread pool";
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!server.Output.Contains(expected, StringComparison.Ordinal) && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Contains(expected, server.Output);
        await using (var c = await RawConnection.ConnectAsync(server.Port))
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        }
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Fact]
    public async Task An_unknown_transport_exits_1_with_a_clear_message()
    {
        using var server = ServerProcess.Run(["--transport", "iouring"]);
        Assert.Equal(1, await server.WaitForExitAsync());
        Assert.Contains("--transport: 'iouring' is not auto, sockets or linux", server.Output);
    }

    [Fact]
    public async Task Auto_runs_the_linux_transport_on_linux_and_says_so()
    {
        using var server = await ServerProcess.StartOnAsync("auto");
        await server.WaitForOutputAsync(PipeServer.Transports.Linux.LinuxTransport.IsSupported
            ? $"Transport linux (auto): {PipeServer.Transports.Linux.LinuxTransport.UsableCpuCount()} event loop(s), one thread each"
            : "Transport sockets (auto): connections run on the thread pool", TimeSpan.FromSeconds(10));
        await using (var c = await RawConnection.ConnectAsync(server.Port))
        {
            await c.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        }
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }
}
