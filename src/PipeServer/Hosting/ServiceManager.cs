using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace PipeServer.Hosting;

/// <summary>How a managed run ended, which the executable maps to its exit code.</summary>
public enum RunOutcome
{
    /// <summary>Stopped on request; every service stopped cleanly. Exit 0.</summary>
    Clean = 0,
    /// <summary>A service could not start, or one faulted while running. Exit 1.</summary>
    Faulted = 1,
    /// <summary>Stopped on request, but a stop deadline passed and work was aborted. Exit 2.</summary>
    DeadlineExceeded = 2,
}

/// <summary>
/// Starts services in order, runs them under one root token, and stops them in reverse order. The root
/// token fires on a stop request (a signal) or on a fault of any service.
/// </summary>
public sealed partial class ServiceManager(IReadOnlyList<HostedService> services, ILogger logger, TimeSpan stopTimeout)
{
    private volatile Exception? _fault;
    private volatile string? _faultedService;

    /// <summary>Runs until <paramref name="root"/> is cancelled (stop request) or a service faults.</summary>
    /// <param name="root">The root cancellation shared with every service: cancel it to stop.</param>
    /// <remarks>Stops are bounded by the manager's stop timeout. A second signal does not come through here: the
    /// executable resets the server's connections and exits (Program.cs).</remarks>
    public async Task<RunOutcome> RunAsync(CancellationTokenSource root)
    {
        var started = new List<HostedService>();
        foreach (var service in services)
        {
            try
            {
                await service.StartAsync(root.Token).ConfigureAwait(false);
                started.Add(service);
                LogStarted(logger, service.Name);
            }
            catch (Exception ex)
            {
                LogStartFailed(logger, service.Name, ex.Message);
                root.Cancel();
                await StopAllAsync(started).ConfigureAwait(false);
                return RunOutcome.Faulted;
            }
        }

        var running = started.Select(s => WatchAsync(s, root)).ToArray();
        try { await Task.Delay(Timeout.Infinite, root.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) { }

        var outcome = await StopAllAsync(started).ConfigureAwait(false);
        try { await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false); }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException) { }
        return _fault is not null ? RunOutcome.Faulted : outcome;
    }

    /// <summary>The fault channel: a service's run ending before the root token fired is a fault.</summary>
    private async Task WatchAsync(HostedService service, CancellationTokenSource root)
    {
        try
        {
            await service.RunAsync(root.Token).ConfigureAwait(false);
            if (!root.IsCancellationRequested) throw new InvalidOperationException("the service stopped on its own");
        }
        catch (OperationCanceledException) when (root.IsCancellationRequested) { }
        catch (Exception ex)
        {
            _faultedService = service.Name;
            _fault = ex;
            LogFault(logger, service.Name, ex);
            try { root.Cancel(); } catch (ObjectDisposedException) { }
        }
    }

    /// <summary>Stops in reverse order of start; all share one deadline counted from the start of stopping.</summary>
    private async Task<RunOutcome> StopAllAsync(List<HostedService> started)
    {
        var clock = Stopwatch.StartNew();
        var outcome = RunOutcome.Clean;
        using var deadline = new CancellationTokenSource(stopTimeout);
        for (int i = started.Count - 1; i >= 0; i--)
        {
            var service = started[i];
            try
            {
                var result = await service.StopAsync(deadline.Token).ConfigureAwait(false);
                if (result == StopOutcome.DeadlineExceeded) outcome = RunOutcome.DeadlineExceeded;
                LogStopped(logger, service.Name, result, (long)clock.Elapsed.TotalMilliseconds);
            }
            catch (Exception ex)
            {
                LogStopFailed(logger, service.Name, ex);
                outcome = RunOutcome.DeadlineExceeded;
            }
        }
        return outcome;
    }

    /// <summary>The name of the service whose fault stopped the run, or null.</summary>
    public string? FaultedService => _faultedService;

    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "Service {Service} started")]
    private static partial void LogStarted(ILogger logger, string service);

    [LoggerMessage(EventId = 101, Level = LogLevel.Critical, Message = "Service {Service} failed to start: {Reason}")]
    private static partial void LogStartFailed(ILogger logger, string service, string reason);

    [LoggerMessage(EventId = 102, Level = LogLevel.Critical, Message = "Service {Service} faulted; shutting down")]
    private static partial void LogFault(ILogger logger, string service, Exception exception);

    [LoggerMessage(EventId = 103, Level = LogLevel.Information, Message = "Service {Service} stopped ({Outcome}) at {ElapsedMs} ms")]
    private static partial void LogStopped(ILogger logger, string service, StopOutcome outcome, long elapsedMs);

    [LoggerMessage(EventId = 104, Level = LogLevel.Error, Message = "Service {Service} failed while stopping")]
    private static partial void LogStopFailed(ILogger logger, string service, Exception exception);
}
