using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using PipeServer.Http;

namespace PipeServer.Benchmarks;

/// <summary>
/// Step 1-2 of a request's journey in isolation: HttpParser + RequestHead over bytes already in memory.
/// Baseline: the smallest valid GET. Allocations are reported (the parser itself allocates nothing; the
/// strings a handler sees are made by RequestHead).
/// </summary>
[MemoryDiagnoser]
public class ParserBenchmarks
{
    private static readonly byte[] SmallGet = Encoding.ASCII.GetBytes("GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n");
    private static readonly byte[] BrowserGet = Encoding.ASCII.GetBytes(
        "GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36\r\n" +
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
        "Connection: keep-alive\r\nCookie: session=0123456789abcdef; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\nCache-Control: max-age=0\r\n\r\n");
    private static readonly byte[] Pipelined16 = Enumerable.Repeat(SmallGet, 16).SelectMany(b => b).ToArray();

    private readonly RequestHead _head = new();
    private readonly HttpParserLimits _limits = new();

    [Benchmark(Baseline = true)]
    public bool SmallGetRequest() => ParseOne(new ReadOnlySequence<byte>(SmallGet));

    [Benchmark]
    public bool BrowserLikeRequest() => ParseOne(new ReadOnlySequence<byte>(BrowserGet));

    [Benchmark(OperationsPerInvoke = 16)]
    public int PipelinedBatchOf16()
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(Pipelined16));
        int n = 0;
        while (!reader.End)
        {
            _head.Reset();
            var state = new HeaderParseState();
            HttpParser.ParseRequestLine(ref reader, _head, _limits, out _);
            HttpParser.ParseHeaders(ref reader, _head, ref state, _limits, out _);
            n++;
        }
        return n;
    }

    private bool ParseOne(ReadOnlySequence<byte> input)
    {
        _head.Reset();
        var reader = new SequenceReader<byte>(input);
        var state = new HeaderParseState();
        return HttpParser.ParseRequestLine(ref reader, _head, _limits, out _) == ParseStatus.Done &&
               HttpParser.ParseHeaders(ref reader, _head, ref state, _limits, out _) == ParseStatus.Done;
    }
}

/// <summary>The chunked decoder over a body of 16 chunks of 1 KiB. Baseline: the same bytes with no extensions. Scan16Chunks is the validate-ahead pass the body reader adds.</summary>
[MemoryDiagnoser]
public class ChunkedBenchmarks
{
    private sealed class NoTrailers : IHttpHeadHandler
    {
        public RequestRejectionReason OnRequestLine(in RequestLine line) => RequestRejectionReason.None;
        public RequestRejectionReason OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => RequestRejectionReason.None;
    }

    private static readonly byte[] Plain = Build(withExtensions: false);
    private static readonly byte[] WithExtensions = Build(withExtensions: true);
    private readonly NoTrailers _trailers = new();

    private static byte[] Build(bool withExtensions)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < 16; i++) sb.Append(withExtensions ? "400;name=value\r\n" : "400\r\n").Append('x', 1024).Append("\r\n");
        sb.Append("0\r\n\r\n");
        return Encoding.ASCII.GetBytes(sb.ToString());
    }

    [Benchmark(Baseline = true)]
    public long Decode16Chunks() => Decode(Plain);

    [Benchmark]
    public long Decode16ChunksWithExtensions() => Decode(WithExtensions);

    /// <summary>The body reader's validate-ahead pass over the same body: framing checked, data skipped.</summary>
    [Benchmark]
    public long Scan16Chunks()
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(Plain));
        var state = new ChunkedDecoderState();
        ChunkedDecoder.Scan(ref reader, ref state, new ChunkedLimits(), out _);
        return reader.Consumed;
    }

    private long Decode(byte[] body)
    {
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(body));
        var state = new ChunkedDecoderState();
        long data = 0;
        var limits = new ChunkedLimits();
        while (true)
        {
            var status = ChunkedDecoder.Decode(ref reader, ref state, _trailers, limits, out _);
            if (status != ChunkedStatus.Data) return data;
            long n = Math.Min(state.ChunkRemaining, reader.Remaining);
            reader.Advance(n);
            state.ChunkRemaining -= n;
            data += n;
        }
    }
}
