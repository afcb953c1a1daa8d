using System.Diagnostics.Metrics;
using System.Threading.Channels;
using PipeServer.Connections;
using PipeServer.Server;

namespace PipeServer.Tests.Infrastructure;

/// <summary>
/// Why each connection of one server ended, observed after it left the registry: the server records every
/// connection's end in its "pipeserver.connection.duration" instrument with error.type = the end reason
/// (null for the three normal ends), and this listens to that instrument of that server's meter only. No
/// request instrument is enabled, so the server runs the same unobserved code path as without a listener.
/// </summary>
internal sealed class ConnectionEnds : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly Channel<string?> _ends = Channel.CreateUnbounded<string?>();

    public ConnectionEnds(Meter meter)
    {
        _listener.InstrumentPublished = (i, l) =>
        {
            if (ReferenceEquals(i.Meter, meter) && i.Name == "pipeserver.connection.duration") l.EnableMeasurementEvents(i);
        };
        _listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
        {
            string? error = null;
            foreach (var t in tags) if (t.Key == "error.type") error = t.Value as string;
            _ends.Writer.TryWrite(error);
        });
        _listener.Start();
    }

    /// <summary>The error.type of the next connection to end (bounded wait); null for a normal end.</summary>
    public async Task<string?> NextAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        try { return await _ends.Reader.ReadAsync(cts.Token); }
        catch (OperationCanceledException) { throw new TimeoutException("no connection ended within the timeout"); }
    }

    /// <summary>Waits (bounded) for the next connection to end and asserts it ended for <paramref name="expected"/>.</summary>
    public async Task AssertNextAsync(ConnectionEndReason expected, TimeSpan? timeout = null)
    {
        var want = ServerMetrics.ErrorType(expected) ?? throw new ArgumentException($"{expected} is a normal end and has no error.type; it cannot be told apart from the other normal ends here", nameof(expected));
        Xunit.Assert.Equal(want, await NextAsync(timeout));
    }

    public void Dispose() => _listener.Dispose();
}
