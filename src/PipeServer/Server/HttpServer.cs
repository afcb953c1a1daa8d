using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Connections;
using PipeServer.Http;
using PipeServer.Tls;
using PipeServer.Transports;

namespace PipeServer.Server;

// Where this sits: the top of a request's journey. StartAsync binds a TcpListener, or takes the listening
// sockets it was given (systemd socket activation: TCP and Unix, UseListenSocket), and creates the transport
// (Transports/: sockets, or Linux event loops); one accept loop per listener hands each socket to the transport, and runs
// the TransportConnection it makes with an Http1Connection (protocol) over it, the pair registered in
// _connections *before* it starts and removed in a finally *after* its socket is closed, so the registry
// is always a superset of what is running. Every listener feeds the one registry and the one connection cap,
// and every shutdown phase covers every listener. An accept that fails for one connection never ends a loop;
// only closing its listener does. The transport is disposed last, once the connections are gone. ShutdownAsync is the graceful stop, as a sequence of named
// phases that each report what they did:
//
//   MarkNotReady -> DrainDelay -> StopAccepting -> RequestCloseAll -> WaitForDrain -> AbortRemaining
//
// and ResetAllConnections, the second signal's way out: no phases, no waiting, an RST on every connection.
//
// (docs/shutdown.md has the diagram and the comparison with Kestrel and Go's net/http.)

/// <summary>An HTTP/1.1 server over TcpListener and System.IO.Pipelines.</summary>
public sealed partial class HttpServer : IAsyncDisposable
{
    /// <summary>url.scheme of every connection a server without TLS accepts (its listeners, TCP or Unix); with <see cref="HttpServerOptions.Tls"/>, "https".</summary>
    internal const string PlainTextScheme = "http";
    /// <summary>While connections drain, how often at most the count left is reported (<see cref="DrainProgress"/>).</summary>
    private static readonly TimeSpan DrainProgressInterval = TimeSpan.FromSeconds(1);
    /// <summary>How long aborted connections get to unwind after the deadline before we stop waiting for them (a stop's bound is drain delay + shutdown timeout + this).</summary>
    public static readonly TimeSpan AbortGrace = TimeSpan.FromSeconds(2);
    private static readonly byte[] ServiceUnavailable = PreformattedResponse(503, "Too many open connections");

    private readonly HttpServerOptions _options;
    private readonly RequestHandler _app;
    private readonly ILogger _logger;
    private readonly ILogger? _accessLog;
    private readonly PipeOptions _inputOptions, _outputOptions;
    private readonly Http1ConnectionSettings _connectionSettings; // what all connections share (Connections/Http1ConnectionSettings.cs)
    private readonly BlockMemoryPool _blocks = new(); // every connection's pipe segments

    // Guarded by nothing: ConcurrentDictionary. Invariant: an entry exists from before its connection's first
    // byte is processed until after its socket is disposed.
    private readonly ConcurrentDictionary<long, ConnectionEntry> _connections = new();
    private readonly CancellationTokenSource _acceptCts = new();
    private readonly CancellationTokenSource _abortCts = new();   // the deadline: every connection's token links to it
    private TcpListener? _listener;      // the one we bound, when no socket was given
    private readonly List<(Socket Socket, string? Name)> _given = []; // UseListenSocket, before StartAsync; used instead of binding
    private Listener[] _listeners = [];  // set once by StartAsync, read-only after
    private Task[] _acceptLoops = [];     // one per listener
    private Task _acceptLoop = Task.CompletedTask; // all of them (AcceptLoopsAsync)
    private Heartbeat? _heartbeat;
    private ConnectionTransport? _transport; // from StartAsync to the end of ShutdownAsync/DisposeAsync
    private TlsServer? _tls;                 // with HttpServerOptions.Tls: set by StartAsync, wraps every connection (Tls/)
    private readonly ConnectionRefusals _refusals;
    // The accept loops, one at a time (Interlocked.Exchange). One descriptor held back (on /dev/null) so that
    // out of descriptors (EMFILE) a loop can still take a pending connection off the backlog and answer it,
    // instead of leaving it to hang.
    private SafeHandle? _spareDescriptor;
    private long _nextConnectionId;
    private long _rejectedConnections;
    private long _totalConnections;
    private int _shutdownStarted;
    private long _racedIdleCloses; // idle connections closed by a drain whose client sent bytes after our FIN

