using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace PipeServer.Transports.Sockets;

// Where this sits: the sockets transport (behind the seam in ../TransportConnection.cs), between the kernel
// socket and the protocol code; SocketTransport.cs makes one per accepted socket. Two loops move bytes:
// receive (socket -> input pipe) and send (output pipe -> socket). Http1Connection only ever sees the two
// pipe ends (IDuplexPipe), so the same protocol code runs over an in-memory pipe in unit tests.
//
// How a connection ends here, and why there are these ways:
//   graceful  the protocol completed its output: everything is sent, then shutdown(SHUT_WR) sends FIN.
//             If the peer had sent bytes we will never read, close() would answer them with RST, and an
//             RST can destroy our last response in the peer's receive queue. So unread input is drained
//             ("lingering close") for a bounded time and size before the socket is closed.
//   idle      TryCloseIdleAsync() (a drain of an idle connection): the send loop checks that nothing has
//             arrived and sends the FIN in one step; afterwards it lingers like a graceful close, so a request
//             that raced the FIN is read away (and counted), not answered with an RST.
//   abort     Abort(): SO_LINGER 0 and close: an RST now. Used at the shutdown deadline and on timeouts
//             where the peer is not reading.
//   peer gone the receive loop sees EOF or a reset; the protocol reads the end of its input.

/// <summary>An accepted socket served through .NET's socket engine, as a <see cref="TransportConnection"/>.</summary>
public sealed class SocketConnection : TransportConnection
{
    private const int MinimumReceiveBuffer = 4096;
    private static readonly TimeSpan LingerTimeout = TimeSpan.FromMilliseconds(500); // Go uses 500 ms for the same purpose
    private const int MaxLingerBytes = 64 * 1024;

    private readonly Socket _socket;
    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly Action _onPeerFailure;
    private volatile bool _aborted;
    private volatile bool _lingerRequested;
    private bool _receiving;   // the receive loop holds bytes taken from the kernel but not yet flushed into the input pipe; cleared under _handoff
    private readonly object _handoff = new(); // the flush into the pipe and the clearing of _receiving are one step under it
    private long _received;    // bytes taken from the kernel so far; written by the receive loop only
    private TaskCompletionSource<bool>? _idleClose; // a pending TryCloseIdleAsync, completed by the send loop
    private long _idleCloseMark;
    private volatile bool _outputShutDown, _sendLoopDone;

    /// <param name="socket">An accepted, connected socket; owned from here on.</param>
    /// <param name="inputOptions">Bounds on bytes read ahead of the protocol (pause/resume thresholds).</param>
    /// <param name="outputOptions">Bounds on bytes written but not yet sent.</param>
    /// <param name="onPeerFailure">Called once when the peer resets or a send fails: the client is gone.</param>
    public SocketConnection(Socket socket, PipeOptions inputOptions, PipeOptions outputOptions, Action onPeerFailure)
    {
        _socket = socket;
        _input = new Pipe(inputOptions);
        _output = new Pipe(outputOptions);
        _onPeerFailure = onPeerFailure;
        RemoteEndPoint = ConfigureAccepted(socket);
    }

    public override PipeReader Input => _input.Reader;
    public override PipeWriter Output => _output.Writer;
    public override IPEndPoint? RemoteEndPoint { get; }

