using PipeServer.Transports;
using Xunit;

namespace PipeServer.Tests.Transports;

// The one send-stall rule every transport's pending send is judged by (the heartbeat applies it):
// stalled once now > start + max(grace, bytes / rate); a rate of 0 never stalls.
public class SendStallRuleTests
{
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(5);

    [Fact]
    public void A_small_send_gets_the_grace_period()
    {
        // 1,000 bytes at 240 B/s: 4.2 s, less than the grace.
        Assert.Equal(1_000 + 5_000, SendStallRule.Deadline(1_000, 1_000, 240, Grace));
        Assert.False(SendStallRule.IsStalled(1_000, 1_000, 6_000, 240, Grace));
        Assert.True(SendStallRule.IsStalled(1_000, 1_000, 6_001, 240, Grace));
    }

    [Fact]
    public void A_large_send_gets_its_size_over_the_rate()
    {
        // 4,800 bytes at 240 B/s: 20 s, more than the grace.
        Assert.Equal(1_000 + 20_000, SendStallRule.Deadline(4_800, 1_000, 240, Grace));
        Assert.False(SendStallRule.IsStalled(4_800, 1_000, 21_000, 240, Grace));
        Assert.True(SendStallRule.IsStalled(4_800, 1_000, 21_001, 240, Grace));
    }

    [Fact]
    public void A_rate_of_zero_never_stalls() => Assert.False(SendStallRule.IsStalled(1, 0, long.MaxValue, 0, Grace));
}
