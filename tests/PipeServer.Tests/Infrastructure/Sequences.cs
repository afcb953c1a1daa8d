using System.Buffers;

namespace PipeServer.Tests.Infrastructure;

/// <summary>Builds ReadOnlySequences split into segments of a chosen size (1 = one byte per segment).</summary>
public static class Sequences
{
    public static ReadOnlySequence<byte> Segmented(ReadOnlySpan<byte> data, int segmentSize)
    {
        if (data.Length == 0) return ReadOnlySequence<byte>.Empty;
        Segment? first = null, last = null;
        for (int i = 0; i < data.Length; i += segmentSize)
        {
            var part = data.Slice(i, Math.Min(segmentSize, data.Length - i)).ToArray();
            var segment = new Segment(part, last?.RunningIndex + last?.Memory.Length ?? 0);
            if (last is null) first = segment; else last.SetNext(segment);
            last = segment;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] data, long runningIndex) { Memory = data; RunningIndex = runningIndex; }
        public void SetNext(Segment next) => Next = next;
    }
}
