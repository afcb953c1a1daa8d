using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using PipeServer.Server;
using PipeServer.Transports;

namespace PipeServer.Tls;

// Where this sits: between a transport connection (Transports/) and Http1Connection, when the server has a
// certificate. HttpServer wraps the TransportConnection it accepted in one of these and gives it to the
// protocol as its IDuplexPipe and ITransportControl, so Http1Connection neither knows nor changes:
//
//   socket <-> transport pipes (ciphertext) <-> TransportStream <-> SslStream <-> these pipes (plaintext) <-> Http1Connection
//
// Three loops, all started by RunAsync:
//   handshake  peek the first byte (plain HTTP gets a plain-text 400, see AnswerPlainHttpAsync), then
//              AuthenticateAsServerAsync, bounded by the request-header timeout: the protocol's header
//              timer runs from accept as on plain HTTP, and when it fires the protocol gives up and
//              completes its output, which cancels the handshake (a backstop timer does the same);
//   input      SslStream -> the plaintext input pipe (after the handshake);
//   output     the plaintext output pipe -> SslStream. Output before the handshake ended means the
//              protocol gave up (timeout, drain): it is dropped, never sent in plain text on a TLS socket.
//
// How a connection ends, as on plain HTTP with one step more:
//   graceful  the protocol completed its output: all of it is encrypted and sent, then close_notify, then
//             the transport's own graceful close (FIN, bounded linger).
//   idle      TryCloseIdleAsync (a drain): on the output loop, checks that nothing arrived since the mark,
//             sends close_notify, then the transport's TryCloseIdleAsync sends the FIN.
//   abort     Abort(): the transport's RST; no close_notify (an abort is not a clean end, and a TLS client
//             must not take what it got for the whole response).
//   before the handshake completed: a clean FIN, nothing else.

/// <summary>One TLS session over a transport connection, seen by the protocol as plaintext pipes and the transport controls.</summary>
internal sealed class TlsConnection : IDuplexPipe, ITransportControl
{
    private const int Handshaking = 0, Established = 1;
    /// <summary>Plaintext taken per SslStream read, and ciphertext records written at most: TLS's largest record.</summary>
    private const int RecordSize = 16 * 1024;

    private readonly TransportConnection _inner;
    private readonly TlsServer _server;
    private readonly long _connectionId;
    private readonly Pipe _input, _output;
    private readonly TransportStream _stream;
    private readonly SslStream _ssl;
    // Cancelled when the handshake must stop early: the protocol gave up, a drain closed the connection, Abort.
    private readonly CancellationTokenSource _giveUp = new();
    private Task<bool> _handshake = Task.FromResult(false);
    private int _phase;               // Handshaking -> Established, once, by the handshake
    private long _rawBase;            // ciphertext the transport took before TLS started (a PROXY header): not TLS's
    private volatile bool _aborted, _closingBeforeHandshake, _outputDone;
    private bool _closeNotifySent;    // output loop only
    private TaskCompletionSource<bool>? _idleClose; // a pending TryCloseIdleAsync, completed by the output loop
    private long _idleMark;

    internal TlsConnection(TransportConnection inner, TlsServer server, long connectionId, PipeOptions inputOptions, PipeOptions outputOptions)
    {
        _inner = inner;
        _server = server;
        _connectionId = connectionId;
        _input = new Pipe(inputOptions);
        _output = new Pipe(outputOptions);
        _stream = new TransportStream(inner.Input, inner.Output);
        _ssl = new SslStream(_stream, leaveInnerStreamOpen: true);
    }

    public PipeReader Input => _input.Reader;
    public PipeWriter Output => _output.Writer;

    /// <summary>The negotiated TLS version once the handshake is done (SslProtocols.None before).</summary>
    public SslProtocols Protocol => Volatile.Read(ref _phase) == Established ? _ssl.SslProtocol : SslProtocols.None;
    /// <summary>The ALPN protocol chosen ("http/1.1"), or empty when the client offered none.</summary>
    public string ApplicationProtocol => Volatile.Read(ref _phase) == Established ? _ssl.NegotiatedApplicationProtocol.ToString() : "";

