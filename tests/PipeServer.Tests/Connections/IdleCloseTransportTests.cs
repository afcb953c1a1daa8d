using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using PipeServer.Transports.Sockets;
using PipeServer.Transports;
using PipeServer.Connections;
using Xunit;

namespace PipeServer.Tests.Connections;

// The transport's half of closing an idle connection on a drain (SocketConnection.TryCloseIdleAsync): the
// FIN goes out only if nothing has arrived from the peer since the protocol's mark, checked on the send
// loop in one step with the shutdown. Over a real loopback socket, since the kernel's queue is the point.
public class IdleCloseTransportTests
{
    private static async Task<(Socket client, SocketConnection transport, Task running)> ConnectAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!).WaitAsync(TimeSpan.FromSeconds(5));
        var server = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(5));
        var transport = new SocketConnection(server, new PipeOptions(useSynchronizationContext: false), new PipeOptions(useSynchronizationContext: false), () => { });
        return (client, transport, transport.RunAsync());
    }

    private static async Task EndAsync(SocketConnection transport, Task running, Socket client)
    {
        await transport.Output.CompleteAsync();
        await transport.Input.CompleteAsync();
        client.Dispose(); // lets a lingering close end at once
        await running.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Sends_a_fin_when_nothing_arrived_since_the_mark()
    {
        var (client, transport, running) = await ConnectAsync();
        long mark = ((ITransportControl)transport).ReceivedBytes;
        Assert.True(await ((ITransportControl)transport).TryCloseIdleAsync(mark).AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        Assert.Equal(0, await client.ReceiveAsync(new byte[16], SocketFlags.None, cts.Token)); // FIN
        await EndAsync(transport, running, client);
        Assert.False(transport.ReceivedAfterIdleClose);
    }

    [Fact]
    public async Task Sends_nothing_when_a_request_arrived_after_the_mark_and_delivers_it()
    {
        var (client, transport, running) = await ConnectAsync();
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

    [Fact]
    public async Task Counts_a_request_that_arrives_after_the_idle_fin()
    {
        var (client, transport, running) = await ConnectAsync();
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
