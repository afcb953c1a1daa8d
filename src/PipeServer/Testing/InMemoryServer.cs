using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Connections;
using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Transports;

namespace PipeServer.Testing;

// Where this sits: in place of the transport (step 1 of a request's journey). A test hands raw request bytes
// to the real protocol (Http1Connection: parser, body readers, response framing) and the real router or
// handler, over two in-memory pipes instead of a socket, and reads the raw response bytes back, parsed.
// No port, no thread of its own, nothing left running after DisposeAsync. It is what the project's own test
// suite uses (tests/.../Infrastructure/InMemoryConnection.cs), shipped so that users test their handlers.

/// <summary>
/// Runs a <see cref="Router"/> or a <see cref="RequestHandler"/> against raw HTTP/1.1 request bytes, in
/// memory: each <see cref="ConnectAsync"/> is one client connection (keep-alive, pipelining and
/// <c>Connection: close</c> behave as on a socket); <see cref="SendAsync(string, CancellationToken)"/> is one
/// request on a connection of its own. Every wait is bounded by <see cref="Timeout"/>.
/// </summary>
/// <example>
/// <code>
/// await using var server = new InMemoryServer(router);
/// var response = await server.GetAsync("/users/42");
/// Assert.Equal(200, response.StatusCode);
/// </code>
/// </example>
public sealed class InMemoryServer : IAsyncDisposable
{
    private readonly RequestHandler _handler;
    private readonly HttpServerOptions _options;
    private readonly ILogger _logger;
    private readonly List<TestConnection> _connections = [];
    private readonly CancellationTokenSource _abort = new();
    private long _nextId;

    /// <summary>A server that runs <paramref name="handler"/> for every request.</summary>
    /// <param name="handler">The application: a handler, or <c>router.HandleAsync</c>.</param>
    /// <param name="options">Protocol limits and timeouts (the listening address, port and transport are not used); defaults when null.</param>
    /// <param name="logger">Receives what the server would log (handler exceptions among it); nothing when null.</param>
    public InMemoryServer(RequestHandler handler, HttpServerOptions? options = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _handler = handler;
        _options = options ?? new HttpServerOptions();
        _options.Validate();
        _logger = logger ?? NullLogger.Instance;
    }

    /// <summary>A server that routes every request through <paramref name="router"/>.</summary>
    public InMemoryServer(Router router, HttpServerOptions? options = null, ILogger? logger = null)
        : this((router ?? throw new ArgumentNullException(nameof(router))).HandleAsync, options, logger) { }

    /// <summary>The lifetime the handlers see (readiness, the draining token); <see cref="BeginDraining"/> moves it on as a server's shutdown would.</summary>
    public ServerLifetime Lifetime { get; } = new();

    /// <summary>The bound on every wait of this server's connections (a write, a response). Default 5 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The largest response body a <see cref="TestResponse"/> will hold; a larger one fails the read. Default 16 MiB.</summary>
    public int MaxResponseBodySize { get; init; } = 16 * 1024 * 1024;

    /// <summary>
    /// Starts draining, as a server's shutdown does after its drain delay: readiness turns false, every
    /// request's <see cref="HttpRequest.Draining"/> fires, and each connection closes after its response
    /// (an idle one at once).
    /// </summary>
    public void BeginDraining()
    {
        Lifetime.MarkNotReady();
        Lifetime.CloseConnectionsAfterResponse();
        Lifetime.SignalDraining();
        lock (_connections)
            foreach (var c in _connections) c.Protocol.RequestClose();
    }

    /// <summary>Opens one client connection.</summary>
    public TestConnection Connect()
    {
        var connection = new TestConnection(this, Interlocked.Increment(ref _nextId));
        lock (_connections) _connections.Add(connection);
        return connection;
    }

    /// <inheritdoc cref="Connect"/>
    public Task<TestConnection> ConnectAsync() => Task.FromResult(Connect());

    /// <summary>Sends <paramref name="rawRequest"/> (one complete request, CRLF line ends) on a new connection and returns the response.</summary>
    public Task<TestResponse> SendAsync(string rawRequest, CancellationToken cancellationToken = default) =>
        SendAsync(Encoding.UTF8.GetBytes(rawRequest), cancellationToken);

