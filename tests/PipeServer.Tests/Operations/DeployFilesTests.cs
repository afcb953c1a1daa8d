using System.Diagnostics;
using System.Text.RegularExpressions;
using Xunit;

namespace PipeServer.Tests.Operations;

// What deploy/pipeserver.service and the install commands in docs/deploy.md promise, checked against the
// files themselves (the balancer configs are checked by ./build.sh lb-test, with the real balancers).
public class DeployFilesTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PipeServer.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("no PipeServer.sln above " + AppContext.BaseDirectory);
    }

    /// <summary>Every "Key=value" of the unit (a key given twice keeps both values, in order).</summary>
    private static List<KeyValuePair<string, string>> Unit() =>
        File.ReadAllLines(Path.Combine(Root, "deploy", "pipeserver.service"))
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && l[0] != '#' && l[0] != '[' && l.Contains('='))
            .Select(l => new KeyValuePair<string, string>(l[..l.IndexOf('=')], l[(l.IndexOf('=') + 1)..]))
            .ToList();

    private static string Environment(string name) =>
        Unit().Where(kv => kv.Key == "Environment").Select(kv => kv.Value)
            .Single(v => v.StartsWith(name + "=", StringComparison.Ordinal))[(name.Length + 1)..];

    /// <summary>The first ```sh block of the "## systemd" section of docs/deploy.md.</summary>
    private static string[] InstallCommands()
    {
        var doc = File.ReadAllText(Path.Combine(Root, "docs", "deploy.md"));
        var section = doc[doc.IndexOf("## systemd", StringComparison.Ordinal)..];
        var block = Regex.Match(section, "```sh\n(.*?)```", RegexOptions.Singleline);
        Assert.True(block.Success, "no sh block in the systemd section of docs/deploy.md");
        return block.Groups[1].Value.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact]
    public void A_stop_that_aborted_requests_is_not_counted_as_success()
    {
        foreach (var value in Unit().Where(kv => kv.Key == "SuccessExitStatus").Select(kv => kv.Value))
            Assert.DoesNotContain("2", value.Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void Documentation_points_at_a_file_the_install_commands_copy()
    {
        var doc = Unit().Single(kv => kv.Key == "Documentation").Value;
        Assert.StartsWith("file:///opt/pipeserver/", doc);
        var name = doc["file:///opt/pipeserver/".Length..];
        var copied = InstallCommands()
            .Select(l => Regex.Match(l, @"\bcp (\S+) /opt/pipeserver(?:\.new)?/"))
            .Where(m => m.Success).Select(m => m.Groups[1].Value).ToList();
        var source = Assert.Single(copied, c => Path.GetFileName(c) == name);
        Assert.True(File.Exists(Path.Combine(Root, source)), source + " does not exist in the repository");
    }

    [Fact]
    public void Descriptor_limit_is_above_the_connection_cap_and_the_stop_timeout_covers_the_drain()
    {
        var unit = Unit();
        // The unit sets the limit and lets the server derive its cap from it; an explicit cap must stay under it.
        long limit = long.Parse(unit.Single(kv => kv.Key == "LimitNOFILE").Value);
        Assert.True(PipeServer.Hosting.FileDescriptorLimit.ConnectionCap(limit) > 1000, $"LimitNOFILE={limit} leaves too few connections");
        if (unit.Any(kv => kv.Key == "Environment" && kv.Value.StartsWith("PIPESERVER_MAX_CONNECTIONS=", StringComparison.Ordinal)))
            Assert.True(int.Parse(Environment("PIPESERVER_MAX_CONNECTIONS")) <= PipeServer.Hosting.FileDescriptorLimit.ConnectionCap(limit));
        Assert.True(double.Parse(unit.Single(kv => kv.Key == "TimeoutStopSec").Value)
            > double.Parse(Environment("PIPESERVER_DRAIN_DELAY")) + double.Parse(Environment("PIPESERVER_SHUTDOWN_TIMEOUT")));
    }

    [Fact]
    public async Task Install_commands_run_twice_leave_one_tree_not_a_nested_copy()
    {
        // The commands that touch /opt/pipeserver, run as written (without sudo) against a scratch /opt:
        // an install, then an upgrade with a changed build. The upgrade must replace the tree, not nest in it.
        var scratch = Directory.CreateTempSubdirectory("pipeserver-install-");
        try
        {
            var opt = Path.Combine(scratch.FullName, "opt");
            Directory.CreateDirectory(opt);
            var steps = InstallCommands()
                .SelectMany(l => l.Split("&&"))
                .Select(c => Regex.Replace(c, @"\s+#.*$", "").Trim())
                .Where(c => c.Contains("/opt/pipeserver"))
                .Select(c => c.Replace("sudo ", "").Replace("/opt/", opt + "/"))
                .ToList();
            Assert.NotEmpty(steps);
            foreach (var build in new[] { "v1", "v2" })
            {
                Directory.CreateDirectory(Path.Combine(scratch.FullName, "artifacts", "publish"));
                Directory.CreateDirectory(Path.Combine(scratch.FullName, "docs"));
                await File.WriteAllTextAsync(Path.Combine(scratch.FullName, "artifacts", "publish", "PipeServer.Host.dll"), build);
                await File.WriteAllTextAsync(Path.Combine(scratch.FullName, "docs", "deploy.md"), "doc");
                await RunAsync(scratch.FullName, string.Join("\n", steps));
            }
            var installed = Path.Combine(opt, "pipeserver");
            Assert.Equal("v2", await File.ReadAllTextAsync(Path.Combine(installed, "PipeServer.Host.dll")));
            Assert.False(Directory.Exists(Path.Combine(installed, "publish")), "the upgrade nested: " + installed + "/publish");
        }
        finally
        {
            scratch.Delete(recursive: true);
        }
    }

    private static async Task RunAsync(string workingDirectory, string script)
    {
        var psi = new ProcessStartInfo("bash", ["-euc", script])
        {
            WorkingDirectory = workingDirectory, RedirectStandardError = true, RedirectStandardOutput = true,
        };
        using var process = Process.Start(psi)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        try { await process.WaitForExitAsync(timeout.Token); }
        catch (OperationCanceledException) { process.Kill(entireProcessTree: true); throw; }
        Assert.True(process.ExitCode == 0, $"install commands failed ({process.ExitCode}): {await stderr}\n{script}");
    }

    [Infrastructure.FactRequiringCommand("systemd-analyze", "systemd")]
    public async Task The_socket_unit_is_one_systemd_reads_without_complaint()
    {
        // systemd-analyze verify warns about an unknown key or a bad value (a typo in FileDescriptorName=
        // is "Unknown key ... ignoring") and still exits 0: the test reads what it says about the socket unit.
        var psi = new ProcessStartInfo("systemd-analyze", ["verify", Path.Combine(Root, "deploy", "pipeserver.socket"), Path.Combine(Root, "deploy", "pipeserver.service")])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try { await process.WaitForExitAsync(timeout.Token); }
        catch (OperationCanceledException) { process.Kill(entireProcessTree: true); throw; }
        var complaints = (await stdout + await stderr).Split('\n').Where(l => l.Contains("pipeserver.socket", StringComparison.Ordinal)).ToList();
        Assert.True(complaints.Count == 0, string.Join('\n', complaints));
        Assert.Contains("FileDescriptorName=http", File.ReadAllLines(Path.Combine(Root, "deploy", "pipeserver.socket")));
    }
}
