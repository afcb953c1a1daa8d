using System.Collections.Concurrent;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging;

namespace PipeServer.Transports.Linux;

// Where this sits: one thread of the Linux transport, owning one epoll set and every connection in it.
// LinuxTransport makes one per usable CPU and hands it accepted sockets round-robin.
//
// One pass of the loop:
//   1. epoll_wait: sleep until a socket is ready, the eventfd is written (work posted from another thread),
//      or the nearest lingering-close deadline; 0 ms when work is already queued.
//   2. dispatch each ready socket to its connection: one recv into the input pipe, whose flush runs the
//      protocol inline (this loop is the pipe's scheduler), or a send that was waiting for EPOLLOUT.
//   3. run what other threads posted (a handler that awaited and flushed, an Abort, a new connection).
//   4. expire lingering closes past their deadline.
//   5. send: every connection that has flushed output since the last pass gets one send/sendmsg.
// Step 5 coming last is the batching: whatever the protocol wrote for all the ready sockets goes out in
// one syscall per connection, and a pipelined batch's responses share it.
//
// As a PipeScheduler (every pipe of every connection on this loop uses it, reader and writer side):
// Schedule runs the continuation inline when called on this loop's thread, and otherwise queues it and
// wakes the loop. So a request whose handler completes synchronously runs recv → parse → handler →
// send on this thread without one hand-off, and a handler that awaited (Task.Delay, I/O) continues on
// whatever thread resumed it; its flush lands here as a posted item.
//
// Threads: everything below marked "loop only" is touched by the loop thread alone. TryPost, Wake and
// Schedule are safe from any thread.
//
// Stopping: the loop's last pass closes the post gate (TryPost says no from then on), runs every item posted
// before that, and resets every connection it owns; then the thread ends and the fds are closed. A caller
// whose post is refused does the work itself, knowing no loop will: a connection handed over too late
// (RunAsync after the last pass) is reset on the caller's thread, a pipe continuation runs inline.

/// <summary>One event-loop thread: an epoll set, an eventfd for wake-ups, and the connections it owns.</summary>
internal sealed partial class EventLoop : PipeScheduler
{
    private const int MaxEvents = 256;
    private const ulong WakeToken = ulong.MaxValue; // epoll data of the eventfd; connections use (generation << 32 | slot)

    private readonly int _epoll;
    private readonly int _eventFd;
    private readonly Thread _thread;
    private readonly ILogger _logger;
    private readonly ConcurrentQueue<(Action<object?> Action, object? State)> _posted = new();
    private int _signalled;          // 1 once someone wrote the eventfd since the loop last reset it (any thread)
    private readonly Lock _postGate = new(); // guards _refusing, and the eventfd write against the fd's close
    private bool _refusing;          // guarded by _postGate: the loop has taken its last posts
    private volatile bool _stopping;
    private int _threadId;           // the loop thread's managed id; written once before the loop starts taking work

    // Loop only.
    private LinuxConnection?[] _slots = new LinuxConnection?[64];
    private uint[] _generations = new uint[64];
    private readonly Stack<int> _freeSlots = new();
    private int _nextSlot;
    private List<LinuxConnection> _sendQueue = new(), _sendQueueSpare = new();
    private readonly List<LinuxConnection> _lingering = new();
    private readonly ConcurrentDictionary<PipeOptions, PipeOptions> _optionsCache = new(ReferenceEqualityComparer.Instance);

    /// <summary>A receive buffer for discarding input nobody will read (lingering close). Loop only.</summary>
    internal readonly byte[] DiscardBuffer = new byte[4096];
    /// <summary>iovec scratch for gathered sends. Loop only.</summary>
    internal readonly LinuxNative.IoVecScratch IoVecs = new();

    public EventLoop(int index, ILogger logger)
    {
        _logger = logger;
        _epoll = LinuxNative.epoll_create1(LinuxNative.EPOLL_CLOEXEC);
        if (_epoll < 0) throw new IOException($"epoll_create1 failed: errno {LinuxNative.Errno}");
        _eventFd = LinuxNative.eventfd(0, LinuxNative.EFD_CLOEXEC | LinuxNative.EFD_NONBLOCK);
        if (_eventFd < 0) { LinuxNative.close(_epoll); throw new IOException($"eventfd failed: errno {LinuxNative.Errno}"); }
        if (LinuxNative.EpollCtl(_epoll, LinuxNative.EPOLL_CTL_ADD, _eventFd, LinuxNative.EPOLLIN, WakeToken) < 0)
            throw new IOException($"epoll_ctl(eventfd) failed: errno {LinuxNative.Errno}");
        Index = index;
        _thread = new Thread(Run) { IsBackground = true, Name = $"PipeServer loop {index}" };
    }

