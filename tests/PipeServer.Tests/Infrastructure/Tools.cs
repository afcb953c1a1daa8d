using System.Diagnostics;

namespace PipeServer.Tests.Infrastructure;

/// <summary>External tools a test drives (curl, openssl): whether they exist, and one bounded run with output captured.</summary>
public static class Tools
{
    public static bool Have(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, name)));

    /// <summary>
    /// The tool is there, or is installed now (apt-get install -y PACKAGE, as the project's scripts do, when
    /// apt-get exists and may be run). False when it cannot be had: the caller says so in its output and
    /// returns (xunit 2 has no runtime skip, so such a test passes saying why it checked nothing).
    /// </summary>
    public static async Task<bool> EnsureAsync(string name, string package)
    {
        if (Have(name)) return true;
        if (!Have("apt-get")) return false;
        try { await RunAsync("apt-get", ["install", "-y", "-q", package], TimeSpan.FromSeconds(180)); }
        catch (Exception ex) when (ex is TimeoutException or System.ComponentModel.Win32Exception) { return false; }
        return Have(name);
    }

    /// <summary>Runs to exit (killed after <paramref name="timeout"/>, default 15 s), stdin closed at once.</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> RunAsync(string file, params string[] args) => await RunAsync(file, args, null);

    public static async Task<(int Code, string Stdout, string Stderr)> RunAsync(string file, string[] args, TimeSpan? timeout)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not exit within the timeout");
        }
        return (p.ExitCode, await stdout, await stderr);
    }
}
