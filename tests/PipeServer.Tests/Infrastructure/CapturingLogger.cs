using Microsoft.Extensions.Logging;

namespace PipeServer.Tests.Infrastructure;

/// <summary>One log event as a logger received it: the rendered message and the structured state.</summary>
public sealed record CapturedLog(string Category, LogLevel Level, EventId EventId, string Message, IReadOnlyDictionary<string, object?> State, Exception? Exception);

/// <summary>
/// A logger that keeps every event in memory, so tests assert on exactly
/// what an operator's log would receive. Thread-safe; <see cref="WaitForAsync"/> polls with a deadline.
/// </summary>
public sealed class CapturingLogger(string category = "test", LogLevel minimum = LogLevel.Trace) : ILogger
{
    private readonly List<CapturedLog> _events = [];

    public IReadOnlyList<CapturedLog> Events { get { lock (_events) return _events.ToArray(); } }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        var properties = new Dictionary<string, object?>();
        if (state is IEnumerable<KeyValuePair<string, object?>> pairs)
            foreach (var (k, v) in pairs) properties[k] = v;
        var e = new CapturedLog(category, logLevel, eventId, formatter(state, exception), properties, exception);
        lock (_events) _events.Add(e);
    }

    /// <summary>Waits (bounded) until at least <paramref name="count"/> events match.</summary>
    public async Task<IReadOnlyList<CapturedLog>> WaitForAsync(int count, Func<CapturedLog, bool>? match = null, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(5));
        while (true)
        {
            var found = Events.Where(match ?? (_ => true)).ToList();
            if (found.Count >= count) return found;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"expected {count} log event(s), have {found.Count}: {string.Join(" | ", Events.Select(e => e.Message))}");
            await Task.Delay(10);
        }
    }

}
