using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace PipeServer.Transports.Linux;

// Where this sits: the Linux twin of Transports/Sockets/SocketConnection.cs (both behind the seam in
// ../TransportConnection.cs), between the kernel socket and the protocol. Same members, same three endings (graceful FIN with a bounded linger, abort with RST, peer
// gone), same backpressure; the difference is who moves the bytes: SocketConnection runs two async loops
// on the thread pool, this one is driven by its EventLoop's epoll readiness and never blocks.
//
// Readiness is level-triggered. With edge-triggering every readable event must be read until EAGAIN
// (an extra recv per request just to learn "nothing more"); level-triggered lets the loop do exactly one
// recv per readiness and come back next pass if more is queued. The price is an epoll_ctl when interest
// changes: reading pauses (input over its threshold), or a send hits EAGAIN (EPOLLOUT armed until the
// socket drains). Both are the unusual case.
//
// Input (loop -> protocol): on EPOLLIN, GetMemory from the input pipe (the block is rented only now, so an
// idle connection holds no buffer), one recv into it, Advance, FlushAsync. The flush runs the protocol
// inline (the loop is the pipe's reader scheduler). A flush that does not complete means the protocol is
// past the pause threshold: EPOLLIN is dropped until the reader catches up (its AdvanceTo resumes us).
//
// Output (protocol -> loop): the loop keeps one ReadAsync pending on the output pipe. The protocol's flush
// completes it, which (via the scheduler) queues this connection for the end-of-pass send: inline if the
// flush happened on the loop, posted with an eventfd wake-up if a handler flushed from another thread.
// One send (one segment) or sendmsg (several) per pass; whatever the kernel did not take stays in the
// pipe (so the handler's flush waits past the output threshold) and EPOLLOUT is armed.
//
// Files (ISendFileFeature): the protocol flushes the response head, then asks for a file range. The loop sends
// what the pipe holds first (with MSG_MORE, so head and file share a segment), then sendfile(2)s the range,
// at most MaxFileSendBytes per call and a few calls per pass, so one download cannot hold the loop; a partial
// send means the socket is full, and EPOLLOUT is armed as for an ordinary send. sendfile has no MSG_DONTWAIT,
// so the fd is put into non-blocking mode (one fcntl, the first time the connection sends a file). sendfile
// also reads the file inside the syscall, whatever the file's O_NONBLOCK says: before each call, one-byte
// preadv2 RWF_NOWAIT reads ask whether both ends of the window are in the page cache, and if not, the window is
// read on the thread pool (StartFileWarmUp) and the send goes on when it is back, so a cold file does not
// stall the loop's other connections. (A page evicted alone in the middle of a window is not seen: rare.)
//
// State: fields marked "loop only" are touched by the loop thread alone; Abort, RequestLingeringClose,
// the pending send (TransportConnection), the byte counters and RunAsync are safe from any thread.

/// <summary>An accepted socket served by a Linux event loop, as an <see cref="IDuplexPipe"/> with the transport controls.</summary>
internal sealed class LinuxConnection : TransportConnection, ISendFileFeature
{
    private const int MinimumReceiveBuffer = 4096;
    private const long LingerTimeoutMs = 500; // as SocketConnection (Go uses 500 ms for the same purpose)
    private const int MaxLingerBytes = 64 * 1024;
    private const long MaxFileSendBytes = 1024 * 1024; // per sendfile call
    private const int FileSendsPerPass = 4;            // then the other connections' turn

    private static readonly Action<object?> s_register = static s => ((LinuxConnection)s!).RegisterOnLoop();
    private static readonly Action<object?> s_abort = static s => ((LinuxConnection)s!).CloseFromLoop(abortive: true, inputError: null);
    private static readonly Action<object?> s_startFile = static s => ((LinuxConnection)s!).StartFileOnLoop();

    private enum InputState : byte
    {
        Reading,     // EPOLLIN armed; each readiness is one recv into the input pipe
        Paused,      // the protocol is past the input pipe's pause threshold: not reading the socket
        Discarding,  // nobody will read the input again (or lingering close): read and drop, bounded
        Done,        // EOF, reset, or the discard bound reached: the input pipe's writer is completed
    }

