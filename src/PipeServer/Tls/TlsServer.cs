using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;
using PipeServer.Transports;

namespace PipeServer.Tls;

// Where this sits: the one thing HttpServer holds for TLS (its hook at the seam: Accept wraps each
// TransportConnection with Wrap, RunConnectionAsync runs the wrapper). It owns the certificate source
// (renewal poll) and the handshake instrument, and lives from StartAsync to the server's disposal.
//
// Metric (on the server's meter "PipeServer", Kestrel's kestrel.tls_handshake.duration in spirit):
//   pipeserver.tls.handshakes {handshake}  tls.protocol.version ("1.2", "1.3") on success,
//                                          error.type on failure: timeout, handshake (a TLS alert: old
//                                          version, no shared cipher...), closed, plain_http, not_tls,
//                                          server_closing, aborted.

/// <summary>TLS for every connection of an <see cref="Server.HttpServer"/>: certificate, handshake bound, handshake metric.</summary>
internal sealed partial class TlsServer : IDisposable
{
    /// <summary>url.scheme of a connection served through TLS.</summary>
    public const string Scheme = "https";
    /// <summary>The backstop beyond the request-header timeout: the protocol's timer (one heartbeat tick, at most 1 s, late) ends a stalled handshake first.</summary>
    private static readonly TimeSpan BackstopMargin = TimeSpan.FromSeconds(2);

    private readonly ILogger _logger;
    private readonly Counter<long> _handshakes;

    /// <summary>Loads the certificate (throws <see cref="TlsCertificateException"/>) and starts its renewal poll.</summary>
    public TlsServer(TlsOptions options, Meter meter, ILogger logger, TimeSpan requestHeaderTimeout)
    {
        _logger = logger;
        Certificates = new TlsCertificateSource(options, logger);
        HandshakeTimeout = requestHeaderTimeout + BackstopMargin;
        _handshakes = meter.CreateCounter<long>("pipeserver.tls.handshakes", "{handshake}", "TLS handshakes, by protocol version when they succeeded and by error.type when they failed.");
    }

    public TlsCertificateSource Certificates { get; }
    internal TimeSpan HandshakeTimeout { get; }

    /// <summary>Wraps a transport connection; nothing runs until the wrapper's RunAsync.</summary>
    public TlsConnection Wrap(TransportConnection inner, long connectionId, PipeOptions inputOptions, PipeOptions outputOptions) =>
        new(inner, this, connectionId, inputOptions, outputOptions);

    internal void HandshakeSucceeded(SslProtocols protocol, long started)
    {
        _handshakes.Add(1, new KeyValuePair<string, object?>("tls.protocol.version", protocol switch
        {
            SslProtocols.Tls13 => "1.3",
            SslProtocols.Tls12 => "1.2",
            _ => protocol.ToString(),
        }));
        if (_logger.IsEnabled(LogLevel.Trace)) LogHandshakeDone(_logger, protocol, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    /// <summary>A failed handshake is the client's problem (or an attacker's), never the server's: debug level, counted.</summary>
    internal void HandshakeFailed(long connectionId, string errorType, Exception? error, long started)
    {
        _handshakes.Add(1, new KeyValuePair<string, object?>("error.type", errorType));
        if (_logger.IsEnabled(LogLevel.Debug))
            LogHandshakeFailed(_logger, connectionId, errorType, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds, Describe(error));
    }

    /// <summary>The reason with its inner reasons ("Authentication failed -> SSL Handshake failed ... unsupported protocol").</summary>
    private static string Describe(Exception? error)
    {
        if (error is null) return "-";
        var parts = new List<string>();
        for (var e = error; e is not null && parts.Count < 4; e = e.InnerException) parts.Add(e.Message);
        return string.Join(" -> ", parts);
    }

    public void Dispose() => Certificates.Dispose();

    [LoggerMessage(EventId = 95, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: TLS handshake failed ({ErrorType}) after {ElapsedMs} ms: {Reason}")]
    private static partial void LogHandshakeFailed(ILogger logger, long connectionId, string errorType, long elapsedMs, string reason);

    [LoggerMessage(EventId = 96, Level = LogLevel.Trace, Message = "TLS handshake done: {Protocol} in {ElapsedMs} ms")]
    private static partial void LogHandshakeDone(ILogger logger, SslProtocols protocol, double elapsedMs);
}
