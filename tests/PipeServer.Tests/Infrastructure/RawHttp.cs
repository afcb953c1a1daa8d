using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PipeServer.Tests.Infrastructure;

/// <summary>One parsed HTTP/1.1 response, as the bytes said it.</summary>
public sealed record RawResponse(string StatusLine, int Status, List<KeyValuePair<string, string>> Headers, byte[] Body, bool Chunked, bool TerminalChunkSeen)
{
    public string? Header(string name) => Headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;
    public string BodyText => Encoding.UTF8.GetString(Body);
    public bool ConnectionClose => Header("Connection")?.Contains("close", StringComparison.OrdinalIgnoreCase) == true;
}

/// <summary>How the server ended a connection, as the client's socket saw it.</summary>
public enum CloseKind
{
    /// <summary>No end within the timeout.</summary>
    StillOpen,
    /// <summary>Bytes arrived instead of an end.</summary>
    MoreData,
    /// <summary>An orderly close: everything sent before it was delivered.</summary>
    Fin,
    /// <summary>A reset: data in flight may have been destroyed.</summary>
    Reset,
}

/// <summary>
/// A test's raw TCP client: sends exact bytes and reads responses by HTTP framing. Every read has a
/// deadline (default 5 s), so a test that expects bytes that never come fails instead of hanging.
/// </summary>
public sealed class RawConnection : IAsyncDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(5);
    /// <summary>
    /// Either close kind, for a connection refused before any request was read (a bad PROXY header): no response
    /// is owed, so whether unread request bytes turn the close into an RST does not matter; any byte does.
    /// </summary>
    public static readonly IReadOnlyCollection<CloseKind> ClosedWithoutAnswer = [CloseKind.Fin, CloseKind.Reset];
    private readonly Socket _socket;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start, _end;

    private RawConnection(Socket socket) => _socket = socket;

    public static async Task<RawConnection> ConnectAsync(int port, TimeSpan? timeout = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
        return new RawConnection(socket);
    }

    /// <summary>Connects to a Unix stream socket (a socket-activated ListenStream=/path).</summary>
    public static async Task<RawConnection> ConnectUnixAsync(string path, TimeSpan? timeout = null)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try { await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cts.Token); }
        catch { socket.Dispose(); throw; }
        return new RawConnection(socket);
    }

    /// <summary>Wraps a socket the test connected itself (another family, another address).</summary>
    public static RawConnection FromConnected(Socket socket) => new(socket);

    public Socket Socket => _socket;

    public Task SendAsync(string text) => SendAsync(Encoding.Latin1.GetBytes(text));

    public async Task SendAsync(byte[] bytes)
    {
        using var cts = new CancellationTokenSource(DefaultTimeout);
        await _socket.SendAsync(bytes, SocketFlags.None, cts.Token);
    }

    /// <summary>Sends one byte per send call: the server sees the request in as many pieces as the kernel keeps apart.</summary>
    public async Task SendByteByByteAsync(string text)
    {
        foreach (byte b in Encoding.Latin1.GetBytes(text))
        {
            await SendAsync([b]);
            await Task.Delay(1);
        }
    }

    /// <summary>Reads one response. <paramref name="noBody"/> for responses to HEAD.</summary>
    public async Task<RawResponse> ReadResponseAsync(bool noBody = false, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var ct = cts.Token;
        var response = await ReadHeadAsync(ct) ?? throw new EndOfStreamException("connection closed before a response head");
        int status = response.Status;
        if (status is < 200 or 204 or 304 || noBody) return response;

        if (response.Header("Transfer-Encoding") is { } te && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            var body = new MemoryStream();
            while (true)
            {
                var sizeLine = await ReadUntilAsync("\r\n"u8.ToArray(), ct);
                if (sizeLine is null) return response with { Body = body.ToArray(), Chunked = true, TerminalChunkSeen = false };
                var sizeText = Encoding.ASCII.GetString(sizeLine).Split(';')[0];
                int size = Convert.ToInt32(sizeText, 16);
                if (size == 0)
                {
                    // trailers, then the empty line
                    while (true)
                    {
                        var trailer = await ReadUntilAsync("\r\n"u8.ToArray(), ct) ?? throw new EndOfStreamException("EOF in trailers");
                        if (trailer.Length == 0) break;
                    }
                    return response with { Body = body.ToArray(), Chunked = true, TerminalChunkSeen = true };
                }
                var data = await ReadExactlyAsync(size + 2, ct);
                if (data is null) return response with { Body = body.ToArray(), Chunked = true, TerminalChunkSeen = false };
                body.Write(data, 0, size);
            }
        }
        if (response.Header("Content-Length") is { } cl)
        {
            int length = int.Parse(cl, System.Globalization.CultureInfo.InvariantCulture);
            var data = await ReadExactlyAsync(length, ct) ?? throw new EndOfStreamException($"EOF inside a {length}-byte body");
            return response with { Body = data };
        }
        return response with { Body = await ReadToEndAsync(timeout) };
    }

    private async Task<RawResponse?> ReadHeadAsync(CancellationToken ct)
    {
        var head = await ReadUntilAsync("\r\n\r\n"u8.ToArray(), ct);
        if (head is null) return null;
        var lines = Encoding.Latin1.GetString(head).Split("\r\n");
        var statusLine = lines[0];
        var parts = statusLine.Split(' ', 3);
        if (parts.Length < 2 || !parts[0].StartsWith("HTTP/1.", StringComparison.Ordinal)) throw new InvalidDataException($"bad status line '{statusLine}'");
        int status = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        var headers = new List<KeyValuePair<string, string>>();
        foreach (var line in lines.Skip(1).Where(l => l.Length > 0))
        {
            int colon = line.IndexOf(':');
            headers.Add(new(line[..colon], line[(colon + 1)..].Trim()));
        }
        return new RawResponse(statusLine, status, headers, [], false, false);
    }

    /// <summary>Reads until the server closes. Throws on timeout; returns what came.</summary>
    public async Task<byte[]> ReadToEndAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var all = new MemoryStream();
        all.Write(_buffer, _start, _end - _start);
        _start = _end = 0;
        while (true)
        {
            int n = await _socket.ReceiveAsync(_buffer, SocketFlags.None, cts.Token);
            if (n == 0) return all.ToArray();
            all.Write(_buffer, 0, n);
        }
    }

    /// <summary>
    /// Waits (bounded) for the server to end the connection, with no response bytes before the end, and says
    /// how it ended. FIN and RST are different promises: a FIN after a response means the client got all of
    /// it; an RST may have destroyed part of it. Assert the kind the behaviour demands.
    /// </summary>
    public async Task<CloseKind> WaitForCloseAsync(TimeSpan? timeout = null)
    {
        if (_end > _start) return CloseKind.MoreData;
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            int n = await _socket.ReceiveAsync(_buffer, SocketFlags.None, cts.Token);
            if (n > 0) { _start = 0; _end = n; return CloseKind.MoreData; }
            return CloseKind.Fin;
        }
        catch (OperationCanceledException) { return CloseKind.StillOpen; }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset) { return CloseKind.Reset; }
    }

    /// <summary>Reads and discards until the server ends the connection (bounded), then says whether with a FIN (true) or a reset (false).</summary>
    public async Task<bool> ClosedWithFinAsync(TimeSpan? timeout = null) => await DiscardUntilCloseAsync(timeout) == CloseKind.Fin;

    /// <summary>Reads and discards whatever still comes until the connection ends: Fin or Reset, or StillOpen at the timeout.</summary>
    public async Task<CloseKind> DiscardUntilCloseAsync(TimeSpan? timeout = null)
    {
        _start = _end = 0;
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        try
        {
            while (true)
            {
                int n = await _socket.ReceiveAsync(_buffer, SocketFlags.None, cts.Token);
                if (n == 0) return CloseKind.Fin;
            }
        }
        catch (OperationCanceledException) { return CloseKind.StillOpen; }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset) { return CloseKind.Reset; }
    }

    /// <summary>Reads a response's status line and headers only; the body is then read with <see cref="ReadChunkAsync"/>.</summary>
    public async Task<RawResponse> ReadHeadAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        return await ReadHeadAsync(cts.Token) ?? throw new EndOfStreamException("connection closed before a response head");
    }

    /// <summary>Reads one chunk of a chunked body (bounded): its data, or null for the terminal chunk (trailers consumed).</summary>
    public async Task<byte[]?> ReadChunkAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var ct = cts.Token;
        var sizeLine = await ReadUntilAsync("\r\n"u8.ToArray(), ct) ?? throw new EndOfStreamException("EOF before a chunk size");
        int size = Convert.ToInt32(Encoding.ASCII.GetString(sizeLine).Split(';')[0], 16);
        if (size == 0)
        {
            while ((await ReadUntilAsync("\r\n"u8.ToArray(), ct) ?? throw new EndOfStreamException("EOF in trailers")).Length > 0) { }
            return null;
        }
        var data = await ReadExactlyAsync(size + 2, ct) ?? throw new EndOfStreamException("EOF inside a chunk");
        return data[..size];
    }

    private async Task<byte[]?> ReadUntilAsync(byte[] delimiter, CancellationToken ct)
    {
        while (true)
        {
            int index = _buffer.AsSpan(_start, _end - _start).IndexOf(delimiter);
            if (index >= 0)
            {
                var result = _buffer.AsSpan(_start, index).ToArray();
                _start += index + delimiter.Length;
                return result;
            }
            if (!await FillAsync(ct)) return null;
        }
    }

    private async Task<byte[]?> ReadExactlyAsync(int count, CancellationToken ct)
    {
        var result = new byte[count];
        int copied = 0;
        while (copied < count)
        {
            if (_end == _start && !await FillAsync(ct)) return null;
            int n = Math.Min(count - copied, _end - _start);
            Array.Copy(_buffer, _start, result, copied, n);
            _start += n; copied += n;
        }
        return result;
    }

    private async Task<bool> FillAsync(CancellationToken ct)
    {
        if (_start > 0)
        {
            Array.Copy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start; _start = 0;
        }
        if (_end == _buffer.Length) throw new InvalidDataException("response head too large for the test client");
        int n = await _socket.ReceiveAsync(_buffer.AsMemory(_end), SocketFlags.None, ct);
        if (n == 0) return false;
        _end += n;
        return true;
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>
    /// Reads one response, or tells how the server closed instead: before any byte of a response (by FIN or by
    /// RST), or in the middle of one (<see cref="RawOutcome.Truncated"/>: a reset or EOF after response bytes).
    /// Shutdown tests need the difference: a close before the first byte is the keep-alive race a client retries;
    /// a close after it is a cut response.
    /// </summary>
    public async Task<RawOutcome> ReadResponseOrCloseAsync(TimeSpan? timeout = null)
    {
        using (var cts = new CancellationTokenSource(timeout ?? DefaultTimeout))
        {
            if (_end == _start)
            {
                try
                {
                    if (!await FillAsync(cts.Token)) return new RawOutcome(null, ClosedBeforeResponse: true, Reset: false, Error: null);
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
                {
                    return new RawOutcome(null, ClosedBeforeResponse: true, Reset: true, Error: null);
                }
            }
        }
        // At least one byte of a response is here: from now on, any way of ending early is a truncation.
        try { return new RawOutcome(await ReadResponseAsync(timeout: timeout), false, false, null); }
        catch (Exception ex) when (ex is SocketException or EndOfStreamException or InvalidDataException or FormatException)
        {
            return new RawOutcome(null, ClosedBeforeResponse: false, Reset: ex is SocketException, Error: ex);
        }
    }

    /// <summary>Waits (bounded) until the bytes received so far contain <paramref name="text"/>, without consuming them; false if the connection closed first.</summary>
    public async Task<bool> WaitForReceivedAsync(string text, TimeSpan? timeout = null)
    {
        var wanted = Encoding.Latin1.GetBytes(text);
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        while (_buffer.AsSpan(_start, _end - _start).IndexOf(wanted) < 0)
        {
            if (!await FillAsync(cts.Token)) return false;
        }
        return true;
    }
}

/// <summary>What came back for one request: a whole response, a close before any byte of one (FIN or RST), or a truncated one.</summary>
public sealed record RawOutcome(RawResponse? Response, bool ClosedBeforeResponse, bool Reset, Exception? Error)
{
    public bool Truncated => Response is null && !ClosedBeforeResponse;
}
