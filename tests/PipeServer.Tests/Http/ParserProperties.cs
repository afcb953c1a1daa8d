using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using PipeServer.Http;
using PipeServer.Tests.Infrastructure;

namespace PipeServer.Tests.Http;

// Property tests (FsCheck): generated requests and generated garbage, hundreds of each per run.
public class ParserProperties
{
    public sealed record GeneratedRequest(string Method, string Path, string Query, List<(string Name, string Value)> Headers)
    {
        public string Serialize()
        {
            var sb = new StringBuilder($"{Method} {Path}{(Query.Length > 0 ? "?" + Query : "")} HTTP/1.1\r\nHost: example.test\r\n");
            foreach (var (n, v) in Headers) sb.Append(n).Append(": ").Append(v).Append("\r\n");
            return sb.Append("\r\n").ToString();
        }
    }

    private const string TokenChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";
    private const string PathChars = "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/";
    private const string ValueChars = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\t";

    private static Gen<string> StringOf(string chars, int min, int max) =>
        from n in Gen.Choose(min, max)
        from cs in Gen.ArrayOf(Gen.Elements(chars.ToCharArray()), n)
        select new string(cs);

    private static readonly Gen<GeneratedRequest> Requests =
        from method in Gen.Elements("GET", "POST", "PUT", "DELETE", "PATCH", "PURGE", "M-SEARCH")
        from path in StringOf(PathChars, 0, 40)
        from query in StringOf("abc=&123", 0, 20)
        from count in Gen.Choose(0, 12)
        from headers in Gen.ArrayOf(
            from name in StringOf(TokenChars, 1, 20)
            from value in StringOf(ValueChars, 0, 60)
            select (name, value.Trim(' ', '\t')), count)
        select new GeneratedRequest(method, "/" + path, query,
            headers.Where(h => !IsFramingHeader(h.name)).ToList());

