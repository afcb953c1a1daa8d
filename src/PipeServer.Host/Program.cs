using System.Collections;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using PipeServer.Admin;
using PipeServer.Cli;
using PipeServer.Demo;
using PipeServer.Hosting;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.StaticFiles;
using PipeServer.Http;

namespace PipeServer;

// The executable. It reads options (Cli/CommandLine.cs), builds the route table (Demo/DemoEndpoints.cs),
// and runs its services under one root cancellation: the admin listener (with --admin-port), the HTTP server
// and a heartbeat job. Then it waits
// for SIGTERM, SIGINT or SIGHUP. The first signal starts the graceful shutdown (docs/shutdown.md); a
// second one resets every open connection and exits at once with code 3.
//
// Exit codes: 0 clean; 1 could not start, bad options, or a service fault; 2 the shutdown deadline passed
// and connections were aborted; 3 forced by a second signal.

public static class Program
{
    public const int ExitClean = 0, ExitFailure = 1, ExitDeadline = 2, ExitForced = 3;

    public static async Task<int> Main(string[] args)
    {
        // Before anything opens a descriptor: the limit decides the default connection cap.
        var descriptors = FileDescriptorLimit.RaiseSoftToHard();
        var environment = ReadEnvironment();
        ExecutableOptions? options;
        try
        {
            options = CommandLine.Parse(args, environment, descriptors?.Limit);
        }
        catch (CommandLineException ex)
        {
            await Console.Error.WriteLineAsync($"PipeServer: {ex.Message}");
            return ExitFailure;
        }
        if (options is null)
        {
            Console.WriteLine(CommandLine.Usage());
            return ExitClean;
        }

        // Before the thread pool starts its first worker (it reads the setting then): Hosting/ThreadPoolSpinning.cs.
        // Auto too where it will be linux (should linux then fail to start, sockets runs with the spinning off: a rare fall-back).
        bool eventLoops = options.Server.Transport == Transports.TransportKind.Linux
            || options.Server.Transport == Transports.TransportKind.Auto && Transports.Linux.LinuxTransport.IsSupported;
        string? spinning = eventLoops ? ThreadPoolSpinning.DisableSpinning(environment) : null;

        // The operational log at --log-level; the access log and the Listening line whatever it says (Hosting/ConsoleLogging.cs).
        using var logging = new ConsoleLogging(options);
        var loggerFactory = logging.Factory;
        var logger = loggerFactory.CreateLogger("PipeServer");
        LogDescriptorLimit(logger, descriptors, options);
        if (spinning is not null) logger.LogDebug("Event loops: {Spinning}", spinning);
        using var notifier = new SystemdNotifier();

        // Before any server exists: which passed sockets are the admin listener's (FileDescriptorName=admin).
        var activation = SystemdSocketActivation.TakeListenSockets();
        var passedAdmin = activation?.Sockets.Where(s => s.Name == AdminListener.SocketName).ToList() ?? [];
        var passedTraffic = activation?.Sockets.Where(s => s.Name != AdminListener.SocketName).ToList() ?? [];
        bool adminOn = options.Admin is not null || passedAdmin.Count > 0;
        if (!options.AdminOnTrafficPort && !adminOn)
        {
            logger.LogCritical("--admin-on-traffic-port false needs an admin port (--admin-port, or a socket named admin passed by systemd): /healthz, /readyz and /metrics would be served nowhere; not starting");
            return ExitFailure;
        }

        var router = new Router();
        // --root: the probes (and /metrics) first, then the files; otherwise the demo endpoints (StaticFiles/ProbesThenFiles.cs).
        RequestHandler app = router.HandleAsync;
        if (options.Root is { } servedRoot)
            app = new ProbesThenFiles(options.AdminOnTrafficPort ? ["/healthz", "/readyz", .. options.Metrics ? ["/metrics"] : Array.Empty<string>()] : [],
                router.HandleAsync, new StaticFileHandler(new StaticFileOptions { Root = servedRoot }).HandleAsync).HandleAsync;
        await using var server = new HttpServer(options.Server, app,
            loggerFactory.CreateLogger("PipeServer.Server"), logging.AccessLogger);
        if (options.Root is not null)
        {
            if (options.AdminOnTrafficPort) AdminEndpoints.MapProbes(router, server.Lifetime);
            logger.LogInformation("Serving files from {Root}", options.Root);
        }
        else DemoEndpoints.Map(router, server.Lifetime, probes: options.AdminOnTrafficPort);
        // The admin port always serves /metrics (it is the operator's port); --metrics decides the traffic port's.
        using var metricsEndpoint = options.Metrics || adminOn ? new MetricsEndpoint(server.Metrics) : null;
        if (options.Metrics && options.AdminOnTrafficPort) metricsEndpoint!.Map(router);

        // The admin listener (Admin/AdminListener.cs): a second HttpServer with its own route table and cap.
        var adminRouter = new Router();
        await using var admin = adminOn
            ? new HttpServer(AdminListener.Options(options.Server, options.Admin), adminRouter.HandleAsync, loggerFactory.CreateLogger(AdminListener.LogCategory))
            : null;
        if (admin is not null) AdminEndpoints.MapAdmin(adminRouter, server, metricsEndpoint!);

        if (activation is not null)
        {
            foreach (var warning in activation.Warnings) logger.LogWarning("Socket activation: {Warning}", warning);
            if (passedTraffic.Count == 0)
            {
                logger.LogCritical(passedAdmin.Count == 0
                    ? "Socket activation: systemd passed no listening stream socket (ListenStream= in the .socket unit, Accept=no); not starting"
                    : "Socket activation: systemd passed only the admin socket, none to serve traffic on (ListenStream= in the .socket unit); not starting");
                return ExitFailure;
            }
            foreach (var passed in passedTraffic) server.UseListenSocket(passed.Socket, passed.Name);
            logger.LogInformation("Serving on {Count} socket(s) passed by systemd (socket activation)", passedTraffic.Count);
            if (options.ListenOptionsGiven.Count > 0)
                logger.LogWarning("{Options} {Verb} ignored: systemd passed the listening sockets, so the .socket unit's ListenStream= decides where PipeServer listens",
                    string.Join(" and ", options.ListenOptionsGiven), options.ListenOptionsGiven.Count == 1 ? "is" : "are");
            foreach (var passed in passedAdmin) admin!.UseListenSocket(passed.Socket, passed.Name);
            if (passedAdmin.Count > 0 && options.AdminListenOptionsGiven.Count > 0)
                logger.LogWarning("{Options} {Verb} ignored: systemd passed the admin socket (FileDescriptorName=admin), so its ListenStream= decides where the admin port listens",
                    string.Join(" and ", options.AdminListenOptionsGiven), options.AdminListenOptionsGiven.Count == 1 ? "is" : "are");
        }
        server.PhaseCompleted += (phase, detail) => notifier.Notify($"STATUS={phase}: {detail}");
        server.DrainProgress += open => notifier.Notify($"STATUS=wait-for-drain: waiting for {open} connection(s)");

        var services = new List<HostedService>();
        // First, so that it is stopped last: the admin port answers through the traffic server's whole shutdown.
        if (admin is not null) services.Add(new AdminService(admin, passedAdmin.Count > 0 ? null : options.Admin, listeners => { foreach (var l in listeners) logging.AnnounceAdminListening(l); }));
        services.Add(
            new HttpServerService(server, listeners =>
            {
                foreach (var listener in listeners) logging.AnnounceListening(listener);
                notifier.Notify("READY=1\nSTATUS=Listening on " + string.Join(", ", listeners.Select(l => l.Url)));
            }));
        if (options.HeartbeatInterval > TimeSpan.Zero)
            services.Add(new HeartbeatService(options.HeartbeatInterval,
                () => $"{server.ConnectionCount} open connection(s), {server.TotalConnections} accepted, GC gen0={GC.CollectionCount(0)} gen1={GC.CollectionCount(1)} gen2={GC.CollectionCount(2)}, heap {GC.GetTotalMemory(false) / 1024} KiB", logger));

        // The deadline for stopping every service: the server's own phases plus a margin for the abort grace.
        var stopTimeout = options.Server.DrainDelay + options.Server.ShutdownTimeout + TimeSpan.FromSeconds(5) + (admin is null ? TimeSpan.Zero : AdminListener.StopBound);
        var manager = new ServiceManager(services, logger, stopTimeout);

        using var root = new CancellationTokenSource();
        // Whatever starts the shutdown (a signal or a service fault), systemd hears about it first.
        using var stopping = root.Token.Register(() => notifier.Notify("STOPPING=1\nSTATUS=shutting down"));
        int signals = 0;
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true; // we decide when to exit, not the runtime's default handler
            if (Interlocked.Increment(ref signals) == 1)
            {
                logger.LogInformation("Received {Signal}: starting graceful shutdown", context.Signal);
                // Not inline: Cancel runs the shutdown's first steps on the calling thread, and this thread must
                // stay free to take a second signal at once.
                ThreadPool.UnsafeQueueUserWorkItem(static r => r.Cancel(), root, preferLocal: false);
            }
            else
            {
                // Immediate: no drain, no waiting on anything that might hang. Every connection is reset first:
                // left to the kernel at exit, each would get a FIN, and a client reading a close-delimited body
                // would take the cut response for a whole one.
                // Each step is bounded, so nothing a connection or a handler does can hold the exit up.
                var resetting = Task.Run(server.ResetAllConnections);
                bool done = resetting.Wait(ForcedStepBound);
                logger.LogWarning("Received {Signal} again: {Reset} connection(s) reset; exiting with code 3", context.Signal,
                    done ? resetting.Result.ToString(System.Globalization.CultureInfo.InvariantCulture) : "not all");
                // The console logger writes from a queue: flush it before the process ends.
                Task.Run(loggerFactory.Dispose).Wait(ForcedStepBound);
                ExitNow(ExitForced);
            }
        }
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);

        var outcome = await manager.RunAsync(root);
        logger.LogInformation("GC collections: gen0={Gen0} gen1={Gen1} gen2={Gen2}; {Allocated} bytes allocated in total",
            GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalAllocatedBytes());
        // A second signal's exit runs on the signal's thread, and its resets end the drain: the stop then comes
        // back here as clean while that thread still flushes the log. Its code, 3, is the process's: wait for
        // its Environment.Exit (each of its steps is bounded) rather than return 0 under it.
        if (Volatile.Read(ref signals) > 1)
        {
            await Task.Delay(4 * ForcedStepBound);
            return ExitForced;
        }
        return outcome switch
        {
            RunOutcome.Clean => ExitClean,
            RunOutcome.DeadlineExceeded => ExitDeadline,
            _ => ExitFailure,
        };
    }

    private static void LogDescriptorLimit(ILogger logger, FileDescriptorLimit.Result? descriptors, ExecutableOptions options)
    {
        string cap = options.Server.MaxConnections is int max
            ? $"connections capped at {max} ({(options.MaxConnectionsFromLimit ? "derived from the limit" : "--max-connections")})"
            : "connections not capped";
        if (descriptors is not null)
            logger.LogInformation("File descriptor limit {Limit} ({Origin}); {Cap}", descriptors.Limit,
                descriptors.Raised ? $"soft limit raised from {descriptors.SoftBefore} to the hard limit" : descriptors.Limit == descriptors.Hard ? "the hard limit" : $"hard limit {descriptors.Hard} could not be taken", cap);
        foreach (var warning in options.Warnings ?? []) logger.LogWarning("{Warning}", warning);
    }

    /// <summary>How long each step of the forced exit (reset, log flush, Environment.Exit) may take.</summary>
    private static readonly TimeSpan ForcedStepBound = TimeSpan.FromMilliseconds(300);

    /// <summary>
    /// Environment.Exit, bounded: it runs the ProcessExit handlers, which wait on other threads (the finalizer
    /// thread delivers the event), so a watchdog ends the process with _exit(2) if they take too long.
    /// </summary>
    private static void ExitNow(int code)
    {
        if (!OperatingSystem.IsWindows())
        {
            try { new Thread(() => { Thread.Sleep(ForcedStepBound); _exit(code); }) { IsBackground = true, Name = "forced exit" }.Start(); }
            catch (OutOfMemoryException) { } // no thread to be had (descriptors exhausted): Environment.Exit alone
        }
        Environment.Exit(code);
    }

    // DllImport, not LibraryImport: the project builds without unsafe code; an int argument needs no marshalling.
    [DllImport("libc")]
    private static extern void _exit(int status);

    private static Dictionary<string, string?> ReadEnvironment()
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
            env[(string)e.Key] = e.Value as string;
        return env;
    }
}
