using System.IO.Pipelines;
using System.Net;

namespace PipeServer.Http;

/// <summary>An application's request handler: read the request, fill in the response.</summary>
public delegate ValueTask RequestHandler(HttpRequest request, HttpResponse response);

/// <summary>
/// What a handler sees of one request. The head is parsed and validated before the handler runs; the body
/// streams in as the handler reads it. Pooled: reset per request and reused for later requests, on this
/// connection or another (Connections/RequestObjects.cs), so do not keep it after the handler has returned.
/// </summary>
public sealed class HttpRequest
{
    private RequestHead _head = null!;

    internal HttpRequest() { } // made by the connection (pooled); a handler is given one, never makes one

    /// <summary>The method as sent ("GET", "PROPFIND", …).</summary>
    public string Method => _head.MethodName;
    /// <summary>The method when it is one of the common ones, else <see cref="HttpMethod.Custom"/>: compare this instead of <see cref="Method"/> to avoid a string comparison.</summary>
    public HttpMethod KnownMethod => _head.Method;
    /// <summary>The request target exactly as sent.</summary>
    public string Target => _head.Target;
    /// <summary>The path, percent-decoded once (an encoded "/" stays "%2F", so it cannot pose as a separator).</summary>
    public string Path => _head.Path;
    /// <summary>The query string without '?', exactly as sent (not decoded); <see cref="GetQueryValue"/> decodes one parameter.</summary>
    public string Query => _head.Query;
    /// <summary>HTTP/1.0 or HTTP/1.1 (a higher 1.x is served as 1.1).</summary>
    public HttpVersion Version => _head.Version;
    /// <summary>Every header field in the order received (names case-insensitive). Reused for the connection's next request: do not keep it.</summary>
    public HttpHeaders Headers => _head.Headers;
    /// <summary>The first value of a header, or null (cheaper than <see cref="Headers"/> when only one is needed).</summary>
    public string? GetHeader(string name) => _head.GetHeader(name);
    /// <summary>The path as sent, before percent-decoding: what the router matches, without making a string.</summary>
    public ReadOnlySpan<byte> RawPath => _head.RawPath;
    /// <summary>True when <see cref="RawPath"/> holds a percent-escape, so that <see cref="Path"/> differs from it.</summary>
    public bool PathHasEscapes => _head.PathHasEscapes;
    /// <summary>Which of the four request-target forms of RFC 9112 §3.2 was sent.</summary>
    public RequestTargetForm TargetForm => _head.TargetForm;
    /// <summary>Content-Length as sent, or null (no body, or chunked).</summary>
    public long? ContentLength => _head.ContentLength >= 0 ? _head.ContentLength : null;
    /// <summary>True when the body comes with Transfer-Encoding: chunked.</summary>
    public bool IsChunked => _head.IsChunked;

    /// <summary>
    /// The body as a <see cref="System.IO.Pipelines.PipeReader"/>, streamed: slices of the connection's buffer
    /// (no copy), never a byte past this request's end. Each read is bounded: a body over the server's
    /// MaxRequestBodySize, malformed chunked framing or a too slow upload ends the request (413, 400, 408).
    /// </summary>
    public PipeReader Body => BodyReader;
    internal RequestBody BodyReader { get; private set; } = null!;
    /// <summary>The body as a read-only <see cref="Stream"/> over <see cref="Body"/> (one per connection: do not dispose it or keep it).</summary>
    public Stream BodyStream => BodyReader.AsStream();

    /// <summary>
    /// Reads the whole body as JSON through source-generated metadata (a <c>JsonSerializerContext</c>'s
    /// property). Malformed JSON is a <see cref="System.Text.Json.JsonException"/>: catch it to answer 400.
    /// </summary>
    public ValueTask<T?> ReadJsonAsync<T>(System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken = default) =>
        System.Text.Json.JsonSerializer.DeserializeAsync(BodyStream, typeInfo, cancellationToken);
    /// <summary>Trailer fields of a chunked body (empty until the body has been read to its end).</summary>
    public HttpHeaders Trailers => BodyReader is ChunkedRequestBody chunked ? chunked.Trailers : EmptyHeaders;

    /// <summary>The matched route template, set by the router (null when no route matched): the http.route metric label.</summary>
    public string? Route { get; set; }

    /// <summary>
    /// The values of the matched template's parameters ("/users/{id}" → id), percent-decoded; empty for a
    /// literal route. Reused for a later request: copy what you need, do not keep it.
    /// </summary>
    public RouteValues RouteValues { get; } = new();

    /// <summary>The value of route parameter <paramref name="name"/> (case-insensitive), if the matched template has it.</summary>
    public bool TryGetRouteValue(string name, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out string value) =>
        RouteValues.TryGetValue(name, out value);

    /// <summary>The connection's number (also in the access log's request id, CONNECTION-N).</summary>
    public long ConnectionId { get; private set; }
    /// <summary>"https" when the connection came through TLS, else "http": what this server's listener speaks (not what a proxy in front was asked).</summary>
    public string Scheme { get; internal set; } = "http";
    /// <summary>The socket's peer: the client, or the balancer in front of it; null on a Unix socket (its peer has no address).</summary>
    public IPEndPoint? RemoteEndPoint { get; private set; }

    /// <summary>
    /// The client's address: the socket peer, or, when the peer is one of the server's trusted proxies, the
    /// address its PROXY protocol header or X-Forwarded-For field names (Server/ClientAddress.cs has the
    /// rule). Worked out on first use per request; null without a socket (in-memory tests) and on a Unix
    /// socket unless a trusted proxy there named the client.
    /// </summary>
    public IPAddress? ClientAddress => _clientAddress ??= ResolveClientAddress(_head);

