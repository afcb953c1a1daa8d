using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace PipeServer.Tests.Infrastructure;

/// <summary>
/// The real executable as a child process: started on port 0, its port read from the "Listening on" line,
/// sent real signals with kill(2). Dispose kills it by PID if it is still running, so no test leaves a
/// process behind.
/// </summary>
public sealed partial class ServerProcess : IDisposable
{
    public const int SIGHUP = 1, SIGINT = 2, SIGKILL = 9, SIGTERM = 15;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);

    private readonly Process _process;
    private readonly List<string> _output = [];
    private readonly List<string> _stdout = [];
    private readonly TaskCompletionSource<int> _port = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ServerProcess(Process process) => _process = process;

    public int Port { get; private set; }
    /// <summary>The admin port (--admin-port), from the "Admin listening on" line, which comes before the traffic port's; null when there is none.</summary>
    public int? AdminPort { get; private set; }
    public int Pid => _process.Id;
    public string Output { get { lock (_output) return string.Join('\n', _output); } }
    /// <summary>Standard output alone, line by line (Output interleaves standard error too).</summary>
    public IReadOnlyList<string> StandardOutputLines { get { lock (_stdout) return _stdout.ToArray(); } }

    public static string ExecutablePath
    {
        get
        {
            var dir = AppContext.BaseDirectory;
            var dll = Path.Combine(dir, "PipeServer.Host.dll");
            if (!File.Exists(dll)) throw new FileNotFoundException("PipeServer.Host.dll not next to the tests", dll);
            return dll;
        }
    }

    /// <summary>Starts the server with the given arguments and waits (bounded) for it to listen.</summary>
    public static Task<ServerProcess> StartAsync(params string[] args)
    {
        return ListeningAsync(Run(["--address", "127.0.0.1", "--port", "0", "--heartbeat-interval", "0", .. args]));
    }

    /// <summary>Starts the server on the named transport (<see cref="TransportData.All"/>), as <see cref="StartAsync(string[])"/>.</summary>
    public static Task<ServerProcess> StartOnAsync(string transport, params string[] args) => StartAsync(["--transport", transport, .. args]);

    /// <summary>
    /// Like <see cref="StartAsync"/>, but the server runs with RLIMIT_NOFILE soft and hard both set to
    /// <paramref name="fileLimit"/> (bash's ulimit, then exec: same PID), so raising soft to hard cannot escape it.
    /// </summary>
    public static Task<ServerProcess> StartWithFileLimitAsync(int fileLimit, params string[] args)
    {
        var limit = fileLimit.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var p = RunCommand("bash", ["-c", $"ulimit -Sn {limit} && ulimit -Hn {limit} && exec \"$0\" \"$@\"",
            "dotnet", ExecutablePath, "--address", "127.0.0.1", "--port", "0", "--heartbeat-interval", "0", .. args]);
        return ListeningAsync(p);
    }

    /// <summary>
    /// Starts one of the repository's sample programs (samples/NAME, built with the tests' configuration) and
    /// waits (bounded) for its "Listening on" line, as <see cref="StartAsync"/> does for the executable.
    /// </summary>
    public static Task<ServerProcess> StartSampleAsync(string name, params string[] args)
    {
        // AppContext.BaseDirectory is tests/PipeServer.Tests/bin/CONFIGURATION/TFM/.
        var testBin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = testBin.Name, configuration = testBin.Parent!.Name;
        var root = testBin;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "PipeServer.sln"))) root = root.Parent;
        if (root is null) throw new DirectoryNotFoundException($"no PipeServer.sln above {AppContext.BaseDirectory}");
        var dll = Path.Combine(root.FullName, "samples", name, "bin", configuration, tfm, name + ".dll");
        if (!File.Exists(dll)) throw new FileNotFoundException($"sample {name} is not built", dll);
        return ListeningAsync(RunCommand("dotnet", [dll, .. args]));
    }

    /// <summary>Waits (bounded) for the "Listening on" line and takes the port from it; a server that never listens is killed.</summary>
    private static async Task<ServerProcess> ListeningAsync(ServerProcess p)
    {
        try
        {
            p.Port = await p._port.Task.WaitAsync(TimeSpan.FromSeconds(20));
        }
        catch
        {
            p.Dispose();
            throw;
        }
        return p;
    }

    /// <summary>Starts the executable with exactly these arguments (for start-up failure tests).</summary>
    public static ServerProcess Run(string[] args, IDictionary<string, string>? environment = null) =>
        RunCommand("dotnet", [ExecutablePath, .. args], environment);

    /// <summary>Starts any command (e.g. systemd-socket-activate wrapping the server) with output captured.</summary>
    public static ServerProcess RunCommand(string fileName, string[] args, IDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("PIPESERVER_", StringComparison.Ordinal)).ToList()) psi.Environment.Remove(key);
        if (environment is not null) foreach (var (k, v) in environment) psi.Environment[k] = v;
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var sp = new ServerProcess(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (sp._stdout) sp._stdout.Add(e.Data);
            sp.OnLine(e.Data);
        };
        process.ErrorDataReceived += (_, e) => sp.OnLine(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return sp;
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        lock (_output) _output.Add(line);
        var admin = AdminListeningLine().Match(line);
        if (admin.Success) AdminPort = int.Parse(admin.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var m = ListeningLine().Match(line);
        if (m.Success) _port.TrySetResult(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    // Also inside a JSON event (--log-format json), where a quote ends the URL; https with --tls-cert.
    [GeneratedRegex(@"Listening on https?://[^\s""]+:(\d+)")]
    private static partial Regex ListeningLine();

    [GeneratedRegex(@"Admin listening on http://[^\s""]+:(\d+)")]
    private static partial Regex AdminListeningLine();

    /// <summary>Waits (bounded) until a line of output contains <paramref name="text"/>; throws with the output so far if none does.</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            bool exited = HasExited && _process.WaitForExit(5000); // an exited process: its last lines drained first
            if (exited && Output.Contains(text, StringComparison.Ordinal)) return;
            if (exited || DateTime.UtcNow > deadline)
                throw new TimeoutException($"no output line contains '{text}'{(exited ? " (the process exited)" : "")}; output:\n{Output}");
            await Task.Delay(20);
        }
    }

    public void Signal(int signal)
    {
        if (kill(_process.Id, signal) != 0) throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Waits (bounded) for exit and returns the exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"server did not exit; output:\n{Output}");
        }
        _process.WaitForExit(); // drain the redirected output
        return _process.ExitCode;
    }

    public bool HasExited => _process.HasExited;

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                kill(_process.Id, SIGKILL);
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
