using System.Net;
using PipeServer.Transports;

namespace PipeServer.Server;

// Every limit and timeout of the server, in one immutable record with documented defaults. The executable
// maps CLI flags and PIPESERVER_* environment variables onto it in one place (Cli/CommandLine.cs).
// Each bound names the status code or close reason that enforces it.

/// <summary>Listening address, limits and timeouts of an <see cref="HttpServer"/>.</summary>
public sealed record HttpServerOptions
{
    /// <summary>Address to bind. Default 0.0.0.0 (all IPv4 interfaces).</summary>
    public IPAddress Address { get; init; } = IPAddress.Any;
    /// <summary>Port to bind; 0 picks a free one. Default 8080.</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Pending-connection queue length passed to listen(2). Default 512.</summary>
    public int ListenBacklog { get; init; } = 512;

    /// <summary>After accepting stops, how long in-flight requests may run before they are aborted. Default 30 s.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long to keep serving (with "Connection: close") after readiness fails, so a load balancer can take the instance out. Default 0.</summary>
    public TimeSpan DrainDelay { get; init; } = TimeSpan.Zero;
    /// <summary>The whole request line and headers must arrive within this. 408 then close. Default 10 s.</summary>
    public TimeSpan RequestHeaderTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>
    /// An idle keep-alive connection is closed after this. Default 130 s (Kestrel's): above the 60 s backend idle
    /// timeout of AWS ALB, nginx and ingress-nginx, so a pooling balancer closes first; below the 240 s and 350 s
    /// flow timeouts of Azure Load Balancer and AWS NLB, so the server closes first behind a pass-through one.
    /// Google's balancers (600 s) and Envoy (1 h) need it set; docs/deploy.md has the table.
    /// </summary>
    public TimeSpan KeepAliveTimeout { get; init; } = TimeSpan.FromSeconds(130);

    /// <summary>
    /// Open connections allowed at once; beyond it new connections get a 503 and a FIN at once. Default null:
    /// unlimited. Each connection is a file descriptor, so the executable sets it from RLIMIT_NOFILE
    /// (Hosting/FileDescriptorLimit.ConnectionCap) unless --max-connections is given; an embedder should too.
    /// </summary>
    public int? MaxConnections { get; init; }
    /// <summary>Largest request body accepted. 413. Default 30,000,000 bytes (Kestrel's).</summary>
    public long MaxRequestBodySize { get; init; } = 30_000_000;
    /// <summary>Longest request line, CRLF included. 414. Default 8 KiB.</summary>
    public int MaxRequestLineSize { get; init; } = 8 * 1024;
    /// <summary>Most header fields in one request. 431. Default 100.</summary>
    public int MaxRequestHeaderCount { get; init; } = 100;
    /// <summary>Largest header section, CRLFs included. 431. Default 32 KiB.</summary>
    public int MaxRequestHeadersTotalSize { get; init; } = 32 * 1024;
    /// <summary>A body the handler did not read is drained up to this many bytes before the next request; beyond, the connection closes. Default 256 KiB.</summary>
    public long MaxUnreadBodyDrain { get; init; } = 256 * 1024;

