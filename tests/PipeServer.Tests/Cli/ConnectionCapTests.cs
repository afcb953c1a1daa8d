using PipeServer.Cli;
using PipeServer.Hosting;
using Xunit;

namespace PipeServer.Tests.Cli;

// The default connection cap: max(limit - max(256, limit / 8), limit / 4), so connections never take the
// descriptors the runtime, logs and metrics need; --max-connections still wins, with a warning above the cap.
public class ConnectionCapTests
{
    [Theory]
    [InlineData(256, 64)]            // a quarter: 192 stay for an idle server's ~115 and what opens later
    [InlineData(1024, 768)]          // 256 kept back
    [InlineData(4096, 3584)]         // an eighth kept back
    [InlineData(524_288, 458_752)]   // systemd's default hard limit
    [InlineData(1, 1)]
    public void The_cap_keeps_descriptors_back_for_the_process(long limit, int cap) =>
        Assert.Equal(cap, FileDescriptorLimit.ConnectionCap(limit));

    [Fact]
    public void The_cap_never_exceeds_the_limit_minus_a_reserve()
    {
        for (long limit = 2; limit < 70_000; limit += 97)
        {
            int cap = FileDescriptorLimit.ConnectionCap(limit);
            Assert.InRange(cap, 1, limit - Math.Min(FileDescriptorLimit.MinimumReserve, limit * 3 / 4));
        }
    }

    [Fact]
    public void Without_max_connections_the_cap_derives_from_the_limit()
    {
        var o = CommandLine.Parse([], new Dictionary<string, string?>(), fileDescriptorLimit: 1024)!;
        Assert.Equal(768, o.Server.MaxConnections);
        Assert.True(o.MaxConnectionsFromLimit);
        Assert.Empty(o.Warnings!);
    }

    [Fact]
    public void Max_connections_overrides_and_warns_only_above_the_cap()
    {
        var under = CommandLine.Parse(["--max-connections", "100"], new Dictionary<string, string?>(), fileDescriptorLimit: 1024)!;
        Assert.Equal(100, under.Server.MaxConnections);
        Assert.False(under.MaxConnectionsFromLimit);
        Assert.Empty(under.Warnings!);

        var over = CommandLine.Parse(["--max-connections", "5000"], new Dictionary<string, string?>(), fileDescriptorLimit: 1024)!;
        Assert.Equal(5000, over.Server.MaxConnections);
        var warning = Assert.Single(over.Warnings!);
        Assert.Contains("768", warning, StringComparison.Ordinal);
        Assert.Contains("1024", warning, StringComparison.Ordinal);
    }

    [Fact]
    public void With_no_known_limit_nothing_is_derived()
    {
        var o = CommandLine.Parse([], new Dictionary<string, string?>())!;
        Assert.Null(o.Server.MaxConnections);
    }

    [Fact]
    public void Raising_to_the_hard_limit_reports_what_it_found()
    {
        var r = FileDescriptorLimit.RaiseSoftToHard();
        if (!OperatingSystem.IsLinux()) { Assert.Null(r); return; }
        Assert.NotNull(r);
        Assert.Equal(r.Hard, r.Limit);           // this test process may raise its own soft limit: it only grows
        Assert.True(r.SoftBefore <= r.Limit);
    }
}
