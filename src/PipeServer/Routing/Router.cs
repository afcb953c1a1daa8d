using PipeServer.Http;
using HttpMethod = PipeServer.Http.HttpMethod;

namespace PipeServer.Routing;

// Where this sits: between the connection and the application. Http1Connection calls Router.HandleAsync
// (it is the RequestHandler) for each request; the router picks the handler by exact path and method.
// The table is built once, before the server starts, in one visible place (Demo/DemoEndpoints.cs for the
// executable), and is read-only afterwards, so lookups need no lock.

/// <summary>An exact-match route table: method + path → handler. 404 for an unknown path, 405 with Allow for a known path and another method.</summary>
public sealed class Router
{
    /// <summary>One path's handlers. GET and POST are kept in fields: the common methods cost no second lookup.</summary>
    private sealed class Route(string path)
    {
        public readonly string Path = path;
        public readonly Dictionary<string, RequestHandler> ByMethod = new(StringComparer.Ordinal);
        public RequestHandler? Get, Post;
    }

    private readonly Dictionary<string, Route> _routes = new(StringComparer.Ordinal);
    private bool _frozen;

    public Router Map(string method, string path, RequestHandler handler)
    {
        if (_frozen) throw new InvalidOperationException("Routes are fixed once the router has served a request.");
        if (!path.StartsWith('/')) throw new ArgumentException("A route path starts with '/'.", nameof(path));
        if (!_routes.TryGetValue(path, out var route)) _routes[path] = route = new Route(path);
        if (!route.ByMethod.TryAdd(method, handler)) throw new ArgumentException($"{method} {path} is mapped twice.");
        if (method == "GET") route.Get = handler;
        else if (method == "POST") route.Post = handler;
        return this;
    }

    public Router MapGet(string path, RequestHandler handler) => Map("GET", path, handler);
    public Router MapPost(string path, RequestHandler handler) => Map("POST", path, handler);

    /// <summary>The RequestHandler to give the server.</summary>
    public ValueTask HandleAsync(HttpRequest request, HttpResponse response)
    {
        _frozen = true;
        if (request.TargetForm == RequestTargetForm.Asterisk && request.KnownMethod == HttpMethod.Options)
        {
            response.StatusCode = 204;
            return ValueTask.CompletedTask;
        }
        if (!TryFind(request, out var route))
        {
            response.StatusCode = 404;
            return response.WriteTextAsync("Not Found");
        }
        request.Route = route.Path; // the route table's own string: a bounded set, safe as a metric label
        var handler = request.KnownMethod switch
        {
            // HEAD is GET without the body (RFC 9110 §9.3.2); the response layer drops the body bytes.
            HttpMethod.Get or HttpMethod.Head => route.Get ?? (request.KnownMethod == HttpMethod.Head ? route.ByMethod.GetValueOrDefault("HEAD") : null),
            HttpMethod.Post => route.Post,
            _ => route.ByMethod.GetValueOrDefault(request.Method),
        };
        if (request.KnownMethod == HttpMethod.Head && route.ByMethod.TryGetValue("HEAD", out var explicitHead)) handler = explicitHead;
        if (handler is not null) return handler(request, response);

        var allow = string.Join(", ", AllowedMethods(route.ByMethod));
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

    /// <summary>
    /// Looks the path up without making a string of it: an unescaped ASCII path is widened into a stack
    /// buffer and matched through the dictionary's span lookup (the hot path allocates nothing).
    /// </summary>
    private bool TryFind(HttpRequest request, out Route route)
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

    private static IEnumerable<string> AllowedMethods(Dictionary<string, RequestHandler> byMethod)
    {
        var methods = new SortedSet<string>(byMethod.Keys, StringComparer.Ordinal);
        if (methods.Contains("GET")) methods.Add("HEAD");
        methods.Add("OPTIONS");
        return methods;
    }
}
