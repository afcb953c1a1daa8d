using PipeServer.Cli;
using PipeServer.Tests.Infrastructure;
using PipeServer.Tls;
using Xunit;

namespace PipeServer.Tests.Tls;

// --tls-cert/--tls-key as the executable reads them (Cli/CommandLine.cs): both or neither, from flags or
// PIPESERVER_TLS_*, and every way the pair can be unusable refused with a message naming the file.
public sealed class TlsOptionsTests : IDisposable
{
    private static readonly Dictionary<string, string?> NoEnv = new();
    private readonly TestCertificate _cert = TestCertificate.Create();

    public void Dispose() => _cert.Dispose();

    private static string Refusal(string[] args, Dictionary<string, string?>? env = null) =>
        Assert.Throws<CommandLineException>(() => CommandLine.Parse(args, env ?? NoEnv)).Message;

    [Fact]
    public void Both_files_from_flags_or_environment_turn_tls_on()
    {
        var fromFlags = CommandLine.Parse(["--tls-cert", _cert.CertPath, "--tls-key", _cert.KeyPath], NoEnv)!.Server.Tls;
        Assert.Equal(new TlsOptions(_cert.CertPath, _cert.KeyPath), fromFlags);
        var fromEnv = CommandLine.Parse([], new Dictionary<string, string?> { ["PIPESERVER_TLS_CERT"] = _cert.CertPath, ["PIPESERVER_TLS_KEY"] = _cert.KeyPath })!.Server.Tls;
        Assert.Equal(fromFlags, fromEnv);
        Assert.Null(CommandLine.Parse([], NoEnv)!.Server.Tls);
        Assert.Contains("--tls-cert FILE", CommandLine.Usage());
        Assert.Contains("--tls-key FILE", CommandLine.Usage());
    }

    [Fact]
    public void One_without_the_other_is_refused()
    {
        Assert.Equal("--tls-cert: needs --tls-key (the certificate's private key)", Refusal(["--tls-cert", _cert.CertPath]));
        Assert.Equal("--tls-key: needs --tls-cert (the certificate the key belongs to)", Refusal(["--tls-key", _cert.KeyPath]));
        Assert.Contains("needs --tls-key", Refusal([], new() { ["PIPESERVER_TLS_CERT"] = _cert.CertPath }));
    }

    [Fact]
    public void A_missing_or_unreadable_file_is_refused_by_name()
    {
        var missing = Path.Combine(_cert.Directory, "nope.pem");
        Assert.Equal($"--tls-cert: '{missing}' does not exist", Refusal(["--tls-cert", missing, "--tls-key", _cert.KeyPath]));
        Assert.Equal($"--tls-key: '{missing}' does not exist", Refusal(["--tls-cert", _cert.CertPath, "--tls-key", missing]));
        if (!OperatingSystem.IsWindows() && Environment.UserName != "root") // root reads a mode-000 file anyway
        {
            File.SetUnixFileMode(_cert.KeyPath, UnixFileMode.None);
            Assert.Contains("permission denied", Refusal(["--tls-cert", _cert.CertPath, "--tls-key", _cert.KeyPath]));
        }
    }

    [Fact]
    public void A_key_of_another_certificate_is_refused()
    {
        var (_, otherKey, _) = TestCertificate.Generate();
        var keyPath = Path.Combine(_cert.Directory, "other.pem");
        File.WriteAllText(keyPath, otherKey);
        Assert.Equal($"--tls-key: the key in '{keyPath}' does not match the certificate in '{_cert.CertPath}' (CN=localhost)",
            Refusal(["--tls-cert", _cert.CertPath, "--tls-key", keyPath]));
    }

    [Fact]
    public void Files_that_hold_no_certificate_or_no_key_are_refused()
    {
        var junk = Path.Combine(_cert.Directory, "junk.pem");
        File.WriteAllText(junk, "not a pem file\n");
        Assert.Contains("holds no PEM certificate", Refusal(["--tls-cert", junk, "--tls-key", _cert.KeyPath]));
        Assert.Contains("holds no usable PEM private key", Refusal(["--tls-cert", _cert.CertPath, "--tls-key", junk]));
        // Swapped: the key file given as the certificate.
        Assert.Contains("holds no PEM certificate", Refusal(["--tls-cert", _cert.KeyPath, "--tls-key", _cert.CertPath]));
        var encrypted = Path.Combine(_cert.Directory, "encrypted.pem");
        File.WriteAllText(encrypted, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n");
        Assert.Contains("is encrypted", Refusal(["--tls-cert", _cert.CertPath, "--tls-key", encrypted]));
    }

    [Fact]
    public void A_full_chain_file_serves_the_leaf_and_sends_the_rest()
    {
        // certbot's fullchain.pem: the leaf first, then the intermediates.
        var (intermediate, _, _) = TestCertificate.Generate("intermediate");
        File.AppendAllText(_cert.CertPath, intermediate);
        var loaded = TlsCertificates.Load(_cert.CertPath, _cert.KeyPath);
        Assert.Equal(_cert.Current.Thumbprint, loaded.Leaf.Thumbprint);
        Assert.True(loaded.Leaf.HasPrivateKey);
    }
}
