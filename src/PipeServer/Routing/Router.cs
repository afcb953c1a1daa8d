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
    private readonly Dictionary<string, Dictionary<string, RequestHandler>> _routes = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _routeNames = new(StringComparer.Ordinal);
    private bool _frozen;

    public Router Map(string method, string path, RequestHandler handler)
    {
        if (_frozen) throw new InvalidOperationException("Routes are fixed once the router has served a request.");
        if (!path.StartsWith('/')) throw new ArgumentException("A route path starts with '/'.", nameof(path));
        if (!_routes.TryGetValue(path, out var byMethod)) { _routes[path] = byMethod = new(StringComparer.Ordinal); _routeNames[path] = path; }
        if (!byMethod.TryAdd(method, handler)) throw new ArgumentException($"{method} {path} is mapped twice.");
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
        if (!TryFind(request, out var byMethod, out var routeName))
        {
            response.StatusCode = 404;
            return response.WriteTextAsync("Not Found");
        }
        request.Route = routeName; // the route table's own string: a bounded set, safe as a metric label
        if (byMethod.TryGetValue(request.Method, out var handler) ||
            // HEAD is GET without the body (RFC 9110 §9.3.2); the response layer drops the body bytes.
            (request.KnownMethod == HttpMethod.Head && byMethod.TryGetValue("GET", out handler)))
            return handler(request, response);

        var allow = string.Join(", ", AllowedMethods(byMethod));
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
    private bool TryFind(HttpRequest request, out Dictionary<string, RequestHandler> byMethod, out string routeName)
    {
        var raw = request.RawPath;
        if (!request.PathHasEscapes && raw.Length <= 512)
        {
            Span<char> chars = stackalloc char[raw.Length];
            System.Text.Ascii.ToUtf16(raw, chars, out _);
            var lookup = _routeNames.GetAlternateLookup<ReadOnlySpan<char>>();
            if (lookup.TryGetValue(chars, out routeName!)) { byMethod = _routes[routeName]; return true; }
            byMethod = null!;
            return false;
        }
        if (_routeNames.TryGetValue(request.Path, out routeName!)) { byMethod = _routes[routeName]; return true; }
        byMethod = null!;
        return false;
    }

    private static IEnumerable<string> AllowedMethods(Dictionary<string, RequestHandler> byMethod)
    {
        var methods = new SortedSet<string>(byMethod.Keys, StringComparer.Ordinal);
        if (methods.Contains("GET")) methods.Add("HEAD");
        methods.Add("OPTIONS");
        return methods;
    }
}
