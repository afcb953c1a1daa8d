using System.IO.Pipes;
using System.Net;
using System.Net.Sockets;
using PipeServer.Cli;
using PipeServer.Hosting;
using PipeServer.Server;
using Xunit;

namespace PipeServer.Tests.Hosting;

// What socket activation takes and refuses, descriptor by descriptor (SystemdSocketActivation.Classify on
// descriptors this test opens), the LISTEN_FDNAMES rule, and the options it makes the executable ignore.
// The whole path, with the real systemd-socket-activate: Operations/SocketActivationTests.cs.
public class SocketActivationUnitTests
{
    private static int Fd(Socket s) => (int)s.Handle;

    [Fact]
    public void Listening_tcp_and_unix_stream_sockets_are_taken()
    {
        using var v4 = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        v4.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        v4.Listen();
        using var v6 = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
        v6.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        v6.Listen();
        using var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        unix.Bind(new UnixDomainSocketEndPoint("\0pipeserver-test-" + Guid.NewGuid().ToString("N")));
        unix.Listen();
        Assert.Null(SystemdSocketActivation.Classify(Fd(v4)));
        Assert.Null(SystemdSocketActivation.Classify(Fd(v6)));
        Assert.Null(SystemdSocketActivation.Classify(Fd(unix)));
    }

    [Fact]
    public void Every_other_kind_of_descriptor_is_named_for_what_it_is()
    {
        using var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        udp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        Assert.Equal("a datagram socket", SystemdSocketActivation.Classify(Fd(udp)));

        using var seq = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        seq.Bind(new UnixDomainSocketEndPoint("\0pipeserver-test-" + Guid.NewGuid().ToString("N")));
        seq.Listen();
        Assert.Equal("a sequential-packet socket", SystemdSocketActivation.Classify(Fd(seq)));

        using var notListening = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.StartsWith("a stream socket that is not listening", SystemdSocketActivation.Classify(Fd(notListening)));

        using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
        Assert.Equal("not a socket", SystemdSocketActivation.Classify((int)pipe.SafePipeHandle.DangerousGetHandle()));

        using var file = File.OpenHandle("/dev/null");
        Assert.Equal("not a socket", SystemdSocketActivation.Classify((int)file.DangerousGetHandle()));

        Assert.Equal(SystemdSocketActivation.NotOpen, SystemdSocketActivation.Classify(1_000_000)); // above any fd limit: never open
    }

    [Theory]
    [InlineData(null, 2, "unknown,unknown", false)]
    [InlineData("", 1, "unknown", false)]
    [InlineData("web:local", 2, "web,local", false)]
    [InlineData("web::local", 3, "web,unknown,local", false)]          // an empty name is systemd's default
    [InlineData("web:local", 3, "unknown,unknown,unknown", true)]       // a count that disagrees: names dropped, sockets kept
    public void Fd_names_are_one_per_descriptor_or_none(string? names, int count, string expected, bool warned)
    {
        var warnings = new List<string>();
        Assert.Equal(expected.Split(','), SystemdSocketActivation.ParseNames(names, count, warnings));
        Assert.Equal(warned, warnings.Count == 1);
    }

