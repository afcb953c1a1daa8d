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
//
// Why it runs alone and may take up to three rounds: ArrayPool<byte>.Shared keeps one array per size on each
// thread and the rest in per-core stacks every thread shares. A request holds two arrays of one size at once
// (head bytes and response buffer), so one of them comes from the shared stacks; a test running beside this
// one can empty them, and the next rent here allocates a fresh array (CI saw 1072 B once in 2000 requests).
// That is the pool's sharing, not a per-request cost, so the class runs in a collection of its own with no
// other test beside it, and a round of 2000 requests that allocates nothing settles it. The test still fails
// on any real cost: an allocation per request, or one every few hundred requests, shows up in every round.
[Collection(nameof(AllocationMeasurement))]
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
        var rounds = new List<long>();
        for (int round = 0; round < 3; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < requests; i++) Exchange();
            rounds.Add(GC.GetAllocatedBytesForCurrentThread() - before);
            if (rounds[^1] == 0) break;
        }

        Assert.True(rounds[^1] == 0, $"{path}: every round of {requests} requests allocated: {string.Join(", ", rounds.Select(b => $"{b} B ({b / (double)requests:0.0} per request)"))}");
        await toServer.Writer.CompleteAsync();
        await processing.WaitAsync(TimeSpan.FromSeconds(5));
    }
}

/// <summary>Tests that read the thread's allocation counter: run with no other test beside them (see above).</summary>
[CollectionDefinition(nameof(AllocationMeasurement), DisableParallelization = true)]
public sealed class AllocationMeasurement;
