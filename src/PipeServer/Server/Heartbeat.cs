using Microsoft.Extensions.Logging;

namespace PipeServer.Server;

// Where this sits: the server's one clock. HttpServer starts one at StartAsync; every beat sweeps all
// connections' deadlines (Http1Connection.OnHeartbeat, TransportConnection.IsSendStalled) and reports refused
// connections (ConnectionRefusals). Modelled on Kestrel's Heartbeat:
//   - its own thread, so deadlines still fire when the thread pool is starved;
//   - a beat never overlaps the previous one (a slow beat makes the next one skip, it does not pile up);
//   - an exception is caught and logged once (then counted), and the ticking goes on: a timer that dies
//     silently would stop every timeout of every connection, and an exception escaping a
//     System.Threading.Timer callback would end the process;
//   - a beat longer than the interval is reported, since it delays every deadline behind it;
//   - the clock is a parameter, so tests drive Beat() by hand without sleeping.

/// <summary>A periodic callback on a dedicated thread that never overlaps itself and survives exceptions.</summary>
internal sealed partial class Heartbeat : IDisposable
{
    private readonly TimeSpan _interval;
    private readonly long _intervalMs;
    private readonly Action<long> _onBeat;
    private readonly ILogger _logger;
    private readonly Func<long> _clock;             // milliseconds, monotonic; Environment.TickCount64 unless a test passes its own
    private readonly ManualResetEventSlim _stop = new();
    private readonly Lock _beat = new();             // held for the length of one beat: the overlap guard
    private Thread? _thread;
    private long _skippedBeats, _failedBeats;        // Interlocked: read by tests and diagnostics from any thread
    private long _failuresInARow;                    // guarded by _beat

    // onBeat is called once per beat with the clock's reading (milliseconds).
    public Heartbeat(TimeSpan interval, Action<long> onBeat, ILogger logger, Func<long>? clock = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        _interval = interval;
        _intervalMs = (long)interval.TotalMilliseconds;
        _onBeat = onBeat;
        _logger = logger;
        _clock = clock ?? (static () => Environment.TickCount64);
    }

    /// <summary>Beats that did not run because the previous one was still running.</summary>
    public long SkippedBeats => Interlocked.Read(ref _skippedBeats);
    /// <summary>Beats whose callback threw.</summary>
    public long FailedBeats => Interlocked.Read(ref _failedBeats);

    public void Start()
    {
        if (_thread is not null) throw new InvalidOperationException("The heartbeat is already running.");
        _thread = new Thread(Loop) { IsBackground = true, Name = "PipeServer heartbeat" };
        _thread.Start();
    }

    private void Loop()
    {
        // Wait returns true when Dispose sets the event: the loop ends between beats, never inside one.
        while (!_stop.Wait(_interval)) Beat();
    }

    /// <summary>One beat (the loop calls it; tests call it directly). False when skipped because a beat is still running.</summary>
    public bool Beat()
    {
        if (!_beat.TryEnter())
        {
            Interlocked.Increment(ref _skippedBeats);
            return false;
        }
        try
        {
            long started = _clock();
            try
            {
                _onBeat(started);
                if (_failuresInARow > 0) LogRecovered(_logger, _failuresInARow);
                _failuresInARow = 0;
            }
            catch (Exception ex)
            {
                Interlocked.Increment(ref _failedBeats);
                if (_failuresInARow++ == 0) LogBeatFailed(_logger, ex); // once per run of failures, not once per beat
            }
            long took = _clock() - started;
            if (took > _intervalMs) LogSlowBeat(_logger, took, _intervalMs);
        }
        finally
        {
            _beat.Exit();
        }
        return true;
    }

    public void Dispose()
    {
        _stop.Set();
        // Bounded: a beat stuck in a callback must not hang shutdown. The event stays undisposed if the thread
        // is still running, since the loop would touch it again.
        if (_thread is null || _thread == Thread.CurrentThread || _thread.Join(TimeSpan.FromSeconds(2))) _stop.Dispose();
    }

    [LoggerMessage(EventId = 40, Level = LogLevel.Error, Message = "Heartbeat failed; it keeps ticking, and further failures in a row are counted, not logged")]
    private static partial void LogBeatFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 41, Level = LogLevel.Information, Message = "Heartbeat recovered after {Failures} failed beat(s)")]
    private static partial void LogRecovered(ILogger logger, long failures);

    [LoggerMessage(EventId = 42, Level = LogLevel.Warning, Message = "Heartbeat took {ElapsedMs} ms, longer than its {IntervalMs} ms interval: every connection deadline is late by as much")]
    private static partial void LogSlowBeat(ILogger logger, long elapsedMs, long intervalMs);
}
