using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using PipeServer.Transports.Linux;
using PipeServer.Transports.Sockets;

namespace PipeServer.Transports;

// Where this sits: the factory half of the seam. HttpServer's accept loop (which owns the listener and the
// registry) hands each accepted Socket to its transport and gets a TransportConnection back. A transport
// lives as long as the server: created at StartAsync, disposed at the end of shutdown, after the
// connections are gone (the Linux one owns event-loop threads).
//
//   Sockets/  the portable default: .NET's socket engine, two async loops per connection on the thread pool
//   Linux/    epoll event loops, one per usable CPU, the protocol run inline on the loop (run to completion)

/// <summary>Which transport an <see cref="Server.HttpServer"/> uses.</summary>
public enum TransportKind
{
    /// <summary>.NET sockets: every OS. The default.</summary>
    Sockets,
    /// <summary>epoll event loops, one per CPU the process may use: Linux only.</summary>
    Linux,
}

/// <summary>Turns accepted sockets into <see cref="TransportConnection"/>s.</summary>
public abstract class ConnectionTransport : IDisposable
{
    /// <summary>The name used by --transport and in the startup log.</summary>
    public abstract string Name { get; }

    /// <summary>Threads of its own that serve connections (event loops); 0 when the thread pool does.</summary>
    public virtual int LoopCount => 0;

    /// <summary>Wraps an accepted, connected socket (owned by the connection from here on); nothing runs until its RunAsync.</summary>
    /// <param name="accepted">An accepted, connected socket; the connection disposes it, once, when it closes.</param>
    /// <param name="inputOptions">Bounds on bytes read ahead of the protocol (pause/resume thresholds).</param>
    /// <param name="outputOptions">Bounds on bytes written but not yet sent.</param>
    /// <param name="onPeerFailure">Called once when the peer resets or a send fails: the client is gone.</param>
    public abstract TransportConnection Create(Socket accepted, PipeOptions inputOptions, PipeOptions outputOptions, Action onPeerFailure);

    public virtual void Dispose() { }

    /// <summary>The transport of that kind. Throws PlatformNotSupportedException for Linux elsewhere.</summary>
    public static ConnectionTransport Create(TransportKind kind, ILogger logger) => kind switch
    {
        TransportKind.Sockets => new SocketTransport(),
        TransportKind.Linux => new LinuxTransport(0, logger),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown transport"),
    };
}
