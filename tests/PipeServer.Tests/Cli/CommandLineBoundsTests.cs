using System.Text.RegularExpressions;
using PipeServer.Cli;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Cli;

// Issue 10, "CLI": names instead of numbers for levels, a bound that a flag crosses is reported against that
// flag, every bound is written in --help, and --min-response-rate says what it measures (one send's stall).
public class CommandLineBoundsTests
{
    private static readonly Dictionary<string, string?> NoEnv = new();

    [Theory]
    [InlineData("42")]
    [InlineData("2")]
    [InlineData("-1")]
    [InlineData("warning,error")]
    public void Log_level_takes_names_only(string value)
    {
        var ex = Assert.Throws<CommandLineException>(() => CommandLine.Parse(["--log-level", value], NoEnv));
        Assert.Contains("--log-level", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Warning", Microsoft.Extensions.Logging.LogLevel.Warning)]
    [InlineData("none", Microsoft.Extensions.Logging.LogLevel.None)]
    [InlineData("trace", Microsoft.Extensions.Logging.LogLevel.Trace)]
    public void Log_level_names_still_work(string value, Microsoft.Extensions.Logging.LogLevel expected) =>
        Assert.Equal(expected, CommandLine.Parse(["--log-level", value], NoEnv)!.LogLevel);

    /// <summary>Each numeric flag: its largest accepted value, the smallest refused one above it, and the bound as --help must print it.</summary>
    public static TheoryData<string, string, string, string> UpperBounds => new()
    {
        { "port", "65535", "65536", "65535" },
        { "shutdown-timeout", "86400", "86401", "86400" },
        { "drain-delay", "86400", "86401", "86400" },
        { "request-header-timeout", "86400", "86401", "86400" },
        { "keep-alive-timeout", "86400", "86401", "86400" },
        { "heartbeat-interval", "86400", "86401", "86400" },
        { "max-connections", "1000000", "1000001", "1000000" },
        { "max-request-body-size", "9223372036854775807", "9223372036854775808", "9223372036854775807" },
        { "max-request-line-size", "65536", "65537", "65536" },
        { "max-request-header-count", "10000", "10001", "10000" },
        { "max-request-headers-size", "524288", "524289", "524288" },
        { "min-request-body-rate", "1000000000", "1000000001", "1000000000" },
        { "min-response-rate", "1000000000", "1000000001", "1000000000" },
    };

    [Theory]
    [MemberData(nameof(UpperBounds))]
    public void Every_upper_bound_is_enforced_against_its_flag_and_printed_in_help(string flag, string largest, string refused, string printed)
    {
        Assert.NotNull(CommandLine.Parse(["--" + flag, largest], NoEnv)); // the documented maximum itself is accepted
        var ex = Assert.Throws<CommandLineException>(() => CommandLine.Parse(["--" + flag, refused], NoEnv));
        Assert.StartsWith("--" + flag + ":", ex.Message, StringComparison.Ordinal);
        var helpLine = Assert.Single(CommandLine.Usage().Split('\n'), l => l.TrimStart().StartsWith("--" + flag + " ", StringComparison.Ordinal));
        Assert.Matches(@"\bmax(imum)? " + Regex.Escape(printed) + @"\b|to " + Regex.Escape(printed) + @"\b", helpLine);
    }

    [Theory]
    [InlineData("--max-request-line-size", "1048576")]
    [InlineData("--max-request-line-size", "1015809")]
    [InlineData("--max-request-headers-size", "1048576")]
    public void A_size_that_no_longer_fits_names_its_flag_not_an_internal_setting(string flag, string value)
    {
        var ex = Assert.Throws<CommandLineException>(() => CommandLine.Parse([flag, value], NoEnv));
        Assert.StartsWith(flag + ":", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("input buffer", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_largest_line_and_header_sizes_together_still_validate()
    {
        var o = CommandLine.Parse(["--max-request-line-size", "65536", "--max-request-headers-size", "524288"], NoEnv)!.Server;
        o.Validate(); // fits in the per-connection input buffer
    }

    [Fact]
    public void Help_keeps_two_spaces_between_every_flag_and_its_text()
    {
        foreach (var line in CommandLine.Usage().Split('\n').Where(l => l.StartsWith("  --", StringComparison.Ordinal)))
            Assert.Matches(@"^  --[a-z-]+( [A-Z_]+)?  +\S", line);
    }

    [Fact]
    public void Min_response_rate_is_documented_as_a_per_send_stall_rule()
    {
        var line = Assert.Single(CommandLine.Usage().Split('\n'), l => l.TrimStart().StartsWith("--min-response-rate ", StringComparison.Ordinal));
        Assert.Contains("send", line, StringComparison.Ordinal);
        Assert.Contains("no progress", line, StringComparison.Ordinal);
        Assert.Contains("not an average", line, StringComparison.Ordinal);
    }

    [Fact]
    public void Trusted_proxies_and_the_proxy_protocol_from_flags_and_environment()
    {
        var o = CommandLine.Parse(["--trusted-proxies", "10.0.0.0/8, 127.0.0.1,::1", "--proxy-protocol"], NoEnv)!.Server;
        Assert.Equal([System.Net.IPNetwork.Parse("10.0.0.0/8"), System.Net.IPNetwork.Parse("127.0.0.1/32"), System.Net.IPNetwork.Parse("::1/128")], o.TrustedProxies);
        Assert.True(o.ProxyProtocol);
        var env = new Dictionary<string, string?> { ["PIPESERVER_TRUSTED_PROXIES"] = "192.168.0.0/16", ["PIPESERVER_PROXY_PROTOCOL"] = "true" };
        var fromEnv = CommandLine.Parse([], env)!.Server;
        Assert.Equal([System.Net.IPNetwork.Parse("192.168.0.0/16")], fromEnv.TrustedProxies);
        Assert.True(fromEnv.ProxyProtocol);
        Assert.Empty(CommandLine.Parse([], NoEnv)!.Server.TrustedProxies);
    }

    [Theory]
    [InlineData("--trusted-proxies", "10.0.0.1/8")]   // host bits set: a typo for 10.0.0.0/8 or for 10.0.0.1?
    [InlineData("--trusted-proxies", "balancer.internal")]
    [InlineData("--trusted-proxies", ",")]
    [InlineData("--proxy-protocol", "true")]         // without --trusted-proxies nobody may send one
    public void Bad_proxy_settings_name_their_flag(string flag, string value)
    {
        string[] args = flag == "--proxy-protocol" ? ["--proxy-protocol"] : [flag, value];
        var ex = Assert.Throws<CommandLineException>(() => CommandLine.Parse(args, NoEnv));
        Assert.StartsWith(flag + ":", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--log-level", "42", "--log-level: '42'")]
    [InlineData("--max-request-line-size", "1048576", "--max-request-line-size: '1048576'")]
    public async Task The_executable_exits_1_and_names_the_flag(string flag, string value, string message)
    {
        using var server = ServerProcess.Run(["--address", "127.0.0.1", "--port", "0", "--heartbeat-interval", "0", flag, value]);
        Assert.Equal(1, await server.WaitForExitAsync());
        Assert.Contains(message, server.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Listening on", server.Output, StringComparison.Ordinal);
    }
}