    /// <summary>
    /// A server that runs <paramref name="app"/> for every request; nothing is bound until <see cref="StartAsync"/>.
    /// <paramref name="logger"/> gets the server's own events (null: none), <paramref name="accessLogger"/> the access log
    /// events when <see cref="HttpServerOptions.AccessLog"/> is on (category <see cref="AccessLog.Category"/>; null: <paramref name="logger"/>).
    /// </summary>
    public HttpServer(HttpServerOptions options, RequestHandler app, ILogger? logger = null, ILogger? accessLogger = null)
    {
        options.Validate();
        _options = options;
        _app = app;
        _logger = logger ?? NullLogger.Instance;
        _accessLog = options.AccessLog ? accessLogger ?? _logger : null;
        _refusals = new ConnectionRefusals(_logger, ConnectionRefusals.DefaultInterval);
        // Bounded buffers: past the pause threshold the transport stops reading the socket (input) or the
        // handler's flush waits for the client to read (output). Memory per connection is capped either way.
        _inputOptions = new PipeOptions(_blocks, pauseWriterThreshold: options.MaxInputBufferSize, resumeWriterThreshold: options.MaxInputBufferSize / 2,
            minimumSegmentSize: BlockMemoryPool.BlockSize, useSynchronizationContext: false);
        _outputOptions = new PipeOptions(_blocks, pauseWriterThreshold: options.MaxOutputBufferSize, resumeWriterThreshold: options.MaxOutputBufferSize / 2,
            minimumSegmentSize: BlockMemoryPool.BlockSize, useSynchronizationContext: false);
        _connectionSettings = new Http1ConnectionSettings(options, app, Lifetime, _logger, _abortCts.Token, Metrics, _accessLog);
    }

    /// <summary>Readiness and the drain token: what a /readyz handler reads, what shutdown flips.</summary>
    public ServerLifetime Lifetime { get; } = new();
    /// <summary>The metrics instruments (meter "PipeServer"), one meter per server instance.</summary>
    public ServerMetrics Metrics { get; } = new();
    /// <summary>
    /// The first TCP endpoint listened on (the real port when 0 was asked); null when every listener is a
    /// Unix socket. Set by StartAsync. <see cref="Listeners"/> has them all.
    /// </summary>
    public IPEndPoint? EndPoint { get; private set; }
    /// <summary>Every socket accepted on, in order (the bound one, or the given ones). Set by StartAsync.</summary>
    public IReadOnlyList<ListenerInfo> Listeners => _listeners.Select(l => l.Info).ToArray();
    /// <summary>Connections open now.</summary>
    public int ConnectionCount => _connections.Count;
    /// <summary>Connections refused over <see cref="HttpServerOptions.MaxConnections"/> since the start.</summary>
    public long RejectedConnections => Interlocked.Read(ref _rejectedConnections);
    /// <summary>Connections accepted since the start.</summary>
    public long TotalConnections => Interlocked.Read(ref _totalConnections);
    /// <summary>Completes when every accept loop has ended; faults as soon as one listener died (the service manager's fault channel watches it).</summary>
    public Task AcceptLoop => _acceptLoop;

    /// <summary>The transport serving connections (<see cref="HttpServerOptions.Transport"/>). Set by StartAsync.</summary>
    internal ConnectionTransport? Transport => _transport;

    /// <summary>TLS, when <see cref="HttpServerOptions.Tls"/> is set: its certificate source (renewal) and handshake metric. Set by StartAsync.</summary>
    internal TlsServer? Tls => _tls;

    /// <summary>
    /// Binds and starts accepting. Throws SocketException (e.g. AddressAlreadyInUse) if the bind fails,
    /// PlatformNotSupportedException if the transport cannot run on this OS.
    /// </summary>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        // Before binding: a certificate that cannot be loaded, or a transport that cannot run, must not leave a bound port behind.
        if (_options.Tls is { } tls) _tls = new TlsServer(tls, Metrics.Meter, _logger, _options.RequestHeaderTimeout);
        _transport = ConnectionTransport.Create(_options.Transport, _logger, StartLinuxTransport);
        string selected = _options.Transport == TransportKind.Auto ? " (auto)" : "";
        if (_transport.LoopCount > 0) LogTransportLoops(_logger, _transport.Name, selected, _transport.LoopCount);
        else LogTransportPool(_logger, _transport.Name, selected);
        if (_given.Count > 0)
        {
            _listeners = _given.Select(g => new Listener(g.Socket, new ListenerInfo(g.Socket.LocalEndPoint!, (int)g.Socket.Handle, g.Name) { Tls = _tls is not null })).ToArray();
        }
        else
        {
            var listener = new TcpListener(_options.Address, _options.Port);
            // No SO_REUSEADDR override: a port held by another live process must fail the bind, loudly.
            try { listener.Start(_options.ListenBacklog); }
            catch
            {
                _transport.Dispose(); // no server will run: its loop threads go now, not at a DisposeAsync that may never come
                throw;
            }
            _listener = listener;
            _listeners = [new Listener(listener.Server, new ListenerInfo(listener.LocalEndpoint, null, null) { Tls = _tls is not null })];
        }
        EndPoint = _listeners.Select(l => l.Info.EndPoint).OfType<IPEndPoint>().FirstOrDefault();