    private readonly Socket _socket;          // owned; disposed exactly once, by CloseFromLoop on the loop
    private readonly SafeHandle _handle;      // the socket's handle, for syscalls from other threads (ref-counted)
    private readonly int _fd;
    private readonly EventLoop _loop;
    private readonly Pipe _input;
    private readonly Pipe _output;
    private readonly Action _onPeerFailure;
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action _onOutputReady;   // continuation of the pending output read (runs on the loop)
    private Action? _onInputResumed;          // continuation of a paused input flush (runs on the loop); made the first time input pauses (loop only)

    // Any thread.
    private volatile bool _aborted;
    private volatile bool _lingerRequested;
    private volatile bool _isClosed;
    private volatile bool _receiving;         // the loop holds bytes taken from the kernel but not yet flushed into the input pipe
    private long _received;                   // bytes taken from the kernel so far; written by the loop only
    private int _started, _peerFailed;
    private int _closing;                     // 1 once CloseFromLoop began (a refused hand-over closes off the loop, once)

    // Loop only.
    private bool _registered;
    private ulong _token;
    private uint _interest;
    private InputState _inputState;
    private int _discarded;
    private ValueTask<FlushResult> _pausedFlush;
    private ValueTask<ReadResult> _pendingRead;
    private bool _readPending, _sendQueued, _writeBlocked, _lingering, _finSent;
    private TaskCompletionSource<bool>? _idleClose; // a TryCloseIdleAsync waiting for the output to be sent
    private long _idleCloseMark;
    private long _stallBytesLeft;             // bytes of the blocked segment still to send before its pending send ends
    private FileSend? _file;                  // made on the first file send, reused; active from SendFileAsync until it completes
    private bool _fileQueued;                 // a file send is active and waits for the pipe's bytes to go first (loop only)
    private bool _nonBlocking;                // the fd is O_NONBLOCK (set before the first sendfile)
    private bool _fileWarming;                // the file's next window is being read into the page cache on the thread pool (loop only)
    private long _warmOffset, _warmCount;     // that window (loop only; read by the warm-up once, after it was queued)
    private static readonly Action<object?> s_fileWarmed = static s => ((LinuxConnection)s!).OnFileWarmed();
    private static readonly WaitCallback s_warmFile = static s => ((LinuxConnection)s!).WarmFileWindow();
    private static long s_fileWarmUps;

    /// <summary>For tests: how many file windows were read into the page cache off the loop before their sendfile.</summary>
    internal static long FileWarmUps => Interlocked.Read(ref s_fileWarmUps);

    internal LinuxConnection(Socket socket, EventLoop loop, PipeOptions inputOptions, PipeOptions outputOptions, Action onPeerFailure)
    {
        _socket = socket;
        _loop = loop;
        // The fd is ours from here on: nothing may start an async operation on this Socket, or the runtime
        // would register the same fd in its own epoll set and race us for the bytes. Sync calls (options,
        // endpoints) are fine. The fd stays in blocking mode, as accept4 made it: every recv and send passes
        // MSG_DONTWAIT, and nothing else the loop calls can block (shutdown, ioctl, getsockopt; close, since
        // SO_LINGER is either off or 0). Socket.Blocking = false would cost two fcntl per accept and make the
        // runtime create its SocketAsyncContext (a few hundred bytes per connection, never used here).
        _handle = socket.SafeHandle;
        // A closed handle still gives its old number, which the next accept(2) may already have been given:
        // registered here, it would put another connection's fd in this loop under this object (which would
        // read that connection's bytes and shut it down). Refuse it as the sockets transport would.
        ObjectDisposedException.ThrowIf(_handle.IsClosed || _handle.IsInvalid, socket);
        _fd = (int)_handle.DangerousGetHandle();
        _input = new Pipe(loop.Adapt(inputOptions));
        _output = new Pipe(loop.Adapt(outputOptions));
        _onPeerFailure = onPeerFailure;
        _onOutputReady = OnOutputReady;
        RemoteEndPoint = ConfigureAccepted(socket); // TCP_NODELAY on TCP only, and the peer's address (none on a Unix socket)
    }

    public override PipeReader Input => _input.Reader;
    public override PipeWriter Output => _output.Writer;
    public override IPEndPoint? RemoteEndPoint { get; }

