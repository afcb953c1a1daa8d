using System.Buffers;
using System.IO.Pipelines;

namespace PipeServer.Http;

// Where this sits: step 4 of a request's journey, while the handler runs. The handler reads the body
// through HttpRequest.Body, a PipeReader layered over the connection's input. The layer hands out slices
// of the connection buffer (no copy), never past the end of this request's body, so the bytes of a
// pipelined request behind it stay where the connection will parse them next. Nothing is buffered whole:
// the handler sees the body as it arrives, and the connection's pipe bounds how much can be read ahead.

/// <summary>Hooks the body reader needs from its connection.</summary>
internal interface IRequestBodyOwner
{
    /// <summary>Called before the first read that must wait for the client: sends "100 Continue" if it was asked for.</summary>
    ValueTask OnBodyReadStartingAsync();

    /// <summary>Set by the heartbeat when the body arrives slower than the minimum data rate.</summary>
    bool BodyReadTimedOut { get; }
}

/// <summary>A request body. Reading past its end returns a completed result; a protocol error throws <see cref="BadHttpRequestException"/>.</summary>
internal abstract class RequestBody : PipeReader
{
    private protected PipeReader Input = null!;
    private protected IRequestBodyOwner Owner = null!;
    private protected long MaxBodySize;
    private protected long Received;
    private protected ReadOnlySequence<byte> Returned;
    private bool _userCanceled, _started, _completedByHandler;
    private volatile bool _readPending;

    /// <summary>True while the handler waits for body bytes from the client: the only time the data rate is measured.</summary>
    public bool IsWaitingForData => _readPending;
    /// <summary>A slice of the input was handed out and not yet advanced past.</summary>
    private protected bool Outstanding;
    private Stream? _stream;

    /// <summary>True once every byte of the body (and, for chunked, its trailers) has been consumed.</summary>
    public abstract bool IsComplete { get; }

    /// <summary>Body bytes handed to and consumed by the reader so far.</summary>
    public long BytesConsumed => Received;

    /// <summary>The body as a Stream, for code written against streams.</summary>
    public Stream AsStream() => _stream ??= AsStream(leaveOpen: true);

    internal void ResetFor(PipeReader input, IRequestBodyOwner owner, long maxBodySize)
    {
        Input = input; Owner = owner; MaxBodySize = maxBodySize;
        Received = 0; Returned = default; Outstanding = false; _userCanceled = false; _started = false; _completedByHandler = false;
    }

    /// <summary>Back to the pool (Connections/RequestObjects.cs): forgets the connection's input and owner.</summary>
    internal void Detach()
    {
        Input = null!; Owner = null!; Returned = default; Outstanding = false;
        Received = 0; _userCanceled = false; _started = false; _completedByHandler = false;
    }

