using System.Threading.Tasks.Sources;
using Microsoft.Win32.SafeHandles;

namespace PipeServer.Transports;

// Where this sits: an optional capability of a transport connection, beside ITransportControl (the way a
// Kestrel connection offers features that the protocol asks for by type). A transport that can put a file's
// bytes on the socket without copying them through managed memory implements it; the protocol asks with
// `control as ISendFileFeature` (Http1Connection, for HttpResponse.TrySendFileAsync) and, when the answer is
// null, the handler copies the bytes through the output pipe as it would any body. Null is the answer for
// TLS (Tls/TlsConnection is the control then: its bytes must pass through memory to be encrypted), for the
// in-memory pipes of unit tests and for Testing/InMemoryServer.
//
//   Linux/LinuxConnection    sendfile(2) on the event loop; a full socket arms EPOLLOUT, as an ordinary send does
//   Sockets/SocketConnection sendfile(2) from the send loop (Linux); a full socket is waited out with one small
//                            copied send through the socket engine; elsewhere a copy loop through one pooled buffer
//
// The contract: the file's bytes go out after every byte flushed into the output pipe before the call, and the
// caller writes nothing more until the returned task completes. The send-stall rule (SendStallRule) times a
// file send as it times an ordinary one: 4 KiB at a time, the size of a pipe block. Abort() ends a file send
// in progress (the task fails); the transport never touches the file after the task completes, so the caller
// closes it then, whatever the outcome.
//
// What keeps the descriptor open during the send is that contract (the caller awaits before it closes), not
// the reference FileSend takes on the handle. On Linux the static file handler passes a borrowed handle
// (OpenedFile.AsHandle: ownsHandle false) over a raw descriptor that OpenedFile.Dispose closes directly; the
// reference only keeps that SafeHandle object from being marked closed, and a handle that owns its descriptor
// from being closed (and the number reused) by a Dispose that raced the send.

/// <summary>A transport connection that can send a range of a file to the peer without copying it through managed memory.</summary>
internal interface ISendFileFeature
{
    /// <summary>
    /// Sends <paramref name="count"/> bytes of <paramref name="file"/> from <paramref name="offset"/>, after
    /// everything already flushed into the output. Completes when the kernel has taken the last byte. Fails with
    /// an IOException when the file ends first (it shrank), and with an IOException, SocketException or
    /// ObjectDisposedException when the connection failed or was aborted.
    /// </summary>
    ValueTask SendFileAsync(SafeFileHandle file, long offset, long count);
}

/// <summary>
/// One connection's file send in progress (made on the connection's first, reused for the next): the range left
/// and the task the protocol awaits. Offset and Left are touched by one sending thread at a time (the loop, or
/// the send loop). Completion can be raced (a handler's thread whose post to a stopped loop failed, and that
/// loop's last pass closing the connection): exactly one <see cref="Complete"/> wins, the others do nothing.
/// </summary>
internal sealed class FileSend : IValueTaskSource
{
    /// <summary>What the send-stall rule times at once while a file send waits for room: a pipe block's worth.</summary>
    public const long StallUnitBytes = 4096;

    private ManualResetValueTaskSourceCore<bool> _core;
    private SafeFileHandle? _file; // non-null while active; published last by Start, taken once by Complete (Interlocked)

    /// <param name="runContinuationsAsynchronously">False on an event loop (the handler continues inline, run to
    /// completion); true where the completing thread is a send loop that must not run the handler's next writes.</param>
    public FileSend(bool runContinuationsAsynchronously) => _core.RunContinuationsAsynchronously = runContinuationsAsynchronously;

    public long Offset;
    public long Left;

    public bool IsActive => Volatile.Read(ref _file) is not null;

    /// <summary>The file's descriptor while active (open because the caller awaits the send before closing it: see the contract above); -1 once completed.</summary>
    public int FileDescriptor => Volatile.Read(ref _file) is { } file ? (int)file.DangerousGetHandle() : -1;

    public SafeFileHandle File => Volatile.Read(ref _file) ?? throw new ObjectDisposedException(nameof(FileSend));

    public ValueTask Start(SafeFileHandle file, long offset, long count)
    {
        _core.Reset();
        bool added = false;
        // Throws, leaving nothing to undo, on a handle already closed; else released exactly once, by Complete. It
        // guards an owning handle's Dispose only: a borrowed one's descriptor is closed by its owner regardless.
        file.DangerousAddRef(ref added);
        Offset = offset;
        Left = count;
        var task = new ValueTask(this, _core.Version);
        Volatile.Write(ref _file, file); // last: whoever sees the send active (another thread) sees its range too
        return task;
    }

    /// <summary>
    /// Ends the send: success, or the error the awaiting caller sees. Last thing a transport does with it (the
    /// caller may continue inline). False, and nothing done, when it was not active (another completion won).
    /// </summary>
    public bool Complete(Exception? error)
    {
        if (Interlocked.Exchange(ref _file, null) is not { } file) return false;
        file.DangerousRelease();
        if (error is null) _core.SetResult(true);
        else _core.SetException(error);
        return true;
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);
    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
