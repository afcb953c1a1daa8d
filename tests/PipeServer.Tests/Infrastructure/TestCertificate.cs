using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace PipeServer.Tests.Infrastructure;

/// <summary>
/// A self-signed certificate for localhost and 127.0.0.1, made in the test (no key is checked in), written
/// as PEM to a temporary directory that Dispose deletes. <see cref="RenewAsync"/> writes a new pair over the
/// same files, as certbot's renewal does.
/// </summary>
public sealed class TestCertificate : IDisposable
{
    private TestCertificate(string directory) => Directory = directory;

    public string Directory { get; }
    public string CertPath => Path.Combine(Directory, "fullchain.pem");
    public string KeyPath => Path.Combine(Directory, "privkey.pem");
    /// <summary>The pair now in the files.</summary>
    public X509Certificate2 Current { get; private set; } = null!;
    public string CertPem { get; private set; } = "";
    public string KeyPem { get; private set; } = "";

    public static TestCertificate Create(string commonName = "localhost")
    {
        var dir = Path.Combine(Path.GetTempPath(), "pipeserver-tls-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(dir);
        var c = new TestCertificate(dir);
        c.Write(Generate(commonName));
        return c;
    }

    /// <summary>A new pair (a different key and serial), not yet written anywhere.</summary>
    public static (string CertPem, string KeyPem, X509Certificate2 Certificate) Generate(string commonName = "localhost")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        // As `openssl req -x509` makes one: its own CA, so curl --cacert can trust it directly.
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false)); // serverAuth
        var now = DateTimeOffset.UtcNow;
        using var cert = request.CreateSelfSigned(now.AddDays(-1), now.AddDays(2));
        var certPem = cert.ExportCertificatePem() + "\n";
        var keyPem = key.ExportPkcs8PrivateKeyPem() + "\n";
        return (certPem, keyPem, X509Certificate2.CreateFromPem(certPem));
    }

    private void Write((string CertPem, string KeyPem, X509Certificate2 Certificate) pair)
    {
        File.WriteAllText(CertPath, pair.CertPem);
        File.WriteAllText(KeyPath, pair.KeyPem);
        (CertPem, KeyPem, Current) = pair;
    }

    /// <summary>Writes a new pair over the files; returns the new certificate.</summary>
    public X509Certificate2 Renew(string commonName = "localhost")
    {
        Write(Generate(commonName));
        return Current;
    }

    /// <summary>Whether <paramref name="served"/> is the certificate now in the files.</summary>
    public static bool Same(X509Certificate? served, X509Certificate2 expected) =>
        served is not null && served.GetCertHashString() == expected.Thumbprint;

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