    private static bool IsFramingHeader(string name) =>
        name.Equals("Host", StringComparison.OrdinalIgnoreCase) || name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase) ||
        name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase);

    /// <summary>Presents <paramref name="data"/> as a sequence cut at the given points.</summary>
    private static ReadOnlySequence<byte> CutAt(byte[] data, IEnumerable<int> cuts)
    {
        var points = cuts.Select(c => Math.Abs(c) % (data.Length + 1)).Append(0).Append(data.Length).Distinct().Order().ToArray();
        var parts = new List<byte[]>();
        for (int i = 1; i < points.Length; i++) parts.Add(data[points[i - 1]..points[i]]);
        return parts.Count == 1 ? new ReadOnlySequence<byte>(parts[0]) : Join(parts);
    }

    private static ReadOnlySequence<byte> Join(List<byte[]> parts)
    {
        var nonEmpty = parts.Where(p => p.Length > 0).ToList();
        if (nonEmpty.Count == 0) return ReadOnlySequence<byte>.Empty;
        Seg first = new(nonEmpty[0], 0), last = first;
        foreach (var p in nonEmpty.Skip(1)) last = last.Append(p);
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Seg : ReadOnlySequenceSegment<byte>
    {
        public Seg(byte[] d, long index) { Memory = d; RunningIndex = index; }
        public Seg Append(byte[] d) { var s = new Seg(d, RunningIndex + Memory.Length); Next = s; return s; }
    }

    private static (ParseStatus status, RequestRejectionReason reason, RequestHead head) ParseSequence(ReadOnlySequence<byte> seq)
    {
        var head = new RequestHead();
        head.Reset();
        var reader = new SequenceReader<byte>(seq);
        var limits = new HttpParserLimits();
        var status = HttpParser.ParseRequestLine(ref reader, head, limits, out var reason);
        if (status != ParseStatus.Done) return (status, reason, head);
        var state = new HeaderParseState();
        status = HttpParser.ParseHeaders(ref reader, head, ref state, limits, out reason);
        if (status == ParseStatus.Done) { reason = head.OnHeadersComplete(); if (reason != RequestRejectionReason.None) status = ParseStatus.Rejected; }
        return (status, reason, head);
    }

    [Property(MaxTest = 300)]
    public Property A_valid_request_split_anywhere_parses_the_same() =>
        Prop.ForAll(Requests.ToArbitrary(), Gen.ArrayOf(Gen.Choose(0, 10_000)).ToArbitrary(), (request, cuts) =>
        {
            var bytes = Encoding.Latin1.GetBytes(request.Serialize());
            var whole = ParseSequence(new ReadOnlySequence<byte>(bytes));
            var split = ParseSequence(CutAt(bytes, cuts));
            var incremental = HeadParsing.Parse(bytes, chunk: 1 + (cuts.Length > 0 ? Math.Abs(cuts[0]) % 13 : 0), byteSegments: cuts.Length % 2 == 0);
            return whole.status == ParseStatus.Done && split.status == ParseStatus.Done && incremental.Complete &&
                   whole.head.Target == split.head.Target && split.head.Target == incremental.Head.Target &&
                   whole.head.Headers.SequenceEqual(split.head.Headers) && split.head.Headers.SequenceEqual(incremental.Head.Headers);
        });

    [Property(MaxTest = 300)]
    public Property Parse_write_parse_round_trips() =>
        Prop.ForAll(Requests.ToArbitrary(), request =>
        {
            var first = ParseSequence(new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(request.Serialize())));
            if (first.status != ParseStatus.Done) return false;
            // Write the parsed head back out as a request and parse that.
            var sb = new StringBuilder($"{first.head.MethodName} {first.head.Target} HTTP/1.1\r\n");
            foreach (var (n, v) in first.head.Headers) sb.Append(n).Append(": ").Append(v).Append("\r\n");
            var second = ParseSequence(new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(sb.Append("\r\n").ToString())));
            return second.status == ParseStatus.Done &&
                   second.head.MethodName == request.Method && first.head.MethodName == request.Method &&
                   second.head.Target == first.head.Target &&
                   second.head.Query == request.Query &&
                   second.head.Headers.Select(h => (h.Key.ToLowerInvariant(), h.Value)).SequenceEqual(first.head.Headers.Select(h => (h.Key.ToLowerInvariant(), h.Value))) &&
                   first.head.Headers.Skip(1).Select(h => h.Value).SequenceEqual(request.Headers.Select(h => h.Value));
        });

    private static readonly Gen<byte[]> HttpishBytes =
        from parts in Gen.ArrayOf(Gen.OneOf(
            Gen.Elements("GET ", "POST ", "/", " HTTP/1.1", " HTTP/1.0", " HTTP/2.0", "\r\n", "\n", "\r", ":", " ", "\t",
                "Host: a", "Content-Length: ", "Transfer-Encoding: chunked", "0", "5", "ff", ";ext=1", "\"q\"", "\0", "\x7f", "\u00e9")
                .Select(s => Encoding.Latin1.GetBytes(s)),
            Gen.ArrayOf(Gen.Choose(0, 255).Select(i => (byte)i), 3)))
        select parts.SelectMany(p => p).ToArray();

    [Property(MaxTest = 1000)]
    public Property Random_bytes_only_ever_produce_a_typed_outcome() =>
        Prop.ForAll(HttpishBytes.ToArbitrary(), bytes =>
        {
            // No exception, and a rejection always carries a reason.
            var r = ParseSequence(new ReadOnlySequence<byte>(bytes));
            var byteByByte = HeadParsing.Parse(bytes, chunk: 1, byteSegments: true);
            bool consistent = (r.status == ParseStatus.Done) == byteByByte.Complete;
            return consistent && (r.status != ParseStatus.Rejected || r.reason != RequestRejectionReason.None);
        });

    private sealed class NoTrailers : IHttpHeadHandler
    {
        public RequestRejectionReason OnRequestLine(in RequestLine line) => RequestRejectionReason.None;
        public RequestRejectionReason OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => RequestRejectionReason.None;
    }

    [Property(MaxTest = 1000)]
    public Property Random_bytes_never_break_the_chunked_decoder() =>
        Prop.ForAll(HttpishBytes.ToArbitrary(), bytes =>
        {
            var reader = new SequenceReader<byte>(Sequences.Segmented(bytes.Length == 0 ? [0] : bytes, 2));
            var state = new ChunkedDecoderState();
            for (int guard = 0; guard < 10_000; guard++)
            {
                var status = ChunkedDecoder.Decode(ref reader, ref state, new NoTrailers(), new ChunkedLimits(), out var reason);
                if (status == ChunkedStatus.Rejected) return reason != RequestRejectionReason.None;
                if (status != ChunkedStatus.Data) return true;
                long n = Math.Min(state.ChunkRemaining, reader.Remaining);
                reader.Advance(n);
                state.ChunkRemaining -= n;
            }
            return false; // no progress: a loop
        });

    // --- chunked bodies: the scan that validates buffered framing ahead of the data ---

    /// <summary>A chunked body: well-formed, or with one byte inserted, deleted or replaced; maybe a request behind it.</summary>
    private static readonly Gen<string> ChunkedBodies =
        from chunks in Gen.ArrayOf(
            from data in StringOf("abcdefghij\r\n0;", 0, 20)
            from ext in Gen.Elements("", ";a", ";a=b", " ; q=\"x y\"")
            select data.Length.ToString("x", System.Globalization.CultureInfo.InvariantCulture) + ext + "\r\n" + data + "\r\n")
        from trailers in Gen.Elements("", "X: 1\r\n", "A: 1\r\nB: two\r\n")
        from next in Gen.Elements("", "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        from mutation in Gen.Choose(0, 3)
        from at in Gen.Choose(0, 10_000)
        from insert in Gen.Elements("\r", "\n", " ", "x", "0x", "\r\n", ";", "0\r\n", "f")
        select Mutate(string.Concat(chunks) + "0\r\n" + trailers + "\r\n", mutation, at, insert) + next;

    private static string Mutate(string body, int mutation, int at, string insert)
    {
        int i = at % (body.Length + 1);
        return mutation switch
        {
            1 => body.Insert(i, insert),
            2 when i < body.Length => body.Remove(i, 1),
            3 when i < body.Length => body[..i] + insert[0] + body[(i + 1)..],
            _ => body,
        };
    }

    private static (ChunkedStatus, RequestRejectionReason, long) DecodeAll(ReadOnlySequence<byte> seq)
    {
        var reader = new SequenceReader<byte>(seq);
        var state = new ChunkedDecoderState();
        while (true)
        {
            var status = ChunkedDecoder.Decode(ref reader, ref state, new NoTrailers(), new ChunkedLimits(), out var reason);
            if (status != ChunkedStatus.Data) return (status, reason, status == ChunkedStatus.Rejected ? -1 : reader.Consumed);
            long n = Math.Min(state.ChunkRemaining, reader.Remaining);
            reader.Advance(n);
            state.ChunkRemaining -= n;
        }
    }

    private static (ChunkedStatus, RequestRejectionReason, long) ScanAll(ReadOnlySequence<byte> seq)
    {
        var reader = new SequenceReader<byte>(seq);
        var state = new ChunkedDecoderState();
        var status = ChunkedDecoder.Scan(ref reader, ref state, new ChunkedLimits(), out var reason);
        return (status, reason, status == ChunkedStatus.Rejected ? -1 : reader.Consumed);
    }

    [Property(MaxTest = 500)]
    public Property The_scan_reaches_the_outcome_decoding_reaches_however_the_input_is_split() =>
        Prop.ForAll(Gen.OneOf(ChunkedBodies.Select(b => Encoding.Latin1.GetBytes(b)), HttpishBytes).ToArbitrary(),
            Gen.ArrayOf(Gen.Choose(0, 10_000)).ToArbitrary(), (bytes, cuts) =>
        {
            var decoded = DecodeAll(new ReadOnlySequence<byte>(bytes));
            return ScanAll(new ReadOnlySequence<byte>(bytes)) == decoded && ScanAll(CutAt(bytes, cuts)) == decoded &&
                   DecodeAll(CutAt(bytes, cuts)) == decoded;
        });

    private sealed class BodyOwner : IRequestBodyOwner
    {
        public ValueTask OnBodyReadStartingAsync() => ValueTask.CompletedTask;
        public bool BodyReadTimedOut => false;
    }

    /// <summary>Reads a chunked body the way a handler does; returns the rejection (None when complete) and the bytes handed out.</summary>
    private static (RequestRejectionReason reason, string data) ReadBody(ReadOnlySequence<byte> input)
    {
        var body = new ChunkedRequestBody();
        body.Reset(PipeReader.Create(input), new BodyOwner(), long.MaxValue, new ChunkedLimits());
        var data = new StringBuilder();
        try
        {
            for (int guard = 0; guard <= input.Length + 2; guard++)
            {
                // Everything is buffered, so every read completes synchronously.
                var read = body.ReadAsync().AsTask().GetAwaiter().GetResult();
                data.Append(Encoding.Latin1.GetString(read.Buffer.ToArray()));
                body.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted) return (RequestRejectionReason.None, data.ToString());
            }
            throw new InvalidOperationException("the body reader made no progress");
        }
        catch (BadHttpRequestException bad) { return (bad.Reason, data.ToString()); }
    }

    [Property(MaxTest = 500)]
    public Property A_buffered_body_is_refused_before_any_byte_or_read_whole_however_it_is_split() =>
        Prop.ForAll(ChunkedBodies.ToArbitrary(), Gen.ArrayOf(Gen.Choose(0, 10_000)).ToArbitrary(), (body, cuts) =>
        {
            var bytes = Encoding.Latin1.GetBytes(body);
            var whole = ReadBody(new ReadOnlySequence<byte>(bytes));
            var split = ReadBody(CutAt(bytes, cuts));
            var oneByteSegments = ReadBody(Sequences.Segmented(bytes, 1));
            // The same 400-or-body outcome whatever the segmentation; a framing error in buffered bytes is
            // found before the handler is given any data (a body cut short by EOF is not a framing error:
            // what was there was fine and was handed out).
            bool refusedFirst = whole.reason is RequestRejectionReason.None or RequestRejectionReason.UnexpectedEndOfBody || whole.data.Length == 0;
            return (whole == split && split == oneByteSegments && refusedFirst)
                .Label($"whole={whole} split={split} bytes={oneByteSegments}");
        });

    [Property(MaxTest = 300)]
    public Property A_well_formed_body_reads_back_its_data() =>
        Prop.ForAll(Gen.ArrayOf(StringOf("abcdefghij\r\n", 1, 30)).ToArbitrary(), Gen.ArrayOf(Gen.Choose(0, 10_000)).ToArbitrary(), (chunks, cuts) =>
        {
            var body = string.Concat(chunks.Select(c => c.Length.ToString("X", System.Globalization.CultureInfo.InvariantCulture) + "\r\n" + c + "\r\n")) + "0\r\n\r\n";
            var read = ReadBody(CutAt(Encoding.Latin1.GetBytes(body), cuts));
            return read == (RequestRejectionReason.None, string.Concat(chunks));
        });
}