    // Per connection: the peer or a PROXY header's source, and the trust list. Per request: the cached answer.
    private IPAddress? _connectionClient;
    private int _connectionClientPort;
    private IReadOnlyList<IPNetwork> _trustedProxies = [];
    private bool _fromTrustedUnixPeer; // the connection client is a Unix-socket peer the options trust (no address)
    private IPAddress? _clientAddress;

    /// <summary>The address requests on this connection come from: the socket peer, or a trusted PROXY header's source.</summary>
    internal IPAddress? ConnectionClient => _connectionClient;
    internal int ConnectionClientPort => _connectionClientPort;
    internal bool ConnectionClientIsTrusted => _fromTrustedUnixPeer || Server.ClientAddress.IsTrusted(_connectionClient, _trustedProxies);

    /// <param name="endPoint">The socket peer (null on a Unix socket), or a PROXY header's source.</param>
    /// <param name="trustedProxies">The trust list.</param>
    /// <param name="trustedUnixPeer">The peer is on a Unix socket and such peers are trusted (--trusted-proxies unix:).</param>
    internal void SetConnectionClient(IPEndPoint? endPoint, IReadOnlyList<IPNetwork> trustedProxies, bool trustedUnixPeer = false) =>
        SetConnectionClient(ConnectionClientInfo.Of(endPoint, trustedProxies, trustedUnixPeer));

    /// <summary>The connection's client, worked out once per connection: set on each pooled request object the connection rents.</summary>
    internal void SetConnectionClient(in ConnectionClientInfo client)
    {
        _connectionClient = client.Address;
        _connectionClientPort = client.Port;
        _trustedProxies = client.TrustedProxies;
        _fromTrustedUnixPeer = client.FromTrustedUnixPeer;
        _clientAddress = null;
    }

    /// <summary>Not cached: also used for a rejected request, whose head this request object never saw in Reset.</summary>
    internal IPAddress? ResolveClientAddress(RequestHead head) =>
        _fromTrustedUnixPeer ? Server.ClientAddress.FromForwardedForOfTrustedPeer(head.Headers.GetValues("X-Forwarded-For"), _trustedProxies)
        : ConnectionClientIsTrusted ? Server.ClientAddress.FromForwardedFor(_connectionClient, head.Headers.GetValues("X-Forwarded-For"), _trustedProxies)
        : _connectionClient;

    /// <summary>
    /// Fires when this request can no longer be answered: the client went away (reset, failed write), or the
    /// server aborted the connection (shutdown deadline). Pass it to any wait inside a handler.
    /// </summary>
    // Asked of the connection each time: it makes its token source only when someone first asks (a GET-only
    // keep-alive connection never does, and an idle one then holds no linked source and registration).
    public CancellationToken Aborted => _owner?.Aborted ?? default;
    private IRequestOwner? _owner;

    /// <summary>
    /// Fires when the server starts draining for shutdown. The current response will still be sent in full;
    /// long-running responses (streams, long polls) should finish early and cleanly when it fires.
    /// </summary>
    public CancellationToken Draining { get; private set; }

    private static readonly HttpHeaders EmptyHeaders = new();

    internal void Reset(RequestHead head, RequestBody body, long connectionId, IPEndPoint? remote, IRequestOwner owner, CancellationToken draining)
    {
        _head = head; BodyReader = body; ConnectionId = connectionId; RemoteEndPoint = remote;
        _owner = owner; Draining = draining; Route = null; _clientAddress = null;
        RouteValues.Clear();
    }

    /// <summary>Back to the pool (Connections/RequestObjects.cs): drops what refers to the last request and its connection.</summary>
    internal void Detach()
    {
        _head = null!; BodyReader = null!; RemoteEndPoint = null; _owner = null; Draining = default; Route = null;
        _connectionClient = null; _trustedProxies = []; _clientAddress = null;
        RouteValues.Clear();
    }

    /// <summary>
    /// The first value of query parameter <paramref name="name"/> (matched exactly, after decoding), or null
    /// when absent; "" for "?name" or "?name=". Decoded as browsers encode a query: '+' is a space, then
    /// percent-escapes as UTF-8 (an invalid escape is left as sent).
    /// </summary>
    public string? GetQueryValue(string name) => QueryString.GetValue(Query, name);

    /// <summary>Every value of query parameter <paramref name="name"/>, in order ("?tag=a&amp;tag=b"), decoded as <see cref="GetQueryValue"/>; empty when absent.</summary>
    public IReadOnlyList<string> GetQueryValues(string name) => QueryString.GetValues(Query, name);
}

/// <summary>
/// Where a connection's requests come from, worked out once per connection (the peer, or a trusted PROXY
/// header's source, normalised) and copied into each request object the connection rents.
/// </summary>
internal readonly record struct ConnectionClientInfo(IPAddress? Address, int Port, IReadOnlyList<IPNetwork> TrustedProxies, bool FromTrustedUnixPeer)
{
    /// <param name="endPoint">The socket peer (null on a Unix socket), or a PROXY header's source.</param>
    /// <param name="trustedProxies">The trust list.</param>
    /// <param name="trustedUnixPeer">The peer is on a Unix socket and such peers are trusted (--trusted-proxies unix:).</param>
    public static ConnectionClientInfo Of(IPEndPoint? endPoint, IReadOnlyList<IPNetwork> trustedProxies, bool trustedUnixPeer = false) =>
        new(endPoint is null ? null : Server.ClientAddress.Normalize(endPoint.Address), endPoint?.Port ?? 0, trustedProxies, trustedUnixPeer && endPoint is null);
}

/// <summary>The connection a request belongs to, as the request sees it: where its Aborted token comes from.</summary>
internal interface IRequestOwner
{
    /// <summary>Fires when the request can no longer be answered (made on first use).</summary>
    CancellationToken Aborted { get; }
}
