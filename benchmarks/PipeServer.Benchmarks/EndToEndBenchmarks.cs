using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Transports;
using PipeServer.Connections;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;

namespace PipeServer.Benchmarks;

/// <summary>
/// One whole request → response through the real Http1Connection, router and demo handlers, over an
/// in-memory duplex pipe (no socket). Inline pipe schedulers make the connection run on the benchmark
/// thread, so the time and the allocations are exactly the server's. Baseline: GET /plaintext.
/// The allocation column is the point: steady state must be 0 B per request.
/// </summary>
[MemoryDiagnoser]
public class EndToEndBenchmarks
{
    private static readonly byte[] Plaintext = Encoding.ASCII.GetBytes("GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n");
    private static readonly byte[] Json = Encoding.ASCII.GetBytes("GET /json HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n");
    private static readonly byte[] Pipelined = Enumerable.Repeat(Plaintext, 16).SelectMany(b => b).ToArray();

    private Pipe _toServer = null!, _toClient = null!;
    private int _plaintextResponse, _jsonResponse;

    private sealed class Transport(PipeReader input, PipeWriter output) : IDuplexPipe, ITransportControl
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
        public void Abort() { }
        public void RequestLingeringClose() { }
        public bool HasUndeliveredInput => false; // inline pipes: a written request is in the pipe at once
        public long ReceivedBytes => 0;
        public ValueTask<bool> TryCloseIdleAsync(long receivedMark) => ValueTask.FromResult(true);
    }

    [GlobalSetup]
    public void Setup()
    {
        var inline = new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false);
        _toServer = new Pipe(inline);
        _toClient = new Pipe(inline);
        var router = new Router();
        var lifetime = new ServerLifetime();
        DemoEndpoints.Map(router, lifetime);
        var transport = new Transport(_toServer.Reader, _toClient.Writer);
        var connection = new Http1Connection(1, transport, transport, new HttpServerOptions(), router.HandleAsync, lifetime, NullLogger.Instance, CancellationToken.None);
        _ = connection.ProcessAsync();
        _plaintextResponse = Exchange(Plaintext, 1, expected: -1);
        _jsonResponse = Exchange(Json, 1, expected: -1);
    }

    [Benchmark(Baseline = true)]
    public int PlaintextRequest() => Exchange(Plaintext, 1, _plaintextResponse);

    [Benchmark]
    public int JsonRequest() => Exchange(Json, 1, _jsonResponse);

    [Benchmark(OperationsPerInvoke = 16)]
    public int PlaintextPipelined16() => Exchange(Pipelined, 16, _plaintextResponse * 16);

    /// <summary>Writes the request bytes, lets the connection answer, and consumes the response bytes.</summary>
    private int Exchange(byte[] request, int responses, int expected)
    {
        _toServer.Writer.Write(request);
        var flush = _toServer.Writer.FlushAsync();
        if (!flush.IsCompleted) throw new InvalidOperationException("the connection did not run inline");
        flush.GetAwaiter().GetResult();
        if (!_toClient.Reader.TryRead(out var result)) throw new InvalidOperationException("no response");
        int length = (int)result.Buffer.Length;
        if (expected >= 0 && length != expected) throw new InvalidOperationException($"response was {length} bytes, expected {expected}");
        _toClient.Reader.AdvanceTo(result.Buffer.End);
        return length / responses;
    }
}
