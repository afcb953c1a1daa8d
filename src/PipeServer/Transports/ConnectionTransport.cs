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
//   Sockets/  the portable one: .NET's socket engine, two async loops per connection on the thread pool
//   Linux/    epoll event loops, one per usable CPU, the protocol run inline on the loop (run to completion)

/// <summary>Which transport an <see cref="Server.HttpServer"/> uses.</summary>
public enum TransportKind
{
    /// <summary>.NET sockets: every OS.</summary>
    Sockets,
    /// <summary>epoll event loops, one per CPU the process may use: Linux only; failing to start them fails the start.</summary>
    Linux,
    /// <summary>Linux on Linux, sockets elsewhere; if the Linux transport cannot start, a warning and sockets. The default.</summary>
    Auto,
}

/// <summary>Turns accepted sockets into <see cref="TransportConnection"/>s.</summary>
internal abstract class ConnectionTransport : IDisposable
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

    /// <summary>
    /// The transport of that kind. Linux: throws PlatformNotSupportedException elsewhere, IOException when an
    /// event loop cannot be made (epoll_create1 or eventfd refused: out of descriptors, a seccomp policy).
    /// Auto: the Linux one where it runs, else (or when it fails to start, with a warning) sockets.
    /// </summary>
    /// <param name="kind">The transport asked for.</param>
    /// <param name="logger">Where the loops report failures, and auto its fall-back.</param>
    /// <param name="startLinux">How the Linux transport is made (a seam for tests that make it fail).</param>
    public static ConnectionTransport Create(TransportKind kind, ILogger logger, Func<ILogger, ConnectionTransport>? startLinux = null)
    {
        startLinux ??= static log => new LinuxTransport(0, log);
        switch (kind)
        {
            case TransportKind.Sockets: return new SocketTransport();
            case TransportKind.Linux: return startLinux(logger);
            case TransportKind.Auto:
                if (!LinuxTransport.IsSupported) return new SocketTransport();
                try { return startLinux(logger); }
                catch (Exception ex) when (ex is IOException or PlatformNotSupportedException or DllNotFoundException or EntryPointNotFoundException)
                {
                    // A libc without epoll entry points, a sandbox refusing epoll or eventfd, no descriptors
                    // left: the portable transport serves the same behaviour, only with more hand-offs.
                    TransportLog.AutoFellBack(logger, ex.Message, ex);
                    return new SocketTransport();
                }
            default: throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown transport");
        }
    }
}

internal static partial class TransportLog
{
    [LoggerMessage(EventId = 9, Level = LogLevel.Warning, Message = "Transport auto: the linux transport could not start ({Reason}); serving with the sockets transport instead")]
    public static partial void AutoFellBack(ILogger logger, string reason, Exception exception);
}
