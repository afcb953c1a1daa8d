using PipeServer.StaticFiles;
using Xunit;

namespace PipeServer.Tests.StaticFiles;

public class ContentTypesTests
{
    [Theory]
    [InlineData("index.html", "text/html; charset=utf-8")]
    [InlineData("INDEX.HTM", "text/html; charset=utf-8")]
    [InlineData("/a/b/app.js", "text/javascript; charset=utf-8")]
    [InlineData("style.css", "text/css; charset=utf-8")]
    [InlineData("data.json", "application/json")]
    [InlineData("logo.svg", "image/svg+xml")]
    [InlineData("photo.JPG", "image/jpeg")]
    [InlineData("font.woff2", "font/woff2")]
    [InlineData("app.wasm", "application/wasm")]
    [InlineData("movie.mp4", "video/mp4")]
    [InlineData("doc.pdf", "application/pdf")]
    [InlineData("archive.tar.gz", "application/gzip")]
    [InlineData("unknown.xyz", "application/octet-stream")]
    [InlineData("README", "application/octet-stream")]
    [InlineData(".bashrc", "application/octet-stream")]
    [InlineData("dir.html/file", "application/octet-stream")] // only the last segment counts
    public void By_extension(string name, string type) => Assert.Equal(type, ContentTypes.For(name));
}
