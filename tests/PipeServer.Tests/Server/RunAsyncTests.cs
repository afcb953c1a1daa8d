using System.Net.Sockets;
using System.Text;
using PipeServer.Routing;
using PipeServer.Server;
using Xunit;

namespace PipeServer.Tests.Server;

// HttpServer.RunAsync, the one-call way to run a server, driven here through its token (a signal would end
// the test host): it serves until asked, then runs the graceful shutdown and returns its report.
public class RunAsyncTests
{
    [Fact]
    public async Task Serves_until_stopped_then_returns_the_shutdown_report()
    {
        var router = new Router().MapGet("/", (_, res) => res.WriteTextAsync("hi\n"));
        await using var server = new HttpServer(new HttpServerOptions { Address = System.Net.IPAddress.Loopback, Port = 0 }, router.HandleAsync);
        using var stop = new CancellationTokenSource();
        var listening = new TaskCompletionSource<IReadOnlyList<ListenerInfo>>(TaskCreationOptions.RunContinuationsAsynchronously);
        var run = server.RunAsync(l => listening.TrySetResult(l), stop.Token);

        var listeners = await listening.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Single(listeners);
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(server.EndPoint!).WaitAsync(TimeSpan.FromSeconds(10));
            var stream = client.GetStream();
            await stream.WriteAsync("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"u8.ToArray());
            var buffer = new byte[4096];
            int n, total = 0;
            while ((n = await stream.ReadAsync(buffer.AsMemory(total)).AsTask().WaitAsync(TimeSpan.FromSeconds(10))) > 0) total += n;
            var response = Encoding.ASCII.GetString(buffer, 0, total);
            Assert.StartsWith("HTTP/1.1 200", response, StringComparison.Ordinal);
            Assert.EndsWith("hi\n", response, StringComparison.Ordinal);
        }
        Assert.False(run.IsCompleted);

        stop.Cancel();
        var report = await run.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(report.AllDrained);
        Assert.False(server.Lifetime.IsReady);
    }

    [Fact]
    public async Task A_listening_callback_that_throws_leaves_no_server_running()
    {
        var router = new Router().MapGet("/", (_, res) => res.WriteTextAsync("hi\n"));
        await using var server = new HttpServer(new HttpServerOptions { Address = System.Net.IPAddress.Loopback, Port = 0 }, router.HandleAsync);
        var run = server.RunAsync(_ => throw new InvalidOperationException("the embedder's callback failed"));

        var thrown = await Assert.ThrowsAsync<InvalidOperationException>(() => run.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal("the embedder's callback failed", thrown.Message);
        Assert.False(server.Lifetime.IsReady); // the shutdown ran
        using var client = new TcpClient();
        await Assert.ThrowsAsync<SocketException>(() => client.ConnectAsync(server.EndPoint!).WaitAsync(TimeSpan.FromSeconds(10)));
    }
}