    public sealed override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_completedByHandler, this);
        if (IsComplete) return new ReadResult(default, false, true);
        if (!_started)
        {
            _started = true;
            await Owner.OnBodyReadStartingAsync().ConfigureAwait(false);
        }
        while (true)
        {
            ReadResult result;
            _readPending = true;
            try { result = await Input.ReadAsync(cancellationToken).ConfigureAwait(false); }
            finally { _readPending = false; }
            if (result.IsCanceled)
            {
                if (Owner.BodyReadTimedOut)
                {
                    Input.AdvanceTo(result.Buffer.Start);
                    throw new BadHttpRequestException(RequestRejectionReason.RequestBodyTimeout);
                }
                // Only a cancel the handler asked for surfaces; the connection's own wake-ups are not its business.
                Input.AdvanceTo(result.Buffer.Start);
                if (_userCanceled) { _userCanceled = false; return new ReadResult(default, true, false); }
                continue;
            }
            if (TryProduce(result, out var produced)) return produced;
        }
    }

    public sealed override bool TryRead(out ReadResult result)
    {
        ObjectDisposedException.ThrowIf(_completedByHandler, this);
        if (IsComplete) { result = new ReadResult(default, false, true); return true; }
        if (_started && Input.TryRead(out var inner))
        {
            // A cancelled read is one of the connection's own wake-ups (drain, timeouts): give the read back
            // untouched, exactly as ReadAsync does, so the input has no read left open behind the handler.
            if (inner.IsCanceled) Input.AdvanceTo(inner.Buffer.Start);
            else if (TryProduce(inner, out result)) return true;
        }
        result = default;
        return false;
    }

    /// <summary>Turns one read of the connection input into a read of the body, or advances and asks for more.</summary>
    private protected abstract bool TryProduce(in ReadResult input, out ReadResult result);

    public sealed override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public sealed override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        if (!Outstanding) return; // the end-of-body result holds no input
        Outstanding = false;
        long consumedBytes = Returned.Slice(Returned.Start, consumed).Length;
        OnConsumed(consumedBytes, ref examined);
        Input.AdvanceTo(consumed, examined);
        Returned = default;
    }

    private protected abstract void OnConsumed(long bytes, ref SequencePosition examined);

    public sealed override void CancelPendingRead()
    {
        _userCanceled = true;
        Input.CancelPendingRead();
    }

    /// <summary>The handler is done reading; whatever it left is drained (or the connection closed) afterwards.</summary>
    public sealed override void Complete(Exception? exception = null) => _completedByHandler = true;

    /// <summary>
    /// Reads and discards what the handler left, up to a bound, so the connection can serve the next request.
    /// Returns false when the bound was reached first (the connection must then close).
    /// </summary>
    internal async ValueTask<bool> DrainAsync(long maxBytes, CancellationToken cancellationToken)
    {
        _completedByHandler = false;
        _started = true; // never send 100 Continue just to throw the body away
        long start = Received;
        while (!IsComplete)
        {
            if (Received - start > maxBytes) return false;
            var result = await ReadAsync(cancellationToken).ConfigureAwait(false);
            AdvanceTo(result.Buffer.End);
            if (result.IsCompleted) break;
        }
        return true;
    }

    private protected static ReadResult EndOfBody() => new(default, false, true);
}

/// <summary>A body framed by Content-Length (RFC 9112 §6.3 rule 6).</summary>
internal sealed class ContentLengthRequestBody : RequestBody
{
    private long _remaining;
    private bool _returnedLast;

    public override bool IsComplete => _remaining == 0;

    internal void Reset(PipeReader input, IRequestBodyOwner owner, long contentLength, long maxBodySize)
    {
        ResetFor(input, owner, maxBodySize);
        _remaining = contentLength;
        _returnedLast = false;
    }

    private protected override bool TryProduce(in ReadResult input, out ReadResult result)
    {
        var buffer = input.Buffer;
        if (buffer.Length >= _remaining)
        {
            // Everything that is left is here: hand out exactly the body, never the next request's bytes.
            Returned = buffer.Slice(0, _remaining);
            _returnedLast = true;
            Outstanding = true;
            result = new ReadResult(Returned, false, true);
            return true;
        }
        if (input.IsCompleted)
        {
            Input.AdvanceTo(buffer.Start, buffer.End);
            throw new BadHttpRequestException(RequestRejectionReason.UnexpectedEndOfBody);
        }
        Returned = buffer;
        _returnedLast = false;
        Outstanding = true;
        result = new ReadResult(buffer, false, false);
        return true;
    }

    private protected override void OnConsumed(long bytes, ref SequencePosition examined)
    {
        _remaining -= bytes;
        Received += bytes;
        // When the whole rest was handed out, nothing more is awaited from the socket: mark only what was
        // consumed as examined, so a second read returns the unconsumed rest at once instead of waiting.
        if (_returnedLast) examined = Returned.GetPosition(bytes);
    }
}

/// <summary>A body in the chunked transfer coding; data is handed out chunk by chunk as slices of the input.</summary>
/// <remarks>
/// Framing is validated ahead of the data: before each slice is handed out, <see cref="ChunkedDecoder.Scan"/>
/// checks the framing of every byte already in the input, so framing that arrived malformed together with
/// the data in front of it is a 400 before the handler sees a byte (rather than a response that starts and
/// is then reset). What has not arrived yet is still streamed as it comes. The scan resumes where it
/// stopped, so each byte's framing is scanned once ahead and once when decoded, however often it is read.
/// </remarks>
internal sealed class ChunkedRequestBody : RequestBody, IHttpHeadHandler
{
    private ChunkedDecoderState _state;
    private ChunkedLimits _limits;

    // Offsets count bytes of this body from its first byte. The scan is never behind the decoder: it runs over
    // each buffer before the decoder does, and the handler can only consume what the decoder handed out.
    private ChunkedDecoderState _scanState;
    private long _scannedTo;        // the scan has validated the framing of the body's bytes before this offset
    private bool _scanComplete;     // the scan found the end of the body: nothing after it is the body's
    private long _inputStart;       // offset of the first byte of the connection input's buffer
    private long _framingInFront;   // framing bytes between the buffer's start and the slice handed out

