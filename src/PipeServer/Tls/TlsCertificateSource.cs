using System.Net.Security;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;

namespace PipeServer.Tls;

// Where this sits: beside the accept loop, on a timer of its own. Holds the certificate that new
// connections are offered (Current) and replaces it when the files change on disk: renewal without a
// restart. A poll, not a FileSystemWatcher: certbot and most tools replace files by renaming symlinks
// (live/ -> archive/), which watchers on the old inode miss, and a poll every few seconds costs two stat(2).
//
//   each tick: stat both files -> (mtime, size) unchanged: done
//              read both -> hash unchanged: done (touched, not changed)
//              load -> ok: swap, log the new certificate; fails: warn once for these contents, keep the old
//
// A half-written pair (the cert renewed, the key not yet) fails to load and is warned about; the next
// write changes mtime or size again, and that tick loads it. A connection takes Current once, at its
// handshake, so one that started before a swap keeps its certificate until it ends.

/// <summary>The certificate new handshakes use, reloaded from its files when they change.</summary>
internal sealed partial class TlsCertificateSource : IDisposable
{
    private readonly TlsOptions _options;
    private readonly ILogger _logger;
    private readonly Timer? _timer;
    private readonly Lock _pollLock = new(); // one poll at a time (a slow disk must not stack ticks)
    // Guarded by _pollLock: what the last poll saw, so an unchanged file costs a stat and nothing more.
    private (DateTime, long, DateTime, long) _lastSeen;
    private byte[]? _lastFailedHash; // contents already warned about
    private volatile Served _current; // never null; replaced whole, read by every handshake

    /// <summary>A certificate and the server options built for it, swapped together.</summary>
    private sealed record Served(LoadedCertificate Certificate, SslServerAuthenticationOptions Options);

    /// <summary>Loads the pair now (throws <see cref="TlsCertificateException"/>) and starts polling for renewals.</summary>
    public TlsCertificateSource(TlsOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
        _lastSeen = Stat();
        _current = Serve(TlsCertificates.Load(options.CertificateFile, options.KeyFile));
        LogServing(_logger, _current.Certificate.Describe());
        if (options.ReloadInterval > TimeSpan.Zero)
            _timer = new Timer(static s => ((TlsCertificateSource)s!).Poll(), this, options.ReloadInterval, options.ReloadInterval);
    }

    /// <summary>The certificate served now.</summary>
    public LoadedCertificate Current => _current.Certificate;

    /// <summary>Options for one handshake: TLS 1.2 and 1.3 only, ALPN http/1.1, the current certificate. Shared, never changed after it is made.</summary>
    public SslServerAuthenticationOptions ServerOptions => _current.Options;

    /// <summary>Raised after a new certificate has been swapped in (tests wait on it).</summary>
    public event Action<LoadedCertificate>? Reloaded;

    private static Served Serve(LoadedCertificate certificate) => new(certificate, new SslServerAuthenticationOptions
    {
        ServerCertificateContext = certificate.Context,
        // TLS 1.0 and 1.1 are deprecated (RFC 8996); everything current speaks 1.2 or 1.3.
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        // http/1.1 only, for now: h2 goes in front of it once there is an HTTP/2 connection to hand it to.
        ApplicationProtocols = [SslApplicationProtocol.Http11],
        ClientCertificateRequired = false,
        AllowRenegotiation = false, // client-initiated renegotiation is a CPU lever for an attacker
        // The cipher suites are the platform's (OpenSSL's system policy on Linux): its secure defaults are
        // maintained by the distribution, a list of our own would only age.
        EncryptionPolicy = EncryptionPolicy.RequireEncryption,
    });

    /// <summary>One tick (also called by tests). Never throws: a failure is a warning and the old certificate stays.</summary>
    internal void Poll()
    {
        if (!_pollLock.TryEnter()) return;
        try
        {
            var seen = Stat();
            if (seen == _lastSeen) return;
            _lastSeen = seen;
            string cert, key;
            try
            {
                cert = TlsCertificates.ReadPem(_options.CertificateFile, "--tls-cert");
                key = TlsCertificates.ReadPem(_options.KeyFile, "--tls-key");
            }
            catch (TlsCertificateException ex) { WarnOnce(null, ex.Message); return; }
            var hash = TlsCertificates.Hash(cert, key);
            if (hash.AsSpan().SequenceEqual(_current.Certificate.ContentHash)) return; // rewritten, not changed
            LoadedCertificate loaded;
            try { loaded = TlsCertificates.Load(cert, key, _options.CertificateFile, _options.KeyFile); }
            catch (TlsCertificateException ex) { WarnOnce(hash, ex.Message); return; }
            _current = Serve(loaded);
            _lastFailedHash = null;
            LogReloaded(_logger, loaded.Describe());
            Reloaded?.Invoke(loaded);
        }
        catch (Exception ex)
        {
            LogPollFailed(_logger, ex); // a timer callback must not throw; the next tick tries again
        }
        finally { _pollLock.Exit(); }
    }

    private void WarnOnce(byte[]? hash, string reason)
    {
        if (hash is not null && _lastFailedHash is not null && hash.AsSpan().SequenceEqual(_lastFailedHash)) return;
        _lastFailedHash = hash;
        LogReloadRejected(_logger, reason, _current.Certificate.Describe());
    }

    private (DateTime, long, DateTime, long) Stat()
    {
        // FileInfo follows symlinks (certbot's live/ links), so a renewal that repoints one is seen.
        static (DateTime, long) One(string path)
        {
            try { var f = new FileInfo(path); return f.Exists ? (f.LastWriteTimeUtc, f.Length) : (DateTime.MinValue, -1); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return (DateTime.MinValue, -2); }
        }
        var (ct, cs) = One(_options.CertificateFile);
        var (kt, ks) = One(_options.KeyFile);
        return (ct, cs, kt, ks);
    }

    public void Dispose() => _timer?.Dispose();

    [LoggerMessage(EventId = 90, Level = LogLevel.Information, Message = "TLS: serving certificate {Certificate}")]
    private static partial void LogServing(ILogger logger, string certificate);

    [LoggerMessage(EventId = 91, Level = LogLevel.Information, Message = "TLS: certificate files changed; new connections get {Certificate}")]
    private static partial void LogReloaded(ILogger logger, string certificate);

    [LoggerMessage(EventId = 92, Level = LogLevel.Warning, Message = "TLS: certificate files changed but cannot be used ({Reason}); still serving {Certificate}")]
    private static partial void LogReloadRejected(ILogger logger, string reason, string certificate);

    [LoggerMessage(EventId = 93, Level = LogLevel.Error, Message = "TLS: the certificate poll failed; trying again next tick")]
    private static partial void LogPollFailed(ILogger logger, Exception exception);
}
