using System.Xml.Linq;
using Xunit;

namespace PipeServer.Tests.Operations;

// What the PipeServer package promises embedders (issue 12): it depends on what a server library needs and
// nothing the executable needs. Console logging and prometheus-net belong to src/PipeServer.Host; a package
// that pulled them in would force them on every application that embeds the server. Checked on the project
// file that `dotnet pack` reads, so a PackageReference added to the library fails here before it ships.
public class PackageTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PipeServer.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("no PipeServer.sln above " + AppContext.BaseDirectory);
    }

    private static XDocument Project(string path) => XDocument.Load(Path.Combine(Root, path));

    private static IEnumerable<string> Includes(XDocument project, string item) =>
        project.Descendants(item).Select(e => (string?)e.Attribute("Include") ?? "");

    [Fact]
    public void The_library_depends_on_neither_console_logging_nor_prometheus_net()
    {
        var library = Project("src/PipeServer/PipeServer.csproj");
        var packages = Includes(library, "PackageReference").ToList();
        Assert.Contains("Microsoft.Extensions.Logging.Abstractions", packages);
        Assert.DoesNotContain(packages, p => p.Equals("Microsoft.Extensions.Logging.Console", StringComparison.OrdinalIgnoreCase)
            || p.Equals("Microsoft.Extensions.Logging", StringComparison.OrdinalIgnoreCase)
            || p.StartsWith("prometheus-net", StringComparison.OrdinalIgnoreCase));
        // A project reference would become a package dependency too (or drag the executable in).
        Assert.Empty(Includes(library, "ProjectReference"));
        // Analyzers only: PrivateAssets keeps them out of the package's dependencies.
        foreach (var reference in library.Descendants("PackageReference").Where(e => ((string?)e.Attribute("Include") ?? "").Contains("Analyzers", StringComparison.Ordinal)))
            Assert.Equal("all", (string?)reference.Attribute("PrivateAssets"));
    }

    [Fact]
    public void The_executable_is_the_host_project_and_is_not_packed()
    {
        var host = Project("src/PipeServer.Host/PipeServer.Host.csproj");
        Assert.Equal("PipeServer.Host", host.Descendants("AssemblyName").Single().Value);
        Assert.Equal("Exe", host.Descendants("OutputType").Single().Value);
        Assert.Equal("false", host.Descendants("IsPackable").Single().Value);
        var library = Project("src/PipeServer/PipeServer.csproj");
        Assert.Equal("Library", library.Descendants("OutputType").Single().Value);
        Assert.Equal("PipeServer", library.Descendants("PackageId").Single().Value);
        Assert.Equal("README.md", library.Descendants("PackageReadmeFile").Single().Value);
    }
}
