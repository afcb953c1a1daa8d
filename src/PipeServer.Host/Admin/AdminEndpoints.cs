using PipeServer.Routing;
using PipeServer.Server;

namespace PipeServer.Admin;

// Where this sits: the operator's endpoints, mapped onto a route table like any others. The traffic port's
// router gets the two probes unless --admin-on-traffic-port false (Demo/DemoEndpoints.cs maps them there);
// the admin listener's router (AdminListener.cs) gets the probes and /metrics, always. Either way they read
// the *traffic* server's state: its lifetime says whether it is ready, its meter feeds /metrics.

/// <summary>GET /healthz, GET /readyz and GET /metrics.</summary>
public static class AdminEndpoints
{
    /// <summary>
    /// The two probes. <paramref name="trafficListening"/>, when given, must also say true for /readyz to: the
    /// admin listener binds before the traffic port, and an instance whose traffic port is not open yet is not ready.
    /// </summary>
    public static Router MapProbes(Router router, ServerLifetime lifetime, Func<bool>? trafficListening = null)
    {
        // Liveness: the process is up and serving. Stays 200 until exit, shutdown included (on the admin port
        // until the very end; on the traffic port only while it still accepts: docs/shutdown.md).
        router.MapGet("/healthz", (_, res) => res.WriteTextAsync("ok\n"));

        // Readiness: 200 while serving normally, 503 from the first moment of shutdown so balancers stop sending.
        router.MapGet("/readyz", (_, res) =>
        {
            if (lifetime.IsReady && (trafficListening?.Invoke() ?? true)) return res.WriteTextAsync("ready\n");
            res.StatusCode = 503;
            return res.WriteTextAsync(lifetime.IsReady ? "starting\n" : "shutting down\n");
        });
        return router;
    }

    /// <summary>The admin listener's route table: the probes and /metrics of <paramref name="traffic"/>.</summary>
    public static Router MapAdmin(Router router, HttpServer traffic, MetricsEndpoint metrics)
    {
        MapProbes(router, traffic.Lifetime, () => traffic.Listeners.Count > 0);
        return metrics.Map(router);
    }
}
