namespace PipeServer.Server;

// Where this sits: the server-wide state every connection consults as it writes a response head. It is
// how the shutdown phases in HttpServer reach connections without holding a reference to each one.

/// <summary>Server-wide flags that shutdown flips, read by every connection.</summary>
public sealed class ServerLifetime
{
    private readonly CancellationTokenSource _draining = new();
    private volatile bool _ready = true;
    private volatile bool _closeAfterResponse;

    internal ServerLifetime() { } // each server (and InMemoryServer) owns one; handlers get it from there

    /// <summary>Readiness (GET /readyz): true while serving normally; false from the first moment of shutdown.</summary>
    public bool IsReady => _ready;

    /// <summary>
    /// Drain-delay phase: keep serving, but close each connection after its response. A connection applies
    /// the same rule as on a drain request: a request the client has already sent behind this one is still
    /// answered, and the last response carries "Connection: close" (Http1Connection.AnotherRequestAlreadyReceived).
    /// </summary>
    public bool CloseAfterResponse => _closeAfterResponse;

    /// <summary>
    /// Fires when connections are asked to close (the request-close phase, after the drain delay and after
    /// accepting stops, not at the signal); handlers of long responses end early on it.
    /// </summary>
    public CancellationToken Draining => _draining.Token;

    internal void MarkNotReady() => _ready = false;
    internal void CloseConnectionsAfterResponse() => _closeAfterResponse = true;
    internal void SignalDraining()
    {
        try { _draining.Cancel(); } catch (ObjectDisposedException) { }
    }

    // Internal, and the type is not IDisposable: it belongs to its server, which disposes it last. A handler or
    // embedder holding HttpServer.Lifetime must not be able to dispose it under the running connections.
    internal void Dispose() => _draining.Dispose();
}
