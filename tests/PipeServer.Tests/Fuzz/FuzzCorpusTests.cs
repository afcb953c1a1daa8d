using PipeServer.Fuzz;
using Xunit;

namespace PipeServer.Tests.Fuzz;

// Every file of the fuzz corpus (tests/PipeServer.Fuzz/corpus, copied next to this assembly by the csproj)
// replayed through the fuzz target's own code (FuzzTargets.cs is compiled into this project too), so the
// findings AFL once made stay fixed in every `./build.sh test`, with no instrumentation needed.
public class FuzzCorpusTests
{
    private static string CorpusDirectory => Path.Combine(AppContext.BaseDirectory, "fuzz-corpus");

    private static List<string> CopiedFiles() => !Directory.Exists(CorpusDirectory) ? [] :
        Directory.EnumerateFiles(CorpusDirectory, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(CorpusDirectory, f)).Order(StringComparer.Ordinal).ToList();

    public static TheoryData<string> CorpusFiles() => new(CopiedFiles());

    [Fact]
    public void The_corpus_is_found_and_complete()
    {
        // A replay that finds nothing must not pass: zero files is a failure, and so is a copy that misses
        // files the repository has.
        var copied = CopiedFiles();
        Assert.NotEmpty(copied);
        if (FindRepositoryCorpus() is { } source)
        {
            var inRepo = Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories)
                .Select(f => Path.GetRelativePath(source, f)).Order(StringComparer.Ordinal).ToList();
            Assert.Equal(inRepo, copied);
        }
    }

    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void Corpus_file_yields_only_typed_outcomes(string file)
    {
        var input = File.ReadAllBytes(Path.Combine(CorpusDirectory, file));
        // FuzzTargets.Run throws for any finding: an escaped exception, a rejection without a reason, an
        // outcome that depends on how the input is split, or a decoder that makes no progress.
        FuzzTargets.Run(input);
    }

    /// <summary>The corpus in the source tree, found by walking up from the test's output directory.</summary>
    private static string? FindRepositoryCorpus()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "PipeServer.Fuzz", "corpus");
            if (Directory.Exists(candidate)) return candidate;
        }
        return null;
    }
}
