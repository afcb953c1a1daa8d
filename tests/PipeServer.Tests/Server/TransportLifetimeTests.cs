using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Server;

// The transport lives from StartAsync to the end of shutdown: a start that fails must not leave it (and a
// Linux transport's loop threads) behind.
public class TransportLifetimeTests
{
    [Fact]
    public async Task A_failed_bind_disposes_the_linux_transport_it_created()
    {
        if (!PipeServer.Transports.Linux.LinuxTransport.IsSupported) return; // nothing to leak where it cannot run
        const string transport = "linux";
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        int port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var server = new HttpServer(new HttpServerOptions { Address = IPAddress.Loopback, Port = port, Transport = TransportData.Kind(transport) },
            (_, _) => ValueTask.CompletedTask);
        await using (server)
        {
            await Assert.ThrowsAsync<SocketException>(() => server.StartAsync().WaitAsync(TimeSpan.FromSeconds(10)));
            var made = server.Transport;
            Assert.NotNull(made);
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            var options = new PipeOptions(useSynchronizationContext: false);
            Assert.Throws<ObjectDisposedException>(() => made.Create(socket, options, options, () => { }));
        }
    }
}
