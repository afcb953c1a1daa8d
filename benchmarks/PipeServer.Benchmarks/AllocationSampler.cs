using System.Collections.Concurrent;
using System.Diagnostics.Tracing;

namespace PipeServer.Benchmarks;

/// <summary>Samples the runtime's GC AllocationTick events (one per ~100 KB allocated) by type: where allocations come from.</summary>
public sealed class AllocationSampler : EventListener
{
    public readonly ConcurrentDictionary<string, int> Types = new();

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
            EnableEvents(source, EventLevel.Verbose, (EventKeywords)0x1); // GC keyword: AllocationTick
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (e.EventName is null || !e.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.PayloadNames is null) return;
        int i = e.PayloadNames.IndexOf("TypeName");
        if (i >= 0 && e.Payload![i] is string type) Types.AddOrUpdate(type, 1, (_, n) => n + 1);
    }

    public string Top(int n) => string.Join("\n", Types.OrderByDescending(kv => kv.Value).Take(n).Select(kv => $"  {kv.Value,6}  {kv.Key}"));
}
