using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Testing;
using Xunit;

namespace PipeServer.Tests.Routing;

// The router: literal paths, "{name}" and "{*rest}" templates, precedence, 405/HEAD/OPTIONS, route values
// and query access, through the real connection over the public in-memory server.
public class RouterTests
{
    private static Router Users()
    {
        var r = new Router();
        r.MapGet("/users/me", (_, res) => res.WriteTextAsync("literal"));
        r.MapGet("/users/{id}", (req, res) => res.WriteTextAsync("id=" + req.RouteValues["id"]));
        r.MapDelete("/users/{id}", (req, res) => res.WriteTextAsync("deleted " + req.RouteValues["id"]));
        r.MapGet("/users/{*rest}", (req, res) => res.WriteTextAsync("rest=" + req.RouteValues["rest"]));
        r.MapGet("/users/{id}/posts/{post}", (req, res) =>
            res.WriteTextAsync($"{req.RouteValues["id"]}/{(req.TryGetRouteValue("POST", out var p) ? p : "?")}"));
        r.MapGet("/files/{*path}", (req, res) => res.WriteTextAsync("path=" + req.RouteValues["path"]));
        r.MapPost("/files/upload", (_, res) => res.WriteTextAsync("upload"));
        return r;
    }

    [Theory]
    [InlineData("/users/me", "literal")]                 // a literal path beats a template
    [InlineData("/users/42", "id=42")]                   // a parameter beats a catch-all
    [InlineData("/users/42/friends", "rest=42/friends")] // only the catch-all takes more segments
    [InlineData("/users/7/posts/9", "7/9")]              // names are case-insensitive (TryGetRouteValue("POST"))
    [InlineData("/users/a%20b", "id=a b")]               // values are percent-decoded
    [InlineData("/users/a%2Fb", "id=a/b")]               // inside one segment "%2F" is data
    [InlineData("/users/%C3%A9", "id=é")]                // UTF-8
    [InlineData("/files/a/b%2Fc.txt", "path=a/b%2Fc.txt")] // a catch-all keeps "%2F" encoded, as HttpRequest.Path does
    [InlineData("/files", "path=")]                      // a catch-all may be empty
    [InlineData("/files/", "path=")]
    [InlineData("/files/upload", "path=upload")]         // the literal path has no GET: the template serves it
    [InlineData("/users/m%65", "literal")]               // escapes are decoded before a literal is compared
    public async Task Templates_match_by_precedence_and_carry_decoded_values(string target, string body)
    {
        await using var server = new InMemoryServer(Users());
        var response = await server.GetAsync(target);
        Assert.Equal(200, response.StatusCode);
        Assert.Equal(body, response.BodyText);
    }

    [Theory]
    [InlineData("/users")]      // a parameter needs a segment
    [InlineData("/users/")]     // ... that is not empty
    [InlineData("/nothing")]
    [InlineData("/users/7/posts")]
    [InlineData("/users/7/")]   // no trailing-slash folding
    public async Task A_path_no_route_matches_is_404(string target)
    {
        var r = new Router();
        r.MapGet("/users/{id}", (_, res) => res.WriteTextAsync("id"));
        r.MapGet("/users/{id}/posts/{post}", (_, res) => res.WriteTextAsync("post"));
        await using var server = new InMemoryServer(r);
        Assert.Equal(404, (await server.GetAsync(target)).StatusCode);
    }

    [Fact]
    public async Task A_matching_template_with_another_method_is_405_with_the_methods_of_every_matching_route()
    {
        await using var server = new InMemoryServer(Users());
        var put = await server.SendAsync("PUT", "/users/42", "x");
        Assert.Equal(405, put.StatusCode);
        // /users/{id} (GET, DELETE) and /users/{*rest} (GET) both match.
        Assert.Equal("DELETE, GET, HEAD, OPTIONS", put.GetHeader("Allow"));
        var post = await server.SendAsync("POST", "/files/upload", "x");
        Assert.Equal("upload", post.BodyText); // the literal path's POST is served before any template
        var delete = await server.SendAsync("DELETE", "/users/5");
        Assert.Equal("deleted 5", delete.BodyText);
    }

