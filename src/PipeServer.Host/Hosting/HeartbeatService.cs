using Microsoft.Extensions.Logging;

namespace PipeServer.Hosting;

/// <summary>A timed job beside the HTTP server: logs a heartbeat line every interval until the root token fires.</summary>
public sealed partial class HeartbeatService(TimeSpan interval, Func<string> status, ILogger logger) : HostedService
{
    public override string Name => "heartbeat";

    public override async Task RunAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(interval);
        while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
            LogHeartbeat(logger, status());
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Information, Message = "Heartbeat: {Status}")]
    private static partial void LogHeartbeat(ILogger logger, string status);
}
