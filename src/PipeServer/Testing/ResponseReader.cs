using System.Buffers;
using System.IO.Pipelines;
using System.Text;

namespace PipeServer.Testing;

// Where this sits: the client end of an in-memory connection (InMemoryServer.cs). It reads what the
// server's response writer (Http/HttpResponse.cs) framed, by RFC 9112 §6: no body for HEAD, 1xx, 204 and
// 304; then Transfer-Encoding: chunked; then Content-Length; else the body runs to the connection's close.
// It consumes the pipe as it goes (the server's flushes never wait on it) and holds at most the bounds given.

/// <summary>Reads responses, one after another, from a connection's output.</summary>
internal sealed class ResponseReader(PipeReader input, int maxBodySize)
{
    private const int MaxHeadSize = 64 * 1024;

    public async Task<TestResponse> ReadAsync(bool headRequest, CancellationToken cancellationToken)
    {
        while (true)
        {
            var (version, status, reason, headers) = await ReadHeadAsync(cancellationToken).ConfigureAwait(false);
            if (status is >= 100 and < 200 && status != 101) continue; // interim (100 Continue): the final response follows

            var body = new ArrayBufferWriter<byte>();
            List<KeyValuePair<string, string>> trailers = [];
            bool chunked = Find(headers, "Transfer-Encoding")?.Contains("chunked", StringComparison.OrdinalIgnoreCase) == true;
            if (headRequest || status is 204 or 304 || status < 200) { }
            else if (chunked) trailers = await ReadChunkedAsync(body, cancellationToken).ConfigureAwait(false);
            else if (Find(headers, "Content-Length") is { } cl)
            {
                if (!long.TryParse(cl, System.Globalization.NumberStyles.None, null, out long length)) throw new InvalidDataException($"Invalid Content-Length '{cl}'.");
                await ReadLengthAsync(body, length, cancellationToken).ConfigureAwait(false);
            }
            else await ReadToEndAsync(body, cancellationToken).ConfigureAwait(false);
            return new TestResponse(version, status, reason, headers, body.WrittenSpan.ToArray(), chunked, trailers);
        }
    }

    private async Task<(string, int, string, List<KeyValuePair<string, string>>)> ReadHeadAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var reader = new SequenceReader<byte>(buffer);
            if (reader.TryReadTo(out ReadOnlySequence<byte> head, "\r\n\r\n"u8))
            {
                var text = Encoding.Latin1.GetString(head);
                input.AdvanceTo(reader.Position);
                return ParseHead(text);
            }
            if (buffer.Length > MaxHeadSize) throw new InvalidDataException($"A response head over {MaxHeadSize} bytes.");
            if (result.IsCompleted)
                throw new InvalidDataException(buffer.IsEmpty ? "The server closed the connection without a response." : $"The server closed the connection inside a response head ({buffer.Length} bytes).");
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static (string, int, string, List<KeyValuePair<string, string>>) ParseHead(string text)
    {
        var lines = text.Split("\r\n");
        var statusLine = lines[0].Split(' ', 3);
        if (statusLine.Length < 2 || !statusLine[0].StartsWith("HTTP/1.", StringComparison.Ordinal) || statusLine[1].Length != 3 ||
            !int.TryParse(statusLine[1], System.Globalization.NumberStyles.None, null, out int status))
            throw new InvalidDataException($"Not an HTTP/1.x status line: '{lines[0]}'.");
        return (statusLine[0], status, statusLine.Length > 2 ? statusLine[2] : "", ParseFields(lines.AsSpan(1)));
    }

    private static List<KeyValuePair<string, string>> ParseFields(ReadOnlySpan<string> lines)
    {
        var fields = new List<KeyValuePair<string, string>>();
        foreach (var line in lines)
        {
            int colon = line.IndexOf(':');
            if (colon <= 0) throw new InvalidDataException($"Not a header field: '{line}'.");
            fields.Add(new(line[..colon], line[(colon + 1)..].Trim(' ', '\t')));
        }
        return fields;
    }

