using System.Buffers;
using System.Text.Json.Serialization;
using PipeServer.Admin;
using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Server;

namespace PipeServer.Demo;

// The executable's endpoints, all in one place. Each shows one thing a handler can do: a fixed body, JSON
// without reflection, a streamed request body echoed back, a long wait that honours both tokens, a
// chunked stream that ends cleanly on drain; and the two health probes an orchestrator needs (Admin/AdminEndpoints.cs),
// unless the executable leaves them to the admin port.

public static class DemoEndpoints
{
    public static Router Map(Router router, ServerLifetime lifetime, bool probes = true)
    {
        router.MapGet("/", (_, res) => res.WriteTextAsync("Hello from PipeServer: an HTTP/1.1 server on sockets and System.IO.Pipelines.\n"));

        // TechEmpower plaintext: exactly these bytes, text/plain, with Server and Date headers.
        router.MapGet("/plaintext", (_, res) => res.WriteBytesAsync("Hello, World!"u8, "text/plain"));

        router.MapGet("/json", (_, res) => res.WriteJsonAsync(new JsonMessage("Hello, World!"), DemoJsonContext.Default.JsonMessage));

        router.MapPost("/echo", EchoAsync);
        router.MapGet("/slow", SlowAsync);
        router.MapGet("/stream", StreamAsync);

        // The two probes an orchestrator needs, on the traffic port unless --admin-on-traffic-port false (Admin/).
        if (probes) AdminEndpoints.MapProbes(router, lifetime);
        return router;
    }

    /// <summary>POST /echo: the request body back, verbatim, streamed as it arrives (never buffered whole).</summary>
    private static async ValueTask EchoAsync(HttpRequest req, HttpResponse res)
    {
        res.ContentType = req.GetHeader("Content-Type") ?? "application/octet-stream";
        if (req.ContentLength is long length) res.ContentLength = length; // same framing as the request when known
        var body = req.Body;
        while (true)
        {
            var result = await body.ReadAsync(req.Aborted);
            foreach (var segment in result.Buffer) res.Body.Write(segment.Span);
            body.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted) break;
            var flush = await res.Body.FlushAsync(req.Aborted); // backpressure: waits while the client is not reading
            if (flush.IsCompleted) return;
        }
    }

    /// <summary>GET /slow?ms=N: waits N ms (0–600000), then 200. Honours the abort token only: a drain lets it finish.</summary>
    private static async ValueTask SlowAsync(HttpRequest req, HttpResponse res)
    {
        if (!TryGetInt(req, "ms", 0, 600_000, 1000, out int ms))
        {
            res.StatusCode = 400;
            await res.WriteTextAsync("ms must be an integer from 0 to 600000\n");
            return;
        }
        await Task.Delay(ms, req.Aborted);
        await res.WriteTextAsync($"waited {ms} ms\n");
    }

    /// <summary>GET /stream?count=N&amp;interval=MS: N chunks, MS apart. On drain it stops early with a clean terminal chunk.</summary>
    private static async ValueTask StreamAsync(HttpRequest req, HttpResponse res)
    {
        if (!TryGetInt(req, "count", 0, 100_000, 10, out int count) || !TryGetInt(req, "interval", 0, 60_000, 100, out int interval))
        {
            res.StatusCode = 400;
            await res.WriteTextAsync("count must be 0-100000 and interval 0-60000\n");
            return;
        }
        res.ContentType = "text/plain; charset=utf-8";
        using var waitCancel = CancellationTokenSource.CreateLinkedTokenSource(req.Aborted, req.Draining);
        for (int i = 0; i < count; i++)
        {
            if (req.Draining.IsCancellationRequested) break;
            res.Body.Write(System.Text.Encoding.ASCII.GetBytes($"chunk {i}\n"));
            var flush = await res.Body.FlushAsync(req.Aborted);
            if (flush.IsCompleted) return;
            if (i + 1 < count && interval > 0)
            {
                try { await Task.Delay(interval, waitCancel.Token); }
                catch (OperationCanceledException) when (!req.Aborted.IsCancellationRequested) { break; } // draining: end cleanly
            }
        }
    }

    private static bool TryGetInt(HttpRequest req, string name, int min, int max, int fallback, out int value)
    {
        var raw = req.GetQueryValue(name);
        if (raw is null) { value = fallback; return true; }
        return int.TryParse(raw, System.Globalization.NumberStyles.None, null, out value) && value >= min && value <= max;
    }
}

/// <summary>TechEmpower's JSON message: instantiated per request, as the rules ask; a struct, so that costs no allocation.</summary>
public readonly record struct JsonMessage([property: JsonPropertyName("message")] string Message);

[JsonSerializable(typeof(JsonMessage))]
internal sealed partial class DemoJsonContext : JsonSerializerContext;
