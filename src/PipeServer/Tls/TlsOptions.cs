namespace PipeServer.Tls;

// Where this sits: the TLS part of HttpServerOptions (HttpServerOptions.Tls). Set: every listener speaks
// HTTPS; null: plain HTTP. The executable fills it from --tls-cert/--tls-key (PIPESERVER_TLS_CERT/KEY).

/// <summary>Where the certificate and its key are, and how often they are looked at again for a renewal.</summary>
/// <param name="CertificateFile">PEM: the server's certificate first, then any intermediates (certbot's fullchain.pem).</param>
/// <param name="KeyFile">PEM: the certificate's private key, unencrypted (PKCS#8, PKCS#1 or SEC1; certbot's privkey.pem).</param>
public sealed record TlsOptions(string CertificateFile, string KeyFile)
{
    /// <summary>
    /// How often the two files are checked for a change (mtime, size, then a hash of the contents). A new valid
    /// pair serves new connections from the next poll on; existing connections keep the certificate they
    /// started with. Default 2 s.
    /// </summary>
    public TimeSpan ReloadInterval { get; init; } = TimeSpan.FromSeconds(2);
}