        // One tick for every connection's deadlines: fine enough that a timeout fires within a quarter of its length.
        var shortest = new[] { _options.RequestHeaderTimeout, _options.KeepAliveTimeout, _options.MinRequestBodyDataRateGracePeriod, _options.MinResponseDataRateGracePeriod }
            .Where(t => t > TimeSpan.Zero).Min();
        var tick = TimeSpan.FromMilliseconds(Math.Clamp(shortest.TotalMilliseconds / 4, 50, 1000));
        _heartbeat = new Heartbeat(tick, OnHeartbeat, _logger);
        _heartbeat.Start();
        _spareDescriptor = OpenSpareDescriptor();
        _acceptLoops = _listeners.Select(AcceptLoopAsync).ToArray();
        _acceptLoop = AcceptLoopsAsync();
        return Task.CompletedTask;
    }

    /// <summary>
    /// Serve on an already-listening stream socket (TCP or Unix; systemd socket activation) instead of binding
    /// <see cref="HttpServerOptions.Address"/>:<see cref="HttpServerOptions.Port"/>. May be called for several
    /// sockets, each served by its own accept loop; call before StartAsync. The server owns the socket from here on.
    /// </summary>
    /// <param name="listening">A bound, listening stream socket.</param>
    /// <param name="name">What to call it in the log (systemd's FileDescriptorName=).</param>
    public void UseListenSocket(Socket listening, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(listening);
        if (listening.SocketType != SocketType.Stream) throw new ArgumentException($"not a stream socket ({listening.SocketType})", nameof(listening));
        if (listening.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6 or AddressFamily.Unix))
            throw new ArgumentException($"not a TCP or Unix socket ({listening.AddressFamily})", nameof(listening));
        if (_transport is not null) throw new InvalidOperationException("UseListenSocket after StartAsync");
        _given.Add((listening, name));
    }

    /// <summary>
    /// How an accept loop takes the next connection off its listener. A seam for tests, which make an accept
    /// fail the way the kernel can (ECONNABORTED, EPROTO, EMFILE...) to see that the loop survives it. Set before StartAsync.
    /// </summary>
    internal Func<Socket, CancellationToken, ValueTask<Socket>> AcceptSocket { get; set; } = static (listener, ct) => listener.AcceptAsync(ct);

    /// <summary>How the Linux transport is started (null: the real one). A seam for tests that make it fail, to see auto fall back and linux refuse. Set before StartAsync.</summary>
    internal Func<ILogger, ConnectionTransport>? StartLinuxTransport { get; set; }

    /// <summary>A listening socket and what it is (its accept loop: the same index in _acceptLoops).</summary>
    private sealed class Listener(Socket socket, ListenerInfo info)
    {
        public Socket Socket { get; } = socket;
        public ListenerInfo Info { get; } = info;
    }

    /// <summary>
    /// Raised while the wait-for-drain phase waits, with the number of connections still open: when the wait
    /// starts, then whenever the count has changed, at most once a second. sd_notify STATUS hangs off it.
    /// </summary>
    public event Action<int>? DrainProgress;

    /// <summary>Raised as each shutdown phase completes: (phase, what it did). sd_notify STATUS lines hang off it.</summary>
    public event Action<string, string>? PhaseCompleted;

    /// <summary>
    /// Runs one accept loop per listener. Completes when they have all ended (StopAccepting); faults with the
    /// first that faulted, at once, so that a listener that died is a service fault even while others accept.
    /// </summary>
    private async Task AcceptLoopsAsync()
    {
        var pending = _acceptLoops.ToList();
        while (pending.Count > 0)
        {
            var ended = await Task.WhenAny(pending).ConfigureAwait(false);
            await ended.ConfigureAwait(false); // rethrows a fault
            pending.Remove(ended);
        }
    }

    /// <summary>StopAccepting's wait: every loop, the healthy ones too when one faulted (that fault is logged, once).</summary>
    private async Task AwaitAcceptLoopsAsync()
    {
        try { await _acceptLoop.ConfigureAwait(false); } catch (Exception ex) { LogAcceptLoopFault(_logger, ex); }
        try { await Task.WhenAll(_acceptLoops).ConfigureAwait(false); } catch (Exception) { } // the fault above
        Interlocked.Exchange(ref _spareDescriptor, null)?.Dispose(); // no loop is left to use it
    }

    /// <summary>
    /// One listener's loop. Nothing one connection does ends it: a failed accept(2) backs off and retries, a
    /// connection that cannot be started is closed and logged. It ends when StopAccepting cancels it (the
    /// listener closed); anything else escaping is a bug, and faults the loop.
    /// </summary>
    private async Task AcceptLoopAsync(Listener listener)
    {
        await Task.Yield();
        int failures = 0; // consecutive failed accepts: the back-off grows with them; a success resets it
        try
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = await AcceptSocket(listener.Socket, _acceptCts.Token).ConfigureAwait(false);
                    failures = 0;
                }
                catch (Exception) when (_acceptCts.IsCancellationRequested)
                {
                    return; // StopAccepting
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.TooManyOpenSockets)
                {
                    // Out of descriptors. The connection stays in the backlog and the listener stays readable, so
                    // retrying alone spins while the client hangs. The connection cap keeps descriptors in reserve
                    // so this does not happen in normal operation; when it does (a --max-connections above what
                    // the limit allows, a handler holding files), free the spare, take the connection, answer it.
                    _refusals.OutOfDescriptors();
                    if (!await RefuseWithSpareDescriptorAsync(listener.Socket).ConfigureAwait(false))
                        await Task.Delay(50, _acceptCts.Token).ConfigureAwait(false); // nothing to take (or no spare): back off
                    continue;
                }
                catch (SocketException ex)
                {
                    // accept(2) reports a pending connection's own network error (ECONNABORTED, EPROTO, EHOSTUNREACH,
                    // EPERM from a firewall rule...) and passing shortages (ENOBUFS, ENOMEM); the man page says to
                    // retry. The first retry is at once, then the wait doubles up to a second, so a listener that
                    // keeps failing costs at most one attempt and one line a second, and never ends the loop.
                    failures++;
                    if (IsPendingConnectionError(ex.SocketErrorCode)) LogAcceptConnectionError(_logger, listener.Info.Url, ex.SocketErrorCode);
                    else LogAcceptError(_logger, listener.Info.Url, ex.SocketErrorCode, ex.NativeErrorCode);
                    if (failures > 1) await Task.Delay(AcceptBackOff(failures), _acceptCts.Token).ConfigureAwait(false);
                    continue;
                }
                try
                {
                    Accept(socket);
                }
                catch (Exception ex)
                {
                    // One connection that could not be started (a peer already gone when its options were set, a
                    // transport refusing it) is that connection's failure, not the listener's.
                    if (ex is SocketException se) LogConnectionGoneAtStart(_logger, listener.Info.Url, se.SocketErrorCode);
                    else LogConnectionStartFailed(_logger, listener.Info.Url, ex);
                    socket.Dispose();
                }
            }
        }
        catch (OperationCanceledException) when (_acceptCts.IsCancellationRequested)
        {
            // StopAccepting during a back-off
        }
    }

    /// <summary>The wait before the <paramref name="failures"/>th consecutive retry (≥ 2): 5 ms doubling, at most 1 s.</summary>
    internal static TimeSpan AcceptBackOff(int failures) => TimeSpan.FromMilliseconds(Math.Min(1000, 5 << Math.Min(failures - 2, 8)));

    /// <summary>Errors of the one connection being accepted (Linux accept(2), "Error handling"): normal network life, logged at debug.</summary>
    private static bool IsPendingConnectionError(SocketError error) => error is SocketError.ConnectionAborted or SocketError.ConnectionReset
        or SocketError.NetworkDown or SocketError.NetworkUnreachable or SocketError.HostDown or SocketError.HostUnreachable
        or SocketError.ProtocolOption or SocketError.OperationNotSupported or SocketError.AccessDenied or SocketError.TimedOut;

    /// <summary>
    /// The EMFILE technique of libuv and libev: close the spare descriptor, accept the pending connection on
    /// the number it freed, answer it 503 and close it, then take the spare again. False when there was no
    /// spare or nothing to accept within a moment.
    /// </summary>
    private async Task<bool> RefuseWithSpareDescriptorAsync(Socket listener)
    {
        var spare = Interlocked.Exchange(ref _spareDescriptor, null);
        if (spare is null)
        {
            PutBackSpareDescriptor(); // lost to another thread last time, or another loop holds it freed: try to get one back
            return false;
        }
        spare.Dispose();
        try
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(_acceptCts.Token);
            wait.CancelAfter(TimeSpan.FromMilliseconds(100));
            var socket = await listener.AcceptAsync(wait.Token).ConfigureAwait(false);
            Interlocked.Increment(ref _totalConnections);
            RejectOverCapacity(socket);
            return true;
        }
        catch (OperationCanceledException) { return false; }
        catch (SocketException) { return false; } // another thread took the freed number first
        finally
        {
            PutBackSpareDescriptor();
        }
    }

    private void PutBackSpareDescriptor()
    {
        var spare = OpenSpareDescriptor();
        if (spare is not null && Interlocked.CompareExchange(ref _spareDescriptor, spare, null) is not null) spare.Dispose(); // another loop put one back first
    }

    private static SafeHandle? OpenSpareDescriptor()
    {
        if (OperatingSystem.IsWindows()) return null; // sockets there are not numbered from a per-process descriptor table
        try { return File.OpenHandle("/dev/null", FileMode.Open, FileAccess.Read); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private void Accept(Socket socket)
    {
        Interlocked.Increment(ref _totalConnections);
        if (_options.MaxConnections is int max && _connections.Count >= max)
        {
            _refusals.OverCap(max);
            RejectOverCapacity(socket);
            return;
        }
        long id = Interlocked.Increment(ref _nextConnectionId);
        var entry = new ConnectionEntry();
        var transport = _transport!.Create(socket, _inputOptions, _outputOptions, entry.OnPeerFailure);
        entry.Transport = transport;
        // TLS, when configured, sits between the two (Tls/TlsConnection.cs): the protocol gets its plaintext
        // pipes and controls; the registry keeps the transport for the heartbeat's send-stall rule and resets.
        IDuplexPipe pipe = transport;
        ITransportControl control = transport;
        if (_tls is not null)
        {
            var tls = entry.Tls = _tls.Wrap(transport, id, _inputOptions, _outputOptions);
            (pipe, control) = (tls, tls);
        }
        entry.Protocol = new Http1Connection(id, pipe, control, _connectionSettings, transport.RemoteEndPoint) { IsUnixPeer = transport.IsUnixPeer, UrlScheme = _tls is null ? PlainTextScheme : TlsServer.Scheme };
        _connections[id] = entry; // registered before it runs
        entry.Task = RunConnectionAsync(id, entry);
    }

    private async Task RunConnectionAsync(long id, ConnectionEntry entry)
    {
        long started = Stopwatch.GetTimestamp();
        Metrics.ConnectionStarted();
        try
        {
            var transport = entry.Transport.RunAsync();
            if (!_options.ProxyProtocol || await AcceptProxyHeaderAsync(entry).ConfigureAwait(false))
            {
                var tls = entry.Tls?.RunAsync(_options.ProxyProtocol) ?? Task.CompletedTask; // after the PROXY header: it comes before the ClientHello
                await entry.Protocol.ProcessAsync().ConfigureAwait(false);
                await tls.ConfigureAwait(false);
            }
            else if (entry.Tls is not null)
            {
                // Refused before TLS started: the transport's own pipes end it (a FIN, no TLS byte).
                await entry.Transport.Output.CompleteAsync().ConfigureAwait(false);
                await entry.Transport.Input.CompleteAsync().ConfigureAwait(false);
            }
            await transport.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogConnectionCrashed(_logger, id, ex);
        }
        finally
        {
            if (entry.Transport.ReceivedAfterIdleClose) Interlocked.Increment(ref _racedIdleCloses);
            // Recorded before the removal: whoever sees the registry without this connection sees its metrics too.
            Metrics.ConnectionStopped(entry.Protocol.EndReason, started);
            _connections.TryRemove(id, out _); // removed after its socket is closed
        }
    }

    /// <summary>
    /// With --proxy-protocol, before the first request: a trusted peer's PROXY header names the client; a
    /// missing or broken one, or one from an untrusted peer, closes the connection unanswered. Returns
    /// whether the HTTP loop may run.
    /// </summary>
    private async Task<bool> AcceptProxyHeaderAsync(ConnectionEntry entry)
    {
        var peer = entry.Transport.RemoteEndPoint;
        // A Unix-socket peer (HAProxy's send-proxy to a unix@ server is a common set-up) has no address to
        // match: it is trusted only when --trusted-proxies lists "unix:".
        bool trusted = entry.Transport.IsUnixPeer ? _options.TrustUnixSocketPeers : ClientAddress.IsTrusted(peer?.Address, _options.TrustedProxies);
        var (outcome, header, reason) = await ProxyProtocolReader.ReadAsync(entry.Transport.Input, trusted, _options.RequestHeaderTimeout).ConfigureAwait(false);
        switch (outcome)
        {
            case ProxyReadOutcome.Accepted:
                if (header.Source is { } source) entry.Protocol.SetProxiedClient(source);
                return true;
            case ProxyReadOutcome.NoHeader:
                return true;
            case ProxyReadOutcome.Rejected:
                LogProxyHeaderRejected(_logger, entry.Protocol.Id, peer?.ToString() ?? (entry.Transport.IsUnixPeer ? Http1Connection.UnixPeerAddress : "-"), trusted ? (reason == ProxyRejectionReason.None ? "no PROXY header from a trusted proxy" : reason.ToString()) : "PROXY header from an untrusted peer");
                await entry.Protocol.CloseBeforeFirstRequestAsync(ConnectionEndReason.BadRequest).ConfigureAwait(false);
                return false;
            case ProxyReadOutcome.TimedOut:
                await entry.Protocol.CloseBeforeFirstRequestAsync(ConnectionEndReason.RequestHeadersTimeout).ConfigureAwait(false);
                return false;
            default:
                await entry.Protocol.CloseBeforeFirstRequestAsync(ConnectionEndReason.ClientClosed).ConfigureAwait(false);
                return false;
        }
    }

    /// <summary>
    /// Over the connection limit: answer 503 with "Connection: close" and close. The answer is a single
    /// non-blocking send of a preformatted buffer (the socket's send buffer is empty, so it never waits),
    /// which costs the server no pipe, no task and no registry entry. Logging is the caller's, through
    /// <see cref="ConnectionRefusals"/>: once per interval, not once per connection.
    /// </summary>
    private void RejectOverCapacity(Socket socket)
    {
        Interlocked.Increment(ref _rejectedConnections);
        Metrics.ConnectionRejected();
        try
        {
            socket.Blocking = false;
            // On a TLS listener a 503 would need a handshake first: a full handshake's CPU spent on a
            // connection we have no room for, at the moment the server is busiest. The connection is closed
            // cleanly instead (FIN, no byte): never plaintext on a TLS socket. Clients retry as after any close.
            if (_tls is null) socket.Send(ServiceUnavailable, SocketFlags.None);
            socket.Shutdown(SocketShutdown.Send);
            // A request already received but unread would turn close() into a reset, which can destroy the
            // 503 before the client reads it: discard what is queued (bounded; never waits).
            Span<byte> scratch = stackalloc byte[1024];
            for (int i = 0; i < 8 && socket.Available > 0; i++) socket.Receive(scratch, SocketFlags.None);
        }
        catch (SocketException) { }
        finally { socket.Dispose(); }
    }

    /// <summary>A whole response with "Connection: close", built from its body's bytes so that Content-Length cannot disagree with them.</summary>
    internal static byte[] PreformattedResponse(int status, string body)
    {
        byte[] content = Encoding.ASCII.GetBytes(body);
        byte[] headers = Encoding.ASCII.GetBytes($"Content-Type: text/plain\r\nContent-Length: {content.Length}\r\nConnection: close\r\n\r\n");
        return [.. HttpStatus.StatusLine(status, null), .. headers, .. content];
    }

    /// <summary>One heartbeat (its own thread, never overlapping itself): every connection's deadlines, then the refusal report.</summary>
    private void OnHeartbeat(long now)
    {
        foreach (var (_, entry) in _connections)
        {
            entry.Protocol.OnHeartbeat(now);
            if (entry.Transport.IsSendStalled(now, _options.MinResponseDataRate, _options.MinResponseDataRateGracePeriod))
                entry.Protocol.Abort(ConnectionEndReason.ResponseTimeout);
        }
        _refusals.ReportIfDue(now);
    }

    /// <summary>
    /// Graceful stop. Phases run in order; each logs what it did. It ends by itself within drain delay +
    /// shutdown timeout + the abort grace; to stop sooner, <see cref="ResetAllConnections"/>.
    /// </summary>
    public async Task<ShutdownReport> ShutdownAsync()
    {
        if (Interlocked.Exchange(ref _shutdownStarted, 1) != 0) throw new InvalidOperationException("Shutdown already started.");
        var clock = Stopwatch.StartNew();

        MarkNotReady();
        await DrainDelayAsync().ConfigureAwait(false);
        int open = await StopAcceptingAsync().ConfigureAwait(false);
        var deadline = Stopwatch.StartNew(); // the shutdown timeout counts from here
        RequestCloseAll();
        bool allDrained = await WaitForDrainAsync(_options.ShutdownTimeout - deadline.Elapsed).ConfigureAwait(false);
        int aborted = allDrained ? 0 : await AbortRemainingAsync().ConfigureAwait(false);
        _heartbeat?.Dispose();
        _transport?.Dispose(); // after the connections: a Linux transport's loops reset any that did not unwind

        // The keep-alive race, counted rather than hidden: requests that reached us only after an idle
        // connection's FIN. Their clients saw EOF before any byte of a response, which they may retry.
        if (Interlocked.Read(ref _racedIdleCloses) is > 0 and var raced) LogRacedIdleCloses(_logger, raced);
        var report = new ShutdownReport(open, open - aborted, aborted, clock.Elapsed);
        LogShutdownComplete(_logger, report.Drained, report.Aborted, (long)report.Elapsed.TotalMilliseconds);
        return report;
    }

    /// <summary>Phase 1: readiness fails at once, so health checks take the instance out of rotation.</summary>
    private void MarkNotReady()
    {
        Lifetime.MarkNotReady();
        Phase("mark-not-ready", "readiness now reports 503");
    }

    /// <summary>Phase 2: keep serving for the drain delay, closing each connection after its response.</summary>
    private async Task DrainDelayAsync()
    {
        if (_options.DrainDelay <= TimeSpan.Zero) return;
        Lifetime.CloseConnectionsAfterResponse();
        Phase("drain-delay", $"serving with Connection: close for {_options.DrainDelay.TotalSeconds}s");
        await Task.Delay(_options.DrainDelay).ConfigureAwait(false);
    }

    /// <summary>Phase 3: close every listener (new connects are refused) and wait for their accept loops to end.</summary>
    private async Task<int> StopAcceptingAsync()
    {
        CloseListener();
        await AwaitAcceptLoopsAsync().ConfigureAwait(false);
        int open = _connections.Count;
        Phase("stop-accepting", $"{(_listeners.Length == 1 ? "listener" : $"{_listeners.Length} listeners")} closed; {open} connection(s) open");
        return open;
    }

    /// <summary>Ends every accept loop and closes every listening socket (given ones too: systemd keeps its own copies, so connections queue there for the next instance).</summary>
    private void CloseListener()
    {
        _acceptCts.Cancel();
        _listener?.Stop();
        foreach (var (socket, _) in _given) socket.Dispose();
    }

    /// <summary>Phase 4: ask every connection to close after its current response; idle ones close now.</summary>
    private void RequestCloseAll()
    {
        // Not CloseConnectionsAfterResponse: a connection decides per response, so requests already
        // received behind the one in flight are still answered before its "Connection: close".
        Lifetime.SignalDraining();
        int idle = 0, active = 0;
        foreach (var (_, entry) in _connections)
        {
            if (entry.Protocol.State is ConnectionState.Idle or ConnectionState.New) idle++; else active++;
            entry.Protocol.RequestClose();
        }
        Phase("request-close", $"{idle} idle closed at once, {active} finishing their response");
    }

    /// <summary>Phase 5: wait for every connection to finish, or for the deadline.</summary>
    private async Task<bool> WaitForDrainAsync(TimeSpan timeout)
    {
        var all = Task.WhenAll(_connections.Values.Select(e => e.Task));
        if (timeout < TimeSpan.Zero) timeout = TimeSpan.Zero;
        var clock = Stopwatch.StartNew();
        int reported = -1;
        // A long drain is watched (systemctl status shows STATUS=): say how many connections are left whenever
        // the count has changed, at most once per DrainProgressInterval, until all are done or the deadline.
        while (!all.IsCompleted && clock.Elapsed < timeout)
        {
            int open = _connections.Count;
            if (open != reported) { DrainProgress?.Invoke(open); reported = open; }
            var wait = timeout - clock.Elapsed;
            try { await all.WaitAsync(wait < DrainProgressInterval ? wait : DrainProgressInterval).ConfigureAwait(false); }
            catch (TimeoutException) { }
        }
        bool drained = _connections.IsEmpty;
        Phase("wait-for-drain", drained ? "all connections drained" : $"{_connections.Count} connection(s) still open at the deadline");
        return drained;
    }

    /// <summary>Phase 6: the deadline passed: fire every remaining connection's abort token and reset its socket.</summary>
    private async Task<int> AbortRemainingAsync()
    {
        _abortCts.Cancel();
        var remaining = _connections.Values.ToArray();
        foreach (var entry in remaining) entry.Protocol.Abort(ConnectionEndReason.Aborted);
        try { await Task.WhenAll(remaining.Select(e => e.Task)).WaitAsync(AbortGrace).ConfigureAwait(false); }
        catch (TimeoutException) { Phase("abort", $"{_connections.Count} connection(s) did not unwind within {AbortGrace.TotalSeconds}s"); }
        Phase("abort", $"{remaining.Length} connection(s) aborted");
        return remaining.Length;
    }

    /// <summary>
    /// The second signal: no drain and no waiting. Closes the listener and resets (RST) every open connection,
    /// from any thread, at any point of a shutdown or none. An RST and not a FIN, because a FIN would let a
    /// client take a cut close-delimited body (HTTP/1.0, or a stream) for a whole one. Returns how many were reset.
    /// </summary>
    public int ResetAllConnections()
    {
        try { CloseListener(); } catch (ObjectDisposedException) { } // already disposed: nothing listens
        // Sockets first, tokens second: cancelling a connection's token runs handler continuations inline, and
        // however long they take, every client has its RST by then.
        var entries = _connections.Values.ToArray();
        foreach (var entry in entries) entry.Transport.Abort();
        foreach (var entry in entries) entry.Protocol.Abort(ConnectionEndReason.Aborted);
        int reset = entries.Length;
        Phase("reset", $"{reset} connection(s) reset");
        return reset;
    }

    /// <summary>Snapshot of the live connections, for tests and diagnostics.</summary>
    internal IReadOnlyList<Http1Connection> Connections => _connections.Values.Select(e => e.Protocol).ToArray();

    /// <summary>Closes the listeners and resets whatever is still open, without the graceful phases (call <see cref="ShutdownAsync"/> first for those).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Volatile.Read(ref _shutdownStarted) == 0)
        {
            CloseListener();
            try { await Task.WhenAll(_acceptLoops).ConfigureAwait(false); } catch (Exception) { }
            Interlocked.Exchange(ref _spareDescriptor, null)?.Dispose();
            _abortCts.Cancel();
            foreach (var (_, entry) in _connections) entry.Protocol.Abort(ConnectionEndReason.Aborted);
            try { await Task.WhenAll(_connections.Values.Select(e => e.Task)).WaitAsync(AbortGrace).ConfigureAwait(false); } catch (TimeoutException) { }
        }
        _heartbeat?.Dispose();
        _transport?.Dispose();
        _tls?.Dispose();
        _acceptCts.Dispose();
        _abortCts.Dispose();
        Lifetime.Dispose();
        Metrics.Dispose();
        _blocks.Dispose();
    }

    private sealed class ConnectionEntry
    {
        public TransportConnection Transport = null!;
        public Http1Connection Protocol = null!;
        public TlsConnection? Tls; // between the two, with TLS
        public Task Task = Task.CompletedTask;
        public void OnPeerFailure() => Protocol?.OnPeerFailure();
    }

    private void Phase(string phase, string detail)
    {
        LogPhase(_logger, phase, detail);
        PhaseCompleted?.Invoke(phase, detail);
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Shutdown phase {Phase}: {Detail}")]
    private static partial void LogPhase(ILogger logger, string phase, string detail);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Shutdown complete: {Drained} connection(s) drained, {Aborted} aborted, {ElapsedMs} ms")]
    private static partial void LogShutdownComplete(ILogger logger, int drained, int aborted, long elapsedMs);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "Shutdown: {Count} idle connection(s) received a request after their FIN (it raced the close; the client saw EOF before any response byte)")]
    private static partial void LogRacedIdleCloses(ILogger logger, long count);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "Accept on {Listener} failed: {Error} (errno {Errno}); continuing")]
    private static partial void LogAcceptError(ILogger logger, string listener, SocketError error, int errno);

    [LoggerMessage(EventId = 60, Level = LogLevel.Debug, Message = "Accept on {Listener}: the pending connection failed ({Error}); continuing")]
    private static partial void LogAcceptConnectionError(ILogger logger, string listener, SocketError error);

    [LoggerMessage(EventId = 62, Level = LogLevel.Debug, Message = "A connection accepted on {Listener} failed before it started ({Error}); closed it and continuing")]
    private static partial void LogConnectionGoneAtStart(ILogger logger, string listener, SocketError error);

    [LoggerMessage(EventId = 61, Level = LogLevel.Error, Message = "A connection accepted on {Listener} could not be started; closed it and continuing")]
    private static partial void LogConnectionStartFailed(ILogger logger, string listener, Exception exception);

    [LoggerMessage(EventId = 4, Level = LogLevel.Error, Message = "Connection {ConnectionId} crashed")]
    private static partial void LogConnectionCrashed(ILogger logger, long connectionId, Exception exception);

    [LoggerMessage(EventId = 30, Level = LogLevel.Warning, Message = "Connection {ConnectionId} from {Peer} closed before its first request: {Reason}")]
    private static partial void LogProxyHeaderRejected(ILogger logger, long connectionId, string peer, string reason);

    // Selected: " (auto)" when --transport auto picked it, else empty.
    [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "Transport {Transport}{Selected}: {Loops} event loop(s), one thread each")]
    private static partial void LogTransportLoops(ILogger logger, string transport, string selected, int loops);

    [LoggerMessage(EventId = 8, Level = LogLevel.Information, Message = "Transport {Transport}{Selected}: connections run on the thread pool")]
    private static partial void LogTransportPool(ILogger logger, string transport, string selected);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "Accept loop failed")]
    private static partial void LogAcceptLoopFault(ILogger logger, Exception exception);
}

/// <summary>What a shutdown did: the numbers of its one summary line.</summary>
public sealed record ShutdownReport(int OpenAtStopAccepting, int Drained, int Aborted, TimeSpan Elapsed)
{
    /// <summary>True when no connection had to be aborted at the deadline.</summary>
    public bool AllDrained => Aborted == 0;
}
