using Microsoft.Extensions.Logging;

namespace PipeServer.Server;

// Where this sits: beside the accept loop. Each connection the loop refuses (over the connection cap, or
// out of file descriptors) is counted here; the first one of an episode is logged at once, and then the
// heartbeat reports the count at most once per interval. A flood of refusals therefore costs a few lines,
// not one per accept: the server before this wrote 414 lines in 7 s while out of descriptors, which is
// itself a disk and CPU cost at the worst moment.

/// <summary>Counts refused connections and logs them once per interval.</summary>
internal sealed partial class ConnectionRefusals(ILogger logger, TimeSpan interval)
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(5);

    // Written by the accept loop, taken by the heartbeat: Interlocked.
    private long _overCap, _outOfDescriptors;
    private int _capAnnounced, _descriptorsAnnounced;   // 1 from an episode's first refusal until a quiet interval
    private long _lastReport = long.MinValue;           // heartbeat thread only

    /// <summary>Accept loop: a connection was answered 503 because <paramref name="cap"/> connections are open.</summary>
    public void OverCap(int cap)
    {
        Interlocked.Increment(ref _overCap);
        if (Interlocked.Exchange(ref _capAnnounced, 1) == 0) LogCapReached(logger, cap, (long)interval.TotalSeconds);
    }

    /// <summary>Accept loop: accept(2) failed with EMFILE/ENFILE.</summary>
    public void OutOfDescriptors()
    {
        Interlocked.Increment(ref _outOfDescriptors);
        if (Interlocked.Exchange(ref _descriptorsAnnounced, 1) == 0) LogOutOfDescriptors(logger, (long)interval.TotalSeconds);
    }

    /// <summary>Heartbeat: logs what was refused since the last report, if an interval has passed.</summary>
    public void ReportIfDue(long nowMs)
    {
        if (_lastReport == long.MinValue) { _lastReport = nowMs; return; } // the first beat opens the first interval
        if (nowMs - _lastReport < (long)interval.TotalMilliseconds) return;
        long seconds = (nowMs - _lastReport + 500) / 1000;
        _lastReport = nowMs;
        long overCap = Interlocked.Exchange(ref _overCap, 0), outOfDescriptors = Interlocked.Exchange(ref _outOfDescriptors, 0);
        if (overCap > 0) LogRefusedOverCap(logger, overCap, seconds);
        else Volatile.Write(ref _capAnnounced, 0);              // a quiet interval ends the episode
        if (outOfDescriptors > 0) LogRefusedOutOfDescriptors(logger, outOfDescriptors, seconds);
        else Volatile.Write(ref _descriptorsAnnounced, 0);
    }

    [LoggerMessage(EventId = 50, Level = LogLevel.Warning, Message = "Connection cap of {Cap} reached: new connections are refused with 503 (a count follows every {IntervalSeconds} s while it lasts)")]
    private static partial void LogCapReached(ILogger logger, int cap, long intervalSeconds);

    [LoggerMessage(EventId = 51, Level = LogLevel.Warning, Message = "{Count} connection(s) refused over the connection cap in the last {Seconds} s")]
    private static partial void LogRefusedOverCap(ILogger logger, long count, long seconds);

    [LoggerMessage(EventId = 52, Level = LogLevel.Error, Message = "Out of file descriptors (EMFILE): pending connections are refused with 503 through the spare descriptor (a count follows every {IntervalSeconds} s while it lasts). Raise the limit or lower --max-connections")]
    private static partial void LogOutOfDescriptors(ILogger logger, long intervalSeconds);

    [LoggerMessage(EventId = 53, Level = LogLevel.Error, Message = "{Count} accept(s) refused out of file descriptors in the last {Seconds} s")]
    private static partial void LogRefusedOutOfDescriptors(ILogger logger, long count, long seconds);
}
