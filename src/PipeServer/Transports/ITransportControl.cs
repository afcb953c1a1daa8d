namespace PipeServer.Transports;

// Where this sits: the protocol's whole view of its transport, beside the two pipes (IDuplexPipe).
// Http1Connection depends on this interface and IDuplexPipe only; a socket transport, the Linux event-loop
// transport, an in-memory pipe in unit tests (and TLS, when it wraps a transport) all implement it.

/// <summary>What the protocol layer may ask of its transport beyond the two pipes.</summary>
internal interface ITransportControl
{
    /// <summary>Close now with an RST; pending reads and writes fail.</summary>
    void Abort();
    /// <summary>At close, read and discard what the peer still sends (bounded) before closing, so it sees our last response.</summary>
    void RequestLingeringClose();
    /// <summary>
    /// True when bytes from the peer have reached the transport but not yet the input pipe (for a socket: the
    /// kernel's receive queue, or the receive loop between taking them and flushing them). Such bytes are
    /// already sent by the client, and the transport will deliver them; a connection about to close as idle
    /// must wait for them instead.
    /// </summary>
    bool HasUndeliveredInput { get; }
    /// <summary>How many bytes the transport has taken from the peer so far: a mark for <see cref="TryCloseIdleAsync"/>.</summary>
    long ReceivedBytes { get; }
    /// <summary>
    /// Closes an idle connection's sending side (FIN) unless the peer has sent more: once every byte written so
    /// far is sent, and in one step with the FIN, checks that nothing arrived since <paramref name="receivedMark"/>
    /// (read before the caller last looked at its input) and nothing is waiting. False means bytes came and
    /// nothing was sent: the caller serves them. The check and the FIN are as close together as the transport
    /// can make them, because a request that lands between the two is one that nobody can answer.
    /// </summary>
    ValueTask<bool> TryCloseIdleAsync(long receivedMark);
}

