using PipeServer.Cli;
using PipeServer.Transports;
using Xunit;

namespace PipeServer.Tests.Cli;

// --transport and PIPESERVER_TRANSPORT: the name maps onto HttpServerOptions.Transport, auto by default.
public class TransportOptionTests
{
    private static readonly Dictionary<string, string?> NoEnv = new();

    [Fact]
    public void The_default_transport_is_auto()
    {
        Assert.Equal(TransportKind.Auto, CommandLine.Parse([], NoEnv)!.Server.Transport);
        Assert.Equal(TransportKind.Auto, new PipeServer.Server.HttpServerOptions().Transport); // embedders get it too
    }

    [Fact]
    public void The_flag_and_the_environment_choose_the_transport_and_the_flag_wins()
    {
        Assert.Equal(TransportKind.Linux, CommandLine.Parse(["--transport", "linux"], NoEnv)!.Server.Transport);
        Assert.Equal(TransportKind.Linux, CommandLine.Parse([], new Dictionary<string, string?> { ["PIPESERVER_TRANSPORT"] = "LINUX" })!.Server.Transport);
        Assert.Equal(TransportKind.Sockets, CommandLine.Parse(["--transport=sockets"], new Dictionary<string, string?> { ["PIPESERVER_TRANSPORT"] = "linux" })!.Server.Transport);
        Assert.Equal(TransportKind.Auto, CommandLine.Parse(["--transport", "auto"], NoEnv)!.Server.Transport);
    }

    [Fact]
    public void An_unknown_transport_is_a_clear_error()
    {
        var ex = Assert.Throws<CommandLineException>(() => CommandLine.Parse(["--transport", "iouring"], NoEnv));
        Assert.Equal("--transport: 'iouring' is not auto, sockets or linux", ex.Message);
    }

    [Fact]
    public void The_help_lists_the_transport_option() => Assert.Contains("--transport NAME", CommandLine.Usage());
}
