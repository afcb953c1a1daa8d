using System.Buffers;

namespace PipeServer.Http;

// Where this sits: inside a request with "Transfer-Encoding: chunked". ChunkedRequestBody calls Decode
// each time it has bytes; the decoder walks the framing (size line, extensions, CRLF after data,
// trailers) and stops when chunk data is next, so the data itself is handed to the application as a
// slice of the connection buffer, never copied. Before handing any out, the body reader runs Scan, the
// same state machine with the data skipped, over everything already buffered: malformed framing that has
// been received is refused before the handler sees a byte. Like HttpParser, both are pure and allocation-free.
//
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )      (RFC 9112 §7.1)

internal enum ChunkedPhase : byte { SizeLine, Data, DataTerminator, Trailers, Complete }

internal enum ChunkedStatus : byte
{
    NeedMoreData,
    /// <summary>Chunk data is next: up to <see cref="ChunkedDecoderState.ChunkRemaining"/> bytes of it.</summary>
    Data,
    /// <summary>The last chunk and the trailer section have been consumed.</summary>
    Complete,
    Rejected,
}

internal struct ChunkedDecoderState
{
    public ChunkedPhase Phase;
    public long ChunkRemaining;
    public int ExtensionBytes;
    public HeaderParseState Trailers;
}

/// <summary>Bounds on the chunked framing itself (the body size is bounded by the body reader).</summary>
internal readonly record struct ChunkedLimits(int MaxSizeLineLength = 4096, int MaxExtensionBytes = 16 * 1024, int MaxTrailerBytes = 8 * 1024, int MaxTrailerCount = 32)
{
    public ChunkedLimits() : this(4096, 16 * 1024, 8 * 1024, 32) { }
}

internal static class ChunkedDecoder
{
    private const byte CR = (byte)'\r', LF = (byte)'\n';

    public static ChunkedStatus Decode<THandler>(ref SequenceReader<byte> reader, ref ChunkedDecoderState state,
        THandler trailerHandler, in ChunkedLimits limits, out RequestRejectionReason reason) where THandler : IHttpHeadHandler
    {
        reason = RequestRejectionReason.None;
        while (true)
        {
            switch (state.Phase)
            {
                case ChunkedPhase.SizeLine:
                {
                    if (!reader.TryReadTo(out ReadOnlySequence<byte> line, LF, advancePastDelimiter: true))
                    {
                        if (reader.Remaining > limits.MaxSizeLineLength)
                            return Reject(out reason, RequestRejectionReason.ChunkExtensionsTooLarge);
                        return ChunkedStatus.NeedMoreData;
                    }
                    if (line.Length + 1 > limits.MaxSizeLineLength)
                        return Reject(out reason, RequestRejectionReason.ChunkExtensionsTooLarge);

                    Span<byte> copy = stackalloc byte[(int)line.Length];
                    line.CopyTo(copy);
                    reason = ParseSizeLine(copy, ref state, limits, out long size);
                    if (reason != RequestRejectionReason.None) return ChunkedStatus.Rejected;
                    state.ChunkRemaining = size;
                    state.Phase = size == 0 ? ChunkedPhase.Trailers : ChunkedPhase.Data;
                    break;
                }
                case ChunkedPhase.Data:
                    if (state.ChunkRemaining == 0) { state.Phase = ChunkedPhase.DataTerminator; break; }
                    return reader.Remaining == 0 ? ChunkedStatus.NeedMoreData : ChunkedStatus.Data;

                case ChunkedPhase.DataTerminator:
                    if (!reader.TryPeek(out byte first)) return ChunkedStatus.NeedMoreData;
                    if (first != CR) return Reject(out reason, RequestRejectionReason.InvalidChunkTerminator);
                    if (!reader.TryPeek(1, out byte second)) return ChunkedStatus.NeedMoreData;
                    if (second != LF) return Reject(out reason, RequestRejectionReason.InvalidChunkTerminator);
                    reader.Advance(2);
                    state.Phase = ChunkedPhase.SizeLine;
                    break;

                case ChunkedPhase.Trailers:
                {
                    var trailerLimits = new HttpParserLimits(limits.MaxSizeLineLength, limits.MaxTrailerCount, limits.MaxTrailerBytes);
                    var status = HttpParser.ParseHeaders(ref reader, trailerHandler, ref state.Trailers, trailerLimits, out reason,
                        RequestRejectionReason.TrailersTooLarge);
                    if (status == ParseStatus.NeedMoreData) return ChunkedStatus.NeedMoreData;
                    if (status == ParseStatus.Rejected) return ChunkedStatus.Rejected;
                    state.Phase = ChunkedPhase.Complete;
                    return ChunkedStatus.Complete;
                }

                case ChunkedPhase.Complete:
                    return ChunkedStatus.Complete;
            }
        }
    }

