using System.Buffers;
using PipeServer.Http;

namespace PipeServer.Fuzz;

/// <summary>
/// What one fuzz input exercises. Any exception escaping here is a finding: the parser and decoder must
/// answer every input with Done, NeedMoreData or a typed rejection, and must give the same answer however
/// the input is split.
/// </summary>
public static class FuzzTargets
{
    public static void Run(byte[] input)
    {
        var whole = ParseHead(new ReadOnlySequence<byte>(input));
        var split = ParseHead(Split(input, 3));
        if (whole != split) throw new InvalidOperationException($"split changed the outcome: {whole} vs {split}");
        // The chunked decoder, as the body reader drives it: decoding must not depend on how the input is
        // split, and the scan that validates buffered framing ahead of the data (whole, or resumed piece by
        // piece as bytes arrive) must reach exactly the outcome decoding reaches.
        var decoded = DecodeChunked(new ReadOnlySequence<byte>(input));
        var decodedSplit = DecodeChunked(Split(input, 1));
        if (decoded != decodedSplit) throw new InvalidOperationException($"split changed the chunked outcome: {decoded} vs {decodedSplit}");
        var scanned = ScanChunked(input, int.MaxValue);
        if (scanned != decoded) throw new InvalidOperationException($"scan and decode disagree: {scanned} vs {decoded}");
        var scannedInPieces = ScanChunked(input, 7);
        if (scannedInPieces != decoded) throw new InvalidOperationException($"resumed scan disagrees: {scannedInPieces} vs {decoded}");
    }

    private static (ParseStatus, RequestRejectionReason, string) ParseHead(ReadOnlySequence<byte> input)
    {
        var head = new RequestHead();
        head.Reset();
        var reader = new SequenceReader<byte>(input);
        var limits = new HttpParserLimits(MaxRequestLineSize: 256, MaxHeaderCount: 16, MaxHeaderBytes: 1024);
        var status = HttpParser.ParseRequestLine(ref reader, head, limits, out var reason);
        if (status == ParseStatus.Done)
        {
            var state = new HeaderParseState();
            status = HttpParser.ParseHeaders(ref reader, head, ref state, limits, out reason);
            if (status == ParseStatus.Done)
            {
                reason = head.OnHeadersComplete();
                if (reason != RequestRejectionReason.None) status = ParseStatus.Rejected;
            }
        }
        if (status == ParseStatus.Rejected && reason == RequestRejectionReason.None) throw new InvalidOperationException("rejected without a reason");
        return (status, reason, status == ParseStatus.Done ? head.Target + "|" + head.Headers.Count : "");
    }

    private sealed class Trailers : IHttpHeadHandler
    {
        public RequestRejectionReason OnRequestLine(in RequestLine line) => RequestRejectionReason.InvalidRequestLine;
        public RequestRejectionReason OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => RequestRejectionReason.None;
    }

    private static readonly ChunkedLimits Limits = new(MaxSizeLineLength: 128, MaxExtensionBytes: 512, MaxTrailerBytes: 512, MaxTrailerCount: 8);

    /// <summary>Decodes to the end of what is there; the outcome is the final status, its reason and where the decoder stopped.</summary>
    private static (ChunkedStatus, RequestRejectionReason, long) DecodeChunked(ReadOnlySequence<byte> input)
    {
        var reader = new SequenceReader<byte>(input);
        var state = new ChunkedDecoderState();
        for (int guard = 0; guard <= input.Length + 2; guard++)
        {
            var status = ChunkedDecoder.Decode(ref reader, ref state, new Trailers(), Limits, out var reason);
            if (status == ChunkedStatus.Rejected && reason == RequestRejectionReason.None) throw new InvalidOperationException("rejected without a reason");
            if (status != ChunkedStatus.Data) return (status, reason, status == ChunkedStatus.Rejected ? -1 : reader.Consumed);
            long n = Math.Min(state.ChunkRemaining, reader.Remaining);
            if (n <= 0) throw new InvalidOperationException("Data with nothing to read");
            reader.Advance(n);
            state.ChunkRemaining -= n;
        }
        throw new InvalidOperationException("decoder made no progress");
    }

    /// <summary>
    /// Scans as the body reader does while bytes arrive: <paramref name="step"/> more bytes each time, the
    /// scan resumed from where it stopped over everything received since.
    /// </summary>
    private static (ChunkedStatus, RequestRejectionReason, long) ScanChunked(byte[] input, int step)
    {
        var state = new ChunkedDecoderState();
        long scannedTo = 0;
        int received = 0;
        while (true)
        {
            received = (int)Math.Min((long)received + step, input.Length);
            var reader = new SequenceReader<byte>(Split(input.AsSpan((int)scannedTo, received - (int)scannedTo).ToArray(), 5));
            var status = ChunkedDecoder.Scan(ref reader, ref state, Limits, out var reason);
            if (status == ChunkedStatus.Data) throw new InvalidOperationException("Scan returned Data");
            if (status == ChunkedStatus.Rejected && reason == RequestRejectionReason.None) throw new InvalidOperationException("rejected without a reason");
            scannedTo += reader.Consumed;
            if (status != ChunkedStatus.NeedMoreData || received == input.Length)
                return (status, reason, status == ChunkedStatus.Rejected ? -1 : scannedTo);
        }
    }

    private static ReadOnlySequence<byte> Split(byte[] data, int size)
    {
        if (data.Length == 0) return ReadOnlySequence<byte>.Empty;
        Segment first = new(data.AsMemory(0, Math.Min(size, data.Length)), 0), last = first;
        for (int i = size; i < data.Length; i += size) last = last.Append(data.AsMemory(i, Math.Min(size, data.Length - i)));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long index) { Memory = memory; RunningIndex = index; }
        public Segment Append(ReadOnlyMemory<byte> memory) { var s = new Segment(memory, RunningIndex + Memory.Length); Next = s; return s; }
    }
}