    private async Task ReadLengthAsync(ArrayBufferWriter<byte> body, long length, CancellationToken cancellationToken)
    {
        if (length > maxBodySize) throw new InvalidDataException($"A response body of {length} bytes is over the {maxBodySize}-byte bound.");
        while (body.WrittenCount < length)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var take = result.Buffer.Slice(0, Math.Min(result.Buffer.Length, length - body.WrittenCount));
            foreach (var segment in take) body.Write(segment.Span);
            input.AdvanceTo(take.End);
            if (body.WrittenCount < length && result.IsCompleted)
                throw new InvalidDataException($"The server closed the connection after {body.WrittenCount} of {length} body bytes.");
        }
    }

    private async Task ReadToEndAsync(ArrayBufferWriter<byte> body, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            foreach (var segment in result.Buffer) body.Write(segment.Span);
            input.AdvanceTo(result.Buffer.End);
            if (body.WrittenCount > maxBodySize) throw new InvalidDataException($"A response body over the {maxBodySize}-byte bound.");
            if (result.IsCompleted) return;
        }
    }

    /// <summary>chunk = size [; ext] CRLF data CRLF, ended by "0" CRLF, trailer fields, CRLF. Consumed element by element.</summary>
    private async Task<List<KeyValuePair<string, string>>> ReadChunkedAsync(ArrayBufferWriter<byte> body, CancellationToken cancellationToken)
    {
        long remaining = 0;         // data bytes of the current chunk still to come
        bool dataCrlfNext = false;  // the CRLF after a chunk's data is next
        bool inTrailers = false;    // after the last chunk: trailer fields up to an empty line
        var trailers = new List<KeyValuePair<string, string>>();
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var reader = new SequenceReader<byte>(result.Buffer);
            while (true)
            {
                if (remaining > 0)
                {
                    if (reader.End) break;
                    var take = reader.UnreadSequence.Slice(0, Math.Min(reader.Remaining, remaining));
                    foreach (var segment in take) body.Write(segment.Span);
                    reader.Advance(take.Length);
                    remaining -= take.Length;
                    dataCrlfNext = remaining == 0;
                    continue;
                }
                if (dataCrlfNext)
                {
                    if (reader.Remaining < 2) break;
                    if (!reader.IsNext("\r\n"u8, advancePast: true)) throw new InvalidDataException("A chunk's data is not followed by CRLF.");
                    dataCrlfNext = false;
                    continue;
                }
                if (!reader.TryReadTo(out ReadOnlySequence<byte> line, "\r\n"u8))
                {
                    if (reader.Remaining > MaxHeadSize) throw new InvalidDataException("A chunk line or trailer field without CRLF.");
                    break;
                }
                var text = Encoding.Latin1.GetString(line);
                if (inTrailers)
                {
                    if (text.Length == 0) { input.AdvanceTo(reader.Position); return trailers; }
                    trailers.AddRange(ParseFields([text]));
                    continue;
                }
                if (!long.TryParse(text.Split(';')[0].Trim(), System.Globalization.NumberStyles.AllowHexSpecifier, null, out long size) || size < 0)
                    throw new InvalidDataException($"Invalid chunk size line '{text}'.");
                if (size == 0) { inTrailers = true; continue; }
                if (body.WrittenCount + size > maxBodySize) throw new InvalidDataException($"A response body over the {maxBodySize}-byte bound.");
                remaining = size;
            }
            input.AdvanceTo(reader.Position, result.Buffer.End);
            if (result.IsCompleted) throw new InvalidDataException($"The server closed the connection inside a chunked body ({body.WrittenCount} bytes, no last chunk).");
        }
    }

    private static string? Find(List<KeyValuePair<string, string>> fields, string name) =>
        fields.FirstOrDefault(f => string.Equals(f.Key, name, StringComparison.OrdinalIgnoreCase)).Value;
}
