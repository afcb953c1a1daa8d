using PipeServer.Hosting;
using Xunit;

namespace PipeServer.Tests.Hosting;

// Hosting/ThreadPoolSpinning.cs: the executable turns the thread pool's spinning off for the Linux transport,
// unless the operator set the knob (runtimeconfig or environment). The effect itself (sched_yield per request
// under wrk: 0.046 -> 0.004) is a strace measurement, recorded in docs/benchmarks.md; here, the precedence.
// The AppContext value is process-wide: each test puts it back, and this class's tests run one at a time.
public class ThreadPoolSpinningTests
{
    private static readonly Dictionary<string, string?> NoEnv = new();

    [Fact]
    public void With_nothing_configured_the_spin_limit_becomes_zero()
    {
        var saved = AppContext.GetData(ThreadPoolSpinning.ConfigName);
        try
        {
            AppContext.SetData(ThreadPoolSpinning.ConfigName, null);
            string said = ThreadPoolSpinning.DisableSpinning(NoEnv);
            Assert.Equal(0, Convert.ToInt32(AppContext.GetData(ThreadPoolSpinning.ConfigName), System.Globalization.CultureInfo.InvariantCulture));
            Assert.StartsWith("thread-pool spin limit 0 ", said);
        }
        finally { AppContext.SetData(ThreadPoolSpinning.ConfigName, saved); }
    }

    [Fact]
    public void A_runtimeconfig_value_is_left_alone_and_named()
    {
        var saved = AppContext.GetData(ThreadPoolSpinning.ConfigName);
        try
        {
            AppContext.SetData(ThreadPoolSpinning.ConfigName, "35");
            string said = ThreadPoolSpinning.DisableSpinning(NoEnv);
            Assert.Equal("35", AppContext.GetData(ThreadPoolSpinning.ConfigName));
            Assert.Equal("thread-pool spin limit 35 (runtimeconfig System.Threading.ThreadPool.UnfairSemaphoreSpinLimit)", said);
        }
        finally { AppContext.SetData(ThreadPoolSpinning.ConfigName, saved); }
    }

    [Theory]
    [InlineData("DOTNET_ThreadPool_UnfairSemaphoreSpinLimit")]
    [InlineData("COMPlus_ThreadPool_UnfairSemaphoreSpinLimit")]
    public void An_environment_value_wins_and_nothing_is_set(string variable)
    {
        var saved = AppContext.GetData(ThreadPoolSpinning.ConfigName);
        try
        {
            AppContext.SetData(ThreadPoolSpinning.ConfigName, null);
            string said = ThreadPoolSpinning.DisableSpinning(new Dictionary<string, string?> { [variable] = "46" });
            Assert.Null(AppContext.GetData(ThreadPoolSpinning.ConfigName));
            Assert.Equal($"thread-pool spin limit 46 ({variable})", said);
        }
        finally { AppContext.SetData(ThreadPoolSpinning.ConfigName, saved); }
    }
}