    /// <summary>Which loop serves this connection (0-based).</summary>
    public int LoopIndex => _loop.Index;

    /// <summary>Hands the socket to its loop; completes when the socket is closed (never faults).</summary>
    public override Task RunAsync()
    {
        // Refused: the loop has stopped (the transport is being disposed) and will never see this socket, so
        // it is reset here; nothing on the loop knows it, so closing from this thread races nothing there.
        if (Interlocked.Exchange(ref _started, 1) == 0 && !_loop.TryPost(s_register, this)) CloseFromLoop(abortive: true, inputError: null);
        return _closed.Task;
    }

    /// <summary>Close now with an RST (SO_LINGER 0); the protocol's pending read ends and its flush reports completion.</summary>
    public override void Abort()
    {
        if (_aborted) return;
        _aborted = true;
        try { _output.Reader.CancelPendingRead(); } catch (InvalidOperationException) { }
        try { _input.Writer.CancelPendingFlush(); } catch (InvalidOperationException) { }
        // The close itself happens on the loop, which is the only thread that uses the fd (so it is never
        // closed, and its number reused, under a syscall in flight). Refused once the loop has stopped: its last
        // pass resets every connection it registered, and one never handed over is reset by RunAsync.
        _loop.TryPost(s_abort, this);
    }

    public override void RequestLingeringClose() => _lingerRequested = true;

    /// <summary>Sends a file range after what was flushed (sendfile(2) on the loop); see <see cref="ISendFileFeature"/>.</summary>
    ValueTask ISendFileFeature.SendFileAsync(Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset, long count)
    {
        if (count <= 0) return ValueTask.CompletedTask;
        var send = _file ??= new FileSend(runContinuationsAsynchronously: false); // the handler continues on the loop, inline
        if (send.IsActive) throw new InvalidOperationException("A file send is already in progress on this connection.");
        var task = send.Start(file, offset, count);
        if (_loop.IsOnLoop) StartFileOnLoop();
        // The loop stopped: it is being reset. Its last pass may be closing this connection and completing the
        // send at the same moment; FileSend.Complete lets exactly one of the two finish it.
        else if (!_loop.TryPost(s_startFile, this)) send.Complete(new IOException("The connection is closed."));
        return task;
    }

    /// <summary>Bytes the kernel has received from the peer that are not yet in the input pipe (FIONREAD); 0 once closed.</summary>
    public int UnreadKernelBytes
    {
        get
        {
            if (_isClosed) return 0;
            bool added = false;
            try
            {
                _handle.DangerousAddRef(ref added); // the fd cannot be closed (and its number reused) while we ask
                return LinuxNative.BytesReadable(_fd);
            }
            catch (ObjectDisposedException) { return 0; }
            finally { if (added) _handle.DangerousRelease(); }
        }
    }

    /// <summary>True when the peer has sent bytes the protocol has not been given yet: queued in the kernel, or in the loop's hands.</summary>
    // Asked on the loop itself (the protocol running inline inside the loop's flush), the bytes the loop holds
    // are already committed to the pipe the caller reads: only the kernel's queue counts then. Asked from another
    // thread (a protocol that resumed off the loop after an awaiting handler, the shutdown), the mark can still
    // stand for bytes the flush has already made readable and the caller has already answered: the loop clears
    // it only after the flush returns. A stale "still coming" kept a draining connection open for a request
    // nobody sent (the sockets transport had the same window: SocketConnection). So the off-loop look waits for
    // the loop to finish that step: recv is non-blocking and no reader runs inline for an asker that is not
    // waiting in ReadAsync, so it is a few instructions away; bounded anyway, and then counted as coming.
    public override bool HasUndeliveredInput
    {
        get
        {
            if (UnreadKernelBytes > 0) return true;
            if (!_receiving || _loop.IsOnLoop) return false;
            return !SpinWait.SpinUntil(() => !_receiving, millisecondsTimeout: 100);
        }
    }

    /// <summary>How many bytes have been taken from the peer so far.</summary>
    public override long ReceivedBytes => Volatile.Read(ref _received);

    /// <summary>Bytes read and dropped because nobody would read them (lingering close), for tests of its bound.</summary>
    internal int DiscardedBytes => Volatile.Read(ref _discarded);

