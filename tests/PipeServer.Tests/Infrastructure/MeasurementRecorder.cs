using System.Diagnostics.Metrics;

namespace PipeServer.Tests.Infrastructure;

/// <summary>
/// Records every measurement of one meter (one server's instruments), with its tags, through a MeterListener:
/// what a metrics exporter would see, without one.
/// </summary>
public sealed class MeasurementRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly List<(string Name, double Value, Dictionary<string, object?> Tags)> _measurements = [];

    /// <summary>The meter's instruments by name, as they were published (for their advice, e.g. buckets). Guarded by itself.</summary>
    public readonly Dictionary<string, Instrument> Instruments = [];

    public MeasurementRecorder(Meter meter)
    {
        _listener.InstrumentPublished = (i, l) =>
        {
            if (!ReferenceEquals(i.Meter, meter)) return;
            lock (Instruments) Instruments[i.Name] = i;
            l.EnableMeasurementEvents(i);
        };
        _listener.SetMeasurementEventCallback<double>((i, v, t, _) => Add(i.Name, v, t));
        _listener.SetMeasurementEventCallback<long>((i, v, t, _) => Add(i.Name, v, t));
        _listener.Start();
    }

    private void Add(string name, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var d = new Dictionary<string, object?>();
        foreach (var t in tags) d[t.Key] = t.Value;
        lock (_measurements) _measurements.Add((name, value, d));
    }

    /// <summary>The measurements of one instrument so far, in order.</summary>
    public List<(string Name, double Value, Dictionary<string, object?> Tags)> Of(string name)
    {
        lock (_measurements) return _measurements.Where(m => m.Name == name).ToList();
    }

    public void Dispose() => _listener.Dispose();
}
