using System.Net;
using PipeServer.Admin;
using PipeServer.Cli;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Server;

// The admin listener in-process, as Program wires it: a second HttpServer whose routes read the traffic
// server's lifetime and meter. What the process tests cannot pin down in time: the order around start-up.
public class AdminListenerTests
{
    private static async Task<RawResponse> GetAsync(int port, string path)
    {
        await using var c = await RawConnection.ConnectAsync(port);
        await c.SendAsync($"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        return await c.ReadResponseAsync();
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Readyz_on_the_admin_port_is_503_until_the_traffic_port_listens_and_after_shutdown_starts(string transport)
    {
        var trafficOptions = new HttpServerOptions { Address = IPAddress.Loopback, Port = 0, ShutdownTimeout = TimeSpan.FromSeconds(5), Transport = TransportData.Kind(transport) };
        var router = new Router();
        await using var traffic = new HttpServer(trafficOptions, router.HandleAsync);
        DemoEndpoints.Map(router, traffic.Lifetime, probes: false);
        using var metrics = new MetricsEndpoint(traffic.Metrics);
        var adminRouter = new Router();
        await using var admin = new HttpServer(AdminListener.Options(trafficOptions, new AdminEndPoint(IPAddress.Loopback, 0)), adminRouter.HandleAsync);
        AdminEndpoints.MapAdmin(adminRouter, traffic, metrics);

        await admin.StartAsync(); // first, as the service manager starts it
        int port = admin.EndPoint!.Port;
        var early = await GetAsync(port, "/readyz");
        Assert.Equal((503, "starting\n"), (early.Status, early.BodyText));
        Assert.Equal(200, (await GetAsync(port, "/healthz")).Status); // alive all the same

        await traffic.StartAsync();
        Assert.Equal(200, (await GetAsync(port, "/readyz")).Status);
        Assert.Equal(404, (await GetAsync(traffic.EndPoint!.Port, "/readyz")).Status); // probes: false

        var shutdown = await traffic.ShutdownAsync();
        Assert.True(shutdown.AllDrained);
        var after = await GetAsync(port, "/readyz");
        Assert.Equal((503, "shutting down\n"), (after.Status, after.BodyText));
        Assert.Equal(200, (await GetAsync(port, "/healthz")).Status); // the admin port outlives the traffic server's shutdown
        await admin.ShutdownAsync();
    }
}
