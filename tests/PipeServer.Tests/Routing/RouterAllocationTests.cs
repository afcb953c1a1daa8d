using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Connections;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Transports;
using Xunit;

namespace PipeServer.Tests.Routing;

// The hot-path contract of EndToEndBenchmarks (0 B per /plaintext request), checked on every test run with
// the thread's allocation counter, in a router that also holds templates: templates must cost literal
// routes nothing. Inline pipe schedulers keep the whole request on this thread, so the counter sees it all.
public class RouterAllocationTests
{
    private sealed class Transport(PipeReader input, PipeWriter output) : IDuplexPipe, ITransportControl
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
        public void Abort() { }
        public void RequestLingeringClose() { }
        public bool HasUndeliveredInput => false;
        public long ReceivedBytes => 0;
        public ValueTask<bool> TryCloseIdleAsync(long receivedMark) => ValueTask.FromResult(true);
    }

    [Theory]
    [InlineData("/plaintext")]
    [InlineData("/json")]
    public async Task A_literal_route_allocates_nothing_per_request_beside_templates(string path)
    {
        var inline = new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false);
        var toServer = new Pipe(inline);
        var toClient = new Pipe(inline);
        var router = new Router();
        var lifetime = new ServerLifetime();
        DemoEndpoints.Map(router, lifetime);
        router.MapGet("/users/{id}", (req, res) => res.WriteTextAsync(req.RouteValues["id"]));
        router.MapGet("/files/{*rest}", (req, res) => res.WriteTextAsync(req.RouteValues["rest"]));
        var transport = new Transport(toServer.Reader, toClient.Writer);
        var connection = new Http1Connection(1, transport, transport, new HttpServerOptions(), router.HandleAsync, lifetime, NullLogger.Instance, CancellationToken.None);
        var processing = connection.ProcessAsync();
        var request = Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");

        void Exchange()
        {
            toServer.Writer.Write(request);
            var flush = toServer.Writer.FlushAsync();
            Assert.True(flush.IsCompleted, "the connection did not run inline");
            flush.GetAwaiter().GetResult();
            Assert.True(toClient.Reader.TryRead(out var result), "no response");
            Assert.True(result.Buffer.FirstSpan.StartsWith("HTTP/1.1 200 OK"u8));
            toClient.Reader.AdvanceTo(result.Buffer.End);
        }

        for (int i = 0; i < 2000; i++) Exchange(); // warm-up: pools, lazily made per-connection objects
        const int requests = 2000;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < requests; i++) Exchange();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated == 0, $"{path}: {allocated} bytes over {requests} requests ({allocated / (double)requests:0.0} per request)");
        await toServer.Writer.CompleteAsync();
        await processing.WaitAsync(TimeSpan.FromSeconds(5));
    }
}
