namespace PipeServer.Hosting;

// Where this sits: process-wide tuning that the executable (Program.cs) applies once, right after reading its
// options and before anything has queued work to the thread pool (the setting is read when the pool starts
// its first worker, and never again).
//
// Why: a thread-pool worker that runs out of work spins before it sleeps (the runtime's LowLevelLifoSemaphore,
// by default 70 rounds of spin-waiting that end in sched_yield calls), betting that more work arrives within
// microseconds. With the sockets transport that bet pays: every request is a pool work item. With the Linux
// transport a request whose handler completes synchronously never touches the pool; the few items that do
// arrive (timers, a handler that awaited) wake a worker that then spins for nothing, on a core an event loop
// wants. Measured under wrk at 64 connections on one core: 0.046 sched_yield per request with the default,
// 0.004 with the limit at 0 (and futex 0.004 -> 0.012: a sleeping worker must be woken with a syscall).
//
// What it costs: a handler that awaits (I/O, Task.Delay, /slow) continues on a pool worker; with no spinning,
// that worker has usually gone to sleep and is woken by a futex (a syscall and a context switch, some
// microseconds of latency) instead of finding the continuation while it spins. Servers whose handlers mostly
// await, on many cores, may prefer the runtime's default; the operator's own setting always wins.

/// <summary>Turns off the thread pool's spin-before-sleep when the event loops serve the connections, unless the operator set it.</summary>
public static class ThreadPoolSpinning
{
    /// <summary>The runtimeconfig.json knob (runtimeconfig.template.json "configProperties", or an AppContext switch).</summary>
    public const string ConfigName = "System.Threading.ThreadPool.UnfairSemaphoreSpinLimit";

    /// <summary>The same knob as environment variables (DOTNET_ first; COMPlus_ is the old spelling the runtime still reads).</summary>
    public static readonly string[] EnvironmentNames = ["DOTNET_ThreadPool_UnfairSemaphoreSpinLimit", "COMPlus_ThreadPool_UnfairSemaphoreSpinLimit"];

    /// <summary>
    /// Sets the spin limit to 0 for this process (as AppContext data, where runtimeconfig.json's value would
    /// be), unless runtimeconfig or the environment (which the runtime reads first) already set a value. Returns what was decided,
    /// for the startup log. Call before the first work item is queued to the thread pool.
    /// </summary>
    public static string DisableSpinning(IReadOnlyDictionary<string, string?> environment)
    {
        if (AppContext.GetData(ConfigName) is { } configured) return $"thread-pool spin limit {configured} (runtimeconfig {ConfigName})";
        foreach (var name in EnvironmentNames)
            if (environment.TryGetValue(name, out var value) && !string.IsNullOrEmpty(value)) return $"thread-pool spin limit {value} ({name})";
        AppContext.SetData(ConfigName, 0);
        return "thread-pool spin limit 0 (workers sleep at once when idle: the event loops run the requests)";
    }
}
