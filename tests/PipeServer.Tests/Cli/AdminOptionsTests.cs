using System.Net;
using PipeServer.Admin;
using PipeServer.Cli;
using PipeServer.Transports;
using Xunit;

namespace PipeServer.Tests.Cli;

// Issue 10, "An admin port": --admin-port, --admin-address and --admin-on-traffic-port from flags and the
// environment, their defaults and their refusals; and the admin server's options derived from the traffic's.
public class AdminOptionsTests
{
    private static readonly Dictionary<string, string?> NoEnv = new();

    [Fact]
    public void Off_by_default_and_the_traffic_port_keeps_the_probes()
    {
        var o = CommandLine.Parse([], NoEnv)!;
        Assert.Null(o.Admin);
        Assert.True(o.AdminOnTrafficPort);
        Assert.Empty(o.AdminListenOptionsGiven);
    }

    [Fact]
    public void The_admin_address_defaults_to_the_listen_address()
    {
        var o = CommandLine.Parse(["--address", "10.1.2.3", "--admin-port", "8081"], NoEnv)!;
        Assert.Equal(new AdminEndPoint(IPAddress.Parse("10.1.2.3"), 8081), o.Admin);
        Assert.Equal(["--admin-port"], o.AdminListenOptionsGiven);
    }

    [Fact]
    public void Flags_and_environment_set_all_three_and_a_flag_wins()
    {
        var env = new Dictionary<string, string?>
        {
            ["PIPESERVER_ADMIN_PORT"] = "9000",
            ["PIPESERVER_ADMIN_ADDRESS"] = "127.0.0.1",
            ["PIPESERVER_ADMIN_ON_TRAFFIC_PORT"] = "false",
        };
        var fromEnv = CommandLine.Parse([], env)!;
        Assert.Equal(new AdminEndPoint(IPAddress.Loopback, 9000), fromEnv.Admin);
        Assert.False(fromEnv.AdminOnTrafficPort);
        Assert.Equal(["PIPESERVER_ADMIN_ADDRESS", "PIPESERVER_ADMIN_PORT"], fromEnv.AdminListenOptionsGiven);

        var flags = CommandLine.Parse(["--admin-port", "0", "--admin-on-traffic-port", "true"], env)!;
        Assert.Equal(new AdminEndPoint(IPAddress.Loopback, 0), flags.Admin);
        Assert.True(flags.AdminOnTrafficPort);
        Assert.Equal(["PIPESERVER_ADMIN_ADDRESS", "--admin-port"], flags.AdminListenOptionsGiven);
    }

    [Theory]
    [InlineData(new[] { "--admin-port", "65536" }, "--admin-port: '65536' is not a whole number from 0 to 65535")]
    [InlineData(new[] { "--admin-port", "-1" }, "--admin-port:")]
    [InlineData(new[] { "--admin-port", "http" }, "--admin-port:")]
    [InlineData(new[] { "--admin-port" }, "option '--admin-port' needs a value")]
    [InlineData(new[] { "--admin-port", "8081", "--admin-address", "localhost" }, "--admin-address: 'localhost' is not an IP address")]
    [InlineData(new[] { "--admin-address", "127.0.0.1" }, "--admin-address: needs --admin-port")]
    [InlineData(new[] { "--admin-on-traffic-port", "maybe" }, "--admin-on-traffic-port: 'maybe' is not true or false")]
    [InlineData(new[] { "--admin-port", "8080" }, "--admin-port: 8080 is also the traffic port (--port)")]
    [InlineData(new[] { "--port", "9000", "--address", "127.0.0.1", "--admin-port", "9000", "--admin-address", "0.0.0.0" }, "--admin-port: 9000 is also the traffic port")]
    public void Bad_values_are_refused_naming_the_flag(string[] args, string message)
    {
        var ex = Assert.Throws<CommandLineException>(() => CommandLine.Parse(args, NoEnv));
        Assert.StartsWith(message, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_same_port_on_two_different_addresses_is_allowed_and_0_never_collides()
    {
        Assert.NotNull(CommandLine.Parse(["--address", "127.0.0.1", "--admin-address", "127.0.0.2", "--admin-port", "8080"], NoEnv)!.Admin);
        Assert.NotNull(CommandLine.Parse(["--port", "0", "--admin-port", "0"], NoEnv)!.Admin);
    }

    [Fact]
    public void The_help_lists_the_three_flags_with_their_bounds_and_defaults()
    {
        var help = CommandLine.Usage().Split('\n');
        Assert.Contains("0 to 65535", Assert.Single(help, l => l.TrimStart().StartsWith("--admin-port PORT ", StringComparison.Ordinal)));
        Assert.Contains("default: --address", Assert.Single(help, l => l.TrimStart().StartsWith("--admin-address ADDR ", StringComparison.Ordinal)));
        Assert.Contains("default true", Assert.Single(help, l => l.TrimStart().StartsWith("--admin-on-traffic-port BOOL ", StringComparison.Ordinal)));
    }

    [Fact]
    public void The_admin_server_keeps_the_parsing_limits_and_drops_what_belongs_to_balanced_traffic()
    {
        var traffic = CommandLine.Parse(["--max-connections", "2", "--drain-delay", "5", "--shutdown-timeout", "30", "--access-log",
            "--trusted-proxies", "10.0.0.0/8", "--proxy-protocol", "--transport", "sockets", "--max-request-line-size", "1000"], NoEnv)!;
        var admin = AdminListener.Options(traffic.Server, new AdminEndPoint(IPAddress.Loopback, 8081));
        Assert.Equal(IPAddress.Loopback, admin.Address);
        Assert.Equal(8081, admin.Port);
        Assert.Equal(AdminListener.MaxConnections, admin.MaxConnections);
        Assert.Equal(TimeSpan.Zero, admin.DrainDelay);
        Assert.Equal(AdminListener.ShutdownTimeout, admin.ShutdownTimeout);
        Assert.False(admin.AccessLog);
        Assert.False(admin.ProxyProtocol);
        Assert.Empty(admin.TrustedProxies);
        Assert.Equal(TransportKind.Sockets, admin.Transport);
        Assert.Equal(1000, admin.MaxRequestLineSize);
        admin.Validate();
    }
}
