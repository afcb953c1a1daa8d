namespace PipeServer.Hosting;

// Where this sits: above the HTTP server. A long-running service runs more than one background worker
// (the HTTP server, timed jobs, message consumers); they share one root cancellation and are started in
// order and stopped in reverse by ServiceManager. A worker that faults brings the whole process down
// gracefully (the "fault channel"), the way Go programs pass a server's error into the same select that
// waits for signals.

/// <summary>A background worker managed by <see cref="ServiceManager"/>.</summary>
public abstract class HostedService
{
    /// <summary>Short name used in logs.</summary>
    public abstract string Name { get; }

    /// <summary>Acquire what the service needs (bind a port, open a queue). A throw here fails startup: exit 1.</summary>
    public virtual Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>
    /// Runs until <paramref name="stopping"/> fires. Returning early or throwing (other than by that token)
    /// is a fault: the manager shuts everything down and the process exits 1.
    /// </summary>
    public abstract Task RunAsync(CancellationToken stopping);

    /// <summary>Graceful stop after <c>stopping</c> fired; must give up when <paramref name="deadline"/> fires.</summary>
    public virtual Task<StopOutcome> StopAsync(CancellationToken deadline) => Task.FromResult(StopOutcome.Clean);
}

/// <summary>How a service's stop ended.</summary>
public enum StopOutcome
{
    /// <summary>Everything it ran finished within the deadline.</summary>
    Clean,
    /// <summary>The deadline passed and work was cut short (for the HTTP server: connections were aborted).</summary>
    DeadlineExceeded,
}
