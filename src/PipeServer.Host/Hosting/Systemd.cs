using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace PipeServer.Hosting;

// systemd integration, both halves optional and both driven by environment variables systemd sets:
//   socket activation  LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES: systemd bound the sockets of the .socket unit
//                      and passes them as fds 3 .. 3+LISTEN_FDS-1 (SD_LISTEN_FDS_START), named by
//                      FileDescriptorName= (colon-separated, in fd order). Connections queue in those sockets
//                      while we restart, so a restart loses none.
//   sd_notify          NOTIFY_SOCKET: a Unix datagram socket; "READY=1" once listening (Type=notify),
//                      "STOPPING=1" when shutdown starts, "STATUS=..." lines for each phase.
//
// What a .socket unit can pass is wider than what an HTTP server can use: ListenStream= gives listening TCP
// (IPv4, IPv6) or Unix stream sockets, which we serve; ListenDatagram=, ListenSequentialPacket=, ListenFIFO=,
// ListenNetlink=, ListenSpecial= or Accept=yes (a connected socket per instance) give descriptors that are
// not listening stream sockets. Those are skipped with a warning naming the fd, its name and what it is, and
// closed (they are useless to us, and an open descriptor nobody reads is a leak); the server then serves on
// the rest, or refuses to start when nothing is left.

/// <summary>A listening stream socket systemd passed (TCP over IPv4/IPv6, or Unix), with its fd and FileDescriptorName=.</summary>
public sealed record PassedSocket(Socket Socket, int Fd, string Name);

/// <summary>What socket activation passed: the sockets to serve on, and a warning for each descriptor skipped or setting ignored.</summary>
public sealed record SocketActivation(IReadOnlyList<PassedSocket> Sockets, IReadOnlyList<string> Warnings);

/// <summary>Reads the sockets systemd passed us, if any (sd_listen_fds_with_names semantics).</summary>
public static partial class SystemdSocketActivation
{
    private const int ListenFdsStart = 3;
    /// <summary>More than this many passed descriptors is taken as a broken environment, not a socket unit.</summary>
    internal const int MaxListenFds = 1024;
    /// <summary>systemd's name for a descriptor FileDescriptorName= did not name (sd_listen_fds_with_names).</summary>
    public const string UnknownName = "unknown";

    /// <summary>
    /// Null when socket activation is not in use (LISTEN_PID/LISTEN_FDS unset, or for another process: then a
    /// warning would only confuse, sd_listen_fds ignores it quietly too). Otherwise the usable sockets, owned
    /// by the caller, and warnings for the log; Sockets may be empty (every passed fd was skipped). The
    /// variables are cleared in every case, so that child processes do not think the sockets are theirs.
    /// </summary>
    public static SocketActivation? TakeListenSockets()
    {
        var pid = Environment.GetEnvironmentVariable("LISTEN_PID");
        var fds = Environment.GetEnvironmentVariable("LISTEN_FDS");
        var names = Environment.GetEnvironmentVariable("LISTEN_FDNAMES");
        if (pid is null || fds is null) return null;
        Environment.SetEnvironmentVariable("LISTEN_PID", null);
        Environment.SetEnvironmentVariable("LISTEN_FDS", null);
        Environment.SetEnvironmentVariable("LISTEN_FDNAMES", null);
        if (!int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int p) || p != Environment.ProcessId) return null;
        var warnings = new List<string>();
        if (!int.TryParse(fds, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 1 || n > MaxListenFds)
        {
            warnings.Add($"LISTEN_FDS='{fds}' is not a number of descriptors from 1 to {MaxListenFds}; no socket taken");
            return new SocketActivation([], warnings);
        }
        if (!OperatingSystem.IsLinux())
        {
            warnings.Add("LISTEN_FDS is set, but socket activation is a systemd (Linux) protocol; no socket taken");
            return new SocketActivation([], warnings);
        }
        var fdNames = ParseNames(names, n, warnings);
        var sockets = new List<PassedSocket>();
        for (int i = 0; i < n; i++)
        {
            int fd = ListenFdsStart + i;
            var problem = Classify(fd);
            if (problem is not null)
            {
                warnings.Add($"fd {fd} ({fdNames[i]}) is not a listening stream socket: {problem}; ignored");
                if (problem != NotOpen) _ = close(fd);
                continue;
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC); // as sd_listen_fds: a process we start must not inherit the listener
            sockets.Add(new PassedSocket(new Socket(new SafeSocketHandle(fd, ownsHandle: true)), fd, fdNames[i]));
        }
        return new SocketActivation(sockets, warnings);
    }

    /// <summary>
    /// LISTEN_FDNAMES split on ':', one name per fd. A count that disagrees with LISTEN_FDS makes systemd's own
    /// sd_listen_fds_with_names fail; we keep the sockets and drop the names (with a warning) instead.
    /// </summary>
    internal static string[] ParseNames(string? names, int count, List<string> warnings)
    {
        var result = Enumerable.Repeat(UnknownName, count).ToArray();
        if (string.IsNullOrEmpty(names)) return result;
        var parts = names.Split(':');
        if (parts.Length != count)
        {
            warnings.Add($"LISTEN_FDNAMES has {parts.Length} name(s) for {count} descriptor(s); names ignored");
            return result;
        }
        for (int i = 0; i < count; i++)
            if (parts[i].Length > 0) result[i] = parts[i];
        return result;
    }

    internal const string NotOpen = "not an open descriptor";

    /// <summary>Null when <paramref name="fd"/> is a listening stream socket of a family we serve; else what it is instead.</summary>
    internal static string? Classify(int fd)
    {
        if (GetIntOption(fd, SO_TYPE, out int type) is int error)
            return error == ENOTSOCK ? "not a socket" : error == EBADF ? NotOpen : $"getsockopt failed (errno {error})";
        if (type != SOCK_STREAM)
            return type switch { SOCK_DGRAM => "a datagram socket", SOCK_SEQPACKET => "a sequential-packet socket", SOCK_RAW => "a raw socket", _ => $"a socket of type {type}" };
        if (GetIntOption(fd, SO_DOMAIN, out int domain) is not null || domain is not (AF_INET or AF_INET6 or AF_UNIX))
            return $"a stream socket of address family {domain}, not TCP or Unix";
        if (GetIntOption(fd, SO_ACCEPTCONN, out int listening) is not null || listening == 0)
            return "a stream socket that is not listening (a connected one, as Accept=yes passes: use Accept=no)";
        return null;
    }

    /// <summary>getsockopt(SOL_SOCKET) of an int option: null on success, else errno.</summary>
    private static int? GetIntOption(int fd, int option, out int value)
    {
        int len = sizeof(int);
        value = 0;
        return getsockopt(fd, SOL_SOCKET, option, out value, ref len) == 0 ? null : Marshal.GetLastPInvokeError();
    }

    // Linux values (the only OS with socket activation): <sys/socket.h>, <asm-generic/socket.h>, <errno.h>, <fcntl.h>.
    private const int SOL_SOCKET = 1, SO_TYPE = 3, SO_ACCEPTCONN = 30, SO_DOMAIN = 39;
    private const int SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_RAW = 3, SOCK_SEQPACKET = 5;
    private const int AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10;
    private const int EBADF = 9, ENOTSOCK = 88;
    private const int F_SETFD = 2, FD_CLOEXEC = 1;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getsockopt(int fd, int level, int name, out int value, ref int len);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(int fd, int command, int argument);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
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
