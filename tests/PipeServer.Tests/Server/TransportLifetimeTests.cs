using System.Buffers;
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

    private static ConnectionTransportFailure FailingLinux() => new();

    /// <summary>Stands in for a Linux transport whose event loops cannot be made (epoll_create1 refused), and counts the attempts.</summary>
    private sealed class ConnectionTransportFailure
    {
        public int Attempts;
        public PipeServer.Transports.ConnectionTransport Start(Microsoft.Extensions.Logging.ILogger _)
        {
            Interlocked.Increment(ref Attempts);
            throw new IOException("epoll_create1 failed: errno 24");
        }
    }

    [Fact]
    public async Task Auto_falls_back_to_sockets_with_a_warning_when_the_linux_transport_cannot_start()
    {
        if (!PipeServer.Transports.Linux.LinuxTransport.IsSupported) return; // elsewhere auto never tries linux
        var log = new CapturingLogger();
        var failing = FailingLinux();
        var server = new HttpServer(new HttpServerOptions { Address = IPAddress.Loopback, Port = 0, Transport = PipeServer.Transports.TransportKind.Auto },
            (_, res) => { res.Body.Write("ok"u8); return ValueTask.CompletedTask; }, log) { StartLinuxTransport = failing.Start };
        await using (server)
        {
            await server.StartAsync().WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(1, failing.Attempts);
            Assert.Equal("sockets", server.Transport!.Name);
            var warning = Assert.Single(log.Events, e => e.EventId.Id == 9);
            Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, warning.Level);
            Assert.Equal("Transport auto: the linux transport could not start (epoll_create1 failed: errno 24); serving with the sockets transport instead", warning.Message);
            Assert.Contains(log.Events, e => e.EventId.Id == 8 && e.Message == "Transport sockets (auto): connections run on the thread pool");
            await using var c = await RawConnection.ConnectAsync(server.EndPoint!.Port);
            await c.SendAsync("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(200, (await c.ReadResponseAsync()).Status);
        }
    }

    [Fact]
    public async Task An_explicit_linux_transport_that_cannot_start_fails_the_start_and_binds_nothing()
    {
        var failing = FailingLinux();
        var server = new HttpServer(new HttpServerOptions { Address = IPAddress.Loopback, Port = 0, Transport = PipeServer.Transports.TransportKind.Linux },
            (_, _) => ValueTask.CompletedTask) { StartLinuxTransport = failing.Start };
        await using (server)
        {
            var ex = await Assert.ThrowsAsync<IOException>(() => server.StartAsync().WaitAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal("epoll_create1 failed: errno 24", ex.Message);
            Assert.Null(server.EndPoint); // failed before binding: no port left taken
            Assert.Empty(server.Listeners);
        }
    }
}
