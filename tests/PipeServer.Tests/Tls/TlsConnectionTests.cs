using System.Buffers;
using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Tests.Infrastructure;
using PipeServer.Tls;
using PipeServer.Transports;
using Xunit;

namespace PipeServer.Tests.Tls;

// TlsConnection with no socket under it: its transport is a pair of in-memory pipes and the test is the peer
// (a client SslStream over them), so what TLS does with each byte is seen without a kernel or a transport's
// timing in between. The peer's ciphertext goes in one byte per segment. Every wait has a deadline.
public sealed class TlsConnectionTests : IDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    private readonly TestCertificate _cert = TestCertificate.Create();
    private readonly Meter _meter = new("PipeServer.Tests.TlsConnection");

    public void Dispose()
    {
        _meter.Dispose();
        _cert.Dispose();
    }

    /// <summary>A transport whose socket is two in-memory pipes; <see cref="PeerStream"/> is the other end.</summary>
    private sealed class PipeTransport : TransportConnection
    {
        private static readonly PipeOptions Options = new(useSynchronizationContext: false);
        internal readonly Pipe FromPeer = new(Options), ToPeer = new(Options);
        internal long Received; // what the peer has written: all of it is in FromPeer at once, so nothing is ever undelivered

        public override PipeReader Input => FromPeer.Reader;
        public override PipeWriter Output => ToPeer.Writer;
        public override IPEndPoint? RemoteEndPoint => null;
        public override Task RunAsync() => Task.CompletedTask;
        public override void Abort() => ToPeer.Writer.Complete(new ConnectionResetException("aborted", new IOException()));
        public override void RequestLingeringClose() { }
        public override bool HasUndeliveredInput => false;
        public override long ReceivedBytes => Volatile.Read(ref Received);
        public override ValueTask<bool> TryCloseIdleAsync(long receivedMark) => new(Volatile.Read(ref Received) == receivedMark);
        public override bool ReceivedAfterIdleClose => false;
    }

    /// <summary>The peer's end of a <see cref="PipeTransport"/>, for its SslStream: every write goes in one byte per flush.</summary>
    private sealed class PeerStream(PipeTransport transport) : Stream
    {
        public override async ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            var reader = transport.ToPeer.Reader;
            var result = await reader.ReadAsync(cancellationToken);
            if (destination.IsEmpty || result.Buffer.IsEmpty) { reader.AdvanceTo(result.Buffer.Start); return 0; }
            int n = (int)Math.Min(destination.Length, result.Buffer.Length);
            result.Buffer.Slice(0, n).CopyTo(destination.Span);
            reader.AdvanceTo(result.Buffer.GetPosition(n));
            return n;
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> source, CancellationToken cancellationToken = default)
        {
            for (int i = 0; i < source.Length; i++)
            {
                Interlocked.Increment(ref transport.Received); // counted first, as a transport counts before it flushes
                await transport.FromPeer.Writer.WriteAsync(source.Slice(i, 1), cancellationToken);
            }
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Flush() { }
        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private static async Task Within(Task task, string what)
    {
        try { await task.WaitAsync(Bound); }
        catch (TimeoutException) { throw new TimeoutException($"timed out waiting for {what}"); }
    }

    private static async Task<T> Within<T>(Task<T> task, string what)
    {
        try { return await task.WaitAsync(Bound); }
        catch (TimeoutException) { throw new TimeoutException($"timed out waiting for {what}"); }
    }

    private static async Task PollAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for: {what}");
            await Task.Delay(5);
        }
    }

    /// <summary>Reads the plaintext input until it holds <paramref name="text"/>, and consumes it.</summary>
    private static async Task ReadUntilAsync(PipeReader input, string text)
    {
        while (true)
        {
            var result = await input.ReadAsync().AsTask().WaitAsync(Bound);
            if (Encoding.Latin1.GetString(result.Buffer.ToArray()) == text) { input.AdvanceTo(result.Buffer.End); return; }
            Assert.False(result.IsCompleted, "the plaintext input ended early");
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    [Theory]
    [InlineData(System.Security.Authentication.SslProtocols.Tls12)]
    [InlineData(System.Security.Authentication.SslProtocols.Tls13)]
    public async Task A_request_fed_one_byte_at_a_time_is_delivered_then_nothing_is_undelivered_and_an_idle_close_sends_close_notify(System.Security.Authentication.SslProtocols protocol)
    {
        using var server = new TlsServer(new TlsOptions(_cert.CertPath, _cert.KeyPath) { ReloadInterval = TimeSpan.Zero }, _meter, NullLogger.Instance, TimeSpan.FromSeconds(10));
        var transport = new PipeTransport();
        var tls = server.Wrap(transport, 1, new PipeOptions(useSynchronizationContext: false), new PipeOptions(useSynchronizationContext: false));
        var running = tls.RunAsync();
        await using var client = new SslStream(new PeerStream(transport));
        await Within(client.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            EnabledSslProtocols = protocol,
            ApplicationProtocols = [SslApplicationProtocol.Http11],
            RemoteCertificateValidationCallback = (_, c, _, _) => TestCertificate.Same(c, _cert.Current),
        }), "the handshake");

        const string request = "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
        await Within(client.WriteAsync(Encoding.Latin1.GetBytes(request)).AsTask(), "the request's write");
        await ReadUntilAsync(tls.Input, request);
        // Every byte the peer sent is plaintext in the pipe now (and taken by the protocol): a drain's look must
        // say nothing is on its way, or an idle close would wait for a request that never comes.
        await PollAsync(() => !tls.HasUndeliveredInput, "HasUndeliveredInput to clear once the request is in the pipe");

        await Within(tls.Output.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"u8.ToArray()).AsTask(), "the response's write");
        var buffer = new byte[256];
        int got = await Within(client.ReadAsync(buffer).AsTask(), "the response");
        Assert.StartsWith("HTTP/1.1 200 OK", Encoding.Latin1.GetString(buffer, 0, got));

        // The drain of an idle connection: close_notify, which the peer's SslStream reads as the end.
        Assert.True(await Within(tls.TryCloseIdleAsync(tls.ReceivedBytes).AsTask(), "the idle close"));
        Assert.Equal(0, await Within(client.ReadAsync(buffer).AsTask(), "close_notify"));

        // The protocol is done: both plaintext ends complete; the transport sent everything (ToPeer ends) and
        // its input ends as a socket transport's does once it closes the socket (here: the peer's FIN). Then
        // the connection's loops end.
        await tls.Output.CompleteAsync();
        await tls.Input.CompleteAsync();
        Assert.Equal(0, await Within(new PeerStream(transport).ReadAsync(buffer).AsTask(), "the transport's output to end"));
        await transport.FromPeer.Writer.CompleteAsync();
        await Within(running, "the connection's end");
    }
}