    public int Index { get; }
    public bool IsOnLoop => Environment.CurrentManagedThreadId == _threadId;
    public int EpollFd => _epoll;

    public void Start()
    {
        _threadId = -1;
        _thread.Start();
        // Schedule's "am I on the loop?" needs the id before any connection is handed over.
        SpinWait.SpinUntil(() => Volatile.Read(ref _threadId) > 0);
    }

    /// <summary>Stops the loop: every connection still on it is aborted, then the thread ends (bounded wait).</summary>
    public void Stop(TimeSpan timeout)
    {
        _stopping = true;
        // Called from a continuation running inline on this loop (the last connection's task completed here,
        // and whoever awaited it went on to dispose the transport): the loop ends after this callback returns;
        // joining itself would only wait out the timeout.
        if (IsOnLoop) return;
        Wake();
        if (!_thread.Join(timeout)) LogStopTimedOut(_logger, Index);
    }

    public override void Schedule(Action<object?> action, object? state)
    {
        // A pipe continuation after the loop stopped (its connections are all closed, their pipes completed):
        // nobody else will run it, so it runs here, as PipeScheduler.Inline would.
        if (IsOnLoop || !TryPost(action, state)) action(state);
    }

    /// <summary>
    /// Queues work for the loop and wakes it; never runs inline, even on the loop thread. False once the loop
    /// has stopped taking work (its last pass has begun): the item was not queued and never will run there.
    /// </summary>
    public bool TryPost(Action<object?> action, object? state)
    {
        // The gate makes "queued" and "the last pass will run it" one fact: the loop closes it before its final
        // drain. It also keeps the eventfd open under the write. Uncontended except while stopping.
        lock (_postGate)
        {
            if (_refusing) return false;
            _posted.Enqueue((action, state));
            if (!IsOnLoop) Wake();
        }
        return true;
    }

    private void Wake()
    {
        // One eventfd write per wake-up, however many items are posted before the loop resets the flag.
        if (Interlocked.CompareExchange(ref _signalled, 1, 0) == 0) LinuxNative.SignalEventFd(_eventFd);
    }

    /// <summary>The connection's pipes use this loop as both schedulers; everything else comes from the server's options.</summary>
    public PipeOptions Adapt(PipeOptions source) => _optionsCache.GetOrAdd(source, static (o, loop) => new PipeOptions(
        o.Pool, readerScheduler: loop, writerScheduler: loop, pauseWriterThreshold: o.PauseWriterThreshold,
        resumeWriterThreshold: o.ResumeWriterThreshold, minimumSegmentSize: o.MinimumSegmentSize, useSynchronizationContext: false), this);

    /// <summary>Loop only: a slot and epoll registration for the connection. False if epoll refused the fd.</summary>
    internal bool Register(LinuxConnection connection, int fd, uint events, out ulong token)
    {
        int slot;
        if (_freeSlots.Count > 0) slot = _freeSlots.Pop();
        else
        {
            if (_nextSlot == _slots.Length)
            {
                Array.Resize(ref _slots, _slots.Length * 2);
                Array.Resize(ref _generations, _generations.Length * 2);
            }
            slot = _nextSlot++;
        }
        _slots[slot] = connection;
        token = (ulong)_generations[slot] << 32 | (uint)slot;
        if (LinuxNative.EpollCtl(_epoll, LinuxNative.EPOLL_CTL_ADD, fd, events, token) == 0) return true;
        Unregister(token);
        return false;
    }

    /// <summary>Loop only: frees the slot; an event already fetched for it in this pass is then ignored (generation).</summary>
    internal void Unregister(ulong token)
    {
        int slot = (int)(uint)token;
        _slots[slot] = null;
        _generations[slot]++;
        _freeSlots.Push(slot);
    }

    /// <summary>Loop only: send this connection's flushed output at the end of the pass.</summary>
    internal void QueueSend(LinuxConnection connection) => _sendQueue.Add(connection);

    /// <summary>Loop only: watch a lingering close's deadline.</summary>
    internal void AddLingering(LinuxConnection connection) => _lingering.Add(connection);

