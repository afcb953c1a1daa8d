using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace PipeServer.Transports.Linux;

// Where this sits: the Linux transport, beside the portable one (Transports/Sockets/). The
// server's accept loop still owns the TcpListener; each accepted Socket comes here and becomes a
// LinuxConnection owned by one of a few event loops, instead of going through .NET's socket engine.
//
// The folder:
//   LinuxTransport.cs   this file: the loops (one per CPU the process may use) and round-robin placement
//   EventLoop.cs        one thread, one epoll set, one eventfd; also the PipeScheduler of its connections
//   LinuxConnection.cs  one socket as an IDuplexPipe with SocketConnection's controls and endings
//   LinuxNative.cs      the libc calls (LibraryImport), constants, epoll_event layout
//
// Why: .NET's engine runs one epoll thread for ~30 cores and hands every ready socket to the thread pool,
// then the continuation to the pipe, then the send back: on a small VM each hand-off is a context switch,
// and those, not HTTP, dominate a small request's cost (see issue 11). Here the thread that learns a socket
// is readable also reads it, runs the protocol and sends the response: "run to completion".
//
// The one trade-off users must know: a handler runs on its connection's loop thread until it first awaits
// something that is not already complete. A handler that BLOCKS that thread (Thread.Sleep, .Result on a
// task, a synchronous database call, a CPU-heavy loop) stalls every other connection on the same loop for
// as long. Handlers that do blocking or long CPU work should move it off the loop
// (`await Task.Run(...)`, or async I/O): they then continue on the thread pool and their output is handed
// back to the loop. The sockets transport has no such coupling (every connection runs on the pool).

/// <summary>
/// Event loops that serve accepted sockets on Linux without .NET's socket engine: epoll, one loop per
/// usable CPU, protocol continuations run inline on the loop that read the bytes.
/// </summary>
internal sealed class LinuxTransport : ConnectionTransport
{
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(2);
    private readonly EventLoop[] _loops;
    private int _next = -1;
    private int _disposed;

    /// <param name="loopCount">Event loops (threads) to run; 0 means one per CPU this process may use (sched_getaffinity).</param>
    /// <param name="logger">Where a loop reports a failed callback (a transport bug): once, at error level.</param>
    public LinuxTransport(int loopCount = 0, ILogger? logger = null)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("The Linux transport needs Linux (epoll, eventfd).");
        ArgumentOutOfRangeException.ThrowIfNegative(loopCount);
        int count = loopCount > 0 ? loopCount : UsableCpuCount();
        _loops = new EventLoop[count];
        for (int i = 0; i < count; i++)
        {
            _loops[i] = new EventLoop(i, logger ?? NullLogger.Instance);
            _loops[i].Start();
        }
    }

    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>CPUs in this process's affinity mask (`taskset -c 0` gives 1): the default number of loops.</summary>
    public static int UsableCpuCount() => LinuxNative.UsableCpuCount();

    public override string Name => "linux";

    public override int LoopCount => _loops.Length;

    /// <summary>
    /// Wraps an accepted socket; the connection is placed on the next loop (round-robin) when its RunAsync is
    /// called.
    /// </summary>
    /// <param name="accepted">An accepted, connected socket; owned by the connection from here on (disposed once, when it closes).</param>
    /// <param name="inputOptions">Bounds on bytes read ahead of the protocol (pause/resume thresholds); the schedulers are replaced by the loop.</param>
    /// <param name="outputOptions">Bounds on bytes written but not yet sent; the schedulers are replaced by the loop.</param>
    /// <param name="onPeerFailure">Called once, on the loop, when the peer resets or a send fails: the client is gone.</param>
    public override LinuxConnection Create(Socket accepted, PipeOptions inputOptions, PipeOptions outputOptions, Action onPeerFailure)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var loop = _loops[(uint)Interlocked.Increment(ref _next) % (uint)_loops.Length];
        return new LinuxConnection(accepted, loop, inputOptions, outputOptions, onPeerFailure);
    }

    /// <summary>Stops every loop: connections still open are reset (RST) and their RunAsync completes.</summary>
    public override void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var loop in _loops) loop.Stop(StopTimeout);
    }
}