    /// <summary>
    /// Slowest acceptable request body upload, in bytes per second, counted only while the handler waits for
    /// body bytes, after <see cref="MinRequestBodyDataRateGracePeriod"/>. Slower gets 408. Default 240 (Kestrel's); 0 turns it off.
    /// </summary>
    public double MinRequestBodyDataRate { get; init; } = 240;
    /// <summary>How long an upload may be slower than <see cref="MinRequestBodyDataRate"/> before the rate counts. Default 5 s.</summary>
    public TimeSpan MinRequestBodyDataRateGracePeriod { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>
    /// A per-send stall rule, in bytes per second (not an average over the response, unlike Kestrel's
    /// MinResponseDataRate): each socket send of one output segment (at most 4 KiB) that has not completed
    /// within max(<see cref="MinResponseDataRateGracePeriod"/>, segment size / rate) aborts the connection, so
    /// a client that stops reading cannot pin a connection and its buffers. A client that reads a little
    /// now and then, slower on average than this, is not caught. Default 240 with a 5 s grace; 0 turns it off.
    /// </summary>
    public double MinResponseDataRate { get; init; } = 240;
    /// <summary>The shortest time a send may take before <see cref="MinResponseDataRate"/> can abort it. Default 5 s.</summary>
    public TimeSpan MinResponseDataRateGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Input buffered per connection before the socket is no longer read (backpressure). Default 1 MiB.</summary>
    public long MaxInputBufferSize { get; init; } = 1024 * 1024;
    /// <summary>Output buffered per connection before a handler's flush waits for the client (backpressure). Default 64 KiB.</summary>
    public long MaxOutputBufferSize { get; init; } = 64 * 1024;

    /// <summary>
    /// Log one event per request under the category "PipeServer.AccessLog": its message is a Combined Log
    /// Format line (escaped, see Server/AccessLog.cs), its state the same fields as properties. Default off.
    /// </summary>
    public bool AccessLog { get; init; }

    /// <summary>
    /// Balancers whose word on the client address is believed: from a peer in this list (and only then) the
    /// X-Forwarded-For header and the PROXY protocol header set <see cref="Http.HttpRequest.ClientAddress"/>.
    /// Default empty: the client address is the socket's peer.
    /// </summary>
    public IReadOnlyList<IPNetwork> TrustedProxies { get; init; } = [];

    /// <summary>
    /// Peers on a Unix socket count as trusted proxies (--trusted-proxies unix:, as nginx's set_real_ip_from
    /// unix:). A Unix peer has no address to match against <see cref="TrustedProxies"/>, and who may connect is
    /// decided by the socket file's permissions, so trusting them is a separate, explicit choice. Default off:
    /// a Unix peer's X-Forwarded-For and PROXY header are not believed.
    /// </summary>
    public bool TrustUnixSocketPeers { get; init; }

    /// <summary>
    /// Connections from <see cref="TrustedProxies"/> must start with a PROXY protocol header (v1 text or v2
    /// binary, detected; HAProxy's send-proxy / send-proxy-v2); a missing or malformed one closes the connection.
    /// Connections from other peers must not carry one (it closes them too). Default off.
    /// </summary>
    public bool ProxyProtocol { get; init; }

    /// <summary>
    /// What moves the bytes between sockets and connections (Transports/). Default <see cref="TransportKind.Auto"/>.
    /// <see cref="TransportKind.Sockets"/> runs on every OS; <see cref="TransportKind.Linux"/> runs epoll event loops,
    /// one per CPU the process may use, and there a handler that blocks its thread stalls its loop's other connections;
    /// <see cref="TransportKind.Auto"/> is Linux where it runs and sockets elsewhere (or, with a warning, when it cannot start).
    /// </summary>
    public TransportKind Transport { get; init; } = TransportKind.Auto;

    /// <summary>
    /// HTTPS: every listener speaks TLS 1.2/1.3 with this certificate (reloaded when its files change,
    /// Tls/TlsCertificateSource.cs). Default null: plain HTTP.
    /// </summary>
    public Tls.TlsOptions? Tls { get; init; }

    /// <summary>Throws ArgumentException naming the first invalid value.</summary>
    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new ArgumentException($"port must be 0-65535, got {Port}");
        Positive(ShutdownTimeout, "shutdown-timeout", allowZero: true);
        Positive(DrainDelay, "drain-delay", allowZero: true);
        Positive(RequestHeaderTimeout, "request-header-timeout", allowZero: false);
        Positive(KeepAliveTimeout, "keep-alive-timeout", allowZero: false);
        if (MaxConnections is <= 0) throw new ArgumentException($"max-connections must be at least 1, got {MaxConnections}");
        if (MaxRequestBodySize < 0) throw new ArgumentException($"max-request-body-size must be 0 or more, got {MaxRequestBodySize}");
        if (MaxRequestLineSize < 64) throw new ArgumentException("max request line size must be at least 64");
        if (MaxRequestHeadersTotalSize < 64) throw new ArgumentException("max header size must be at least 64");
        if (MaxRequestHeaderCount < 1) throw new ArgumentException("max header count must be at least 1");
        if (MinRequestBodyDataRate < 0 || MinResponseDataRate < 0) throw new ArgumentException("minimum data rates must be 0 or more");
        if (ProxyProtocol && TrustedProxies.Count == 0 && !TrustUnixSocketPeers) throw new ArgumentException("the PROXY protocol needs trusted proxies");
        if (!Enum.IsDefined(Transport)) throw new ArgumentException($"unknown transport {Transport}");
        if (MaxInputBufferSize < MaxRequestHeadersTotalSize + MaxRequestLineSize)
            throw new ArgumentException("the input buffer must hold a whole request head");
    }

    private static void Positive(TimeSpan value, string name, bool allowZero)
    {
        if (value < TimeSpan.Zero || (!allowZero && value == TimeSpan.Zero) || value > TimeSpan.FromDays(1))
            throw new ArgumentException($"{name} must be {(allowZero ? "0" : "more than 0")} to 86400 seconds, got {value.TotalSeconds}");
    }
}
