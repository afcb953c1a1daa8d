using System.Net.Sockets;
using System.Text;

namespace PipeServer.Hosting;

// systemd integration, both halves optional and both driven by environment variables systemd sets:
//   socket activation  LISTEN_PID / LISTEN_FDS: systemd bound the port and passes the listening socket as
//                      fd 3 (SD_LISTEN_FDS_START). Connections queue in that socket while we restart, so a
//                      restart loses none.
//   sd_notify          NOTIFY_SOCKET: a Unix datagram socket; "READY=1" once listening (Type=notify),
//                      "STOPPING=1" when shutdown starts, "STATUS=..." lines for each phase.

/// <summary>Reads the socket systemd passed us, if any (sd_listen_fds semantics).</summary>
public static class SystemdSocketActivation
{
    private const int ListenFdsStart = 3;

    /// <summary>
    /// The first passed socket when LISTEN_PID is this process and LISTEN_FDS ≥ 1; otherwise null. The
    /// variables are cleared so that child processes do not think the sockets are theirs.
    /// </summary>
    public static Socket? TryTakeListenSocket()
    {
        var pid = Environment.GetEnvironmentVariable("LISTEN_PID");
        var fds = Environment.GetEnvironmentVariable("LISTEN_FDS");
        if (pid is null || fds is null) return null;
        Environment.SetEnvironmentVariable("LISTEN_PID", null);
        Environment.SetEnvironmentVariable("LISTEN_FDS", null);
        Environment.SetEnvironmentVariable("LISTEN_FDNAMES", null);
        if (!int.TryParse(pid, out int p) || p != Environment.ProcessId) return null;
        if (!int.TryParse(fds, out int n) || n < 1) return null;
        return new Socket(new SafeSocketHandle(ListenFdsStart, ownsHandle: true));
    }
}

/// <summary>sd_notify(3) over NOTIFY_SOCKET; every call is a no-op when the variable is not set.</summary>
public sealed class SystemdNotifier : IDisposable
{
    private readonly Socket? _socket;
    private readonly UnixDomainSocketEndPoint? _endpoint;

    public SystemdNotifier(string? notifySocket = null)
    {
        var path = notifySocket ?? Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(path)) return;
        // A leading '@' names a socket in the abstract namespace (a leading NUL byte).
        if (path[0] == '@') path = "\0" + path[1..];
        _endpoint = new UnixDomainSocketEndPoint(path);
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    }

    public bool Enabled => _socket is not null;

    /// <summary>
    /// Sends one datagram of newline-separated assignments ("READY=1", "STOPPING=1", "STATUS=..."). Failures
    /// are ignored: systemd may be gone, and nothing about serving depends on it.
    /// </summary>
    public void Notify(string state)
    {
        if (_socket is null) return;
        try { _socket.SendTo(Encoding.UTF8.GetBytes(state), _endpoint!); }
        catch (SocketException) { }
    }

    public void Dispose() => _socket?.Dispose();
}