    private void Run()
    {
        Volatile.Write(ref _threadId, Environment.CurrentManagedThreadId);
        var events = new byte[MaxEvents * LinuxNative.EpollEventSize];
        while (true)
        {
            int timeout = !_posted.IsEmpty || _sendQueue.Count > 0 || _stopping ? 0 : NextTimeout();
            int ready = LinuxNative.EpollWait(_epoll, events, timeout);
            if (ready < 0)
            {
                int errno = LinuxNative.Errno;
                if (errno == LinuxNative.EINTR) continue;
                LogEpollFailed(_logger, Index, errno);
                break;
            }
            for (int i = 0; i < ready; i++)
            {
                var (mask, data) = LinuxNative.EpollEventAt(events, i);
                if (data == WakeToken) { LinuxNative.DrainEventFd(_eventFd); continue; }
                int slot = (int)(uint)data;
                var connection = slot < _nextSlot && _generations[slot] == (uint)(data >> 32) ? _slots[slot] : null;
                if (connection is null) continue; // closed earlier in this pass
                Guard(static (c, m) => c.OnEvents(m), connection, mask);
            }
            Volatile.Write(ref _signalled, 0); // before draining: a post after this point writes the eventfd again
            RunPosted();
            ExpireLingering();
            SendQueued();
            if (_stopping) break;
        }
        AbortAll();
        LinuxNative.close(_eventFd);
        LinuxNative.close(_epoll);
    }

    private void RunPosted()
    {
        // Bounded: items posted while draining (by the items themselves) wait for the next pass, so a
        // connection that keeps re-posting cannot starve epoll.
        int count = _posted.Count;
        while (count-- > 0 && _posted.TryDequeue(out var item))
        {
            try { item.Action(item.State); }
            catch (Exception ex) { LogCallbackFailed(_logger, Index, ex); }
        }
    }

    private void SendQueued()
    {
        // Sending can resume a handler inline (its flush was waiting for room), which may flush again and
        // queue the connection anew: take a few rounds, then leave the rest for the next pass.
        for (int round = 0; round < 4 && _sendQueue.Count > 0; round++)
        {
            (_sendQueue, _sendQueueSpare) = (_sendQueueSpare, _sendQueue);
            foreach (var connection in _sendQueueSpare) Guard(static (c, _) => c.OnSendQueued(), connection, 0);
            _sendQueueSpare.Clear();
        }
    }

    private int NextTimeout()
    {
        if (_lingering.Count == 0) return -1;
        long now = Environment.TickCount64, nearest = long.MaxValue;
        foreach (var c in _lingering) nearest = Math.Min(nearest, c.LingerDeadline);
        return (int)Math.Clamp(nearest - now, 0, int.MaxValue);
    }

    private void ExpireLingering()
    {
        if (_lingering.Count == 0) return;
        long now = Environment.TickCount64;
        for (int i = _lingering.Count - 1; i >= 0; i--)
        {
            var c = _lingering[i];
            if (c.IsClosed) { _lingering.RemoveAt(i); continue; }
            if (now >= c.LingerDeadline) { _lingering.RemoveAt(i); Guard(static (c, _) => c.OnLingerExpired(), c, 0); }
        }
    }

    /// <summary>The last pass: no more posts; run what was posted (hand-overs register, aborts close); reset every connection still here.</summary>
    private void AbortAll()
    {
        lock (_postGate) _refusing = true;
        while (_posted.TryDequeue(out var item))
        {
            try { item.Action(item.State); }
            catch (Exception ex) { LogCallbackFailed(_logger, Index, ex); }
        }
        for (int i = 0; i < _nextSlot; i++)
            if (_slots[i] is { } c) Guard(static (c, _) => c.CloseFromLoop(abortive: true, inputError: null), c, 0);
    }

    /// <summary>A callback that throws is a bug in the transport or a handler run inline: that connection is reset, the loop goes on.</summary>
    private void Guard(Action<LinuxConnection, uint> action, LinuxConnection connection, uint arg)
    {
        try { action(connection, arg); }
        catch (Exception ex)
        {
            LogCallbackFailed(_logger, Index, ex);
            try { connection.CloseFromLoop(abortive: true, inputError: null); } catch (Exception inner) { LogCallbackFailed(_logger, Index, inner); }
        }
    }

    [LoggerMessage(EventId = 300, Level = LogLevel.Error, Message = "Event loop {Loop}: a callback failed")]
    private static partial void LogCallbackFailed(ILogger logger, int loop, Exception exception);

    [LoggerMessage(EventId = 301, Level = LogLevel.Critical, Message = "Event loop {Loop}: epoll_wait failed with errno {Errno}; the loop stopped")]
    private static partial void LogEpollFailed(ILogger logger, int loop, int errno);

    [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "Event loop {Loop} did not stop in time")]
    private static partial void LogStopTimedOut(ILogger logger, int loop);
}
