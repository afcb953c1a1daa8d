using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using PipeServer.Transports.Linux;

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
//
// Sending, on Linux: what the output pipe holds in several blocks goes out in one sendmsg (an iovec of up to
// 64 blocks, MSG_DONTWAIT) rather than one send per 4 KiB block. When the kernel takes less (its buffer is
// full), the rest of that one block is sent through the socket engine's SendAsync, which waits for room:
// that wait is the send the stall rule times, a block at a time as before. Files (ISendFileFeature) go the
// same way: sendfile(2) from the send loop while the socket takes them, one small copied send through the
// engine to wait for room. Elsewhere, each block is one SendAsync and a file is a copy loop.

/// <summary>An accepted socket served through .NET's socket engine, as a <see cref="TransportConnection"/>.</summary>
internal sealed class SocketConnection : TransportConnection, ISendFileFeature
{
    private const int MinimumReceiveBuffer = 4096;
    private static readonly TimeSpan LingerTimeout = TimeSpan.FromMilliseconds(500); // Go uses 500 ms for the same purpose
    private const int MaxLingerBytes = 64 * 1024;
    private const long MaxFileSendBytes = 1024 * 1024; // per sendfile call
    private const int FileCopyBytes = 16 * 1024;       // the copy loop's buffer where sendfile is not used
    private const int FileNone = 0, FileQueued = 1, FileSending = 2;
    private static readonly bool s_linux = OperatingSystem.IsLinux();
    [ThreadStatic] private static LinuxNative.IoVecScratch? t_ioVecs; // used within one synchronous sendmsg only

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
    private FileSend? _file;   // made on the first file send, reused
    private int _fileState;    // FileNone, FileQueued (by SendFileAsync), FileSending (taken by the send loop)

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

    /// <summary>Sends a file range after what was flushed, from the send loop; see <see cref="ISendFileFeature"/>.</summary>
    ValueTask ISendFileFeature.SendFileAsync(SafeFileHandle file, long offset, long count)
    {
        if (count <= 0) return ValueTask.CompletedTask;
        // Continuations on the thread pool: the send loop completes this, and must not run the handler's next writes itself.
        var send = _file ??= new FileSend(runContinuationsAsynchronously: true);
        if (Volatile.Read(ref _fileState) != FileNone) throw new InvalidOperationException("A file send is already in progress on this connection.");
        var task = send.Start(file, offset, count);
        Volatile.Write(ref _fileState, FileQueued);
        try { _output.Reader.CancelPendingRead(); } catch (InvalidOperationException) { } // wake the send loop
        // The send loop may have ended already (the peer went away); exactly one side takes a queued send.
        if (_sendLoopDone && Interlocked.CompareExchange(ref _fileState, FileNone, FileQueued) == FileQueued)
            send.Complete(new IOException("The connection is closed."));
        return task;
    }

    // Read in this order by HasUndeliveredInput: the kernel's queue, then the receive loop's hands (the caller
    // then looks at the pipe). The loop marks its hands full before taking bytes from the kernel (and only when
    // the kernel has something for it: see ReceiveLoopAsync) and empty in the same step (under _handoff) as the
    // flush that puts them in the pipe, so a byte that reached the kernel before the first read is seen by one
    // of the three looks, the mark never stands for bytes that are not there, and bytes already in the pipe are
    // never also "in the hands". (Cleared after the flush, the flag stayed set while the protocol, on another
    // thread, read and answered them: it then took its own request for a next one, kept a draining connection
    // alive and waited for a request that was never coming.)
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

