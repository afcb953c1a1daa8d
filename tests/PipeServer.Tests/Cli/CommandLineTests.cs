using System.Net;
using PipeServer.Cli;
using Xunit;

namespace PipeServer.Tests.Cli;

public class CommandLineTests
{
    private static readonly Dictionary<string, string?> NoEnv = new();

    [Fact]
    public void Defaults_match_the_documented_contract()
    {
        var o = CommandLine.Parse([], NoEnv)!.Server;
        Assert.Equal(IPAddress.Any, o.Address);
        Assert.Equal(8080, o.Port);
        Assert.Equal(TimeSpan.FromSeconds(30), o.ShutdownTimeout);
        Assert.Equal(TimeSpan.Zero, o.DrainDelay);
        Assert.Equal(TimeSpan.FromSeconds(10), o.RequestHeaderTimeout);
        Assert.Equal(TimeSpan.FromSeconds(130), o.KeepAliveTimeout);
        Assert.Null(o.MaxConnections);
        Assert.Equal(30_000_000, o.MaxRequestBodySize);
    }

    [Fact]
    public void Reads_every_flag_with_fractional_seconds()
    {
        var o = CommandLine.Parse(["--address", "127.0.0.1", "--port", "0", "--shutdown-timeout", "0.5", "--drain-delay=2.25",
            "--request-header-timeout", "3", "--keep-alive-timeout", "4.5", "--max-connections", "10", "--max-request-body-size", "1024"], NoEnv)!.Server;
        Assert.Equal(IPAddress.Loopback, o.Address);
        Assert.Equal(0, o.Port);
        Assert.Equal(TimeSpan.FromMilliseconds(500), o.ShutdownTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2.25), o.DrainDelay);
        Assert.Equal(TimeSpan.FromSeconds(3), o.RequestHeaderTimeout);
        Assert.Equal(TimeSpan.FromSeconds(4.5), o.KeepAliveTimeout);
        Assert.Equal(10, o.MaxConnections);
        Assert.Equal(1024, o.MaxRequestBodySize);
    }

    [Fact]
    public void Environment_is_read_and_flags_win()
    {
        var env = new Dictionary<string, string?> { ["PIPESERVER_PORT"] = "9000", ["PIPESERVER_SHUTDOWN_TIMEOUT"] = "5", ["PIPESERVER_MAX_CONNECTIONS"] = "7" };
        var o = CommandLine.Parse(["--port", "9001"], env)!.Server;
        Assert.Equal(9001, o.Port);
        Assert.Equal(TimeSpan.FromSeconds(5), o.ShutdownTimeout);
        Assert.Equal(7, o.MaxConnections);
    }

    [Fact]
    public void Help_returns_null() => Assert.Null(CommandLine.Parse(["--port", "1", "--help"], NoEnv));

    [Theory]
    [InlineData("--port", "-1")]
    [InlineData("--port", "1.5")]
    [InlineData("--port", "")]
    [InlineData("--shutdown-timeout", "abc")]
    [InlineData("--shutdown-timeout", "NaN")]
    [InlineData("--drain-delay", "-0.1")]
    [InlineData("--request-header-timeout", "0")]
    [InlineData("--keep-alive-timeout", "100000")]
    [InlineData("--max-connections", "-5")]
    [InlineData("--max-request-body-size", "ten")]
    [InlineData("--log-level", "loud")]
    public void Rejects_bad_values_with_the_option_named(string flag, string value)
    {
        var ex = Assert.Throws<CommandLineException>(() => CommandLine.Parse([flag, value], NoEnv));
        Assert.Contains(flag, ex.Message);
    }

    [Fact]
    public void Rejects_unknown_options_and_missing_values()
    {
        Assert.Contains("unknown option", Assert.Throws<CommandLineException>(() => CommandLine.Parse(["--nope"], NoEnv)).Message);
        Assert.Contains("needs a value", Assert.Throws<CommandLineException>(() => CommandLine.Parse(["--port"], NoEnv)).Message);
        Assert.Contains("unexpected argument", Assert.Throws<CommandLineException>(() => CommandLine.Parse(["8080"], NoEnv)).Message);
    }
}
