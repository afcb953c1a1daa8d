using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Net.Security;

namespace PipeServer.Tls;

// Where this sits: before any connection. Turns the two PEM files into what SslStream serves
// (SslStreamCertificateContext: the leaf with its key, plus the intermediates it sends along). Used at
// start-up, where a failure is a clear message and exit 1 (Cli/CommandLine.cs), and by the renewal poll
// (TlsCertificateSource.cs), where a failure is a warning and the old pair stays.

/// <summary>The certificate or key cannot be used; the message names the file and what is wrong with it.</summary>
public sealed class TlsCertificateException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A loaded pair: what SslStream serves, and what the log says about it.</summary>
internal sealed record LoadedCertificate(SslStreamCertificateContext Context, X509Certificate2 Leaf, byte[] ContentHash)
{
    /// <summary>"CN=example.com, expires 2027-03-01T00:00:00Z, SHA-256 ab12…": one line for the log.</summary>
    public string Describe() =>
        $"{Leaf.Subject}, valid until {Leaf.NotAfter.ToUniversalTime():yyyy-MM-ddTHH:mm:ssZ}, thumbprint {Leaf.GetCertHashString(HashAlgorithmName.SHA256)[..16]}…";
}

internal static class TlsCertificates
{
    /// <summary>Bounds what is read: a PEM chain or key is a few KiB; anything this big is not one.</summary>
    internal const int MaxFileSize = 1024 * 1024;

    /// <summary>Reads and checks both files. Throws <see cref="TlsCertificateException"/> with a message naming the problem.</summary>
    public static LoadedCertificate Load(string certificateFile, string keyFile)
    {
        string certPem = ReadPem(certificateFile, "--tls-cert");
        string keyPem = ReadPem(keyFile, "--tls-key");
        return Load(certPem, keyPem, certificateFile, keyFile);
    }

    /// <summary>As <see cref="Load(string, string)"/>, from contents already read (the renewal poll hashes them first).</summary>
    internal static LoadedCertificate Load(string certPem, string keyPem, string certificateFile, string keyFile)
    {
        var chain = new X509Certificate2Collection();
        try { chain.ImportFromPem(certPem); }
        catch (CryptographicException ex) { throw new TlsCertificateException($"--tls-cert: '{certificateFile}' holds a malformed PEM certificate ({ex.Message})", ex); }
        if (chain.Count == 0) throw new TlsCertificateException($"--tls-cert: '{certificateFile}' holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)");
        if (keyPem.Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal))
            throw new TlsCertificateException($"--tls-key: '{keyFile}' is encrypted; the server needs the key unencrypted (protect it with file permissions, docs/deploy.md)");

        X509Certificate2 leaf;
        try { leaf = X509Certificate2.CreateFromPem(chain[0].ExportCertificatePem(), keyPem); }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            // The same exceptions say "no key", "malformed key" and "a key for another certificate": tell them apart.
            throw new TlsCertificateException(IsPrivateKey(keyPem)
                ? $"--tls-key: the key in '{keyFile}' does not match the certificate in '{certificateFile}' ({chain[0].Subject})"
                : $"--tls-key: '{keyFile}' holds no usable PEM private key (RSA, EC; PKCS#8, PKCS#1 or SEC1)", ex);
        }
        var intermediates = new X509Certificate2Collection();
        for (int i = 1; i < chain.Count; i++) intermediates.Add(chain[i]);
        SslStreamCertificateContext context;
        // offline: the chain is built from what the file gives, never by fetching intermediates at start-up.
        try { context = SslStreamCertificateContext.Create(leaf, intermediates, offline: true); }
        catch (Exception ex) when (ex is CryptographicException or NotSupportedException or ArgumentException)
        {
            throw new TlsCertificateException($"--tls-cert: '{certificateFile}' cannot be served ({ex.Message})", ex);
        }
        return new LoadedCertificate(context, leaf, Hash(certPem, keyPem));
    }

    /// <summary>The contents' identity: a renewal that rewrites the same bytes is not a change.</summary>
    internal static byte[] Hash(string certPem, string keyPem) =>
        SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(certPem + "\n--\n" + keyPem));

    internal static string ReadPem(string path, string option)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) throw new TlsCertificateException($"{option}: '{path}' does not exist");
            if (info.Length > MaxFileSize) throw new TlsCertificateException($"{option}: '{path}' is {info.Length} bytes, more than a PEM file ({MaxFileSize} at most)");
            return File.ReadAllText(path);
        }
        catch (UnauthorizedAccessException ex) { throw new TlsCertificateException($"{option}: cannot read '{path}': permission denied (the server's user needs read access)", ex); }
        catch (IOException ex) { throw new TlsCertificateException($"{option}: cannot read '{path}': {ex.Message}", ex); }
    }

    private static bool IsPrivateKey(string pem)
    {
        foreach (Func<AsymmetricAlgorithm> make in (Func<AsymmetricAlgorithm>[])[RSA.Create, ECDsa.Create])
        {
            using var key = make();
            try { key.ImportFromPem(pem); return true; }
            catch (Exception ex) when (ex is CryptographicException or ArgumentException) { }
        }
        return false;
    }
}
