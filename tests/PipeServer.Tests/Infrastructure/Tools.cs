using System.Diagnostics;

namespace PipeServer.Tests.Infrastructure;

/// <summary>
/// One bounded run of an external tool a test drives (curl, openssl), output captured. Tests that need one
/// say so with [FactRequiringCommand]/[TheoryRequiringCommand] (skipped with the reason where it is
/// missing); ./build.sh test installs them first.
/// </summary>
public static class Tools
{
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
