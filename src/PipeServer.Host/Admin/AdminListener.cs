using System.Net.Sockets;
using PipeServer.Cli;
using PipeServer.Hosting;
using PipeServer.Server;
using PipeServer.Transports;

namespace PipeServer.Admin;

// Where this sits: beside the traffic server, never in front of it. The admin listener (--admin-port, or a
// socket systemd passes with the name "admin") is a second HttpServer: the same listener, accept loop,
// connection registry, connection cap and Http1Connection, with its own route table (AdminEndpoints: the
// probes and /metrics of the traffic server) and its own options, derived here from the traffic server's.
// A second instance rather than admin sockets inside the traffic server, because everything the admin port
// must do differently is what the traffic server's shutdown does to its listeners and connections: the admin
// port keeps accepting through mark-not-ready, drain-delay, stop-accepting, request-close, wait-for-drain and
// abort, its connections are outside --max-connections and never drained with the traffic. One more
// instance does that with no branch in HttpServer; listener groups inside it would touch every phase.
//
// Its lifetime is the service manager's order: AdminService is started first and stopped last (services
// stop in reverse), so it closes only once the traffic server's ShutdownAsync has returned. Probes and
// scrapes therefore see the whole drain, and a liveness check that keeps probing (Docker HEALTHCHECK, ECS,
// Nomad) never sees a refused connection before the process exits.

/// <summary>The admin listener's fixed limits and how its options derive from the traffic server's.</summary>
public static class AdminListener
{
    /// <summary>The name a socket-activated admin socket is passed with (FileDescriptorName=admin in the .socket unit).</summary>
    public const string SocketName = "admin";
    /// <summary>The admin server's log category. Its own lines below a warning (its transport line, its shutdown phases) are not logged: they would read as the traffic server's.</summary>
    public const string LogCategory = "PipeServer.Admin";
    /// <summary>
    /// Connections the admin port holds at once; the next one gets 503 and a close (the server's over-capacity
    /// answer). A kubelet opens one per probe and Prometheus keeps one per scraper; 16 is room for both several
    /// times over while bounding what a misbehaving client can hold (16 descriptors, 16 small pipes).
    /// </summary>
    public const int MaxConnections = 16;
    /// <summary>Once the traffic server has stopped, how long a probe or scrape in flight may finish before it is aborted.</summary>
    public static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(1);
    /// <summary>The longest the admin listener's stop can take: its shutdown timeout, then the server's abort grace.</summary>
    public static TimeSpan StopBound => ShutdownTimeout + HttpServer.AbortGrace;

    /// <summary>
    /// The admin server's options: the traffic server's parsing limits and timeouts, with its own address, cap
    /// and shutdown, and nothing of what belongs to balanced traffic (no drain delay, no access log, no PROXY
    /// protocol: probes come straight from the kubelet or the scraper). Always the sockets transport: a handful
    /// of probe connections do not need a second set of event-loop threads.
    /// </summary>
    public static HttpServerOptions Options(HttpServerOptions traffic, AdminEndPoint? endPoint) => traffic with
    {
        Address = endPoint?.Address ?? traffic.Address,
        Port = endPoint?.Port ?? 0,
        ListenBacklog = 64,
        MaxConnections = MaxConnections,
        DrainDelay = TimeSpan.Zero,
        ShutdownTimeout = ShutdownTimeout,
        AccessLog = false,
        ProxyProtocol = false,
        TrustedProxies = [],
        TrustUnixSocketPeers = false,
        Transport = TransportKind.Sockets,
        // Plain HTTP even when the traffic port speaks TLS: probes (a kubelet's httpGet, Docker HEALTHCHECK) and
        // scrapers reach the admin port from inside the host or pod network, and a certificate that fails to
        // renew must not take the liveness probe down with it.
        Tls = null,
    };
}

/// <summary>
/// The admin server as a managed service, registered before the traffic server's so that it starts first and
/// stops last. A bind failure fails the start (exit 1) with the admin address in the message; its stop is
/// always clean: a probe cut at exit is not a request of the service's traffic (exit 2 is for those).
/// </summary>
/// <param name="admin">The admin listener's server (options from <see cref="AdminListener.Options"/>).</param>
/// <param name="endPoint">Where it binds, for the start failure's message (null: it serves a socket it was given).</param>
/// <param name="listening">Hears its listeners once it accepts (the "Admin listening on" lines).</param>
public sealed class AdminService(HttpServer admin, AdminEndPoint? endPoint, Action<IReadOnlyList<ListenerInfo>> listening) : HostedService
{
    public override string Name => "admin";

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await admin.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            var where = endPoint is null ? "" : " " + (endPoint.Address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{endPoint.Address}]" : endPoint.Address.ToString()) + ":" + endPoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
            throw new InvalidOperationException($"admin port{where} (--admin-port): {HttpServerService.Describe(ex)}", ex);
        }
        listening(admin.Listeners);
    }

    public override async Task RunAsync(CancellationToken stopping) => await admin.AcceptLoop.WaitAsync(stopping).ConfigureAwait(false);

    public override async Task<StopOutcome> StopAsync(CancellationToken deadline)
    {
        await admin.ShutdownAsync().WaitAsync(deadline).ConfigureAwait(false);
        return StopOutcome.Clean;
    }
}
