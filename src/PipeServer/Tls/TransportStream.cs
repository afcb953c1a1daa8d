using System.Buffers;
using System.IO.Pipelines;

namespace PipeServer.Tls;

// Where this sits: under SslStream, over the transport's two pipes (TlsConnection.cs drives it). SslStream
// wants a Stream; the transport has pipes. Reads take ciphertext from the transport's input pipe, writes
// put ciphertext into its output pipe and flush it (so the transport's backpressure reaches SslStream).
// It owns nothing: the pipes are completed by TlsConnection, the socket is closed by the transport.

/// <summary>A Stream over a transport connection's pipes, for SslStream; counts what it takes.</summary>
internal sealed class TransportStream(PipeReader input, PipeWriter output) : Stream
{
    private long _taken;
    private volatile bool _holding;

    /// <summary>Ciphertext bytes handed to SslStream so far (read by other threads).</summary>
    public long Taken => Volatile.Read(ref _taken);

    /// <summary>
    /// Ciphertext has reached SslStream that has not come out as plaintext yet (a record being decrypted).
    /// Set here when bytes are found; cleared by TlsConnection once the plaintext is in its pipe, and here
    /// when SslStream asks for more and the pipe is empty.
    /// </summary>
    public bool Holding { get => _holding; set => _holding = value; }

    public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (!input.TryRead(out var result))
        {
            // SslStream wants more and none has come: what it took so far is either plaintext already or the
            // start of a record still on its way (or a record with no plaintext at all, a TLS 1.3 KeyUpdate).
            // Not Holding, then: a drain must not wait for bytes that may never come; the rest of a record, when
            // it arrives, is the transport's to report until this read takes it.
            _holding = false;
            result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        var buffer = result.Buffer;
        // Cancelled: TlsConnection is closing the connection and wants this read to end as an EOF.
        if (result.IsCanceled || (buffer.IsEmpty && result.IsCompleted))
        {
            input.AdvanceTo(buffer.Start, buffer.End);
            return 0;
        }
        if (destination.IsEmpty)
        {
            // A zero-byte read (SslStream waiting for data without a buffer): data is here; consume nothing,
            // examine nothing, so the next read returns it at once. From here the bytes are on their way
            // to plaintext: Holding, so a drain's look sees them.
            _holding = true;
            input.AdvanceTo(buffer.Start);
            return 0;
        }
        int n = (int)Math.Min(buffer.Length, destination.Length);
        buffer.Slice(0, n).CopyTo(destination.Span);
        _holding = true;
        Volatile.Write(ref _taken, _taken + n);
        input.AdvanceTo(buffer.GetPosition(n));
        return n;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
    {
        var flush = await output.WriteAsync(source, cancellationToken).ConfigureAwait(false);
        // The transport's send side is gone (peer reset, or aborted): SslStream must see a failed write.
        if (flush.IsCompleted || flush.IsCanceled) throw new IOException("The connection's sending side is closed.");
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask; // every write flushes

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    // SslStream is only ever driven asynchronously here; a synchronous call would block a transport thread.
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("asynchronous only");
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("asynchronous only");
    public override void Flush() { }

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
