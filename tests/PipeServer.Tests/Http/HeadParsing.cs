using System.Buffers;
using System.Text;
using PipeServer.Http;
using PipeServer.Tests.Infrastructure;

namespace PipeServer.Tests.Http;

/// <summary>Drives HttpParser + RequestHead the way Http1Connection does, over input that arrives in pieces.</summary>
internal static class HeadParsing
{
    public sealed record Outcome(bool Complete, RequestRejectionReason Reason, RequestHead Head, int Consumed);

    /// <summary>
    /// Feeds <paramref name="input"/> <paramref name="chunk"/> bytes at a time, each read presented as
    /// one-byte segments when <paramref name="byteSegments"/>, resuming after what was consumed.
    /// </summary>
    public static Outcome Parse(string input, int chunk = int.MaxValue, bool byteSegments = false, HttpParserLimits? limits = null)
        => Parse(Encoding.Latin1.GetBytes(input), chunk, byteSegments, limits);

    public static Outcome Parse(byte[] input, int chunk = int.MaxValue, bool byteSegments = false, HttpParserLimits? limits = null)
    {
        var head = new RequestHead();
        head.Reset();
        var state = new HeaderParseState();
        var lim = limits ?? new HttpParserLimits();
        bool lineDone = false;
        int consumed = 0, available = 0;
        while (true)
        {
            available = (int)Math.Min((long)available + chunk, input.Length);
            var span = input.AsSpan(consumed, available - consumed);
            var seq = byteSegments ? Sequences.Segmented(span, 1) : new ReadOnlySequence<byte>(span.ToArray());
            var reader = new SequenceReader<byte>(seq);
            var status = ParseStatus.NeedMoreData;
            var reason = RequestRejectionReason.None;
            if (!lineDone)
            {
                status = HttpParser.ParseRequestLine(ref reader, head, lim, out reason);
                if (status == ParseStatus.Done) lineDone = true;
            }
            if (lineDone) status = HttpParser.ParseHeaders(ref reader, head, ref state, lim, out reason);
            consumed += (int)reader.Consumed;
            if (status == ParseStatus.Rejected) return new(false, reason, head, consumed);
            if (status == ParseStatus.Done)
            {
                var final = head.OnHeadersComplete();
                return new(final == RequestRejectionReason.None, final, head, consumed);
            }
            if (available == input.Length) return new(false, RequestRejectionReason.None, head, consumed);
        }
    }

    /// <summary>The ways each case is fed: whole, one byte per read, one byte per segment, and 7-byte reads of 1-byte segments.</summary>
    public static IEnumerable<(int chunk, bool segments)> Feeds =>
        [(int.MaxValue, false), (1, false), (int.MaxValue, true), (7, true)];
}
