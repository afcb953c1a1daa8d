using System.Text;
using PipeServer.StaticFiles;
using Xunit;

namespace PipeServer.Tests.StaticFiles;

// Unit tests of the request-path mapping: every traversal spelling is refused before the file system is asked.
public class StaticPathTests
{
    private static (PathVerdict Verdict, string Relative, bool Slash) Map(string raw, bool dotFiles = false)
    {
        var verdict = StaticPath.MapRequestPath(Encoding.Latin1.GetBytes(raw), dotFiles, out var relative, out bool slash);
        return (verdict, relative, slash);
    }

    [Theory]
    [InlineData("/", "", true)]
    [InlineData("/a.txt", "a.txt", false)]
    [InlineData("/sub/", "sub", true)]
    [InlineData("/sub//a.txt", "sub/a.txt", false)]
    [InlineData("/caf%C3%A9.txt", "café.txt", false)]
    [InlineData("/%252e%252e/x", "%2e%2e/x", false)]   // decoded once: the double-encoded dots stay a literal name
    [InlineData("/a%20b", "a b", false)]
    [InlineData("/a..b", "a..b", false)]               // dots inside a name are a name
    public void Plain_paths_map(string raw, string relative, bool slash) => Assert.Equal((PathVerdict.Ok, relative, slash), Map(raw));

    [Theory]
    [InlineData("/../etc/passwd")]
    [InlineData("/a/../../etc/passwd")]
    [InlineData("/./a")]
    [InlineData("/..")]
    [InlineData("/%2e%2e/etc/passwd")]
    [InlineData("/%2E%2E/etc/passwd")]
    [InlineData("/.%2e/etc/passwd")]
    [InlineData("/%2e")]
    [InlineData("/..%2fetc%2fpasswd")]                  // an encoded slash
    [InlineData("/a%2Fb")]
    [InlineData("/..\\etc\\passwd")]                    // backslashes, raw
    [InlineData("/..%5cetc%5cpasswd")]                  // and encoded
    [InlineData("/%c0%ae%c0%ae/etc/passwd")]            // overlong UTF-8 for '.'
    [InlineData("/%e0%80%ae")]                          // a three-byte overlong
    [InlineData("/%ed%a0%80")]                          // a UTF-16 surrogate in UTF-8
    [InlineData("/%c3")]                                // truncated sequence
    [InlineData("/a%00.txt")]                           // NUL
    [InlineData("/a%0d%0a")]                            // CR LF
    [InlineData("/a%1b")]                               // other control characters
    [InlineData("/a%7f")]
    [InlineData("/a%zz")]                               // malformed escapes
    [InlineData("/a%4")]
    [InlineData("relative")]
    public void Traversal_and_bad_bytes_are_400(string raw) => Assert.Equal(PathVerdict.BadRequest, Map(raw).Verdict);

    [Theory]
    [InlineData("/.env")]
    [InlineData("/.git/config")]
    [InlineData("/sub/.hidden")]
    [InlineData("/%2egit/config")]
    public void Dotfiles_are_404_by_default(string raw)
    {
        Assert.Equal(PathVerdict.NotFound, Map(raw).Verdict);
        Assert.Equal(PathVerdict.Ok, Map(raw, dotFiles: true).Verdict);
    }

    [Fact]
    public void A_path_longer_than_PATH_MAX_is_404() => Assert.Equal(PathVerdict.NotFound, Map("/" + new string('a', 5000)).Verdict);

    [Fact]
    public void Resolve_keeps_to_the_root_on_the_real_path()
    {
        var dir = Directory.CreateTempSubdirectory("pipeserver-path-");
        var outside = Directory.CreateTempSubdirectory("pipeserver-outside-");
        try
        {
            var root = StaticFileHandler.CheckRoot(dir.FullName);
            File.WriteAllText(Path.Combine(root, "in.txt"), "in");
            File.WriteAllText(Path.Combine(root, ".env"), "secret");
            File.WriteAllText(Path.Combine(outside.FullName, "out.txt"), "out");
            File.CreateSymbolicLink(Path.Combine(root, "inlink"), Path.Combine(root, "in.txt"));
            File.CreateSymbolicLink(Path.Combine(root, "outlink"), Path.Combine(outside.FullName, "out.txt"));
            Directory.CreateSymbolicLink(Path.Combine(root, "outdir"), outside.FullName);
            File.CreateSymbolicLink(Path.Combine(root, "envlink"), Path.Combine(root, ".env"));
            // A sibling whose name starts with the root's: a string prefix test alone would let it through.
            Directory.CreateDirectory(root + "-evil");
            File.WriteAllText(Path.Combine(root + "-evil", "x"), "x");
            File.CreateSymbolicLink(Path.Combine(root, "evil"), root + "-evil");

            Assert.Equal(Path.Combine(root, "in.txt"), StaticPath.Resolve(root, "in.txt", false, false));
            Assert.Equal(Path.Combine(root, "in.txt"), StaticPath.Resolve(root, "inlink", false, false)); // links inside are followed
            Assert.Null(StaticPath.Resolve(root, "outlink", false, false));
            Assert.Null(StaticPath.Resolve(root, "outdir/out.txt", false, false));
            Assert.Null(StaticPath.Resolve(root, "evil/x", false, false));
            Assert.Null(StaticPath.Resolve(root, "envlink", false, false)); // a link to a dotfile is a dotfile
            Assert.Null(StaticPath.Resolve(root, "missing", false, false));
            Assert.Equal(Path.Combine(outside.FullName, "out.txt"), StaticPath.Resolve(root, "outlink", followOutside: true, false));
            Directory.Delete(root + "-evil", recursive: true);
        }
        finally
        {
            dir.Delete(recursive: true);
            outside.Delete(recursive: true);
        }
    }
}
