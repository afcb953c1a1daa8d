using PipeServer.Http;
using HttpMethod = PipeServer.Http.HttpMethod;

namespace PipeServer.Routing;

// Where this sits: between the connection and the application. Http1Connection calls Router.HandleAsync
// (it is the RequestHandler) for each request; the router picks the handler by path and method. The table
// is built once, before the server starts, in one visible place (Demo/DemoEndpoints.cs for the
// executable), and is read-only afterwards, so lookups need no lock.
//
// Two tables, tried in this order:
//   literal paths   "/plaintext": one dictionary lookup on the path bytes, no allocation (the hot path)
//   templates       "/users/{id}", "/files/{*rest}": tried in precedence order, only when no literal path
//                   served the request (RouteTemplate.cs)
// Precedence: a literal path beats any template; among templates, segment by segment from the left, a
// literal segment beats a parameter, which beats a catch-all. The first route in that order that has a
// handler for the method serves the request; when routes match the path but none has the method, the
// answer is 405 with Allow (the methods of every matching route), and OPTIONS gets 204 with the same Allow.

/// <summary>
/// A route table: method + path (literal, or a template with <c>{name}</c> and <c>{*rest}</c> parameters) →
/// handler. 404 for a path no route matches; 405 with <c>Allow</c> for a matching path and another method;
/// <c>HEAD</c> is served by the <c>GET</c> handler (no body is sent); <c>OPTIONS</c> is answered with <c>Allow</c>.
/// </summary>
public sealed class Router
{
    /// <summary>One path's (or template's) handlers. GET and POST are kept in fields: the common methods cost no second lookup.</summary>
    private sealed class Route(string path, RouteTemplate? template)
    {
        public readonly string Path = path;
        public readonly RouteTemplate? Template = template; // null for a literal path
        public readonly Dictionary<string, RequestHandler> ByMethod = new(StringComparer.Ordinal);
        public RequestHandler? Get, Post;
    }

    private readonly Dictionary<string, Route> _routes = new(StringComparer.Ordinal); // literal paths
    private readonly List<Route> _templates = [];                                     // sorted by precedence
    private bool _frozen;

