using System.Net;
using System.Net.Sockets;

namespace PipeServer.Server;

// Where this sits: what the server tells the outside about each socket it accepts on, from StartAsync on
// (HttpServer.Listeners): the executable logs one "Listening on" line per listener from it. A server
// listens on the one TCP endpoint it binds, or on every socket it was given (systemd socket activation:
// TCP over IPv4 or IPv6, and Unix stream sockets).

/// <summary>One listening socket of a running <see cref="HttpServer"/>: its real local address, and where it came from.</summary>
/// <param name="EndPoint">The bound address: an <see cref="IPEndPoint"/> (the real port when 0 was asked) or a <see cref="UnixDomainSocketEndPoint"/>.</param>
/// <param name="Fd">The descriptor number of a socket passed in (socket activation), else null.</param>
/// <param name="Name">The name a socket was passed in with (systemd's FileDescriptorName=), else null.</param>
public sealed record ListenerInfo(EndPoint EndPoint, int? Fd, string? Name)
{
    /// <summary>A Unix stream socket: no TCP options, no peer address.</summary>
    public bool IsUnix => EndPoint is UnixDomainSocketEndPoint;

    /// <summary>Connections on it speak TLS (HttpServerOptions.Tls): the URL says https.</summary>
    public bool Tls { get; init; }

    /// <summary>
    /// "http://127.0.0.1:8080" ("https://" with TLS), "http://[::1]:8080", or "unix:/run/pipeserver.sock" (nginx's and curl's way of
    /// writing a Unix socket; "unix:@name" for one in the abstract namespace, as systemd writes it).
    /// </summary>
    public string Url => EndPoint switch
    {
        IPEndPoint ip => $"{(Tls ? "https" : "http")}://{(ip.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ip.Address}]" : ip.Address.ToString())}:{ip.Port}",
        UnixDomainSocketEndPoint unix => "unix:" + UnixPath(unix),
        _ => EndPoint.ToString() ?? "?",
    };

    /// <summary>"(fd 3, name web)" for a passed socket, "" for one the server bound.</summary>
    public string Origin => Fd is int fd ? $" (fd {fd}, name {Name ?? "unknown"})" : "";

    private static string UnixPath(UnixDomainSocketEndPoint unix)
    {
        var path = unix.ToString();
        // .NET shows an abstract name with its leading NUL; systemd, ss and this log write '@'.
        return path.Length > 0 && path[0] == '\0' ? "@" + path[1..] : path;
    }
}