    /// <summary>
    /// Handshake, then both loops; completes when both sides are closed (never faults on a network error).
    /// Start it when the transport is running and nothing else reads its input (after a PROXY header).
    /// </summary>
    /// <param name="afterProxyHeader">A PROXY header was read off the transport first: its bytes are not TLS's to count.</param>
    public async Task RunAsync(bool afterProxyHeader = false)
    {
        // Without a PROXY header nothing was read before TLS: the count starts at 0, exactly. (Worked out from
        // the transport's count, it would race the ClientHello arriving, and an undercount of it would make
        // every later look see "bytes undelivered": a drain would keep the connection open for a request
        // that never comes. The test of the in-flight request at SIGTERM caught that once in three runs.)
        _rawBase = afterProxyHeader ? BytesAlreadyRead() : 0;
        _handshake = HandshakeAsync();
        var sending = OutputLoopAsync();
        if (await _handshake.ConfigureAwait(false))
        {
            await InputLoopAsync().ConfigureAwait(false);
        }
        else
        {
            // The protocol sees the end of its input: a connection that never got to its first request.
            await _input.Writer.CompleteAsync().ConfigureAwait(false);
            await _inner.Input.CompleteAsync().ConfigureAwait(false);
        }
        await sending.ConfigureAwait(false);
        await _ssl.DisposeAsync().ConfigureAwait(false); // both loops are done with it
    }

    /// <summary>
    /// What the transport took before TLS started and a reader already consumed: the PROXY header. The pipe
    /// is looked at before the count, so bytes arriving between the two looks make the result too large,
    /// never too small: HasUndeliveredInput may then miss them (the benign side), never invent bytes.
    /// </summary>
    private long BytesAlreadyRead()
    {
        long unread = 0;
        if (_inner.Input.TryRead(out var result))
        {
            unread = result.Buffer.Length;
            _inner.Input.AdvanceTo(result.Buffer.Start); // a peek
        }
        return _inner.ReceivedBytes - unread;
    }