    /// <summary>
    /// Walks the framing of every byte in <paramref name="reader"/>, skipping chunk data instead of stopping
    /// at it: NeedMoreData when all of it is well-formed so far, Complete when the body ends within it
    /// (the reader then stops at the body's end, never reading into a pipelined request), Rejected with the
    /// reason Decode would give on reaching the same bytes. Trailer fields are checked but not kept.
    /// Resumable like Decode: call again with the same state from where the reader stopped.
    /// </summary>
    public static ChunkedStatus Scan(ref SequenceReader<byte> reader, ref ChunkedDecoderState state, in ChunkedLimits limits,
        out RequestRejectionReason reason)
    {
        while (true)
        {
            var status = Decode(ref reader, ref state, default(IgnoredTrailers), limits, out reason);
            if (status != ChunkedStatus.Data) return status;
            // Data means at least one byte of chunk data is here, so every turn makes progress.
            long n = Math.Min(state.ChunkRemaining, reader.Remaining);
            reader.Advance(n);
            state.ChunkRemaining -= n;
        }
    }

    /// <summary>Trailer fields seen by <see cref="Scan"/>: validated by the parser, then dropped.</summary>
    private readonly struct IgnoredTrailers : IHttpHeadHandler
    {
        public RequestRejectionReason OnRequestLine(in RequestLine line) => RequestRejectionReason.InvalidRequestLine;
        public RequestRejectionReason OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => RequestRejectionReason.None;
    }

    /// <summary>The size line, LF already stripped: 1*HEXDIG [ chunk-ext ] CR.</summary>
    private static RequestRejectionReason ParseSizeLine(ReadOnlySpan<byte> line, ref ChunkedDecoderState state, in ChunkedLimits limits, out long size)
    {
        size = 0;
        if (line.Length == 0 || line[^1] != CR) return RequestRejectionReason.InvalidLineEnding;
        line = line[..^1];
        if (line.IndexOf(CR) >= 0) return RequestRejectionReason.InvalidLineEnding;

        int i = 0;
        for (; i < line.Length; i++)
        {
            int digit = HexValue(line[i]);
            if (digit < 0) break;
            if (size > (long.MaxValue >> 4)) return RequestRejectionReason.InvalidChunkSize; // overflow
            size = (size << 4) | (uint)digit;
        }
        if (i == 0) return RequestRejectionReason.InvalidChunkSize; // empty, "0x", leading space
        if (i == line.Length) return RequestRejectionReason.None;

        // Only BWS then ';' may follow the digits: "5 " or "5x" is a malformed size, not an extension.
        var rest = line[i..];
        var trimmed = rest.TrimStart(" \t"u8);
        if (trimmed.Length == 0 || trimmed[0] != (byte)';') return RequestRejectionReason.InvalidChunkSize;

        state.ExtensionBytes += rest.Length;
        if (state.ExtensionBytes > limits.MaxExtensionBytes) return RequestRejectionReason.ChunkExtensionsTooLarge;
        return ValidateExtensions(trimmed) ? RequestRejectionReason.None : RequestRejectionReason.InvalidChunkExtension;
    }

    /// <summary>*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ): extensions are checked, then ignored.</summary>
    private static bool ValidateExtensions(ReadOnlySpan<byte> s)
    {
        while (true)
        {
            s = s.TrimStart(" \t"u8);
            if (s.Length == 0) return true;
            if (s[0] != (byte)';') return false;
            s = s[1..].TrimStart(" \t"u8);
            int nameEnd = s.IndexOfAnyExcept(HttpCharacters.Token);
            if (s.Length == 0 || nameEnd == 0) return false;
            if (nameEnd < 0) return true;
            s = s[nameEnd..].TrimStart(" \t"u8);
            if (s.Length == 0 || s[0] == (byte)';') continue;
            if (s[0] != (byte)'=') return false;
            s = s[1..].TrimStart(" \t"u8);
            if (s.Length == 0) return false;
            if (s[0] == (byte)'"')
            {
                int j = 1;
                for (; j < s.Length; j++)
                {
                    byte c = s[j];
                    if (c == (byte)'\\') { j++; if (j >= s.Length || !IsQuotedPairChar(s[j])) return false; continue; }
                    if (c == (byte)'"') break;
                    if (!IsQdText(c)) return false;
                }
                if (j >= s.Length) return false; // unterminated
                s = s[(j + 1)..];
            }
            else
            {
                int valueEnd = s.IndexOfAnyExcept(HttpCharacters.Token);
                if (valueEnd == 0) return false;
                if (valueEnd < 0) return true;
                s = s[valueEnd..];
            }
        }
    }

    private static bool IsQdText(byte c) => c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E) || c >= 0x80;
    private static bool IsQuotedPairChar(byte c) => c == '\t' || (c >= 0x20 && c != 0x7F);

    private static int HexValue(byte b)
    {
        if ((uint)(b - '0') <= 9) return b - '0';
        int lower = b | 0x20;
        if ((uint)(lower - 'a') <= 5) return lower - 'a' + 10;
        return -1;
    }

    private static ChunkedStatus Reject(out RequestRejectionReason reason, RequestRejectionReason value)
    {
        reason = value;
        return ChunkedStatus.Rejected;
    }
}
