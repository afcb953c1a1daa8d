using System.IO.Pipelines;
using System.Net;

namespace PipeServer.Transports;

// Where this sits: the seam between HttpServer and a transport. A ConnectionTransport (ConnectionTransport.cs)
// turns an accepted socket into a TransportConnection; HttpServer registers it, runs an Http1Connection over
// it (which sees only IDuplexPipe + ITransportControl), and asks it two more things: RunAsync (move bytes
// until the socket is closed) and, from the heartbeat, how its pending send is doing.
//
// The send-stall rule lives here, once (SendStallRule): a transport only publishes "a send of N bytes has
// been pending since T" (BeginSend / EndSend), and the heartbeat applies max(grace, N / rate) to it.

/// <summary>One accepted connection as a transport serves it: two pipes, the protocol's controls, and what the server's loops need.</summary>
internal abstract class TransportConnection : IDuplexPipe, ITransportControl
{
    // The pending send, published for the heartbeat thread: _sendStarted is Environment.TickCount64 when the
    // send began, NoSend while none is pending. Written by the transport's sending side only.
    private const long NoSend = long.MinValue;
    private long _sendStarted = NoSend;
    private long _sendBytes;

    public abstract PipeReader Input { get; }
    public abstract PipeWriter Output { get; }
    /// <summary>The peer's address; null on a Unix socket (see <see cref="IsUnixPeer"/>).</summary>
    public abstract IPEndPoint? RemoteEndPoint { get; }

    /// <summary>The connection came in on a Unix stream socket: the peer has no address, and TCP options do not apply.</summary>
    public bool IsUnixPeer { get; protected set; }

    /// <summary>
    /// What every transport does to a socket it takes: TCP_NODELAY (responses are written whole, and the
    /// protocol flushes once per batch, so Nagle would only delay the last segment) where it applies, which
    /// is TCP only; a Unix socket has no TCP options (setting one throws). Sets <see cref="IsUnixPeer"/>
    /// and returns the peer's address, never asking a Unix socket for one.
    /// </summary>
    protected IPEndPoint? ConfigureAccepted(System.Net.Sockets.Socket socket)
    {
        if (socket.AddressFamily is System.Net.Sockets.AddressFamily.Unix)
        {
            IsUnixPeer = true;
            return null;
        }
        if (socket.AddressFamily is System.Net.Sockets.AddressFamily.InterNetwork or System.Net.Sockets.AddressFamily.InterNetworkV6)
            socket.NoDelay = true;
        return socket.RemoteEndPoint as IPEndPoint;
    }

    /// <summary>Moves bytes between the socket and the pipes; completes (never faults) when the socket is closed.</summary>
    public abstract Task RunAsync();

    public abstract void Abort();
    public abstract void RequestLingeringClose();
    public abstract bool HasUndeliveredInput { get; }
    public abstract long ReceivedBytes { get; }
    public abstract ValueTask<bool> TryCloseIdleAsync(long receivedMark);

    /// <summary>After the connection ended: the peer sent bytes after an idle close's FIN (a request that raced the close, unanswered).</summary>
    public abstract bool ReceivedAfterIdleClose { get; }

    /// <summary>The transport starts a send of <paramref name="bytes"/> that has not completed yet (the rule's clock starts now).</summary>
    protected void BeginSend(long bytes)
    {
        Volatile.Write(ref _sendBytes, bytes);
        Volatile.Write(ref _sendStarted, Environment.TickCount64); // last: a reader that sees the start sees its size
    }

    /// <summary>The pending send completed (or the connection closed): nothing to stall on.</summary>
    protected void EndSend() => Volatile.Write(ref _sendStarted, NoSend);

    /// <summary>The pending send, if any: its size and when it started (Environment.TickCount64).</summary>
    public bool TryGetPendingSend(out long bytes, out long startedTicks)
    {
        startedTicks = Volatile.Read(ref _sendStarted);
        bytes = Volatile.Read(ref _sendBytes);
        // A send that ended and a new one that began between the two reads: take the new one next tick.
        return startedTicks != NoSend && Volatile.Read(ref _sendStarted) == startedTicks;
    }

    /// <summary>Heartbeat check: true when a send has made no progress past its deadline (the client stopped reading).</summary>
    public bool IsSendStalled(long nowTicks, double minResponseDataRate, TimeSpan minResponseDataRateGrace) =>
        TryGetPendingSend(out long bytes, out long started) && SendStallRule.IsStalled(bytes, started, nowTicks, minResponseDataRate, minResponseDataRateGrace);
}

/// <summary>
/// The one send-stall rule, whatever the transport: a send of N bytes that has not completed within
/// max(grace, N / rate) of its start means the client stopped reading. A rate of 0 turns it off.
/// </summary>
internal static class SendStallRule
{
    public static long Deadline(long bytes, long startedTicks, double minResponseDataRate, TimeSpan grace) =>
        startedTicks + Math.Max((long)grace.TotalMilliseconds, (long)(bytes * 1000 / minResponseDataRate));

    public static bool IsStalled(long bytes, long startedTicks, long nowTicks, double minResponseDataRate, TimeSpan grace) =>
        minResponseDataRate > 0 && nowTicks > Deadline(bytes, startedTicks, minResponseDataRate, grace);
}

/// <summary>The peer reset the connection.</summary>
internal sealed class ConnectionResetException(string message, Exception inner) : IOException(message, inner);