    /// <summary>A receive now would not wait: bytes, the FIN or an error are there (poll(2), no wait). Throws ObjectDisposedException once aborted.</summary>
    private bool ReadableNow()
    {
        try { return _socket.Poll(0, SelectMode.SelectRead); }
        catch (SocketException) { return true; } // the receive reports the error
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
                // The socket engine completes a waiting zero-byte receive on any read event it handles, without
                // looking (on Unix its contract is "an event came", not "bytes are here"), and an event can be
                // stale: for bytes the previous receive already took. Marked as receiving then, the connection
                // would report bytes on their way (HasUndeliveredInput) for as long as the real receive waits,
                // and a drain would keep it open for a request nobody sent. So the mark is set only when a
                // receive cannot wait (bytes, the FIN or an error are there); otherwise the wait starts again.
                if (!ReadableNow()) continue;

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
                if (s_linux && !buffer.IsSingleSegment) await SendGatheredAsync(buffer).ConfigureAwait(false);
                else
                {
                    foreach (var segment in buffer)
                    {
                        BeginSend(segment.Length); // the heartbeat's send-stall rule times this send (SendStallRule)
                        await _socket.SendAsync(segment, SocketFlags.None).ConfigureAwait(false);
                        EndSend();
                    }
                }
                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted) break;
                if (Interlocked.CompareExchange(ref _fileState, FileSending, FileQueued) == FileQueued && !await SendQueuedFileAsync(reader).ConfigureAwait(false)) break;
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
            if (Interlocked.CompareExchange(ref _fileState, FileNone, FileQueued) == FileQueued) _file!.Complete(new IOException("The connection is closed."));
            Interlocked.Exchange(ref _idleClose, null)?.TrySetResult(true); // nothing more will be sent either way
            // Completing the reader makes the protocol's next FlushAsync report IsCompleted: "stop writing".
            await reader.CompleteAsync(error).ConfigureAwait(false);
            if (error is not null) _input.Writer.CancelPendingFlush();
        }
    }

    /// <summary>
    /// Linux, several blocks: one sendmsg (MSG_DONTWAIT) for as many as it takes; when the kernel's buffer is
    /// full, the rest of the block it stopped in goes through SendAsync, which waits for room (and is the
    /// send the stall rule times, as a single block's send is), then the gathering resumes.
    /// </summary>
    private async ValueTask SendGatheredAsync(ReadOnlySequence<byte> buffer)
    {
        while (!buffer.IsEmpty)
        {
            nint sent = SendSegmentsNow(buffer, out long offered);
            if (sent < 0)
            {
                int errno = LinuxNative.Errno;
                if (errno is not (LinuxNative.EAGAIN or LinuxNative.EINTR)) throw SendError(errno);
                sent = 0;
            }
            buffer = buffer.Slice(sent);
            if (sent == offered || buffer.IsEmpty) continue; // more blocks than one sendmsg takes, or all sent
            var rest = buffer.First;
            BeginSend(rest.Length);
            await _socket.SendAsync(rest, SocketFlags.None).ConfigureAwait(false);
            EndSend();
            buffer = buffer.Slice(rest.Length);
        }
    }

    private nint SendSegmentsNow(in ReadOnlySequence<byte> buffer, out long offered)
    {
        var handle = _socket.SafeHandle;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added); // Abort may close the socket meanwhile: the number is not reused under us
            return LinuxNative.SendSegments((int)handle.DangerousGetHandle(), buffer, t_ioVecs ??= new LinuxNative.IoVecScratch(), out offered);
        }
        finally { if (added) handle.DangerousRelease(); }
    }

    private static SocketException SendError(int errno) =>
        new((int)(errno == LinuxNative.EPIPE ? SocketError.Shutdown : errno == LinuxNative.ECONNRESET ? SocketError.ConnectionReset : SocketError.SocketError));

    /// <summary>
    /// On the send loop, a file send taken from SendFileAsync: first whatever was flushed before it (the
    /// response head), then the range. A socket error ends the loop as any send error does; a file error
    /// (it shrank, it cannot be read) is the handler's, and the connection goes on to be reset by it.
    /// </summary>
    /// <returns>False when the connection was aborted meanwhile: the send loop ends.</returns>
    private async ValueTask<bool> SendQueuedFileAsync(PipeReader reader)
    {
        var send = _file!;
        try
        {
            // The protocol flushed before it asked: one look at the pipe sees those bytes.
            if (reader.TryRead(out var before))
            {
                if (before.IsCanceled && _aborted)
                {
                    reader.AdvanceTo(before.Buffer.Start);
                    Volatile.Write(ref _fileState, FileNone);
                    send.Complete(new IOException("The connection was reset during a file send."));
                    return false;
                }
                var head = before.Buffer;
                if (s_linux && !head.IsSingleSegment) await SendGatheredAsync(head).ConfigureAwait(false);
                else foreach (var segment in head) { BeginSend(segment.Length); await _socket.SendAsync(segment, SocketFlags.None).ConfigureAwait(false); EndSend(); }
                reader.AdvanceTo(head.End);
            }
            var fileError = await SendFileRangeAsync(send).ConfigureAwait(false);
            Volatile.Write(ref _fileState, FileNone);
            send.Complete(fileError);
            return true;
        }
        catch (Exception ex)
        {
            Volatile.Write(ref _fileState, FileNone);
            send.Complete(ex);
            throw;
        }
    }

    /// <summary>The range itself; returns the file's error, if any (the socket's are thrown).</summary>
    private async ValueTask<Exception?> SendFileRangeAsync(FileSend send)
    {
        byte[]? copy = null;
        try
        {
            bool zeroCopy = s_linux && SocketIsNonBlocking();
            while (send.Left > 0)
            {
                if (zeroCopy)
                {
                    long want = Math.Min(send.Left, MaxFileSendBytes);
                    nint sent = SendFileNow(send, want);
                    if (sent == 0) return new IOException("The file became shorter while it was being sent.");
                    if (sent < 0)
                    {
                        int errno = LinuxNative.Errno;
                        if (errno == LinuxNative.EINTR) continue;
                        if (errno is LinuxNative.EPIPE or LinuxNative.ECONNRESET) throw SendError(errno);
                        if (errno != LinuxNative.EAGAIN) return new IOException($"sendfile failed: errno {errno}");
                        sent = 0;
                    }
                    send.Offset += sent;
                    send.Left -= sent;
                    if (sent == want || send.Left == 0) continue;
                }
                // The socket is full (or no sendfile here): one buffer of the file through SendAsync, which waits for
                // room; the stall rule times it. With sendfile this is a small step between two zero-copy runs.
                copy ??= ArrayPool<byte>.Shared.Rent(zeroCopy ? (int)FileSend.StallUnitBytes : FileCopyBytes);
                int length = (int)Math.Min(zeroCopy ? FileSend.StallUnitBytes : copy.Length, send.Left);
                int read = zeroCopy
                    ? RandomAccess.Read(send.File, copy.AsSpan(0, length), send.Offset) // just sent from the page cache: no wait
                    : await RandomAccess.ReadAsync(send.File, copy.AsMemory(0, length), send.Offset).ConfigureAwait(false);
                if (read == 0) return new IOException("The file became shorter while it was being sent.");
                BeginSend(read);
                await _socket.SendAsync(copy.AsMemory(0, read), SocketFlags.None).ConfigureAwait(false);
                EndSend();
                send.Offset += read;
                send.Left -= read;
            }
            return null;
        }
        catch (IOException ex) when (ex is not ConnectionResetException && ex.InnerException is not SocketException) { return ex; } // the file's read
        finally
        {
            if (copy is not null) ArrayPool<byte>.Shared.Return(copy);
        }
    }

    private nint SendFileNow(FileSend send, long count)
    {
        var handle = _socket.SafeHandle;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            long offset = send.Offset;
            return LinuxNative.SendFile((int)handle.DangerousGetHandle(), send.FileDescriptor, ref offset, count);
        }
        finally { if (added) handle.DangerousRelease(); }
    }

    /// <summary>The socket engine makes the fd non-blocking at its first async operation; sendfile on a blocking one would hold this thread.</summary>
    private bool SocketIsNonBlocking()
    {
        var handle = _socket.SafeHandle;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return LinuxNative.IsNonBlocking((int)handle.DangerousGetHandle());
        }
        catch (ObjectDisposedException) { return false; }
        finally { if (added) handle.DangerousRelease(); }
    }

    /// <summary>Resets, broken pipes and a socket closed under us are a network's normal life, not faults.</summary>
    internal static bool IsExpectedSocketError(Exception ex) =>
        ex is SocketException or ObjectDisposedException or OperationCanceledException or IOException;
}
