// samples/Streaming: a streaming endpoint that ends cleanly when the server drains.
//
//   GET /ticks?count=N&interval=MS   a text/event-stream of N events, MS apart (chunked: the length is not
//                                    known in advance); N defaults to "until the server stops"
//
// Two tokens reach the handler. request.Draining fires when the server asks connections to close (a
// SIGTERM here): the handler writes a last "bye" event and returns, so the client gets a complete chunked
// response (its terminal chunk) instead of a cut one. request.Aborted fires when nobody can read the
// answer any more (the client went away, or the shutdown deadline passed): the handler just stops.
//
// This program drives the server itself, without ServiceManager: StartAsync, wait for a signal,
// ShutdownAsync, and the report decides the exit code.
//
// Run: dotnet run --project samples/Streaming -- --port 8080 [--transport sockets|linux]

using System.Net;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Transports;

int port = int.Parse(Option("--port") ?? "8080", System.Globalization.CultureInfo.InvariantCulture);
var transport = Option("--transport") == "linux" ? TransportKind.Linux : TransportKind.Sockets;

using var loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true));

var router = new Router().MapGet("/ticks", TicksAsync);

static async ValueTask TicksAsync(HttpRequest req, HttpResponse res)
{
    if (!int.TryParse(req.GetQueryValue("count") ?? int.MaxValue.ToString(System.Globalization.CultureInfo.InvariantCulture), out int count) || count < 0 ||
        !int.TryParse(req.GetQueryValue("interval") ?? "1000", out int interval) || interval is < 0 or > 60_000)
    {
        res.StatusCode = 400;
        await res.WriteTextAsync("count must be 0 or more and interval 0-60000 (ms)\n");
        return;
    }
    res.ContentType = "text/event-stream";
    res.Headers.Set("Cache-Control", "no-store");
    // Waits end on either token; which one fired decides how the response ends.
    using var wait = CancellationTokenSource.CreateLinkedTokenSource(req.Draining, req.Aborted);
    for (int i = 0; i < count && !req.Draining.IsCancellationRequested; i++)
    {
        await res.WriteTextAsync($"data: tick {i}\n\n");
        // Each event goes out now (the first flush starts the response, chunked); a slow client makes this wait.
        var flush = await res.FlushAsync(req.Aborted);
        if (flush.IsCompleted) return; // the client has gone
        try { await Task.Delay(interval, wait.Token); }
        catch (OperationCanceledException) when (!req.Aborted.IsCancellationRequested) { break; } // draining
    }
    // Draining (or done): a last event, then returning ends the chunked body cleanly.
    if (req.Draining.IsCancellationRequested) await res.WriteTextAsync("event: bye\ndata: server is shutting down\n\n");
}

var options = new HttpServerOptions { Address = IPAddress.Loopback, Port = port, Transport = transport, ShutdownTimeout = TimeSpan.FromSeconds(10) };
await using var server = new HttpServer(options, router.HandleAsync, loggerFactory.CreateLogger("PipeServer"));
await server.StartAsync();
foreach (var listener in server.Listeners) Console.WriteLine($"Listening on {listener.Url}");

var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
void OnSignal(PosixSignalContext context)
{
    context.Cancel = true;
    stop.TrySetResult();
}
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
await stop.Task;

// The phases: readiness off, stop accepting, ask every connection to close (Draining fires), wait up to
// ShutdownTimeout, abort what is left. The report says how it went.
var report = await server.ShutdownAsync();
Console.WriteLine($"Shutdown: {report.Drained} of {report.OpenAtStopAccepting} connection(s) drained, {report.Aborted} aborted, in {report.Elapsed.TotalMilliseconds:0} ms");
return report.AllDrained ? 0 : 2;

string? Option(string name)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