    /// <summary>Runs both loops and closes the socket; completes when the socket is closed.</summary>
    public override async Task RunAsync()
    {
        var receiving = ReceiveLoopAsync();
        var sending = SendLoopAsync();
        await sending.ConfigureAwait(false);

        if (!_aborted)
        {
            if (!_outputShutDown) { try { _socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { } }
            // Nothing queued from the peer means close() sends a plain FIN; otherwise linger (bounded). After an
            // idle close, always linger: a request that raced our FIN is then read away and counted
            // (ReceivedAfterIdleClose) instead of drawing an RST, and the peer, seeing EOF, closes at once.
            bool unread = SafeAvailable() > 0;
            if (!receiving.IsCompleted && (_lingerRequested || unread || _outputShutDown))
                await Task.WhenAny(receiving, Task.Delay(LingerTimeout)).ConfigureAwait(false);
        }
        _socket.Dispose();
        await receiving.ConfigureAwait(false);
    }

    public override void Abort()
    {
        if (_aborted) return;
        _aborted = true;
        try { _socket.LingerState = new LingerOption(true, 0); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _socket.Dispose();
        try { _output.Reader.CancelPendingRead(); } catch (InvalidOperationException) { }
        try { _input.Writer.CancelPendingFlush(); } catch (InvalidOperationException) { }
    }

    public override void RequestLingeringClose() => _lingerRequested = true;

    // Read in this order by HasUndeliveredInput: the kernel's queue, then the receive loop's hands (the caller
    // then looks at the pipe). The loop marks its hands full before taking bytes from the kernel and empty in
    // the same step (under _handoff) as the flush that puts them in the pipe, so a byte that reached the kernel
    // before the first read is seen by one of the three looks, and bytes already in the pipe are never also "in
    // the hands". (Cleared after the flush, the flag stayed set while the protocol, on another thread, read and
    // answered them: it then took its own request for a next one, kept a draining connection alive and waited
    // for a request that was never coming.)
    public override bool HasUndeliveredInput
    {
        get { lock (_handoff) return SafeAvailable() > 0 || _receiving; }
    }

    public override long ReceivedBytes => Volatile.Read(ref _received);

    public override bool ReceivedAfterIdleClose => _outputShutDown && Volatile.Read(ref _received) != _idleCloseMark;

    // The send loop owns the socket's sending side, so it is the one to send the FIN: woken by a cancelled
    // read, it sends what was written before the call, then checks and shuts down in one step (FinUnlessInput).
    public override ValueTask<bool> TryCloseIdleAsync(long receivedMark)
    {
        var idle = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        _idleCloseMark = receivedMark;
        Volatile.Write(ref _idleClose, idle);
        try { _output.Reader.CancelPendingRead(); } catch (InvalidOperationException) { }
        // The send loop may have ended already (the peer went away): the connection is closing regardless.
        if (_sendLoopDone) Interlocked.Exchange(ref _idleClose, null)?.TrySetResult(true);
        return new ValueTask<bool>(idle.Task);
    }

    /// <summary>On the send loop, with everything written so far sent: FIN now unless the peer's bytes arrived since the mark.</summary>
    private bool FinUnlessInput()
    {
        // The same looks as HasUndeliveredInput, plus "taken since the mark" for bytes that went all the way.
        if (HasUndeliveredInput || Volatile.Read(ref _received) != _idleCloseMark) return false;
        try { _socket.Shutdown(SocketShutdown.Send); } catch (SocketException) { } catch (ObjectDisposedException) { }
        _outputShutDown = true;
        return true;
    }

    private int SafeAvailable()
    {
        try { return _socket.Available; } catch (SocketException) { return 0; } catch (ObjectDisposedException) { return 0; }
    }

    private async Task ReceiveLoopAsync()
    {
        var writer = _input.Writer;
        Exception? error = null;
        try
        {
            while (true)
            {
                // Zero-byte receive: wait for data without holding a buffer, so an idle keep-alive connection
                // costs no receive memory (Kestrel's socket transport does the same).
                await _socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None).ConfigureAwait(false);

                var memory = writer.GetMemory(MinimumReceiveBuffer);
                Volatile.Write(ref _receiving, true);
                int received = await _socket.ReceiveAsync(memory, SocketFlags.None).ConfigureAwait(false);
                if (received == 0) break; // FIN: the peer will send no more
                Volatile.Write(ref _received, _received + received); // before _receiving is cleared: see FinUnlessInput

                writer.Advance(received);
                ValueTask<FlushResult> flushing;
                lock (_handoff)
                {
                    flushing = writer.FlushAsync(); // the bytes are in the pipe when it returns; what is left to await is backpressure
                    _receiving = false;
                }
                var flush = await flushing.ConfigureAwait(false); // backpressure: waits past the pause threshold
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    await DiscardUntilEndAsync().ConfigureAwait(false);
                    break;
                }
            }
        }
        catch (Exception ex) when (IsExpectedSocketError(ex))
        {
            if (!_aborted && ex is SocketException { SocketErrorCode: SocketError.ConnectionReset })
            {
                error = new ConnectionResetException("The client reset the connection.", ex);
                _onPeerFailure();
            }
        }
        finally
        {
            Volatile.Write(ref _receiving, false);
            await writer.CompleteAsync(error).ConfigureAwait(false);
        }
    }

    /// <summary>The protocol stopped reading: swallow what the peer still sends, up to a bound, until it closes.</summary>
    private async Task DiscardUntilEndAsync()
    {
        var scratch = new byte[4096];
        int total = 0;
        while (total < MaxLingerBytes)
        {
            int n = await _socket.ReceiveAsync(scratch, SocketFlags.None).ConfigureAwait(false);
            if (n == 0) return;
            total += n;
        }
    }

    private async Task SendLoopAsync()
    {
        var reader = _output.Reader;
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync().ConfigureAwait(false);
                if (result.IsCanceled && _aborted) break; // Abort()
                var buffer = result.Buffer;
                foreach (var segment in buffer)
                {
                    BeginSend(segment.Length); // the heartbeat's send-stall rule times this send (SendStallRule)
                    await _socket.SendAsync(segment, SocketFlags.None).ConfigureAwait(false);
                    EndSend();
                }
                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted) break;
                if (Interlocked.Exchange(ref _idleClose, null) is { } idle) idle.TrySetResult(FinUnlessInput());
            }
        }
        catch (Exception ex) when (IsExpectedSocketError(ex))
        {
            error = ex;
            if (!_aborted) _onPeerFailure();
        }
        finally
        {
            EndSend();
            _sendLoopDone = true;
            Interlocked.Exchange(ref _idleClose, null)?.TrySetResult(true); // nothing more will be sent either way
            // Completing the reader makes the protocol's next FlushAsync report IsCompleted: "stop writing".
            await reader.CompleteAsync(error).ConfigureAwait(false);
            if (error is not null) _input.Writer.CancelPendingFlush();
        }
    }

    /// <summary>Resets, broken pipes and a socket closed under us are a network's normal life, not faults.</summary>
    internal static bool IsExpectedSocketError(Exception ex) =>
        ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException;
}
