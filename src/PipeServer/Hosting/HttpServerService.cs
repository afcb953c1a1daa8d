using System.Net.Sockets;
using PipeServer.Server;

namespace PipeServer.Hosting;

/// <summary>
/// The HTTP server as a managed service: binds (or takes its given sockets) on start, faults if a listener
/// dies, drains on stop. <paramref name="listening"/> hears every listener's real address once all are accepting.
/// </summary>
public sealed class HttpServerService(HttpServer server, Action<IReadOnlyList<ListenerInfo>> listening) : HostedService
{
    /// <inheritdoc/>
    public override string Name => "http";
    /// <summary>What the server's shutdown did, once <see cref="StopAsync"/> has run.</summary>
    public ShutdownReport? Report { get; private set; }

    /// <summary>Binds (or takes the given sockets) and starts accepting; a bind failure is an <see cref="InvalidOperationException"/> saying why.</summary>
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await server.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            throw new InvalidOperationException(Describe(ex), ex);
        }
        catch (Tls.TlsCertificateException ex)
        {
            throw new InvalidOperationException(ex.Message, ex); // the files changed between the option check and the start
        }
        listening(server.Listeners);
    }

    /// <summary>A failed bind in words an operator acts on (the admin listener's service says it too).</summary>
    internal static string Describe(SocketException ex) => ex.SocketErrorCode switch
    {
        SocketError.AddressAlreadyInUse => "the address and port are already in use",
        SocketError.AccessDenied => "permission denied (ports below 1024 need privileges)",
        SocketError.AddressNotAvailable => "the address is not available on this machine",
        _ => ex.Message,
    };

    /// <summary>Waits while the server accepts; a listener that dies ends it with the error (a fault).</summary>
    public override async Task RunAsync(CancellationToken stopping)
    {
        // The accept loops only end when StopAccepting cancels them; ending any other way is a listener fault.
        await server.AcceptLoop.WaitAsync(stopping).ConfigureAwait(false);
    }

    /// <summary>Runs the server's shutdown phases; <see cref="StopOutcome.DeadlineExceeded"/> when connections had to be aborted.</summary>
    public override async Task<StopOutcome> StopAsync(CancellationToken deadline)
    {
        // The server enforces its own deadline (drain delay + shutdown timeout + abort grace); the manager's
        // deadline is set beyond it, a backstop that only a hung shutdown would reach.
        Report = await server.ShutdownAsync().WaitAsync(deadline).ConfigureAwait(false);
        return Report.AllDrained ? StopOutcome.Clean : StopOutcome.DeadlineExceeded;
    }
}
