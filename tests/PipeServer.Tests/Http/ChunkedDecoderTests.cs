using System.Buffers;
using System.Text;
using PipeServer.Http;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Http;

public class ChunkedDecoderTests
{
    private sealed class Trailers : IHttpHeadHandler
    {
        public readonly List<string> Fields = [];
        public RequestRejectionReason OnRequestLine(in RequestLine line) => RequestRejectionReason.InvalidRequestLine;
        public RequestRejectionReason OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            Fields.Add(Encoding.ASCII.GetString(name) + "=" + Encoding.ASCII.GetString(value));
            return RequestRejectionReason.None;
        }
    }

    private sealed record Decoded(string Data, bool Complete, RequestRejectionReason Reason, List<string> Trailers);

    /// <summary>Decodes as the body reader does, resuming after what was consumed, fed <paramref name="chunk"/> bytes per read.</summary>
    private static Decoded Decode(string body, int chunk, bool byteSegments, ChunkedLimits? limits = null)
    {
        var input = Encoding.Latin1.GetBytes(body);
        var state = new ChunkedDecoderState();
        var trailers = new Trailers();
        var data = new StringBuilder();
        var lim = limits ?? new ChunkedLimits();
        int consumed = 0, available = 0;
        while (true)
        {
            available = (int)Math.Min((long)available + chunk, input.Length);
            var span = input.AsSpan(consumed, available - consumed);
            var seq = byteSegments ? Sequences.Segmented(span, 1) : new ReadOnlySequence<byte>(span.ToArray());
            var reader = new SequenceReader<byte>(seq);
            var status = ChunkedDecoder.Decode(ref reader, ref state, trailers, lim, out var reason);
            while (status == ChunkedStatus.Data)
            {
                long n = Math.Min(state.ChunkRemaining, reader.Remaining);
                var slice = seq.Slice(reader.Position, n);
                data.Append(Encoding.Latin1.GetString(slice.ToArray()));
                reader.Advance(n);
                state.ChunkRemaining -= n;
                status = ChunkedDecoder.Decode(ref reader, ref state, trailers, lim, out reason);
            }
            consumed += (int)reader.Consumed;
            if (status == ChunkedStatus.Rejected) return new(data.ToString(), false, reason, trailers.Fields);
            if (status == ChunkedStatus.Complete) return new(data.ToString(), true, reason, trailers.Fields);
            if (available == input.Length) return new(data.ToString(), false, RequestRejectionReason.None, trailers.Fields);
        }
    }

    private static Decoded DecodeEveryWay(string body, ChunkedLimits? limits = null)
    {
        var first = Decode(body, int.MaxValue, false, limits);
        foreach (var (chunk, segments) in HeadParsing.Feeds)
        {
            var other = Decode(body, chunk, segments, limits);
            Assert.Equal(first.Data, other.Data);
            Assert.Equal(first.Complete, other.Complete);
            Assert.Equal(first.Reason, other.Reason);
        }
        // The scan that validates buffered framing ahead of the data must reach the same verdict, whole
        // and resumed over one-byte pieces.
        foreach (int piece in new[] { int.MaxValue, 1 })
        {
            var (status, reason, _) = Scan(body, piece, limits);
            Assert.Equal(first.Complete, status == ChunkedStatus.Complete);
            Assert.Equal(first.Reason, reason);
        }
        return first;
    }

    /// <summary>Scans as the body reader does, <paramref name="piece"/> more bytes each time, resuming where it stopped.</summary>
    private static (ChunkedStatus Status, RequestRejectionReason Reason, long ScannedTo) Scan(string body, int piece, ChunkedLimits? limits = null)
    {
        var input = Encoding.Latin1.GetBytes(body);
        var state = new ChunkedDecoderState();
        var lim = limits ?? new ChunkedLimits();
        long scannedTo = 0;
        int received = 0;
        while (true)
        {
            received = (int)Math.Min((long)received + piece, input.Length);
            var reader = new SequenceReader<byte>(Sequences.Segmented(input.AsSpan((int)scannedTo, received - (int)scannedTo), 3));
            var status = ChunkedDecoder.Scan(ref reader, ref state, lim, out var reason);
            Assert.NotEqual(ChunkedStatus.Data, status);
            scannedTo += reader.Consumed;
            if (status != ChunkedStatus.NeedMoreData || received == input.Length) return (status, reason, scannedTo);
        }
    }

    [Fact]
    public void Scan_stops_at_the_end_of_the_body_and_never_reads_the_request_behind_it()
    {
        const string body = "5;a=b\r\nhello\r\n0\r\nX: 1\r\n\r\n";
        foreach (int piece in new[] { int.MaxValue, 1, 4 })
        {
            var (status, reason, scannedTo) = Scan(body + "GARBAGE THAT IS NOT A CHUNK\r\n", piece);
            Assert.Equal(ChunkedStatus.Complete, status);
            Assert.Equal(RequestRejectionReason.None, reason);
            Assert.Equal(body.Length, scannedTo);
        }
    }

    [Fact]
    public void Scan_of_an_unfinished_body_stops_before_an_incomplete_size_line()
    {
        // The partial line is left for the next scan, which sees it whole once its LF has arrived.
        var (status, _, scannedTo) = Scan("5\r\nhello\r\n1", int.MaxValue);
        Assert.Equal(ChunkedStatus.NeedMoreData, status);
        Assert.Equal("5\r\nhello\r\n".Length, scannedTo);
    }

    [Fact]
    public void Decodes_chunks_extensions_and_trailers()
    {
        var d = DecodeEveryWay("5;name=value;flag\r\nhello\r\n6 ; q=\"quoted \\\" str\"\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t1\r\nX-Other: t2\r\n\r\n");
        Assert.True(d.Complete);
        Assert.Equal("hello world0123456789", d.Data);
        Assert.Equal(["X-Trailer=t1", "X-Other=t2"], d.Trailers);
    }

    [Fact]
    public void Accepts_leading_zeros_and_upper_case_hex()
    {
        var d = DecodeEveryWay("000A\r\n0123456789\r\n00\r\n\r\n");
        Assert.True(d.Complete);
        Assert.Equal("0123456789", d.Data);
    }

    [Fact]
    public void Incomplete_body_asks_for_more()
    {
        var d = DecodeEveryWay("5\r\nhel");
        Assert.False(d.Complete);
        Assert.Equal(RequestRejectionReason.None, d.Reason);
        Assert.Equal("hel", d.Data);
    }

    [Theory]
    [InlineData("0x5\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkSize)]
    [InlineData(" 5\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkSize)]
    [InlineData("5 \r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkSize)]
    [InlineData("\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkSize)]
    [InlineData("-5\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkSize)]
    [InlineData("g\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkSize)]
    [InlineData("fffffffffffffffff\r\n", RequestRejectionReason.InvalidChunkSize)]
    [InlineData("10000000000000000\r\n", RequestRejectionReason.InvalidChunkSize)]
    [InlineData("5\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidLineEnding)]
    [InlineData("5;a=b\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidLineEnding)]
    [InlineData("5;a\rb\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidLineEnding)]
    [InlineData("5\r\nhelloXX0\r\n\r\n", RequestRejectionReason.InvalidChunkTerminator)]
    [InlineData("5\r\nhello\n0\r\n\r\n", RequestRejectionReason.InvalidChunkTerminator)]
    [InlineData("5;\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkExtension)]
    [InlineData("5;a=\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkExtension)]
    [InlineData("5;a=\"unterminated\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkExtension)]
    [InlineData("5;a b\r\nhello\r\n0\r\n\r\n", RequestRejectionReason.InvalidChunkExtension)]
    [InlineData("0\r\nX : y\r\n\r\n", RequestRejectionReason.WhitespaceBeforeColon)]
    [InlineData("0\r\nX: y\n\r\n", RequestRejectionReason.InvalidLineEnding)]
    public void Rejects_malformed_framing(string body, object expected)
    {
        var d = DecodeEveryWay(body);
        Assert.False(d.Complete);
        Assert.Equal((RequestRejectionReason)expected, d.Reason);
    }

    [Fact]
    public void Bounds_extensions_and_trailers()
    {
        var limits = new ChunkedLimits(MaxSizeLineLength: 64, MaxExtensionBytes: 100, MaxTrailerBytes: 50, MaxTrailerCount: 2);
        Assert.Equal(RequestRejectionReason.ChunkExtensionsTooLarge, DecodeEveryWay("1;" + new string('a', 80) + "\r\nx\r\n0\r\n\r\n", limits).Reason);
        Assert.Equal(RequestRejectionReason.ChunkExtensionsTooLarge, DecodeEveryWay("1;" + new string('a', 80), limits).Reason);
        // many small extensions, each line within the limit, add up past the per-body bound
        var many = string.Concat(Enumerable.Range(0, 10).Select(_ => "1;aaaaaaaaaaaaaaaaaaaa\r\nx\r\n")) + "0\r\n\r\n";
        Assert.Equal(RequestRejectionReason.ChunkExtensionsTooLarge, DecodeEveryWay(many, limits).Reason);
        Assert.Equal(RequestRejectionReason.TrailersTooLarge, DecodeEveryWay("0\r\nX: " + new string('v', 60) + "\r\n\r\n", limits).Reason);
        Assert.Equal(RequestRejectionReason.TrailersTooLarge, DecodeEveryWay("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits).Reason);
    }
}