    /// <summary>
    /// Maps <paramref name="method"/> on <paramref name="path"/>: a literal path ("/health") or a template
    /// ("/users/{id}", "/files/{*rest}"; see <see cref="HttpRequest.RouteValues"/>). Routes are fixed once the
    /// router has served a request. A malformed template, a method mapped twice on one path, or a template
    /// matching exactly the paths of another is an <see cref="ArgumentException"/>.
    /// </summary>
    public Router Map(string method, string path, RequestHandler handler)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        ArgumentNullException.ThrowIfNull(handler);
        if (_frozen) throw new InvalidOperationException("Routes are fixed once the router has served a request.");
        var template = RouteTemplate.Parse(path);
        Route? route;
        if (!template.HasParameters)
        {
            if (!_routes.TryGetValue(path, out route)) _routes[path] = route = new Route(path, null);
        }
        else if ((route = _templates.Find(r => r.Path == path)) is null)
        {
            if (_templates.Find(r => r.Template!.IsEquivalentTo(template)) is { } clash)
                throw new ArgumentException($"Route '{path}' matches exactly the paths of '{clash.Path}'.", nameof(path));
            route = new Route(path, template);
            // Stable: among templates of equal precedence (which match different paths), the first mapped is tried first.
            int at = _templates.FindIndex(r => template.ComparePrecedence(r.Template!) < 0);
            _templates.Insert(at < 0 ? _templates.Count : at, route);
        }
        if (!route.ByMethod.TryAdd(method, handler)) throw new ArgumentException($"{method} {path} is mapped twice.");
        if (method == "GET") route.Get = handler;
        else if (method == "POST") route.Post = handler;
        return this;
    }

    /// <summary>Maps GET (and so HEAD) on <paramref name="path"/>; see <see cref="Map"/>.</summary>
    public Router MapGet(string path, RequestHandler handler) => Map("GET", path, handler);
    /// <summary>Maps POST on <paramref name="path"/>; see <see cref="Map"/>.</summary>
    public Router MapPost(string path, RequestHandler handler) => Map("POST", path, handler);
    /// <summary>Maps PUT on <paramref name="path"/>; see <see cref="Map"/>.</summary>
    public Router MapPut(string path, RequestHandler handler) => Map("PUT", path, handler);
    /// <summary>Maps DELETE on <paramref name="path"/>; see <see cref="Map"/>.</summary>
    public Router MapDelete(string path, RequestHandler handler) => Map("DELETE", path, handler);
    /// <summary>Maps PATCH on <paramref name="path"/>; see <see cref="Map"/>.</summary>
    public Router MapPatch(string path, RequestHandler handler) => Map("PATCH", path, handler);

    /// <summary>The <see cref="RequestHandler"/> to give the server (<c>new HttpServer(options, router.HandleAsync)</c>) or an <c>InMemoryServer</c>.</summary>
    public ValueTask HandleAsync(HttpRequest request, HttpResponse response)
    {
        _frozen = true;
        if (request.TargetForm == RequestTargetForm.Asterisk && request.KnownMethod == HttpMethod.Options)
        {
            response.StatusCode = 204;
            return ValueTask.CompletedTask;
        }
        Route? literal = TryFindLiteral(request, out var found) ? found : null;
        if (literal is not null && HandlerFor(literal, request) is { } handler)
        {
            request.Route = literal.Path; // the route table's own string: a bounded set, safe as a metric label
            return handler(request, response);
        }
        return _templates.Count == 0 && literal is null ? NotFound(response) : HandleByTemplateAsync(request, response, literal);
    }

    /// <summary>The slower half: no literal path had a handler for this method. Tries the templates, then answers 405 or 404.</summary>
    private ValueTask HandleByTemplateAsync(HttpRequest request, HttpResponse response, Route? literal)
    {
        SortedSet<string>? allowed = literal is null ? null : AddAllowed(null, literal);
        if (_templates.Count > 0)
        {
            Span<Range> segments = stackalloc Range[RouteTemplate.MaxSegments];
            var raw = request.RawPath;
            if (RouteTemplate.TrySplit(raw, segments, out int count))
            {
                foreach (var route in _templates)
                {
                    if (!route.Template!.TryMatch(raw, segments[..count], request.RouteValues)) continue;
                    if (HandlerFor(route, request) is { } handler)
                    {
                        request.Route = route.Path; // the template, not the path: a bounded set of labels
                        return handler(request, response);
                    }
                    request.RouteValues.Clear();
                    allowed = AddAllowed(allowed, route);
                }
            }
        }
        if (allowed is null) return NotFound(response);

        var allow = string.Join(", ", allowed);
        if (request.KnownMethod == HttpMethod.Options)
        {
            response.StatusCode = 204;
            response.Headers.Set("Allow", allow);
            return ValueTask.CompletedTask;
        }
        response.StatusCode = 405;
        response.Headers.Set("Allow", allow);
        return response.WriteTextAsync("Method Not Allowed");
    }

    private static ValueTask NotFound(HttpResponse response)
    {
        response.StatusCode = 404;
        return response.WriteTextAsync("Not Found");
    }

    /// <summary>The route's handler for the request's method: HEAD is an explicit HEAD handler, else GET without the body (RFC 9110 §9.3.2; the response layer drops the body bytes).</summary>
    private static RequestHandler? HandlerFor(Route route, HttpRequest request) => request.KnownMethod switch
    {
        HttpMethod.Get => route.Get,
        HttpMethod.Head => route.ByMethod.GetValueOrDefault("HEAD") ?? route.Get,
        HttpMethod.Post => route.Post,
        _ => route.ByMethod.GetValueOrDefault(request.Method),
    };

    /// <summary>
    /// Looks the path up without making a string of it: an unescaped ASCII path is widened into a stack
    /// buffer and matched through the dictionary's span lookup (the hot path allocates nothing).
    /// </summary>
    private bool TryFindLiteral(HttpRequest request, out Route route)
    {
        var raw = request.RawPath;
        if (!request.PathHasEscapes && raw.Length <= 512)
        {
            Span<char> chars = stackalloc char[raw.Length];
            System.Text.Ascii.ToUtf16(raw, chars, out _);
            return _routes.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(chars, out route!);
        }
        return _routes.TryGetValue(request.Path, out route!);
    }

    private static SortedSet<string> AddAllowed(SortedSet<string>? allowed, Route route)
    {
        allowed ??= new SortedSet<string>(StringComparer.Ordinal) { "OPTIONS" };
        allowed.UnionWith(route.ByMethod.Keys);
        if (route.Get is not null) allowed.Add("HEAD");
        return allowed;
    }
}
