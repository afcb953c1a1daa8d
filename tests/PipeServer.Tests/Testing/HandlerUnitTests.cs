using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Testing;
using Xunit;

namespace PipeServer.Tests.Testing;

// What a user of the library writes to unit-test a handler: only the public API (Router, HttpRequest,
// HttpResponse, PipeServer.Testing), no socket, no internals. Kept in its own file so that it stays so.
public class HandlerUnitTests
{
    /// <summary>A handler as a user would write one: a route value, a query value, a status, a header.</summary>
    private static async ValueTask Greet(HttpRequest request, HttpResponse response)
    {
        if (!request.TryGetRouteValue("name", out var name) || name.Length > 20)
        {
            response.StatusCode = 400;
            await response.WriteTextAsync("bad name\n");
            return;
        }
        response.Headers.Set("Cache-Control", "no-store");
        var greeting = request.GetQueryValue("greeting") ?? "Hello";
        await response.WriteTextAsync($"{greeting}, {name}!\n");
    }

    private static Router App() => new Router().MapGet("/greet/{name}", Greet);

    [Fact]
    public async Task Greets_by_route_value_and_query()
    {
        await using var server = new InMemoryServer(App());
        var response = await server.GetAsync("/greet/Ada%20L?greeting=Bonjour");
        Assert.Equal(200, response.StatusCode);
        Assert.Equal("Bonjour, Ada L!\n", response.BodyText);
        Assert.Equal("no-store", response.GetHeader("Cache-Control"));
        Assert.Equal("text/plain; charset=utf-8", response.GetHeader("Content-Type"));
    }

    [Fact]
    public async Task Refuses_a_long_name_and_the_router_refuses_other_methods()
    {
        await using var server = new InMemoryServer(App());
        Assert.Equal(400, (await server.GetAsync("/greet/" + new string('x', 21))).StatusCode);
        var post = await server.SendAsync("POST", "/greet/ada", "x");
        Assert.Equal(405, post.StatusCode);
        Assert.Equal("GET, HEAD, OPTIONS", post.GetHeader("Allow"));
    }

    [Fact]
    public async Task The_handler_alone_without_a_router()
    {
        // No route matched, so no route values: the handler's own error path.
        await using var server = new InMemoryServer(Greet);
        Assert.Equal(400, (await server.GetAsync("/anything")).StatusCode);
    }
}