    /// <summary>
    /// Closes an idle connection's sending side (FIN) unless the peer has sent more: once every byte flushed
    /// so far is sent, and in the same step on the loop as the FIN, checks that nothing was taken since
    /// <paramref name="receivedMark"/> (a <see cref="ReceivedBytes"/> read before the caller last looked at its
    /// input) and nothing waits in the kernel. False: bytes came, nothing was shut down; the caller serves them.
    /// </summary>
    public override ValueTask<bool> TryCloseIdleAsync(long receivedMark)
    {
        var idle = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        bool queued = _loop.TryPost(static s =>
        {
            var (connection, idle, mark) = ((LinuxConnection, TaskCompletionSource<bool>, long))s!;
            connection.BeginIdleClose(idle, mark);
        }, (this, idle, receivedMark));
        if (!queued) return new ValueTask<bool>(true); // the loop has stopped: the connection is being reset regardless
        return new ValueTask<bool>(idle.Task);
    }

    /// <summary>After the connection ended: the peer sent bytes after an idle close's FIN (a request that raced the close, unanswered).</summary>
    // Loop-only fields, read once RunAsync's task has completed (which orders them before this read).
    // Bytes read away while lingering count too: after an idle FIN nobody reads the input, so they are discarded.
    public override bool ReceivedAfterIdleClose => _finSent && (Volatile.Read(ref _received) != _idleCloseMark || Volatile.Read(ref _discarded) > 0);

    internal bool IsClosed => _isClosed;
    internal long LingerDeadline { get; private set; }

    // ---- on the loop ----------------------------------------------------------------------------------

    private void RegisterOnLoop()
    {
        if (_isClosed) return; // aborted before it got here
        _interest = LinuxNative.EPOLLIN;
        if (!_loop.Register(this, _fd, _interest, out _token))
        {
            CloseFromLoop(abortive: true, inputError: null);
            return;
        }
        _registered = true;
        PumpOutput(); // leaves the first output read pending
    }

    private void BeginIdleClose(TaskCompletionSource<bool> idle, long mark)
    {
        if (_isClosed || _finSent || !_registered) { idle.TrySetResult(true); return; } // closing regardless
        _idleClose?.TrySetResult(false);
        _idleClose = idle;
        _idleCloseMark = mark;
        TryFinishIdleClose();
    }

    /// <summary>With a TryCloseIdleAsync pending and every flushed byte sent: FIN now, unless input arrived since the mark.</summary>
    private void TryFinishIdleClose()
    {
        if (_idleClose is not { } idle) return;
        // Output still to send (a completed read not yet pumped, or a send waiting for EPOLLOUT): PumpOutput calls again.
        if (!_readPending || _pendingRead.IsCompleted || _writeBlocked || _file is { IsActive: true }) return;
        _idleClose = null;
        if (LinuxNative.BytesReadable(_fd) > 0 || Volatile.Read(ref _received) != _idleCloseMark)
        {
            idle.TrySetResult(false);
            return;
        }
        LinuxNative.shutdown(_fd, LinuxNative.SHUT_WR);
        _finSent = true;
        idle.TrySetResult(true);
    }

    internal void OnEvents(uint events)
    {
        if (_isClosed) return;
        const uint Trouble = LinuxNative.EPOLLERR | LinuxNative.EPOLLHUP;
        if (_writeBlocked && (events & (LinuxNative.EPOLLOUT | Trouble)) != 0)
        {
            _writeBlocked = false;
            UpdateInterest();
            PumpOutput(); // a send error surfaces here
            if (_isClosed) return;
        }
        if ((_interest & LinuxNative.EPOLLIN) != 0 && (events & (LinuxNative.EPOLLIN | Trouble)) != 0)
        {
            if (_inputState == InputState.Discarding) Discard();
            else Receive();
        }
        else if ((events & Trouble) != 0)
        {
            // Neither reading nor waiting to send, yet the socket reports an error or hang-up (epoll always
            // reports those, level-triggered: it would repeat every pass). The peer is gone.
            int error = LinuxNative.PendingError(_fd);
            PeerFailed();
            CloseFromLoop(abortive: false, inputError: error == LinuxNative.ECONNRESET ? Reset(error) : null);
        }
    }

