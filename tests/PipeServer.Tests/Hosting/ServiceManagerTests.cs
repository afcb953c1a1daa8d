using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Hosting;
using Xunit;

namespace PipeServer.Tests.Hosting;

public class ServiceManagerTests
{
    private sealed class Recorder
    {
        private readonly List<string> _events = [];
        public void Add(string e) { lock (_events) _events.Add(e); }
        public string[] Events { get { lock (_events) return _events.ToArray(); } }
    }

    private sealed class FakeService(string name, Recorder log, Func<CancellationToken, Task>? run = null,
        bool failStart = false, TimeSpan? stopTakes = null) : HostedService
    {
        public override string Name => name;
        public override Task StartAsync(CancellationToken cancellationToken)
        {
            if (failStart) throw new InvalidOperationException("cannot start");
            log.Add("start " + name);
            return Task.CompletedTask;
        }
        public override Task RunAsync(CancellationToken stopping) => run?.Invoke(stopping) ?? Task.Delay(Timeout.Infinite, stopping);
        public override async Task<StopOutcome> StopAsync(CancellationToken deadline)
        {
            log.Add("stop " + name);
            if (stopTakes is { } t)
            {
                try { await Task.Delay(t, deadline); }
                catch (OperationCanceledException) { return StopOutcome.DeadlineExceeded; }
            }
            return StopOutcome.Clean;
        }
    }

    [Fact]
    public async Task Starts_in_order_and_stops_in_reverse_when_the_root_token_fires()
    {
        var log = new Recorder();
        var manager = new ServiceManager([new FakeService("a", log), new FakeService("b", log), new FakeService("c", log)], NullLogger.Instance, TimeSpan.FromSeconds(5));
        using var root = new CancellationTokenSource();
        var run = manager.RunAsync(root);
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (!log.Events.Contains("start c")) // all three started, so the stop order covers them all
        {
            Assert.True(DateTime.UtcNow < deadline, "the services did not start");
            await Task.Delay(5);
        }
        root.Cancel();
        Assert.Equal(RunOutcome.Clean, await run.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(["start a", "start b", "start c", "stop c", "stop b", "stop a"], log.Events);
    }

    [Fact]
    public async Task A_faulting_service_stops_the_others_and_reports_a_fault()
    {
        var log = new Recorder();
        var faulty = new FakeService("job", log, run: async _ => { await Task.Yield(); throw new InvalidOperationException("job crashed"); });
        var manager = new ServiceManager([new FakeService("http", log), faulty], NullLogger.Instance, TimeSpan.FromSeconds(5));
        using var root = new CancellationTokenSource();
        Assert.Equal(RunOutcome.Faulted, await manager.RunAsync(root).WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.True(root.IsCancellationRequested); // the shared root token told everyone
        Assert.Equal("job", manager.FaultedService);
        Assert.Equal(["start http", "start job", "stop job", "stop http"], log.Events);
    }

    [Fact]
    public async Task A_service_that_returns_on_its_own_is_a_fault()
    {
        var log = new Recorder();
        var manager = new ServiceManager([new FakeService("quitter", log, run: _ => Task.CompletedTask)], NullLogger.Instance, TimeSpan.FromSeconds(5));
        using var root = new CancellationTokenSource();
        Assert.Equal(RunOutcome.Faulted, await manager.RunAsync(root).WaitAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task A_failed_start_stops_what_started_and_runs_nothing_else()
    {
        var log = new Recorder();
        var manager = new ServiceManager([new FakeService("a", log), new FakeService("b", log, failStart: true), new FakeService("c", log)], NullLogger.Instance, TimeSpan.FromSeconds(5));
        using var root = new CancellationTokenSource();
        Assert.Equal(RunOutcome.Faulted, await manager.RunAsync(root).WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(["start a", "stop a"], log.Events);
    }

    [Fact]
    public async Task Stops_share_one_deadline()
    {
        var log = new Recorder();
        var manager = new ServiceManager(
            [new FakeService("a", log, stopTakes: TimeSpan.FromSeconds(30)), new FakeService("b", log, stopTakes: TimeSpan.FromSeconds(30))],
            NullLogger.Instance, TimeSpan.FromMilliseconds(300));
        using var root = new CancellationTokenSource();
        var run = manager.RunAsync(root);
        root.Cancel();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(RunOutcome.DeadlineExceeded, await run.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"took {clock.Elapsed}");
    }
}