    /// <inheritdoc cref="SendAsync(string, CancellationToken)"/>
    public async Task<TestResponse> SendAsync(ReadOnlyMemory<byte> rawRequest, CancellationToken cancellationToken = default)
    {
        await using var connection = Connect();
        await connection.WriteAsync(rawRequest, cancellationToken).ConfigureAwait(false);
        bool head = rawRequest.Span.TrimStart("\r\n"u8).StartsWith("HEAD "u8);
        return await connection.ReadResponseAsync(head, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>GET <paramref name="target"/> (path and query) with a Host header, on a new connection.</summary>
    public Task<TestResponse> GetAsync(string target, CancellationToken cancellationToken = default) =>
        SendAsync($"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n", cancellationToken);

    /// <summary>
    /// <paramref name="method"/> <paramref name="target"/> with <paramref name="body"/> (UTF-8, sent with
    /// Content-Length), on a new connection.
    /// </summary>
    public Task<TestResponse> SendAsync(string method, string target, string? body = null, string? contentType = null, CancellationToken cancellationToken = default)
    {
        var request = new StringBuilder().Append(method).Append(' ').Append(target).Append(" HTTP/1.1\r\nHost: localhost\r\n");
        if (body is not null)
        {
            if (contentType is not null) request.Append("Content-Type: ").Append(contentType).Append("\r\n");
            request.Append("Content-Length: ").Append(Encoding.UTF8.GetByteCount(body)).Append("\r\n");
        }
        request.Append("\r\n").Append(body);
        return SendAsync(request.ToString(), cancellationToken);
    }

    internal RequestHandler Handler => _handler;
    internal HttpServerOptions Options => _options;
    internal ILogger Logger => _logger;
    internal CancellationToken AbortToken => _abort.Token;
    internal void Forget(TestConnection connection) { lock (_connections) _connections.Remove(connection); }

    /// <summary>Closes every connection still open (each connection's loop ends within <see cref="Timeout"/>, or is aborted).</summary>
    public async ValueTask DisposeAsync()
    {
        TestConnection[] open;
        lock (_connections) open = [.. _connections];
        foreach (var c in open) await c.DisposeAsync().ConfigureAwait(false);
        _abort.Cancel();
        _abort.Dispose();
        Lifetime.Dispose();
    }
}

/// <summary>
/// One in-memory client connection to an <see cref="InMemoryServer"/>: write raw request bytes (whole, or a
/// byte at a time), read responses one by one. Responses come in request order, as on a socket.
/// </summary>
public sealed class TestConnection : IAsyncDisposable
{
    private readonly InMemoryServer _server;
    private readonly Pipe _toServer = new();
    private readonly Pipe _toClient = new();
    private readonly Transport _transport;
    private readonly ResponseReader _reader;
    private bool _disposed;

    internal TestConnection(InMemoryServer server, long id)
    {
        _server = server;
        _transport = new Transport(_toServer, _toClient);
        Protocol = new Http1Connection(id, _transport, _transport, server.Options, server.Handler, server.Lifetime, server.Logger, server.AbortToken);
        _reader = new ResponseReader(_toClient.Reader, server.MaxResponseBodySize);
        Processing = Task.Run(Protocol.ProcessAsync);
    }

    internal Http1Connection Protocol { get; }

    /// <summary>The server side of the connection: completes when the server has closed it.</summary>
    public Task Processing { get; }

    /// <summary>True once the server has reset the connection (a handler failure after its response started, or an abort).</summary>
    public bool WasAborted => _transport.Aborted;

    /// <summary>Writes raw request bytes as they are (Latin-1 for a string: one char, one byte).</summary>
    public Task WriteAsync(string raw, CancellationToken cancellationToken = default) =>
        WriteAsync(Encoding.Latin1.GetBytes(raw), cancellationToken);

    /// <summary>Writes raw request bytes as they are; call it once per byte to test fragmented input.</summary>
    public async Task WriteAsync(ReadOnlyMemory<byte> raw, CancellationToken cancellationToken = default)
    {
        await _toServer.Writer.WriteAsync(raw, cancellationToken).AsTask().WaitAsync(_server.Timeout, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The client ends its side (as a socket's shutdown(SHUT_WR)): the server finishes and closes.</summary>
    public async Task CompleteAsync() => await _toServer.Writer.CompleteAsync().ConfigureAwait(false);

    /// <summary>Reads the next final response (interim 1xx responses are skipped), bounded by the server's timeout.</summary>
    /// <param name="headRequest">The response answers a HEAD request: it has the GET headers (Content-Length among them) and no body.</param>
    /// <param name="cancellationToken">Stops the wait early.</param>
    /// <exception cref="TimeoutException">No complete response within the timeout.</exception>
    /// <exception cref="InvalidDataException">The server closed the connection first, or sent a response that is not valid HTTP/1.1.</exception>
    /// <exception cref="IOException">The server reset the connection (<see cref="WasAborted"/>).</exception>
    public async Task<TestResponse> ReadResponseAsync(bool headRequest = false, CancellationToken cancellationToken = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(_server.Timeout);
        try
        {
            return await _reader.ReadAsync(headRequest, cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"No complete response within {_server.Timeout.TotalSeconds:0.###} s.");
        }
    }

    /// <summary>Whether the server has closed the connection (waits up to the timeout for it, after reading any response bytes left).</summary>
    public async Task<bool> WaitForCloseAsync(CancellationToken cancellationToken = default)
    {
        try { await Processing.WaitAsync(_server.Timeout, cancellationToken).ConfigureAwait(false); return true; }
        catch (TimeoutException) { return false; }
    }

    /// <summary>Ends the client side and waits (bounded by the server's Timeout) for the connection to finish.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        await _toServer.Writer.CompleteAsync().ConfigureAwait(false);
        try { await Processing.WaitAsync(_server.Timeout).ConfigureAwait(false); }
        catch (TimeoutException) { Protocol.Abort(); }
        await _toClient.Reader.CompleteAsync().ConfigureAwait(false);
        _server.Forget(this);
    }

    /// <summary>The in-memory transport: the two pipes, and what a socket transport would do on abort.</summary>
    private sealed class Transport(Pipe toServer, Pipe toClient) : IDuplexPipe, ITransportControl
    {
        public PipeReader Input { get; } = toServer.Reader;
        public PipeWriter Output { get; } = toClient.Writer;
        public volatile bool Aborted;

        public void Abort()
        {
            Aborted = true;
            toServer.Writer.Complete(new IOException("The connection was aborted."));
            toClient.Writer.Complete(new IOException("The connection was aborted."));
        }

        public void RequestLingeringClose() { }
        // Every byte the client writes is in the input pipe at once: nothing waits in a "kernel" between.
        public bool HasUndeliveredInput => false;
        public long ReceivedBytes => 0;
        public ValueTask<bool> TryCloseIdleAsync(long receivedMark) => ValueTask.FromResult(true);
    }
}
