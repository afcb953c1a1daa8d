using Microsoft.Extensions.Logging;
using PipeServer.Server;
using Xunit;

namespace PipeServer.Tests.Server;

// Refused connections are logged per episode and per interval, never per connection; the clock is the test's.
public class ConnectionRefusalsTests
{
    [Fact]
    public void A_flood_of_refusals_is_one_line_then_one_count_per_interval()
    {
        var log = new Lines();
        var refusals = new ConnectionRefusals(log, TimeSpan.FromSeconds(5));
        refusals.ReportIfDue(0);                        // the first beat opens the interval
        for (int i = 0; i < 1000; i++) refusals.OverCap(64);
        Assert.Single(log.All);                         // "cap reached", at once
        refusals.ReportIfDue(1_000);                    // not due
        Assert.Single(log.All);
        refusals.ReportIfDue(5_000);
        Assert.Equal(2, log.All.Count);
        Assert.Contains("1000 connection(s) refused", log.All[1], StringComparison.Ordinal);
        Assert.Contains("last 5 s", log.All[1], StringComparison.Ordinal);

        refusals.OverCap(64);                           // same episode: counted, not announced
        Assert.Equal(2, log.All.Count);
        refusals.ReportIfDue(10_000);
        Assert.Contains("1 connection(s) refused", log.All[2], StringComparison.Ordinal);
        refusals.ReportIfDue(15_000);                   // a quiet interval ends the episode
        Assert.Equal(3, log.All.Count);
        refusals.OverCap(64);                           // a new episode is announced again
        Assert.Equal(4, log.All.Count);
        Assert.Contains("cap of 64 reached", log.All[3], StringComparison.Ordinal);
    }

    [Fact]
    public void Running_out_of_descriptors_is_reported_apart_from_the_cap()
    {
        var log = new Lines();
        var refusals = new ConnectionRefusals(log, TimeSpan.FromSeconds(5));
        refusals.ReportIfDue(0);
        for (int i = 0; i < 50; i++) refusals.OutOfDescriptors();
        refusals.ReportIfDue(5_000);
        Assert.Equal(2, log.All.Count);
        Assert.Contains("EMFILE", log.All[0], StringComparison.Ordinal);
        Assert.Contains("50 accept(s) refused out of file descriptors", log.All[1], StringComparison.Ordinal);
    }

    private sealed class Lines : ILogger
    {
        public List<string> All { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            All.Add(formatter(state, exception));
    }
}
