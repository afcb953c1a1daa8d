namespace PipeServer.Connections;

// Why a connection ended, recorded once per connection (Kestrel's ConnectionEndReason). Tests assert it,
// the shutdown report counts it, and logs tell expected ends (quiet) from faults.

internal enum ConnectionEndReason : byte
{
    Unknown,
    /// <summary>The client closed while no request was in progress.</summary>
    ClientClosed,
    /// <summary>The client closed or reset in the middle of a request or response.</summary>
    ClientAborted,
    /// <summary>A request or response carried "Connection: close", or HTTP/1.0 without keep-alive.</summary>
    ConnectionCloseRequested,
    /// <summary>No request arrived within the keep-alive timeout.</summary>
    KeepAliveTimeout,
    /// <summary>The request head did not arrive within the header timeout.</summary>
    RequestHeadersTimeout,
    /// <summary>The request body arrived slower than the minimum data rate (408).</summary>
    RequestBodyTimeout,
    /// <summary>The client read responses slower than the minimum data rate: aborted.</summary>
    ResponseTimeout,
    /// <summary>The request was rejected (400, 413, 414, 431, 501, 505…).</summary>
    BadRequest,
    /// <summary>The handler failed after the response had started: the only honest signal left is to abort.</summary>
    ApplicationError,
    /// <summary>The server asked the connection to close (shutdown drain) and it did.</summary>
    ServerDrained,
    /// <summary>The connection was aborted (shutdown deadline, or forced).</summary>
    Aborted,
    /// <summary>Turned away at accept because the connection limit was reached.</summary>
    MaxConnectionsReached,
    /// <summary>The unread request body was larger than the server will drain.</summary>
    UnreadBodyTooLarge,
}

/// <summary>Where a connection is in its life (the legal transitions are New → Active ↔ Idle → Closed).</summary>
internal enum ConnectionState : byte
{
    /// <summary>Accepted; no byte of a request read yet.</summary>
    New,
    /// <summary>Reading a request head, running a handler, or writing a response.</summary>
    Active,
    /// <summary>Between requests on a keep-alive connection, waiting for the first byte of the next.</summary>
    Idle,
    Closed,
}
