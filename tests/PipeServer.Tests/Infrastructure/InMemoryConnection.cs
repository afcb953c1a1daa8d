using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Transports;
using PipeServer.Connections;
using PipeServer.Http;
using PipeServer.Server;

namespace PipeServer.Tests.Infrastructure;

/// <summary>
/// An Http1Connection over two in-memory pipes: no socket, no port. The test writes request bytes into
/// <see cref="ClientOutput"/> and reads response bytes from <see cref="ClientInput"/>.
/// </summary>
internal sealed class InMemoryConnection : ITransportControl, IAsyncDisposable
{
    private readonly Pipe _toServer = new();
    private readonly Pipe _toClient = new();
    private readonly CountingPipeWriter _output;

    public InMemoryConnection(RequestHandler app, HttpServerOptions? options = null, ServerLifetime? lifetime = null, CancellationToken serverAbort = default)
    {
        Lifetime = lifetime ?? new ServerLifetime();
        _output = new CountingPipeWriter(_toClient.Writer);
        Connection = new Http1Connection(1, new DuplexPipe(_toServer.Reader, _output), this,
            options ?? new HttpServerOptions(), app, Lifetime, NullLogger.Instance, serverAbort);
        Processing = Task.Run(Connection.ProcessAsync);
    }

    public Http1Connection Connection { get; }
    public ServerLifetime Lifetime { get; }
    public Task Processing { get; }
    public bool Aborted { get; private set; }
    public bool LingerRequested { get; private set; }
    public PipeWriter ClientOutput => _toServer.Writer;
    /// <summary>How many times the server flushed its output: each flush is one send (one syscall) on a socket.</summary>
    public int Flushes => _output.Flushes;
    public PipeReader ClientInput => _toClient.Reader;

    public async Task SendAsync(string text)
    {
        await _toServer.Writer.WriteAsync(Encoding.Latin1.GetBytes(text)).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
    }

    /// <summary>Everything the server wrote until it completed its output (bounded).</summary>
    public Task<string> ReadAllAsync(TimeSpan? timeout = null) => ReadWhileAsync(_ => true, timeout);

    /// <summary>Reads until <paramref name="marker"/> has appeared <paramref name="count"/> times (bounded).</summary>
    public Task<string> ReadUntilAsync(string marker, int count = 1, TimeSpan? timeout = null) =>
        ReadWhileAsync(text =>
        {
            int seen = 0, at = 0;
            while ((at = text.IndexOf(marker, at, StringComparison.Ordinal)) >= 0) { seen++; at += marker.Length; }
            return seen < count;
        }, timeout);

    /// <summary>Reads the server's output while <paramref name="wantMore"/> says so or until it completes (bounded).</summary>
    private async Task<string> ReadWhileAsync(Func<string, bool> wantMore, TimeSpan? timeout)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(5));
        var sb = new StringBuilder();
        while (true)
        {
            var result = await _toClient.Reader.ReadAsync(cts.Token);
            foreach (var segment in result.Buffer) sb.Append(Encoding.Latin1.GetString(segment.Span));
            _toClient.Reader.AdvanceTo(result.Buffer.End);
            var text = sb.ToString();
            if (result.IsCompleted || !wantMore(text)) return text;
        }
    }

    void ITransportControl.Abort()
    {
        Aborted = true;
        _toServer.Writer.Complete(new IOException("aborted"));
        _toClient.Reader.Complete();
    }

    void ITransportControl.RequestLingeringClose() => LingerRequested = true;

    // Bytes "received by the kernel" but not yet in the input pipe, as a socket's receive queue holds a request
    // its receive loop has not moved yet. Like a receive loop, the transport delivers them on its own; here it
    // does so once the protocol asks about them, so a test learns at once whether the protocol looked before
    // closing. They count as undelivered until they are in the pipe, and not a moment longer: the move into the
    // pipe and the end of "held" are one step under _transportGate. (Clearing "held" after the flush let a
    // protocol that had already read and answered them see them as still coming: it then kept the connection
    // alive instead of closing, and the drain test failed under load.)
    private readonly object _transportGate = new();
    private byte[]? _held;       // guarded by _transportGate
    private bool _delivering;    // guarded by _transportGate

    /// <summary>Holds <paramref name="text"/> in the transport: reported by HasUndeliveredInput, delivered to the pipe once asked about.</summary>
    public void HoldInTransport(string text)
    {
        lock (_transportGate) _held = Encoding.Latin1.GetBytes(text);
    }

    bool ITransportControl.HasUndeliveredInput
    {
        get
        {
            lock (_transportGate)
            {
                if (_held is null) return false;
                if (!_delivering)
                {
                    _delivering = true;
                    _ = Task.Run(DeliverHeld);
                }
                return true;
            }
        }
    }

    private void DeliverHeld()
    {
        lock (_transportGate)
        {
            _toServer.Writer.Write(_held!);
            // Far below the pipe's pause threshold: completes at once, and the reader runs on the thread pool, not here.
            var flush = _toServer.Writer.FlushAsync();
            if (!flush.IsCompleted) throw new InvalidOperationException("held bytes must fit the pipe without waiting");
            _held = null;
        }
    }

    // Bytes the test writes go straight into the pipe, where the protocol looks after taking its mark; only held
    // bytes are ever "in the transport", so an idle close succeeds unless some are held.
    long ITransportControl.ReceivedBytes => 0;
    ValueTask<bool> ITransportControl.TryCloseIdleAsync(long receivedMark)
    {
        lock (_transportGate) return ValueTask.FromResult(_held is null);
    }

    public async ValueTask DisposeAsync()
    {
        await _toServer.Writer.CompleteAsync();
        try { await Processing.WaitAsync(TimeSpan.FromSeconds(5)); } catch (TimeoutException) { }
    }

    /// <summary>The server's output pipe writer, counting FlushAsync calls (WriteAsync counts too: it flushes).</summary>
    private sealed class CountingPipeWriter(PipeWriter inner) : PipeWriter
    {
        private int _flushes;
        public int Flushes => Volatile.Read(ref _flushes);
        public override void Advance(int bytes) => inner.Advance(bytes);
        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);
        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);
        public override void CancelPendingFlush() => inner.CancelPendingFlush();
        public override void Complete(Exception? exception = null) => inner.Complete(exception);
        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
        public override bool CanGetUnflushedBytes => inner.CanGetUnflushedBytes;
        public override long UnflushedBytes => inner.UnflushedBytes;
        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _flushes);
            return inner.FlushAsync(cancellationToken);
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }
}