    [Fact]
    public void Activation_for_another_process_or_none_is_not_taken_and_the_variables_are_cleared()
    {
        lock (EnvironmentLock)
        {
            Environment.SetEnvironmentVariable("LISTEN_PID", "1");
            Environment.SetEnvironmentVariable("LISTEN_FDS", "1");
            Environment.SetEnvironmentVariable("LISTEN_FDNAMES", "web");
            Assert.Null(SystemdSocketActivation.TakeListenSockets());
            Assert.Null(Environment.GetEnvironmentVariable("LISTEN_PID"));
            Assert.Null(Environment.GetEnvironmentVariable("LISTEN_FDS"));
            Assert.Null(Environment.GetEnvironmentVariable("LISTEN_FDNAMES"));
            Assert.Null(SystemdSocketActivation.TakeListenSockets());
        }
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("many")]
    [InlineData("100000")]
    public void A_broken_fd_count_takes_nothing_and_says_why(string fds)
    {
        lock (EnvironmentLock)
        {
            Environment.SetEnvironmentVariable("LISTEN_PID", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Environment.SetEnvironmentVariable("LISTEN_FDS", fds);
            var activation = SystemdSocketActivation.TakeListenSockets();
            Assert.NotNull(activation);
            Assert.Empty(activation.Sockets);
            Assert.Contains($"LISTEN_FDS='{fds}'", Assert.Single(activation.Warnings));
        }
    }

    private static readonly object EnvironmentLock = new();

    [Theory]
    [InlineData(new[] { "--port", "1" }, null, "--port")]
    [InlineData(new[] { "--address", "127.0.0.1", "--port=1" }, null, "--address,--port")]
    [InlineData(new string[0], "9", "PIPESERVER_PORT")]
    [InlineData(new[] { "--port", "1" }, "9", "--port")]                  // the flag wins, and is what the warning names
    [InlineData(new string[0], null, "")]
    public void The_listen_options_given_are_recorded_for_the_socket_activation_warning(string[] args, string? envPort, string expected)
    {
        var env = new Dictionary<string, string?>();
        if (envPort is not null) env["PIPESERVER_PORT"] = envPort;
        var options = CommandLine.Parse(args, env)!;
        Assert.Equal(expected.Split(',', StringSplitOptions.RemoveEmptyEntries), options.ListenOptionsGiven);
    }

    [Fact]
    public void Trusted_proxies_take_unix_for_unix_socket_peers()
    {
        var o = CommandLine.Parse(["--trusted-proxies", "10.0.0.0/8, unix:"], new Dictionary<string, string?>())!.Server;
        Assert.True(o.TrustUnixSocketPeers);
        Assert.Equal([IPNetwork.Parse("10.0.0.0/8")], o.TrustedProxies);
        var unixOnly = CommandLine.Parse(["--trusted-proxies", "unix:", "--proxy-protocol"], new Dictionary<string, string?>())!.Server;
        Assert.True(unixOnly.TrustUnixSocketPeers && unixOnly.ProxyProtocol); // enough for --proxy-protocol
        Assert.Empty(unixOnly.TrustedProxies);
        Assert.False(CommandLine.Parse([], new Dictionary<string, string?>())!.Server.TrustUnixSocketPeers);
        Assert.Throws<CommandLineException>(() => CommandLine.Parse(["--trusted-proxies", "unix"], new Dictionary<string, string?>()));
    }

    [Fact]
    public void Forwarded_for_from_a_trusted_peer_without_an_address_starts_at_the_right_most_hop()
    {
        IReadOnlyList<IPNetwork> trusted = [IPNetwork.Parse("10.0.0.0/8")];
        Assert.Equal(IPAddress.Parse("198.51.100.4"), ClientAddress.FromForwardedForOfTrustedPeer(["203.0.113.1, 198.51.100.4, 10.0.0.2"], trusted));
        Assert.Null(ClientAddress.FromForwardedForOfTrustedPeer([], trusted));
        Assert.Null(ClientAddress.FromForwardedForOfTrustedPeer(["unknown"], trusted));
    }

    [Fact]
    public void Listener_urls_are_the_real_addresses()
    {
        Assert.Equal("http://127.0.0.1:8080", new ListenerInfo(new IPEndPoint(IPAddress.Loopback, 8080), null, null).Url);
        Assert.Equal("http://[::1]:8080", new ListenerInfo(new IPEndPoint(IPAddress.IPv6Loopback, 8080), 4, "web6").Url);
        Assert.Equal("unix:/run/pipeserver.sock", new ListenerInfo(new UnixDomainSocketEndPoint("/run/pipeserver.sock"), 3, "local").Url);
        Assert.Equal("unix:@pipeserver", new ListenerInfo(new UnixDomainSocketEndPoint("\0pipeserver"), 3, null).Url);
        Assert.Equal(" (fd 3, name unknown)", new ListenerInfo(new UnixDomainSocketEndPoint("/x"), 3, null).Origin);
        Assert.Equal("", new ListenerInfo(new IPEndPoint(IPAddress.Loopback, 1), null, null).Origin);
    }
}
