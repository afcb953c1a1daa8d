using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using PipeServer.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace PipeServer.Tests.StaticFiles;

// The executable with --root: what it serves, how it refuses a bad root, and a large download at SIGTERM —
// finished within --shutdown-timeout (exit 0), or reset at the deadline (fewer bytes than Content-Length, exit 2).
public class StaticFileProcessTests(ITestOutputHelper output) : IDisposable
{
    private const int DownloadBytes = 32 * 1024 * 1024;
    private const double ReadBytesPerSecond = 8_000_000; // the slow client: 32 MiB take about 4.2 s
    private readonly DirectoryInfo _root = CreateRoot();

    private static DirectoryInfo CreateRoot()
    {
        var dir = Directory.CreateTempSubdirectory("pipeserver-root-");
        File.WriteAllText(Path.Combine(dir.FullName, "index.html"), "<h1>served</h1>\n");
        using (var big = File.Create(Path.Combine(dir.FullName, "big.bin"))) big.SetLength(DownloadBytes);
        return dir;
    }

    public void Dispose()
    {
        try { _root.Delete(recursive: true); } catch (IOException) { }
    }

    private static async Task<RawResponse> GetAsync(int port, string path)
    {
        await using var c = await RawConnection.ConnectAsync(port);
        await c.SendAsync($"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        return await c.ReadResponseAsync();
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Root_serves_files_instead_of_the_demo_and_keeps_the_probes(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--root", _root.FullName, "--metrics");
        Assert.Equal("<h1>served</h1>\n", (await GetAsync(server.Port, "/")).BodyText);
        Assert.Equal(200, (await GetAsync(server.Port, "/healthz")).Status);
        Assert.Equal(200, (await GetAsync(server.Port, "/readyz")).Status);
        Assert.Contains("http_server_request_duration", (await GetAsync(server.Port, "/metrics")).BodyText);
        Assert.Equal(404, (await GetAsync(server.Port, "/plaintext")).Status); // the demo endpoints are gone
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task With_the_probes_only_on_the_admin_port_every_traffic_path_is_a_file(string transport)
    {
        File.WriteAllText(Path.Combine(_root.FullName, "healthz"), "a file called healthz\n");
        using var server = await ServerProcess.StartOnAsync(transport, "--root", _root.FullName, "--admin-port", "0", "--admin-on-traffic-port", "false");
        Assert.Equal("a file called healthz\n", (await GetAsync(server.Port, "/healthz")).BodyText);
        Assert.Equal(404, (await GetAsync(server.Port, "/readyz")).Status);
        Assert.Equal("ok\n", (await GetAsync(server.AdminPort!.Value, "/healthz")).BodyText);
        Assert.Equal(200, (await GetAsync(server.AdminPort!.Value, "/readyz")).Status);
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task PIPESERVER_ROOT_does_the_same_and_metrics_is_a_file_path_without_the_flag(string transport)
    {
        File.WriteAllText(Path.Combine(_root.FullName, "metrics"), "a file called metrics\n");
        using var server = ServerProcess.Run(["--address", "127.0.0.1", "--port", "0", "--heartbeat-interval", "0", "--transport", transport],
            new Dictionary<string, string> { ["PIPESERVER_ROOT"] = _root.FullName });
        await server.WaitForOutputAsync("Listening on");
        var port = int.Parse(System.Text.RegularExpressions.Regex.Match(server.Output, @"Listening on http://[^\s]+:(\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal("<h1>served</h1>\n", (await GetAsync(port, "/index.html")).BodyText);
        Assert.Equal("a file called metrics\n", (await GetAsync(port, "/metrics")).BodyText);
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    [Theory]
    [InlineData("/nonexistent/pipeserver-root", "is not a directory")]
    [InlineData("FILE", "is not a directory")]
    [InlineData("UNREADABLE", "cannot be read")]
    public async Task A_missing_or_unreadable_root_is_a_clear_message_and_exit_1(string root, string message)
    {
        if (root == "FILE") root = Path.Combine(_root.FullName, "index.html");
        if (root == "UNREADABLE")
        {
            if (OperatingSystem.IsWindows() || Environment.UserName == "root") return; // root reads every directory: nothing to refuse
            root = Path.Combine(_root.FullName, "locked");
            Directory.CreateDirectory(root);
            File.SetUnixFileMode(root, UnixFileMode.None);
        }
        try
        {
            using var server = ServerProcess.Run(["--port", "0", "--root", root]);
            Assert.Equal(1, await server.WaitForExitAsync());
            Assert.Contains($"PipeServer: --root: '{root}' {message}", server.Output);
        }
        finally
        {
            if (!OperatingSystem.IsWindows() && Directory.Exists(root) && root.EndsWith("locked", StringComparison.Ordinal)) File.SetUnixFileMode(root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    /// <summary>
    /// Reads a response head and then its body at about <see cref="ReadBytesPerSecond"/>, with a small receive
    /// buffer so the server really waits for us. Returns the Content-Length, the body bytes received, and
    /// whether the connection ended with a reset.
    /// </summary>
    private static async Task<(long ContentLength, long Received, bool Reset)> SlowDownloadAsync(Socket socket, TaskCompletionSource started, TimeSpan bound)
    {
        using var cts = new CancellationTokenSource(bound);
        var buffer = new byte[16 * 1024];
        var head = new MemoryStream();
        long contentLength = -1, received = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            while (true)
            {
                int n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
                if (n == 0) return (contentLength, received, false);
                if (contentLength < 0)
                {
                    head.Write(buffer, 0, n);
                    var text = Encoding.Latin1.GetString(head.ToArray());
                    int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                    if (end < 0) continue;
                    var match = System.Text.RegularExpressions.Regex.Match(text[..end], @"Content-Length: (\d+)");
                    contentLength = long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
                    received = head.Length - (end + 4);
                    started.TrySetResult();
                    clock.Restart();
                }
                else received += n;
                if (received >= contentLength) return (contentLength, received, false);
                // Pace: never ahead of the rate.
                var due = TimeSpan.FromSeconds(received / ReadBytesPerSecond) - clock.Elapsed;
                if (due > TimeSpan.Zero) await Task.Delay(due, cts.Token);
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            return (contentLength, received, true);
        }
    }

    private static async Task<Socket> ConnectSlowAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 64 * 1024 };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await socket.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port), cts.Token);
        await socket.SendAsync("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"u8.ToArray(), SocketFlags.None, cts.Token);
        return socket;
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_slow_32_MiB_download_in_flight_at_SIGTERM_completes_and_the_exit_is_0(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--root", _root.FullName, "--shutdown-timeout", "30");
        using var socket = await ConnectSlowAsync(server.Port);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var download = SlowDownloadAsync(socket, started, TimeSpan.FromSeconds(40));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(500); // a good part of the body still to come
        var clock = Stopwatch.StartNew();
        server.Signal(ServerProcess.SIGTERM);
        var (length, received, reset) = await download;
        output.WriteLine($"{received} of {length} bytes, reset={reset}, {clock.Elapsed.TotalSeconds:F1} s after SIGTERM");
        Assert.Equal(DownloadBytes, length);
        Assert.False(reset);
        Assert.Equal(length, received);
        Assert.True(clock.Elapsed > TimeSpan.FromSeconds(1), "the download was not in flight at SIGTERM"); // it took its time after the signal
        Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(35)));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_slow_download_past_the_shutdown_deadline_is_reset_and_the_exit_is_2(string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--root", _root.FullName, "--shutdown-timeout", "1");
        using var socket = await ConnectSlowAsync(server.Port);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var download = SlowDownloadAsync(socket, started, TimeSpan.FromSeconds(40));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var clock = Stopwatch.StartNew();
        server.Signal(ServerProcess.SIGTERM);
        var (length, received, reset) = await download;
        output.WriteLine($"{received} of {length} bytes, reset={reset}, {clock.Elapsed.TotalSeconds:F1} s after SIGTERM");
        Assert.Equal(DownloadBytes, length);
        Assert.True(received < length, "the whole body arrived: the deadline did not cut it");
        Assert.True(reset, "the cut download ended with a FIN: a client could take it for whole");
        Assert.Equal(2, await server.WaitForExitAsync(TimeSpan.FromSeconds(15)));
    }
}