    private async Task<bool> HandshakeAsync()
    {
        long started = Stopwatch.GetTimestamp();
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(_giveUp.Token);
        bound.CancelAfter(_server.HandshakeTimeout);
        string failure;
        Exception? error = null;
        try
        {
            int first = await PeekFirstByteAsync(bound.Token).ConfigureAwait(false);
            if (first < 0) failure = "closed";
            else if (first != 0x16) // a TLS record of type 22, handshake, is how every ClientHello starts
            {
                failure = first is >= 'A' and <= 'Z' ? "plain_http" : "not_tls";
                if (failure == "plain_http") await AnswerPlainHttpAsync().ConfigureAwait(false);
            }
            else
            {
                await _ssl.AuthenticateAsServerAsync(_server.Certificates.ServerOptions, bound.Token).ConfigureAwait(false);
                Volatile.Write(ref _phase, Established);
                _server.HandshakeSucceeded(_ssl.SslProtocol, started);
                return true;
            }
        }
        catch (OperationCanceledException ex)
        {
            failure = _aborted ? "aborted" : _closingBeforeHandshake ? "server_closing" : "timeout";
            error = ex;
        }
        catch (AuthenticationException ex) { failure = "handshake"; error = ex; }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            failure = "closed";
            error = ex;
        }
        _server.HandshakeFailed(_connectionId, failure, error, started);
        return false;
    }

    /// <summary>The first byte the client sent, without consuming it; -1 when it closed first.</summary>
    private async Task<int> PeekFirstByteAsync(CancellationToken cancellationToken)
    {
        var input = _inner.Input;
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (!result.Buffer.IsEmpty)
            {
                int first = result.Buffer.FirstSpan[0];
                input.AdvanceTo(result.Buffer.Start); // consumed nothing, examined nothing: SslStream reads it next
                return first;
            }
            input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted) return -1;
            if (result.IsCanceled) throw new OperationCanceledException();
        }
    }

    /// <summary>
    /// A plain-HTTP request on the TLS port gets a 400 in plain text, then a close, as nginx and Go do.
    /// Why answer rather than just close: the client is not speaking TLS, so plain text is the only thing it
    /// can read, and "use https://" tells the person at the other end what is wrong where an empty reply
    /// does not. It costs one peeked byte per connection, sends nothing secret, and no TLS session exists
    /// that the bytes could be mixed into. The request is read away (lingering close) so that the kernel
    /// does not reset the connection over the unread bytes before the client reads the answer.
    /// </summary>
    private async Task AnswerPlainHttpAsync()
    {
        _inner.RequestLingeringClose();
        await _inner.Output.WriteAsync(PlainHttpAnswer).ConfigureAwait(false);
    }

    private static readonly byte[] PlainHttpAnswer =
        HttpServer.PreformattedResponse(400, "This port speaks HTTPS: the plain HTTP request was sent to an HTTPS port; use https://\n");

    private async Task InputLoopAsync()
    {
        var writer = _input.Writer;
        Exception? error = null;
        try
        {
            while (true)
            {
                // Zero-byte read first: wait for a record without holding a buffer, so an idle keep-alive
                // connection costs no plaintext block (as the transports do with the socket).
                await _ssl.ReadAsync(Memory<byte>.Empty).ConfigureAwait(false);
                var memory = writer.GetMemory(1);
                int n = await _ssl.ReadAsync(memory).ConfigureAwait(false);
                if (n == 0) break; // close_notify, or the transport's EOF
                writer.Advance(n);
                var flushing = writer.FlushAsync(); // the bytes are in the pipe from here (the flush only waits for room)
                _stream.Holding = false;
                var flush = await flushing.ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled) break; // the protocol stopped reading, or Abort
            }
        }
        catch (Exception ex) when (IsNetworkError(ex))
        {
            // A reset reaches the protocol as one, as it does without TLS; other ends are just the end.
            if (!_aborted && FindReset(ex) is { } reset) error = reset;
        }
        finally
        {
            _stream.Holding = false;
            await writer.CompleteAsync(error).ConfigureAwait(false);
            // Nobody reads the ciphertext any more: the transport discards what still comes, bounded, as it
            // does when a plaintext protocol stops reading.
            await _inner.Input.CompleteAsync().ConfigureAwait(false);
        }
    }

    private async Task OutputLoopAsync()
    {
        var reader = _output.Reader;
        bool graceful = false;
        byte[]? scratch = null;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync().ConfigureAwait(false);
                if (_aborted) break;
                if (Volatile.Read(ref _phase) != Established)
                {
                    // Output before the handshake ended: the protocol gave up (header timeout, drain). Stop the
                    // handshake; what was written (a 408) is dropped: never plaintext on a TLS socket.
                    CancelHandshake();
                    if (!await _handshake.ConfigureAwait(false)) { reader.AdvanceTo(result.Buffer.End); break; }
                }
                var buffer = result.Buffer;
                if (buffer.IsSingleSegment) { if (!buffer.IsEmpty) await _ssl.WriteAsync(buffer.First).ConfigureAwait(false); }
                else
                {
                    // Many small blocks: gathered into records of up to 16 KiB, so a 64 KiB response is four
                    // records and four transport writes instead of sixteen.
                    scratch ??= ArrayPool<byte>.Shared.Rent(RecordSize);
                    var rest = buffer;
                    while (!rest.IsEmpty)
                    {
                        int n = (int)Math.Min(rest.Length, scratch.Length);
                        rest.Slice(0, n).CopyTo(scratch);
                        await _ssl.WriteAsync(scratch.AsMemory(0, n)).ConfigureAwait(false);
                        rest = rest.Slice(n);
                    }
                }
                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted) { graceful = true; break; }
                if (Interlocked.Exchange(ref _idleClose, null) is { } idle) idle.TrySetResult(await CloseIdleAsync().ConfigureAwait(false));
            }
        }
        catch (Exception ex) when (IsNetworkError(ex)) { }
        finally
        {
            if (scratch is not null) ArrayPool<byte>.Shared.Return(scratch);
            if (graceful && !_aborted) await SendCloseNotifyAsync().ConfigureAwait(false);
            _outputDone = true;
            Interlocked.Exchange(ref _idleClose, null)?.TrySetResult(true); // nothing more will be sent either way
            await reader.CompleteAsync().ConfigureAwait(false);
            await _inner.Output.CompleteAsync().ConfigureAwait(false); // the transport sends what is queued, then its FIN
            // The protocol is done: end the read the input loop has pending on the transport, so the
            // transport's input completes and it lingers or discards as it would without TLS.
            try { _inner.Input.CancelPendingRead(); } catch (InvalidOperationException) { }
        }
    }

    /// <summary>On the output loop, everything written so far sent: close_notify (and the FIN) unless the peer sent more since the mark.</summary>
    private async Task<bool> CloseIdleAsync()
    {
        if (_inner.ReceivedBytes != _idleMark || HasUndeliveredInput) return false;
        await SendCloseNotifyAsync().ConfigureAwait(false);
        // False from the transport: a request reached it between the look above and the close_notify. The
        // session is closed by then, so it cannot be answered: the pipelining race of RFC 9112 §9.3.2 (the
        // client retries), the same one a plaintext drain has between its look and its FIN.
        await _inner.TryCloseIdleAsync(_idleMark).ConfigureAwait(false);
        return true;
    }

    private async Task SendCloseNotifyAsync()
    {
        if (_closeNotifySent) return;
        _closeNotifySent = true;
        try { await _ssl.ShutdownAsync().ConfigureAwait(false); }
        catch (Exception ex) when (IsNetworkError(ex) || ex is InvalidOperationException) { } // the peer is gone: no one to notify
    }

    private void CancelHandshake()
    {
        try { _giveUp.Cancel(); } catch (ObjectDisposedException) { } catch (AggregateException) { }
    }

    // ---- ITransportControl: the protocol's controls, answered for the TLS session on top of the transport's ----

    public void Abort()
    {
        _aborted = true;
        CancelHandshake();
        _inner.Abort();
        try { _output.Reader.CancelPendingRead(); } catch (InvalidOperationException) { }
        try { _input.Writer.CancelPendingFlush(); } catch (InvalidOperationException) { }
    }

    public void RequestLingeringClose() => _inner.RequestLingeringClose();

    /// <summary>
    /// Ciphertext that has not come out as plaintext yet: in the transport (kernel queue, its receive loop),
    /// in its input pipe (taken by it, not yet by SslStream), or inside SslStream (a record in progress).
    /// While the handshake runs, any byte from the client counts: it is on its way to a request, so a drain
    /// lets it arrive (bounded by the header timeout) as it lets a half-sent plaintext request arrive.
    /// Two looks this cannot make, both brief and both on the benign side (a request racing a drain, which the
    /// client retries, RFC 9112 §9.3.2): a whole second record SslStream decrypted ahead and keeps buffered,
    /// between the first one's plaintext reaching the pipe and the input loop's next read; and a record split
    /// across TCP segments, while its rest is still on the network. Erring the other way would be worse: a
    /// record that yields no plaintext (a KeyUpdate) would hold a drain open until the shutdown deadline.
    /// </summary>
    public bool HasUndeliveredInput
    {
        get
        {
            if (_inner.HasUndeliveredInput) return true;
            long raw = _inner.ReceivedBytes - _rawBase;
            if (Volatile.Read(ref _phase) != Established) return raw > 0 && !_outputDone;
            return raw > _stream.Taken || _stream.Holding;
        }
    }

    /// <summary>The transport's count (ciphertext): the mark TryCloseIdleAsync compares against.</summary>
    public long ReceivedBytes => _inner.ReceivedBytes;

    public ValueTask<bool> TryCloseIdleAsync(long receivedMark)
    {
        if (Volatile.Read(ref _phase) != Established)
        {
            // Mid-handshake with nothing received (a silent client): closed cleanly, before any TLS byte.
            if (HasUndeliveredInput) return new ValueTask<bool>(false);
            _closingBeforeHandshake = true;
            CancelHandshake();
            return new ValueTask<bool>(true);
        }
        var idle = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _idleMark = receivedMark;
        Volatile.Write(ref _idleClose, idle);
        try { _output.Reader.CancelPendingRead(); } catch (InvalidOperationException) { }
        if (_outputDone) Interlocked.Exchange(ref _idleClose, null)?.TrySetResult(true); // the output loop ended already
        return new ValueTask<bool>(idle.Task);
    }

    private static bool IsNetworkError(Exception ex) =>
        ex is IOException or AuthenticationException or ObjectDisposedException or OperationCanceledException or System.Net.Sockets.SocketException;

    private static ConnectionResetException? FindReset(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
            if (ex is ConnectionResetException reset) return reset;
        return null;
    }
}
