using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Lifecycle;

// The executable under a low RLIMIT_NOFILE (soft = hard = 256) and more idle clients than it has
// descriptors: it must keep descriptors for the runtime (which aborts with "Out of memory." when it cannot
// get one to start a thread), answer everyone over its connection cap with a whole 503 at once, log the
// condition a bounded number of times, and serve again as soon as the clients leave.
public partial class FileDescriptorTests
{
    private const int Limit = 256, Clients = 600;

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Exhausting_connections_neither_kills_nor_hangs_the_server(string transport)
    {
        using var server = await ServerProcess.StartWithFileLimitAsync(Limit, "--transport", transport);
        var capLine = CapLine().Match(server.Output);
        Assert.True(capLine.Success, $"no connection-cap line at start-up; output:\n{server.Output}");
        Assert.Equal(Limit, int.Parse(capLine.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        int cap = int.Parse(capLine.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(cap, 1, Limit / 2);

        var clients = new List<RawConnection>();
        var reads = new List<Task<byte[]>>();
        try
        {
            for (int i = 0; i < Clients; i++)
            {
                var c = await RawConnection.ConnectAsync(server.Port);
                clients.Add(c);
                reads.Add(c.ReadToEndAsync(TimeSpan.FromSeconds(8))); // idle: the server speaks first or not at all
            }

            // Everyone over the cap is answered and closed; the cap's worth stay open and idle.
            var deadline = Stopwatch.StartNew();
            while (reads.Count(t => t.IsCompleted) < Clients - cap)
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(5),
                    $"{reads.Count(t => t.IsCompleted)} of the {Clients - cap} clients over the cap of {cap} were answered within 5 s; output:\n{Tail(server.Output)}");
                await Task.Delay(20);
            }
            Assert.Equal(Clients - cap, reads.Count(t => t.IsCompleted));
            foreach (var done in reads.Where(t => t.IsCompleted)) AssertWhole503(await done);
            Assert.False(server.HasExited);

            // At the cap, a new client gets its whole 503 and a FIN within a second, not a hang.
            var clock = Stopwatch.StartNew();
            await using (var late = await RawConnection.ConnectAsync(server.Port))
                AssertWhole503(await late.ReadToEndAsync(TimeSpan.FromSeconds(5)));
            var timeTo503 = clock.Elapsed;
            Assert.True(timeTo503 < TimeSpan.FromSeconds(1), $"503 at the cap took {timeTo503.TotalMilliseconds:F0} ms");

            // The connections never take the last descriptors.
            int open = Directory.GetFileSystemEntries($"/proc/{server.Pid}/fd").Length;
            Assert.True(open <= Limit - 32, $"{open} descriptors open at the cap, limit {Limit}");

            // The condition is logged, not every refused accept (the unfixed server wrote 414 lines in 7 s).
            int lines = server.Output.Split('\n').Count(l => l.Contains("refused", StringComparison.Ordinal) || l.Contains("Accept failed", StringComparison.Ordinal));
            Assert.InRange(lines, 1, 3);

            // The clients leave; the server serves again within a second. shutdown(2) first: the FIN goes out and
            // each pending read ends with EOF rather than an aborted-operation exception, so the clock measures
            // the server, not this process unwinding 64 exceptions.
            clock.Restart();
            foreach (var c in clients)
            {
                try { c.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Both); } catch (System.Net.Sockets.SocketException) { } // already reset
                await c.DisposeAsync();
            }
            clients.Clear();
            while (true)
            {
                await using var probe = await RawConnection.ConnectAsync(server.Port);
                await probe.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
                var r = await probe.ReadResponseAsync();
                if (r.Status == 200) break;
                Assert.Equal(503, r.Status);
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), "still refusing 1 s after the clients left");
                await Task.Delay(10);
            }
            var timeToRecover = clock.Elapsed;
            Assert.True(timeToRecover < TimeSpan.FromSeconds(1), $"recovery took {timeToRecover.TotalMilliseconds:F0} ms");

            server.Signal(ServerProcess.SIGTERM);
            Assert.Equal(0, await server.WaitForExitAsync());
            Console.WriteLine($"fd exhaustion: limit {Limit}, cap {cap}, 503 at the cap in {timeTo503.TotalMilliseconds:F0} ms, " +
                $"served again {timeToRecover.TotalMilliseconds:F0} ms after the clients left, {lines} log line(s), {open} descriptors open at the cap");
        }
        finally
        {
            foreach (var c in clients) await c.DisposeAsync();
            foreach (var t in reads) _ = t.Exception; // observed: the ones still open end with the disposal
        }
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task An_explicit_cap_above_what_the_limit_allows_is_kept_and_warned_about(string transport)
    {
        // Kept, as nginx and HAProxy keep it, because the operator may know better; warned about, because
        // with the JIT runtime reaching it is fatal: at 256 descriptors and --max-connections 1000, 300 idle
        // clients made the runtime abort with "Out of memory." within a second (a Native AOT build survives,
        // answering through the spare descriptor).
        using var server = await ServerProcess.StartWithFileLimitAsync(Limit, "--transport", transport, "--max-connections", "1000");
        Assert.Contains("connections capped at 1000 (--max-connections)", server.Output, StringComparison.Ordinal);
        Assert.Contains("--max-connections 1000 is more than the 64 connections the file descriptor limit of 256 leaves room for", server.Output, StringComparison.Ordinal);
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    /// <summary>The bytes up to the FIN are exactly one 503: head, then a body as long as its Content-Length says.</summary>
    internal static void AssertWhole503(byte[] all)
    {
        var text = Encoding.Latin1.GetString(all);
        int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        Assert.True(end > 0, $"no response head in '{text}'");
        var head = text[..end].Split("\r\n");
        Assert.StartsWith("HTTP/1.1 503 ", head[0], StringComparison.Ordinal);
        var length = head.Skip(1).Select(h => h.Split(':', 2)).Single(h => h[0].Equals("Content-Length", StringComparison.OrdinalIgnoreCase))[1].Trim();
        Assert.Contains(head.Skip(1), h => h.Equals("Connection: close", StringComparison.OrdinalIgnoreCase));
        Assert.Equal(int.Parse(length, System.Globalization.CultureInfo.InvariantCulture), all.Length - (end + 4));
    }

    private static string Tail(string output) => string.Join('\n', output.Split('\n').TakeLast(20));

    [GeneratedRegex(@"file descriptor limit (\d+).*connections capped at (\d+)", RegexOptions.IgnoreCase)]
    private static partial Regex CapLine();
}
