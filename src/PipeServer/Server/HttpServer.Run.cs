using System.Runtime.InteropServices;

namespace PipeServer.Server;

// Where this sits: the one-call way to run a server from an embedder's Main, Go's ListenAndServe plus the
// signal handling docs/embedding.md would otherwise have every program copy. It adds nothing to the server:
// StartAsync, wait for a signal, then ShutdownAsync's phases (readiness off, drain delay, stop accepting,
// ask connections to close, wait, abort the rest). The executable does not use it: it runs several services
// under ServiceManager, has an admin port and sd_notify, and turns the outcome into exit codes.

public sealed partial class HttpServer
{
    /// <summary>
    /// Starts the server, serves until SIGTERM, SIGINT or SIGHUP arrives (or <paramref name="stopping"/> fires),
    /// then runs the graceful shutdown and returns its report. A second signal during the shutdown resets every
    /// open connection (<see cref="ResetAllConnections"/>), so the report follows at once. The signals are
    /// taken (the runtime's default of ending the process is suppressed) only while this runs. If a listener
    /// dies while serving, the server is shut down and the listener's exception is thrown.
    /// </summary>
    /// <param name="listening">Hears every listener's real address once all accept (e.g. to print "Listening on").</param>
    /// <param name="stopping">Stops the server as a signal would.</param>
    public async Task<ShutdownReport> RunAsync(Action<IReadOnlyList<ListenerInfo>>? listening = null, CancellationToken stopping = default)
    {
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int signals = 0;
        // The first stop request (a signal or the token) starts the graceful shutdown; any later one resets
        // every connection, so a stop through the token followed by Ctrl+C still ends at once.
        void RequestStop()
        {
            if (Interlocked.Increment(ref signals) == 1) stop.TrySetResult();
            else ResetAllConnections();
        }
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true; // this method decides when the process may go, not the runtime's default handler
            RequestStop();
        }
        // Registered before the server starts: a supervisor that signals as soon as it reads "Listening on"
        // gets the drain, not the runtime's default (exit 143 with connections cut).
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);

        await StartAsync(stopping).ConfigureAwait(false);
        Task first = stop.Task;
        ShutdownReport report;
        try
        {
            listening?.Invoke(Listeners);
            using (stopping.Register(static s => ((Action)s!)(), (Action)RequestStop))
                first = await Task.WhenAny(stop.Task, AcceptLoop).ConfigureAwait(false);
        }
        finally
        {
            // Also when the listening callback threw: a started server is never left running.
            report = await ShutdownAsync().ConfigureAwait(false);
        }
        if (first == AcceptLoop && AcceptLoop.IsFaulted) await AcceptLoop.ConfigureAwait(false); // a listener died: say why
        return report;
    }
}