    [Fact]
    public async Task Options_on_a_template_is_204_with_allow_and_head_is_the_get_without_a_body()
    {
        await using var server = new InMemoryServer(Users());
        var options = await server.SendAsync("OPTIONS /users/42 HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(204, options.StatusCode);
        Assert.Equal("DELETE, GET, HEAD, OPTIONS", options.GetHeader("Allow"));
        var head = await server.SendAsync("HEAD /users/42 HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, head.StatusCode);
        Assert.Equal(5, head.ContentLength); // "id=42": the GET's length, no body
        Assert.Empty(head.Body);
    }

    [Fact]
    public async Task Route_values_do_not_leak_into_the_next_request_on_a_connection_fed_one_byte_at_a_time()
    {
        var seen = new List<int>();
        var r = Users();
        r.MapGet("/count", (req, res) => { seen.Add(req.RouteValues.Count); return res.WriteTextAsync("n"); });
        await using var server = new InMemoryServer(r);
        await using var c = server.Connect();
        foreach (byte b in "GET /users/7/posts/9 HTTP/1.1\r\nHost: a\r\n\r\nGET /count HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray())
            await c.WriteAsync(new[] { b });
        Assert.Equal("7/9", (await c.ReadResponseAsync()).BodyText);
        Assert.Equal("n", (await c.ReadResponseAsync()).BodyText);
        Assert.Equal([0], seen);
    }

    [Fact]
    public async Task The_route_label_is_the_template_not_the_path()
    {
        string? route = null;
        var r = new Router().MapGet("/items/{id}", (req, res) => { route = req.Route; return ValueTask.CompletedTask; });
        await using var server = new InMemoryServer(r);
        await server.GetAsync("/items/123");
        Assert.Equal("/items/{id}", route);
    }

    [Theory]
    [InlineData("users")]             // no leading '/'
    [InlineData("/a/{}")]             // empty name
    [InlineData("/a/{b-c}")]          // not a name
    [InlineData("/a/x{id}")]          // half literal, half parameter
    [InlineData("/a/{*rest}/b")]      // catch-all not last
    [InlineData("/a/{id}/{ID}")]      // the same name twice
    [InlineData("/a//b")]             // an empty segment
    public void A_malformed_template_is_refused_when_mapped(string template)
    {
        var e = Assert.Throws<ArgumentException>(() => new Router().MapGet(template, (_, _) => ValueTask.CompletedTask));
        Assert.Contains(template.TrimStart('/').Length > 0 ? template : "/", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Two_templates_that_match_the_same_paths_are_refused()
    {
        var r = new Router().MapGet("/a/{id}", (_, _) => ValueTask.CompletedTask);
        var e = Assert.Throws<ArgumentException>(() => r.MapPost("/a/{name}", (_, _) => ValueTask.CompletedTask));
        Assert.Contains("'/a/{id}'", e.Message, StringComparison.Ordinal);
        r.MapPost("/a/{id}", (_, _) => ValueTask.CompletedTask); // the same template with another method is fine
    }

    [Fact]
    public async Task Routes_are_fixed_once_the_router_has_served()
    {
        var r = Users();
        await using (var server = new InMemoryServer(r)) await server.GetAsync("/users/me");
        Assert.Throws<InvalidOperationException>(() => r.MapGet("/late", (_, _) => ValueTask.CompletedTask));
    }
}

public class QueryTests
{
    private static async Task<string> Echo(string target, Func<HttpRequest, string> read)
    {
        await using var server = new InMemoryServer((req, res) => res.WriteTextAsync(read(req)));
        return (await server.GetAsync(target)).BodyText;
    }

    [Theory]
    [InlineData("/q?name=ada", "ada")]
    [InlineData("/q?x=1&name=a+b", "a b")]             // '+' is a space
    [InlineData("/q?name=a%2Bb%26c%3D", "a+b&c=")]     // escaped delimiters are data
    [InlineData("/q?name=%C3%A9", "é")]                // UTF-8
    [InlineData("/q?name=100%", "100%")]               // an invalid escape stays as sent
    [InlineData("/q?name", "")]                        // present without a value
    [InlineData("/q?name=", "")]
    [InlineData("/q?na%6De=first&name=second", "first")] // the name is decoded before it is compared
    [InlineData("/q?&&name=x&", "x")]                  // empty pairs are skipped
    [InlineData("/q?Name=x", "(null)")]                // names are case-sensitive
    [InlineData("/q", "(null)")]
    public async Task GetQueryValue_decodes_the_first_value(string target, string expected) =>
        Assert.Equal(expected, await Echo(target, req => req.GetQueryValue("name") ?? "(null)"));

    [Fact]
    public async Task GetQueryValues_returns_every_value_in_order_and_the_raw_query_is_kept()
    {
        Assert.Equal("a|b c||d", await Echo("/q?tag=a&x=1&tag=b+c&tag&tag=d", req => string.Join("|", req.GetQueryValues("tag"))));
        Assert.Equal("0", await Echo("/q?x=1", req => req.GetQueryValues("tag").Count.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Equal("tag=a+b&x=%41", await Echo("/q?tag=a+b&x=%41", req => req.Query));
    }
}
