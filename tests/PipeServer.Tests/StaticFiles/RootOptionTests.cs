using PipeServer.Cli;
using PipeServer.StaticFiles;
using Xunit;

namespace PipeServer.Tests.StaticFiles;

// --root and PIPESERVER_ROOT in the one place options are read (Cli/CommandLine.cs), and the options' own checks.
public class RootOptionTests
{
    private static readonly Dictionary<string, string?> NoEnv = new();

    [Fact]
    public void Root_is_off_by_default_and_resolved_to_its_real_path_when_given()
    {
        Assert.Null(CommandLine.Parse([], NoEnv)!.Root);
        var dir = Directory.CreateTempSubdirectory("pipeserver-cli-root-");
        var link = dir.FullName + "-link";
        try
        {
            Directory.CreateSymbolicLink(link, dir.FullName);
            Assert.Equal(StaticFileHandler.CheckRoot(dir.FullName), CommandLine.Parse(["--root", link], NoEnv)!.Root);
            Assert.Equal(StaticFileHandler.CheckRoot(dir.FullName), CommandLine.Parse([], new Dictionary<string, string?> { ["PIPESERVER_ROOT"] = dir.FullName })!.Root);
            // A flag wins over the environment.
            var ex = Assert.Throws<CommandLineException>(() => CommandLine.Parse(["--root", "/nonexistent/x"], new Dictionary<string, string?> { ["PIPESERVER_ROOT"] = dir.FullName }));
            Assert.Equal("--root: '/nonexistent/x' is not a directory", ex.Message);
        }
        finally
        {
            Directory.Delete(link);
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void The_help_lists_root() => Assert.Contains("--root DIR", CommandLine.Usage());

    [Theory]
    [InlineData(0)]
    [InlineData(1001)]
    public void MaxRanges_out_of_bounds_is_refused(int max) =>
        Assert.Throws<ArgumentException>(() => new StaticFileHandler(new StaticFileOptions { Root = Path.GetTempPath(), MaxRanges = max }));

    [Theory]
    [InlineData("")]
    [InlineData("../index.html")]
    [InlineData("a/b.html")]
    [InlineData("..")]
    public void An_index_file_that_is_not_a_plain_name_is_refused(string index) =>
        Assert.Throws<ArgumentException>(() => new StaticFileHandler(new StaticFileOptions { Root = Path.GetTempPath(), IndexFile = index }));
}