    /// <summary>Trailer fields, filled once the body has been read to its end.</summary>
    public HttpHeaders Trailers { get; } = new();

    public override bool IsComplete => _state.Phase == ChunkedPhase.Complete;

    internal void Reset(PipeReader input, IRequestBodyOwner owner, long maxBodySize, in ChunkedLimits limits)
    {
        ResetFor(input, owner, maxBodySize);
        _state = default;
        _limits = limits;
        _scanState = default;
        _scannedTo = 0; _scanComplete = false; _inputStart = 0; _framingInFront = 0;
        Trailers.Clear();
    }

    private protected override bool TryProduce(in ReadResult input, out ReadResult result)
    {
        var buffer = input.Buffer;
        ScanAhead(buffer);
        var reader = new SequenceReader<byte>(buffer);
        var status = ChunkedDecoder.Decode(ref reader, ref _state, this, _limits, out var reason);
        switch (status)
        {
            case ChunkedStatus.Data:
                if (Received + _state.ChunkRemaining > MaxBodySize)
                {
                    Input.AdvanceTo(reader.Position);
                    throw new BadHttpRequestException(RequestRejectionReason.BodyTooLarge);
                }
                long available = Math.Min(_state.ChunkRemaining, reader.Remaining);
                Outstanding = true;
                _framingInFront = reader.Consumed;
                // The framing before the data is consumed implicitly when the handler advances past it.
                Returned = buffer.Slice(reader.Position, available);
                result = new ReadResult(Returned, false, false);
                return true;
            case ChunkedStatus.Complete:
                Input.AdvanceTo(reader.Position);
                _inputStart += reader.Consumed;
                result = EndOfBody();
                return true;
            case ChunkedStatus.Rejected:
                Input.AdvanceTo(reader.Position);
                throw new BadHttpRequestException(reason);
            default: // NeedMoreData: keep the consumed framing, wait for bytes past what we have seen
                Input.AdvanceTo(reader.Position, buffer.End);
                _inputStart += reader.Consumed;
                if (input.IsCompleted) throw new BadHttpRequestException(RequestRejectionReason.UnexpectedEndOfBody);
                result = default;
                return false;
        }
    }

    /// <summary>
    /// Validates the framing of the bytes of <paramref name="buffer"/> not scanned before; throws the
    /// rejection if any is malformed. Bounded by the buffer, which the connection's input pipe bounds.
    /// </summary>
    private void ScanAhead(in ReadOnlySequence<byte> buffer)
    {
        if (_scanComplete) return;
        long from = _scannedTo - _inputStart;
        if (from >= buffer.Length) return; // nothing arrived since the last scan
        var reader = new SequenceReader<byte>(buffer.Slice(from));
        var status = ChunkedDecoder.Scan(ref reader, ref _scanState, _limits, out var reason);
        _scannedTo += reader.Consumed;
        if (status == ChunkedStatus.Complete) _scanComplete = true;
        else if (status == ChunkedStatus.Rejected)
        {
            Input.AdvanceTo(buffer.Start);
            throw new BadHttpRequestException(reason);
        }
    }

    private protected override void OnConsumed(long bytes, ref SequencePosition examined)
    {
        _state.ChunkRemaining -= bytes;
        Received += bytes;
        _inputStart += _framingInFront + bytes; // the framing in front of the slice is consumed with it
    }

    RequestRejectionReason IHttpHeadHandler.OnRequestLine(in RequestLine line) => RequestRejectionReason.InvalidRequestLine;

    RequestRejectionReason IHttpHeadHandler.OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        Trailers.Add(KnownHeaders.Name(name), System.Text.Encoding.Latin1.GetString(value));
        return RequestRejectionReason.None;
    }
}

/// <summary>No body: GET without Content-Length, or Content-Length: 0.</summary>
internal sealed class EmptyRequestBody : RequestBody
{
    public static EmptyRequestBody Create() => new();
    public override bool IsComplete => true;
    private protected override bool TryProduce(in ReadResult input, out ReadResult result) { result = EndOfBody(); return true; }
    private protected override void OnConsumed(long bytes, ref SequencePosition examined) { }
}