    private void Receive()
    {
        var writer = _input.Writer;
        var memory = writer.GetMemory(MinimumReceiveBuffer);
        _receiving = true;
        nint n = LinuxNative.Recv(_fd, memory.Span);
        if (n > 0)
        {
            Volatile.Write(ref _received, _received + n); // before _receiving is cleared
            writer.Advance((int)n);
            var flush = writer.FlushAsync(); // the protocol runs here, inline, and may close us
            _receiving = false;
            if (_isClosed) return;
            if (flush.IsCompleted) AfterInputFlush(flush.GetAwaiter().GetResult());
            else
            {
                _inputState = InputState.Paused; // backpressure: stop reading the socket until the reader catches up
                UpdateInterest();
                _pausedFlush = flush;
                flush.GetAwaiter().UnsafeOnCompleted(_onInputResumed ??= OnInputResumed); // rare: most connections never pause
            }
            return;
        }
        _receiving = false;
        if (n == 0) { EndInput(null); return; } // FIN: the peer will send no more
        int errno = LinuxNative.Errno;
        if (errno is LinuxNative.EAGAIN or LinuxNative.EINTR)
        {
            // A spurious wake-up: end the write so the pipe can free the block once the reader consumes all.
            _ = writer.FlushAsync();
            return;
        }
        if (errno == LinuxNative.ECONNRESET && !_aborted)
        {
            PeerFailed();
            EndInput(Reset(errno));
        }
        else EndInput(null);
    }

    private void OnInputResumed()
    {
        if (_isClosed || _inputState != InputState.Paused) return;
        var flush = _pausedFlush;
        _pausedFlush = default;
        AfterInputFlush(flush.GetAwaiter().GetResult());
    }

    private void AfterInputFlush(FlushResult result)
    {
        if (result.IsCompleted || result.IsCanceled) StartDiscard(); // the protocol stopped reading, or Abort()
        else if (_inputState == InputState.Paused) { _inputState = InputState.Reading; UpdateInterest(); }
    }

    /// <summary>The protocol stopped reading: swallow what the peer still sends, up to a bound, until it closes.</summary>
    private void StartDiscard()
    {
        if (_inputState is InputState.Discarding or InputState.Done) return;
        _inputState = InputState.Discarding;
        UpdateInterest();
    }

    private void Discard()
    {
        nint n = LinuxNative.Recv(_fd, _loop.DiscardBuffer);
        if (n > 0)
        {
            Volatile.Write(ref _discarded, _discarded + (int)n);
            if (_discarded >= MaxLingerBytes) EndInput(null);
            return;
        }
        if (n == 0) { EndInput(null); return; }
        int errno = LinuxNative.Errno;
        if (errno is LinuxNative.EAGAIN or LinuxNative.EINTR) return;
        if (errno == LinuxNative.ECONNRESET && !_aborted)
        {
            PeerFailed();
            EndInput(Reset(errno));
        }
        else EndInput(null);
    }

    /// <summary>No more input will be taken: the protocol reads the end (or the reset); a lingering close is over.</summary>
    private void EndInput(Exception? error)
    {
        _inputState = InputState.Done;
        UpdateInterest();
        _input.Writer.Complete(error); // may run the protocol inline
        if (_lingering && !_isClosed) CloseFromLoop(abortive: false, inputError: null);
    }

    /// <summary>The pending output read completed (a flush, completion or cancel): send at the end of this pass.</summary>
    private void OnOutputReady()
    {
        if (_sendQueued || _isClosed) return;
        _sendQueued = true;
        _loop.QueueSend(this);
    }

    internal void OnSendQueued()
    {
        _sendQueued = false;
        if (_isClosed || _writeBlocked) return;
        PumpOutput();
    }

