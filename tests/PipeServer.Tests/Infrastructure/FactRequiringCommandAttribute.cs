using Xunit;

namespace PipeServer.Tests.Infrastructure;

/// <summary>
/// A fact that needs an external command (e.g. systemd-socket-activate). Where the command is not on PATH the
/// test is reported as skipped, with the reason and how to install it: never failed for the machine's lack.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class FactRequiringCommandAttribute : FactAttribute
{
    public FactRequiringCommandAttribute(string command, string package)
    {
        Skip = SkipReason(command, package);
    }

    /// <summary>The skip reason when <paramref name="command"/> is missing, else null (shared with the theory form).</summary>
    internal static string? SkipReason(string command, string package) => FindOnPath(command) is null
        ? $"'{command}' is not on PATH; it comes with the Debian/Ubuntu package '{package}' (apt-get install -y {package})"
        : null;

    /// <summary>The full path of <paramref name="command"/> on PATH, or null.</summary>
    public static string? FindOnPath(string command) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, command))
            .FirstOrDefault(File.Exists);
}

/// <summary>The theory form of <see cref="FactRequiringCommandAttribute"/>: skipped with the reason where the command is missing.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class TheoryRequiringCommandAttribute : TheoryAttribute
{
    public TheoryRequiringCommandAttribute(string command, string package) => Skip = FactRequiringCommandAttribute.SkipReason(command, package);

    /// <summary>Needs two commands (e.g. haproxy in front of a socket-activated server): skipped with the first missing one's reason.</summary>
    public TheoryRequiringCommandAttribute(string command, string package, string command2, string package2) =>
        Skip = FactRequiringCommandAttribute.SkipReason(command, package) ?? FactRequiringCommandAttribute.SkipReason(command2, package2);
}
