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
        if (FindOnPath(command) is null)
            Skip = $"'{command}' is not on PATH; it comes with the Debian/Ubuntu package '{package}' (apt-get install -y {package})";
    }

    /// <summary>The full path of <paramref name="command"/> on PATH, or null.</summary>
    public static string? FindOnPath(string command) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, command))
            .FirstOrDefault(File.Exists);
}

/// <summary>The theory form of <see cref="FactRequiringCommandAttribute"/> (e.g. one case per transport): skipped, with the same reason, where the command is missing.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class TheoryRequiringCommandAttribute : TheoryAttribute
{
    public TheoryRequiringCommandAttribute(string command, string package)
    {
        if (FactRequiringCommandAttribute.FindOnPath(command) is null)
            Skip = $"'{command}' is not on PATH; it comes with the Debian/Ubuntu package '{package}' (apt-get install -y {package})";
    }
}
