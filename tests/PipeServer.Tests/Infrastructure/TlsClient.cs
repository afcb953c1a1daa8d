using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace PipeServer.Tests.Infrastructure;

/// <summary>
/// A raw HTTP/1.1 client over TLS, for the HTTPS tests: connects, handshakes (any certificate is accepted;
/// tests look at <see cref="RemoteCertificate"/> themselves), sends raw bytes, reads one response at a time
/// (Content-Length bodies), and tells a clean end from a reset. Every wait has a timeout.
/// </summary>
public sealed class TlsClient : IAsyncDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);
    private readonly Socket _socket;
    private readonly SslStream _ssl;
    private readonly MemoryStream _pending = new();

    private readonly TapStream _tap;

    private TlsClient(Socket socket, SslStream ssl, TapStream tap) { _socket = socket; _ssl = ssl; _tap = tap; }

    public SslStream Stream => _ssl;
    public X509Certificate? RemoteCertificate => _ssl.RemoteCertificate;

    /// <param name="prelude">Bytes sent in the clear before the ClientHello (a PROXY protocol header).</param>
    public static async Task<TlsClient> ConnectAsync(int port, SslProtocols protocols = SslProtocols.None, List<SslApplicationProtocol>? alpn = null, TimeSpan? timeout = null, byte[]? prelude = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(System.Net.IPAddress.Loopback, port, cts.Token);
            if (prelude is not null) await socket.SendAsync(prelude, SocketFlags.None, cts.Token);
            var tap = new TapStream(new NetworkStream(socket, ownsSocket: false));
            var ssl = new SslStream(tap, leaveInnerStreamOpen: false);
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                EnabledSslProtocols = protocols,
                ApplicationProtocols = alpn ?? [SslApplicationProtocol.Http11],
                RemoteCertificateValidationCallback = static (_, _, _, _) => true,
            }, cts.Token);
            return new TlsClient(socket, ssl, tap);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public async Task SendAsync(string text)
    {
        using var cts = new CancellationTokenSource(DefaultTimeout);
        await _ssl.WriteAsync(Encoding.Latin1.GetBytes(text), cts.Token);
        await _ssl.FlushAsync(cts.Token);
    }

    /// <summary>One response: status, headers, a Content-Length body.</summary>
    public async Task<RawResponse> ReadResponseAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            int headEnd;
            while ((headEnd = IndexOf(_pending, "\r\n\r\n"u8)) < 0)
                if (!await FillAsync(cts.Token)) throw new IOException($"closed before a whole response head; got: {Encoding.Latin1.GetString(_pending.ToArray())}");
            var all = _pending.ToArray();
            var lines = Encoding.Latin1.GetString(all, 0, headEnd).Split("\r\n");
            var headers = lines.Skip(1).Select(l => { int c = l.IndexOf(':'); return new KeyValuePair<string, string>(l[..c], l[(c + 1)..].Trim()); }).ToList();
            if (headers.Any(h => h.Key.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) && h.Value.Contains("chunked", StringComparison.OrdinalIgnoreCase)))
                return new RawResponse(lines[0], int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), headers, await ReadChunkedAsync(headEnd + 4, cts.Token), true, true);
            int length = int.Parse(headers.FirstOrDefault(h => h.Key.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)).Value ?? "0", System.Globalization.CultureInfo.InvariantCulture);
            while (_pending.Length < headEnd + 4 + length)
                if (!await FillAsync(cts.Token)) throw new IOException("closed before the whole body");
            all = _pending.ToArray();
            var body = all.AsSpan(headEnd + 4, length).ToArray();
            var rest = all.AsSpan(headEnd + 4 + length).ToArray();
            _pending.SetLength(0);
            _pending.Write(rest);
            return new RawResponse(lines[0], int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), headers, body, false, false);
        }
        catch (OperationCanceledException) { throw new TimeoutException("no whole response within the timeout"); }
    }

    /// <summary>A chunked body starting at <paramref name="offset"/> of what is pending (trailers ignored).</summary>
    private async Task<byte[]> ReadChunkedAsync(int offset, CancellationToken ct)
    {
        var body = new MemoryStream();
        while (true)
        {
            int lineEnd;
            while ((lineEnd = _pending.GetBuffer().AsSpan(offset, (int)_pending.Length - offset).IndexOf("\r\n"u8)) < 0)
                if (!await FillAsync(ct)) throw new IOException("closed inside a chunk size line");
            var sizeText = System.Text.Encoding.Latin1.GetString(_pending.GetBuffer(), offset, lineEnd).Split(';')[0];
            int size = int.Parse(sizeText, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
            int dataStart = offset + lineEnd + 2;
            if (size == 0)
            {
                while (_pending.GetBuffer().AsSpan(dataStart, (int)_pending.Length - dataStart).IndexOf("\r\n"u8) is var end && end < 0)
                    if (!await FillAsync(ct)) throw new IOException("closed inside the trailers");
                int after = dataStart + _pending.GetBuffer().AsSpan(dataStart, (int)_pending.Length - dataStart).IndexOf("\r\n"u8) + 2;
                var rest = _pending.GetBuffer().AsSpan(after, (int)_pending.Length - after).ToArray();
                _pending.SetLength(0);
                _pending.Write(rest);
                return body.ToArray();
            }
            while (_pending.Length < dataStart + size + 2)
                if (!await FillAsync(ct)) throw new IOException("closed inside a chunk");
            body.Write(_pending.GetBuffer(), dataStart, size);
            offset = dataStart + size + 2;
        }
    }

    /// <summary>
    /// Waits for the server to end the session: true for a clean end (close_notify, then EOF: SslStream reads 0),
    /// false for a reset. Throws TimeoutException if it stays open.
    /// </summary>
    public async Task<bool> ClosedCleanlyAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            while (await FillAsync(cts.Token)) { }
            return true;
        }
        catch (OperationCanceledException) { throw new TimeoutException("the server did not close the connection"); }
        catch (IOException) { return false; }
    }

    private async Task<bool> FillAsync(CancellationToken ct)
    {
        var buffer = new byte[16 * 1024];
        int n = await _ssl.ReadAsync(buffer, ct);
        if (n == 0) return false;
        _pending.Seek(0, SeekOrigin.End);
        _pending.Write(buffer, 0, n);
        return true;
    }

    /// <summary>
    /// The content types of every TLS record received so far, in order (20 change_cipher_spec, 21 alert,
    /// 22 handshake, 23 application data). Under TLS 1.2 an alert travels as type 21, so a close_notify is
    /// visible here; TLS 1.3 hides it inside type 23.
    /// </summary>
    public IReadOnlyList<byte> ReceivedRecordTypes()
    {
        var raw = _tap.Received;
        var types = new List<byte>();
        for (int i = 0; i + 5 <= raw.Length; i += 5 + (raw[i + 3] << 8 | raw[i + 4])) types.Add(raw[i]);
        return types;
    }

    private static int IndexOf(MemoryStream stream, ReadOnlySpan<byte> needle) => stream.GetBuffer().AsSpan(0, (int)stream.Length).IndexOf(needle);

    public async ValueTask DisposeAsync()
    {
        try { await _ssl.DisposeAsync(); } catch (IOException) { } catch (ObjectDisposedException) { }
        _socket.Dispose();
    }
}

/// <summary>Passes everything through and keeps a copy of what was received (ciphertext, for record types).</summary>
internal sealed class TapStream(Stream inner) : Stream
{
    private readonly MemoryStream _received = new();
    public byte[] Received { get { lock (_received) return _received.ToArray(); } }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int n = await inner.ReadAsync(buffer, cancellationToken);
        lock (_received) _received.Write(buffer.Span[..n]);
        return n;
    }
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);
    public override int Read(byte[] buffer, int offset, int count)
    {
        int n = inner.Read(buffer, offset, count);
        lock (_received) _received.Write(buffer, offset, n);
        return n;
    }
    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
    public override void Flush() => inner.Flush();
    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
    protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