    /// <summary>Sends what the protocol has flushed, until the pipe is empty (then a read is left pending) or the socket is full (then EPOLLOUT).</summary>
    private void PumpOutput()
    {
        var reader = _output.Reader;
        while (!_isClosed)
        {
            ValueTask<ReadResult> read;
            if (_readPending)
            {
                if (!_pendingRead.IsCompleted)
                {
                    // Its continuation is armed already: everything flushed is sent; a file may go next.
                    if (_fileQueued) PumpFile();
                    else TryFinishIdleClose();
                    return;
                }
                read = _pendingRead; _pendingRead = default; _readPending = false;
            }
            else read = reader.ReadAsync();
            if (!read.IsCompleted)
            {
                _pendingRead = read;
                _readPending = true;
                read.GetAwaiter().UnsafeOnCompleted(_onOutputReady);
                if (_fileQueued) PumpFile(); // everything flushed before the file is sent: the file's turn
                else TryFinishIdleClose();   // everything flushed is sent
                return;
            }
            var result = read.GetAwaiter().GetResult();
            if (result.IsCanceled && _aborted) { reader.AdvanceTo(result.Buffer.Start); CloseFromLoop(abortive: true, inputError: null); return; }
            var buffer = result.Buffer;
            if (!buffer.IsEmpty)
            {
                long offered;
                nint sent;
                // A file waiting behind these bytes (a response head): MSG_MORE, so they leave in one segment with its first bytes.
                if (buffer.IsSingleSegment) { offered = buffer.Length; sent = LinuxNative.Send(_fd, buffer.FirstSpan, more: _fileQueued); }
                else { sent = LinuxNative.SendSegments(_fd, buffer, _loop.IoVecs, out offered, more: _fileQueued); }
                if (sent < 0)
                {
                    int errno = LinuxNative.Errno;
                    if (errno is not (LinuxNative.EAGAIN or LinuxNative.EINTR))
                    {
                        reader.AdvanceTo(buffer.Start);
                        FailSend(errno);
                        return;
                    }
                    sent = 0;
                }
                bool blocked = sent < offered; // the kernel's send buffer is full
                NoteSendProgress(sent, blocked, blocked ? buffer.Slice(sent).First.Length : 0);
                if (sent < buffer.Length)
                {
                    reader.AdvanceTo(buffer.GetPosition(sent)); // the rest stays in the pipe: the handler's flush feels it
                    if (!blocked) continue;                       // more segments than one sendmsg takes: go on
                    _writeBlocked = true;
                    UpdateInterest();
                    return;
                }
            }
            reader.AdvanceTo(buffer.End); // may resume a handler waiting in its flush, inline
            if (result.IsCompleted) { OnOutputDone(); return; }
        }
    }

    /// <summary>
    /// What the send-stall rule (SendStallRule, applied by the heartbeat) times: a send is pending from the
    /// moment a segment cannot go out whole (the kernel's buffer is full) until that segment has gone out.
    /// A send that completes at once never was pending, as SocketConnection's SendAsync is not for the rule.
    /// </summary>
    /// <remarks>For a file, the "segment" is the next <see cref="FileSend.StallUnitBytes"/> of it.</remarks>
    private void NoteSendProgress(long sent, bool blocked, long nextSegment)
    {
        if (_stallBytesLeft > 0)
        {
            _stallBytesLeft -= sent;
            if (_stallBytesLeft <= 0) EndSend();
        }
        if (blocked && _stallBytesLeft <= 0)
        {
            _stallBytesLeft = nextSegment;
            BeginSend(nextSegment);
        }
    }

    /// <summary>A file send reached the loop: it goes after the bytes flushed before it, at the end of this pass.</summary>
    private void StartFileOnLoop()
    {
        if (_file is not { IsActive: true } send) return;
        if (_isClosed || !_registered) { send.Complete(new IOException("The connection is closed.")); return; }
        if (!_nonBlocking)
        {
            // sendfile has no MSG_DONTWAIT: without O_NONBLOCK a full socket would block the whole loop.
            if (LinuxNative.SetNonBlocking(_fd) < 0) { send.Complete(new IOException($"fcntl(O_NONBLOCK) failed: errno {LinuxNative.Errno}")); return; }
            _nonBlocking = true;
        }
        _fileQueued = true;
        if (!_sendQueued && !_writeBlocked) { _sendQueued = true; _loop.QueueSend(this); } // PumpOutput sends the pipe's bytes, then PumpFile
    }

