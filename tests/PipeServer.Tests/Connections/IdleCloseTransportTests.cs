using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Transports;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Connections;

// The transport's half of closing an idle connection on a drain (ITransportControl.TryCloseIdleAsync), on
// every transport through the seam: the FIN goes out only if nothing has arrived from the peer since the
// protocol's mark, checked on the sending side in one step with the shutdown. Over a real loopback socket,
// since the kernel's queue is the point.
public sealed class IdleCloseTransportTests : IDisposable
{
    private ConnectionTransport? _transports;

    public void Dispose() => _transports?.Dispose();

    private async Task<(Socket client, TransportConnection transport, Task running)> ConnectAsync(string kind)
    {
        _transports = ConnectionTransport.Create(TransportData.Kind(kind), NullLogger.Instance);
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(TimeSpan.FromSeconds(5));
        var server = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(5));
        var transport = _transports.Create(server, new PipeOptions(useSynchronizationContext: false), new PipeOptions(useSynchronizationContext: false), () => { });
        return (client, transport, transport.RunAsync());
    }

    private static async Task EndAsync(TransportConnection transport, Task running, Socket client)
    {
        await transport.Output.CompleteAsync();
        await transport.Input.CompleteAsync();
        client.Dispose(); // lets a lingering close end at once
        await running.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Sends_a_fin_when_nothing_arrived_since_the_mark(string kind)
    {
        var (client, transport, running) = await ConnectAsync(kind);
        long mark = ((ITransportControl)transport).ReceivedBytes;
        Assert.True(await ((ITransportControl)transport).TryCloseIdleAsync(mark).AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Equal(0, await client.ReceiveAsync(new byte[16], SocketFlags.None, cts.Token)); // FIN
        await EndAsync(transport, running, client);
        Assert.False(transport.ReceivedAfterIdleClose);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Sends_nothing_when_a_request_arrived_after_the_mark_and_delivers_it(string kind)
    {
        var (client, transport, running) = await ConnectAsync(kind);
        var control = (ITransportControl)transport;
        long mark = control.ReceivedBytes;
        await client.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray(), SocketFlags.None);
        // Whether the bytes are still in the kernel, in the receive loop's hands or already in the pipe, the close must not happen.
        Assert.False(await control.TryCloseIdleAsync(mark).AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.False(client.Poll(0, SelectMode.SelectRead), "the client saw a close");
        var read = await transport.Input.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(27, read.Buffer.Length);
        transport.Input.AdvanceTo(read.Buffer.End);
        await EndAsync(transport, running, client);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Counts_a_request_that_arrives_after_the_idle_fin(string kind)
    {
        var (client, transport, running) = await ConnectAsync(kind);
        var control = (ITransportControl)transport;
        Assert.True(await control.TryCloseIdleAsync(control.ReceivedBytes).AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        await transport.Output.CompleteAsync();
        await transport.Input.CompleteAsync(); // the protocol has ended, as after an idle close
        await client.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n"u8.ToArray(), SocketFlags.None); // raced the FIN
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Equal(0, await client.ReceiveAsync(new byte[16], SocketFlags.None, cts.Token)); // a FIN, not a reset
        client.Dispose();
        await running.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(transport.ReceivedAfterIdleClose);
    }
}
