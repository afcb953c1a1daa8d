using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using PipeServer.Transports.Sockets;
using Xunit;

namespace PipeServer.Tests.Transports;

// The sockets transport on its own: a SocketConnection over an accepted loopback socket, its pipes read and
// written by the test as the protocol (or TLS) would. Every wait has a deadline.
public sealed class SocketConnectionTests : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private Socket? _client;
    private SocketConnection? _connection;
    private Task _running = Task.CompletedTask;

    private async Task<(Socket Client, SocketConnection Connection)> ConnectAsync()
    {
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        _client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = new CancellationTokenSource(Bound);
        await _client.ConnectAsync(_listener.LocalEndPoint!, cts.Token);
        var accepted = await _listener.AcceptAsync(cts.Token);
        var options = new PipeOptions(useSynchronizationContext: false);
        _connection = new SocketConnection(accepted, options, options, static () => { });
        _running = _connection.RunAsync();
        return (_client, _connection);
    }

    private static async Task PollAsync(Func<bool> condition, string what, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for: {what}");
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task Once_every_byte_is_in_the_pipe_nothing_is_reported_undelivered_though_bytes_came_in_bursts()
    {
        // A drain closes an idle connection only when HasUndeliveredInput says nothing is on its way; a "yes"
        // that stays true keeps the connection open for a request that never comes (TLS drains hung on it).
        // Bursts of small segments, and our own sends between them, give the socket engine readiness events for
        // bytes an earlier receive already took: a zero-byte receive completed by such an event finds nothing.
        var (client, connection) = await ConnectAsync();
        var input = connection.Input;
        long delivered = 0, sent = 0;
        for (int round = 0; round < 60; round++)
        {
            for (int i = 0; i < 3; i++)
            {
                await client.SendAsync(new byte[] { (byte)'a', (byte)'b' }, SocketFlags.None).WaitAsync(Bound);
                sent += 2;
            }
            await connection.Output.WriteAsync(new byte[512]).AsTask().WaitAsync(Bound);
            var reply = new byte[512];
            for (int got = 0; got < reply.Length;) got += await client.ReceiveAsync(reply.AsMemory(got), SocketFlags.None).AsTask().WaitAsync(Bound);
            while (delivered < sent)
            {
                var result = await input.ReadAsync().AsTask().WaitAsync(Bound);
                delivered += result.Buffer.Length;
                input.AdvanceTo(result.Buffer.End);
            }
            // Every byte sent is in the pipe and no more are coming: "undelivered" must clear (at once, in practice).
            await PollAsync(() => !connection.HasUndeliveredInput, $"HasUndeliveredInput to clear (round {round}, {delivered} of {sent} bytes delivered)", TimeSpan.FromSeconds(1));
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            _connection.Abort();
            await _connection.Output.CompleteAsync();
            await _connection.Input.CompleteAsync();
            await _running.WaitAsync(Bound);
        }
        _client?.Dispose();
        _listener.Dispose();
    }
}
