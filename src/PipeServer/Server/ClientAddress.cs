using System.Net;
using System.Net.Sockets;

namespace PipeServer.Server;

// Where this sits: beside the request, when something asks who the client is (the access log, or a
// handler through HttpRequest.ClientAddress). The socket's peer is the answer unless that peer is a
// balancer listed in --trusted-proxies; then what the balancer says is believed, and only that. A peer on a
// Unix socket has no address: it is trusted only with the entry "unix:" (nginx's set_real_ip_from unix:).
//
//   PROXY protocol header   read once per connection before the first request (ProxyProtocolReader);
//                           its source address replaces the socket peer for every request on it.
//   X-Forwarded-For         per request, only when the address so far is trusted: walk the list from the
//                           right (the hop nearest to us) and take the first address that is not itself a
//                           trusted proxy. Every address left of it was written by the client and proves
//                           nothing. (nginx's real_ip_recursive on, Kestrel's ForwardedHeaders with KnownNetworks.)

/// <summary>Which peers are balancers, and what the client address is given what they said.</summary>
internal static class ClientAddress
{
    /// <summary>IPv4-mapped IPv6 (a dual-mode socket's view of an IPv4 peer) is compared, and logged, as IPv4.</summary>
    public static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    public static bool IsTrusted(IPAddress? address, IReadOnlyList<IPNetwork> trusted)
    {
        if (address is null || trusted.Count == 0) return false;
        address = Normalize(address);
        foreach (var network in trusted)
            if (network.Contains(address)) return true;
        return false;
    }

    /// <summary>
    /// The client address given the address the request came from (the socket peer, or a PROXY header's
    /// source) and the X-Forwarded-For field values in the order received. An element that is not an
    /// address ("unknown", an obfuscated identifier, garbage) ends the walk: the hop that wrote it is the
    /// last one we can vouch for.
    /// </summary>
    public static IPAddress? FromForwardedFor(IPAddress? from, IEnumerable<string> forwardedFor, IReadOnlyList<IPNetwork> trusted)
    {
        if (from is null) return null;
        var current = Normalize(from);
        if (!IsTrusted(current, trusted)) return current;
        return Walk(current, forwardedFor, trusted);
    }

    /// <summary>
    /// As <see cref="FromForwardedFor"/> for a request from a trusted peer without an address (a Unix-socket
    /// peer with --trusted-proxies unix:): the walk starts at the right-most hop; null when the field names none.
    /// </summary>
    public static IPAddress? FromForwardedForOfTrustedPeer(IEnumerable<string> forwardedFor, IReadOnlyList<IPNetwork> trusted) =>
        Walk(null, forwardedFor, trusted);

    private static IPAddress? Walk(IPAddress? current, IEnumerable<string> forwardedFor, IReadOnlyList<IPNetwork> trusted)
    {
        var hops = new List<string>();
        foreach (var value in forwardedFor)
            foreach (var part in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                hops.Add(part);
        for (int i = hops.Count - 1; i >= 0; i--)
        {
            if (!TryParseHop(hops[i], out var hop)) return current;
            current = Normalize(hop);
            if (!IsTrusted(current, trusted)) return current;
        }
        return current; // every hop was a trusted proxy: the left-most is as far as the chain goes
    }

    /// <summary>"192.0.2.1", "192.0.2.1:8080", "2001:db8::1", "[2001:db8::1]:8080", "[2001:db8::1]".</summary>
    public static bool TryParseHop(string text, out IPAddress address)
    {
        address = IPAddress.None;
        var span = text.AsSpan();
        if (span.StartsWith("[") )
        {
            int close = span.IndexOf(']');
            if (close < 0) return false;
            var rest = span[(close + 1)..];
            if (!rest.IsEmpty && !(rest[0] == ':' && IsPort(rest[1..]))) return false;
            return IPAddress.TryParse(span[1..close], out address!) && address.AddressFamily == AddressFamily.InterNetworkV6;
        }
        int colon = span.IndexOf(':');
        if (colon >= 0 && span.LastIndexOf(':') == colon)
        {
            // IPv4 with a port (an IPv6 address has at least two colons).
            if (!IsPort(span[(colon + 1)..])) return false;
            span = span[..colon];
        }
        if (!IPAddress.TryParse(span, out address!)) return false;
        // IPAddress.TryParse takes "1" or "0x7f.1" as IPv4; a forwarded hop must be dotted-quad decimal.
        return address.AddressFamily == AddressFamily.InterNetworkV6 || IsDottedQuad(span);
    }

    private static bool IsPort(ReadOnlySpan<char> s) => s.Length is > 0 and <= 5 && !s.ContainsAnyExceptInRange('0', '9') && int.Parse(s, provider: System.Globalization.CultureInfo.InvariantCulture) <= 65535;

    internal static bool IsDottedQuad(ReadOnlySpan<char> s)
    {
        int parts = 0;
        foreach (var range in s.Split('.'))
        {
            var part = s[range];
            if (part.Length is 0 or > 3 || part.ContainsAnyExceptInRange('0', '9') || (part.Length > 1 && part[0] == '0')) return false;
            if (int.Parse(part, provider: System.Globalization.CultureInfo.InvariantCulture) > 255) return false;
            parts++;
        }
        return parts == 4;
    }
}
