using System.Net;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.StaticFiles;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.StaticFiles;

// Router.MapStaticFiles: files mounted under a prefix beside an embedder's own routes, on every transport.
public class StaticFileRoutingTests
{
    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Files_under_a_prefix_beside_other_routes(string transport)
    {
        var tree = Directory.CreateTempSubdirectory("pipeserver-mount-");
        try
        {
            File.WriteAllText(Path.Combine(tree.FullName, "app.js"), "let x = 1;\n");
            File.WriteAllText(Path.Combine(tree.FullName, "index.html"), "<h1>static</h1>\n");
            var router = new Router();
            router.MapGet("/api/ping", (_, res) => res.WriteTextAsync("pong"));
            router.MapStaticFiles("/static", new StaticFileOptions { Root = tree.FullName });
            await using var server = new HttpServer(new HttpServerOptions { Address = IPAddress.Loopback, Port = 0, Transport = TransportData.Kind(transport) }, router.HandleAsync);
            await server.StartAsync();

            async Task<RawResponse> Get(string target)
            {
                await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
                await c.SendAsync($"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
                return await c.ReadResponseAsync();
            }
            var js = await Get("/static/app.js");
            Assert.Equal((200, "let x = 1;\n", "text/javascript; charset=utf-8"), (js.Status, js.BodyText, js.Header("Content-Type")));
            Assert.Equal("let x = 1;\n", (await Get("/st%61tic/app.js")).BodyText); // the prefix matched decoded, skipped by segment
            Assert.Equal("<h1>static</h1>\n", (await Get("/static/")).BodyText);
            Assert.Equal("pong", (await Get("/api/ping")).BodyText);
            Assert.Equal(404, (await Get("/app.js")).Status);          // not mounted at the root
            Assert.True((await Get("/static/../api/ping")).Status is 400 or 404);
        }
        finally
        {
            tree.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("static")]
    [InlineData("/static/")]
    [InlineData("/{x}")]
    public void A_bad_prefix_is_refused(string prefix) =>
        Assert.Throws<ArgumentException>(() => new Router().MapStaticFiles(prefix, new StaticFileOptions { Root = Path.GetTempPath() }));
}
