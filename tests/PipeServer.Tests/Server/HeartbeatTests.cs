using Microsoft.Extensions.Logging;
using PipeServer.Server;
using Xunit;

namespace PipeServer.Tests.Server;

// The server's one timer for every connection's deadlines. A beat never overlaps the previous one, an
// exception is logged once and does not stop the ticking, and a slow beat is reported. Beats are driven
// by hand with a clock the test controls, so nothing here depends on timing.
public class HeartbeatTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task A_beat_is_skipped_while_the_previous_one_still_runs()
    {
        int calls = 0;
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var release = new ManualResetEventSlim();
        using var heartbeat = new Heartbeat(Interval, _ =>
        {
            if (Interlocked.Increment(ref calls) == 1) { entered.SetResult(); release.Wait(TimeSpan.FromSeconds(10)); }
        }, new ListLogger());

        var first = Task.Run(heartbeat.Beat);
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(5));
        bool second = await Task.Run(heartbeat.Beat).WaitAsync(TimeSpan.FromSeconds(5)); // must not wait for the first
        Assert.False(second);
        Assert.Equal(1, Volatile.Read(ref calls));
        Assert.Equal(1, heartbeat.SkippedBeats);

        release.Set();
        Assert.True(await first.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.True(heartbeat.Beat()); // and the next one runs again
        Assert.Equal(2, Volatile.Read(ref calls));
    }

    [Fact]
    public void A_throwing_beat_is_logged_once_and_the_following_beats_still_run()
    {
        int calls = 0;
        var log = new ListLogger();
        using var heartbeat = new Heartbeat(Interval, _ =>
        {
            if (++calls <= 3) throw new InvalidOperationException("boom " + calls);
        }, log);

        for (int i = 0; i < 5; i++) heartbeat.Beat(); // never throws out
        Assert.Equal(5, calls);
        Assert.Equal(3, heartbeat.FailedBeats);
        var errors = log.Entries.Where(e => e.Level == LogLevel.Error).ToList();
        var error = Assert.Single(errors);
        Assert.Equal("boom 1", error.Exception?.Message);
        Assert.Contains(log.Entries, e => e.Level == LogLevel.Information && e.Message.Contains("3 failed", StringComparison.Ordinal));
    }

    [Fact]
    public void A_beat_longer_than_the_interval_is_reported()
    {
        long now = 1_000;
        var log = new ListLogger();
        using var heartbeat = new Heartbeat(Interval, _ => now += 250, log, clock: () => now);
        heartbeat.Beat();
        var warning = Assert.Single(log.Entries, e => e.Level == LogLevel.Warning);
        Assert.Contains("250 ms", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_running_loop_keeps_ticking_after_an_exception()
    {
        int calls = 0;
        var third = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var heartbeat = new Heartbeat(TimeSpan.FromMilliseconds(10), _ =>
        {
            int n = Interlocked.Increment(ref calls);
            if (n == 1) throw new InvalidOperationException("first beat fails");
            if (n == 3) third.TrySetResult();
        }, new ListLogger());
        heartbeat.Start();
        await third.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    private sealed class ListLogger : ILogger
    {
        public List<(LogLevel Level, string Message, Exception? Exception)> Entries { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries) Entries.Add((logLevel, formatter(state, exception), exception));
        }
    }
}