    /// <summary>
    /// Loop only, with every byte flushed before the file already sent: sendfile until the range is sent, the
    /// socket is full (EPOLLOUT), or this pass's share is used (queued for the next pass).
    /// </summary>
    private void PumpFile()
    {
        var send = _file!;
        if (_fileWarming) return; // OnFileWarmed queues the next pass
        for (int calls = 0; send.Left > 0; calls++)
        {
            int fileFd = send.FileDescriptor;
            if (fileFd < 0) { _fileQueued = false; return; } // completed meanwhile (the connection closed): nothing left to send
            if (calls == FileSendsPerPass)
            {
                if (!_sendQueued) { _sendQueued = true; _loop.QueueSend(this); }
                return;
            }
            long want = Math.Min(send.Left, MaxFileSendBytes);
            long offset = send.Offset;
            // sendfile reads the file inside the syscall, ignoring O_NONBLOCK on it: a window not in the page
            // cache would hold this loop, and every connection on it, for a disk read. Both ends of the window
            // are asked (a page in the middle evicted alone is possible, and rare); if either is missing, the
            // window is read on the thread pool and this send continues when it is cached.
            if (!LinuxNative.IsCached(fileFd, offset) || !LinuxNative.IsCached(fileFd, offset + want - 1))
            {
                StartFileWarmUp(offset, want);
                return;
            }
            nint sent = LinuxNative.SendFile(_fd, fileFd, ref offset, want);
            if (sent == 0) { FinishFile(new IOException("The file became shorter while it was being sent.")); return; }
            if (sent < 0)
            {
                int errno = LinuxNative.Errno;
                if (errno == LinuxNative.EINTR) continue;
                if (errno is LinuxNative.EPIPE or LinuxNative.ECONNRESET)
                {
                    FailSend(errno); // the peer is gone: closing fails the file send too, after PeerFailed
                    return;
                }
                if (errno != LinuxNative.EAGAIN)
                {
                    // The file's side (EIO, EINVAL for a file sendfile cannot read): the handler's error; it resets the connection.
                    FinishFile(new IOException($"sendfile failed: errno {errno}"));
                    return;
                }
                sent = 0;
            }
            send.Offset += sent;
            send.Left -= sent;
            bool blocked = sent < want; // the socket's buffer is full
            NoteSendProgress(sent, blocked, Math.Min(send.Left, FileSend.StallUnitBytes));
            if (blocked && send.Left > 0)
            {
                _writeBlocked = true;
                UpdateInterest();
                return;
            }
        }
        FinishFile(null);
    }

    /// <summary>Loop only: reads the window into the page cache on the thread pool; no send of this file until it is back.</summary>
    private void StartFileWarmUp(long offset, long count)
    {
        _fileWarming = true;
        _warmOffset = offset;
        _warmCount = count;
        Interlocked.Increment(ref s_fileWarmUps);
        ThreadPool.UnsafeQueueUserWorkItem(s_warmFile, this);
    }

