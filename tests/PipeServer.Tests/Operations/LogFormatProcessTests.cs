using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Operations;

// Issue 10, "Logs", against the real executable: with --log-format json every line on standard output is
// one JSON object (the "Listening on" announcement too), and the access log does not depend on --log-level.
public class LogFormatProcessTests
{
    private static async Task SendAsync(int port, string request)
    {
        await using var c = await RawConnection.ConnectAsync(port);
        await c.SendAsync(Encoding.Latin1.GetBytes(request));
        await c.ReadResponseAsync();
    }

    private static async Task StopAsync(ServerProcess server)
    {
        server.Signal(ServerProcess.SIGTERM);
        Assert.Equal(0, await server.WaitForExitAsync());
    }

    public static TheoryData<string> JsonLevels => new() { "information", "warning", "none" };
    public static TheoryData<string> TextLevels => new() { "warning", "none" };

    [Theory]
    [MemberData(nameof(TransportData.Cross), typeof(LogFormatProcessTests), nameof(JsonLevels), MemberType = typeof(TransportData))]
    public async Task Json_every_stdout_line_is_one_object_the_listening_line_and_access_lines_included(string level, string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--log-format", "json", "--access-log", "--log-level", level);
        await SendAsync(server.Port, "GET /a%0D%0Ab?q=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: x\"y\\z\t\u00ff\r\n\r\n");
        await StopAsync(server);

        var lines = server.StandardOutputLines;
        Assert.NotEmpty(lines);
        var docs = new List<JsonElement>();
        foreach (var line in lines)
        {
            Assert.All(line, ch => Assert.False(char.IsControl(ch), $"raw control character in: {line}"));
            try { docs.Add(JsonDocument.Parse(line).RootElement); }
            catch (JsonException ex) { Assert.Fail($"not a JSON object: {line} ({ex.Message})"); }
        }
        var listening = Assert.Single(docs, d => d.GetProperty("Message").GetString()!.StartsWith("Listening on http://", StringComparison.Ordinal));
        Assert.Equal($"http://127.0.0.1:{server.Port}", listening.GetProperty("State").GetProperty("Url").GetString());

        var access = Assert.Single(docs, d => d.GetProperty("Category").GetString() == "PipeServer.AccessLog");
        var state = access.GetProperty("State");
        Assert.Equal("127.0.0.1", state.GetProperty("ClientAddress").GetString());
        Assert.Equal("/a%0D%0Ab?q=1", state.GetProperty("Target").GetString());
        Assert.Equal("x\"y\\z\t\u00ff", state.GetProperty("UserAgent").GetString()); // JSON escaping, unescaped by the parser: the exact bytes
        Assert.Equal(404, state.GetProperty("Status").GetInt32());
        Assert.Equal("HTTP/1.1", state.GetProperty("Protocol").GetString());
        if (level != "information")
            Assert.DoesNotContain(docs, d => d.GetProperty("Category").GetString() is not ("PipeServer.AccessLog" or "PipeServer.Listening")
                && d.GetProperty("LogLevel").GetString() == "Information");
    }

    [Theory]
    [MemberData(nameof(TransportData.Cross), typeof(LogFormatProcessTests), nameof(TextLevels), MemberType = typeof(TransportData))]
    public async Task Text_access_lines_are_bare_combined_format_whatever_the_log_level(string level, string transport)
    {
        using var server = await ServerProcess.StartOnAsync(transport, "--access-log", "--log-level", level);
        await SendAsync(server.Port, "GET /plaintext?x=1 HTTP/1.1\r\nHost: a\r\nReferer: http://r/\r\nUser-Agent: ua \"q\"\r\n\r\n");
        await StopAsync(server);

        var lines = server.StandardOutputLines;
        Assert.Contains(lines, l => l.StartsWith($"Listening on http://127.0.0.1:{server.Port}", StringComparison.Ordinal));
        var access = Assert.Single(lines, l => l.Contains("/plaintext", StringComparison.Ordinal));
        Assert.Matches(new Regex(@"^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] ""GET /plaintext\?x=1 HTTP/1\.1"" 200 13 ""http://r/"" ""ua \\x22q\\x22"" \d+\.\d{6} ""\d+-1""$"), access);
        Assert.DoesNotContain(lines, l => l.Contains("info:", StringComparison.Ordinal)); // the level still filters everything else
    }
}