    /// <summary>
    /// On the thread pool: reads the window (and drops the bytes: only the page cache is wanted), then hands the
    /// send back to the loop. The send is still active while this runs, so its caller has not closed the file,
    /// unless the connection closed meanwhile (which completes the send): a read of a descriptor closed or
    /// reused under it then fails or reads bytes nobody uses, and pread moves no file offset.
    /// </summary>
    private void WarmFileWindow()
    {
        int fd = _file?.FileDescriptor ?? -1;
        if (fd >= 0)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
            try
            {
                long offset = Volatile.Read(ref _warmOffset), end = offset + Volatile.Read(ref _warmCount);
                while (offset < end)
                {
                    nint n = LinuxNative.Pread(fd, buffer.AsSpan(0, (int)Math.Min(buffer.Length, end - offset)), offset);
                    if (n <= 0) break; // the end of the file, or an error: sendfile meets it again and reports it
                    offset += n;
                }
            }
            finally { ArrayPool<byte>.Shared.Return(buffer); }
        }
        if (!_loop.TryPost(s_fileWarmed, this)) return; // the loop stopped: its last pass resets this connection and fails the send
    }

    /// <summary>Loop only: the window is cached; the send goes on at the end of this pass.</summary>
    private void OnFileWarmed()
    {
        _fileWarming = false;
        if (_isClosed || _file is not { IsActive: true }) return;
        if (!_sendQueued && !_writeBlocked) { _sendQueued = true; _loop.QueueSend(this); }
    }

    /// <summary>
    /// The file send is over: the awaiting handler continues, inline, so nothing here touches the send afterwards.
    /// A completion that lost (SendFileAsync's thread already failed it: the loop had stopped) does nothing.
    /// </summary>
    private void FinishFile(Exception? error)
    {
        _fileQueued = false;
        _file!.Complete(error);
    }

    /// <summary>Everything the protocol wrote is sent: FIN, then close now or after a bounded linger.</summary>
    private void OnOutputDone()
    {
        if (_aborted) { CloseFromLoop(abortive: true, inputError: null); return; }
        if (!_finSent) LinuxNative.shutdown(_fd, LinuxNative.SHUT_WR);
        // Nothing queued from the peer means close() sends a plain FIN; otherwise linger (bounded), because
        // close() with unread input answers with RST, which can destroy our last response in the peer's queue.
        // After an idle close, always linger (as SocketConnection does): a request that raced our FIN is then
        // read away and counted (ReceivedAfterIdleClose) instead of drawing an RST, and the peer, seeing EOF, closes at once.
        bool unread = LinuxNative.BytesReadable(_fd) > 0;
        if (_inputState != InputState.Done && (_lingerRequested || unread || _finSent))
        {
            _lingering = true;
            LingerDeadline = Environment.TickCount64 + LingerTimeoutMs;
            StartDiscard();
            _loop.AddLingering(this);
        }
        else CloseFromLoop(abortive: false, inputError: null);
    }

    internal void OnLingerExpired()
    {
        if (!_isClosed) CloseFromLoop(abortive: false, inputError: null);
    }

    private void FailSend(int errno)
    {
        PeerFailed();
        var error = new SocketException(errno == LinuxNative.EPIPE ? (int)SocketError.Shutdown : (int)SocketError.ConnectionReset);
        CloseFromLoop(abortive: false, inputError: errno == LinuxNative.ECONNRESET ? Reset(errno) : null, outputError: error);
    }

    /// <summary>Closes the socket (RST if abortive) and completes both pipes; RunAsync's task completes. Idempotent.</summary>
    internal void CloseFromLoop(bool abortive, Exception? inputError, Exception? outputError = null)
    {
        if (_isClosed || Interlocked.Exchange(ref _closing, 1) != 0) return;
        _isClosed = true;
        if (_registered)
        {
            LinuxNative.EpollCtl(_loop.EpollFd, LinuxNative.EPOLL_CTL_DEL, _fd, 0, 0);
            _loop.Unregister(_token);
            _registered = false;
        }
        if (abortive) LinuxNative.SetLingerZero(_fd);
        EndSend();
        _socket.Dispose(); // close(): RST when abortive, else FIN (if not sent already)
        // Completing the output reader makes the protocol's next flush report IsCompleted ("stop writing"),
        // or throw the send error; completing the input writer ends its pending read. Either may run it inline.
        _output.Reader.Complete(outputError);
        if (_inputState != InputState.Done)
        {
            _inputState = InputState.Done;
            _input.Writer.Complete(inputError);
        }
        _idleClose?.TrySetResult(true); // nothing more will be sent either way
        _idleClose = null;
        if (_file is { IsActive: true }) FinishFile(new IOException(abortive ? "The connection was reset during a file send." : "The connection closed during a file send."));
        _closed.TrySetResult();
    }

    private void UpdateInterest()
    {
        if (!_registered) return;
        uint wanted = (_inputState is InputState.Reading or InputState.Discarding ? LinuxNative.EPOLLIN : 0)
                    | (_writeBlocked ? LinuxNative.EPOLLOUT : 0);
        if (wanted == _interest) return;
        _interest = wanted;
        LinuxNative.EpollCtl(_loop.EpollFd, LinuxNative.EPOLL_CTL_MOD, _fd, wanted, _token);
    }

    private void PeerFailed()
    {
        if (_aborted || Interlocked.Exchange(ref _peerFailed, 1) != 0) return;
        _onPeerFailure();
    }

    private static ConnectionResetException Reset(int errno) =>
        new("The client reset the connection.", new SocketException(errno == LinuxNative.ECONNRESET ? (int)SocketError.ConnectionReset : errno));
}
