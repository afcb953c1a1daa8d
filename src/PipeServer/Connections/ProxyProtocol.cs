using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace PipeServer.Connections;

// Where this sits: before step 1 of a request's journey, once per connection, and only with --proxy-protocol.
// A balancer configured with HAProxy's send-proxy (v1, one text line) or send-proxy-v2 (binary) writes this
// header before the first HTTP byte, naming the client it accepted the connection from. ProxyProtocolReader
// (the I/O) hands the bytes read so far to ProxyProtocolParser.Parse (this file: pure, no I/O, no exceptions,
// nothing consumed on "need more data"), like HttpParser for HTTP. The spec is haproxy's
// doc/proxy-protocol.txt; the rules that matter here:
//
//   v1  "PROXY " ("TCP4" | "TCP6") " " src " " dst " " sport " " dport CRLF, or "PROXY UNKNOWN" ... CRLF;
//       at most 107 bytes with the CRLF. Single spaces, decimal ports 0-65535, addresses of the named family.
//   v2  12-byte signature \r\n\r\n\0\r\nQUIT\n, then version/command (0x20 LOCAL, 0x21 PROXY), family/transport,
//       a 16-bit big-endian length of what follows: addresses (IPv4 12 bytes, IPv6 36, Unix 216), then TLVs,
//       which are skipped. LOCAL (a balancer's own health check) and UNSPEC/Unix families keep the socket's
//       addresses.
//
// The receiver must not guess (spec, section 2): a connection that must carry a header and starts with
// anything else is rejected, never read as HTTP.

internal enum ProxyParseStatus : byte
{
    /// <summary>Not enough bytes to decide yet: call again with more; nothing was consumed.</summary>
    NeedMoreData,
    /// <summary>A whole, valid header: consume up to the out position.</summary>
    Done,
    /// <summary>The bytes cannot start a PROXY header (they are something else, e.g. HTTP).</summary>
    NotProxy,
    /// <summary>A PROXY header that breaks the spec; the out reason says how.</summary>
    Rejected,
}

internal enum ProxyRejectionReason : byte
{
    None,
    /// <summary>A v1 line with no CRLF within 107 bytes.</summary>
    V1TooLong,
    /// <summary>A v1 line that is not PROXY TCP4/TCP6/UNKNOWN with well-formed addresses and ports.</summary>
    V1Malformed,
    /// <summary>A v2 version other than 2, or a command other than LOCAL or PROXY.</summary>
    V2BadVersionOrCommand,
    /// <summary>A v2 family or transport byte outside the spec.</summary>
    V2BadFamily,
    /// <summary>A v2 length too short for its address family.</summary>
    V2AddressTooShort,
    /// <summary>A v2 length above <see cref="ProxyProtocolParser.MaxV2PayloadLength"/>.</summary>
    V2TooLarge,
}

/// <summary>What a PROXY header said. <see cref="Source"/> is null when the socket's own addresses apply (LOCAL, UNKNOWN, UNSPEC, Unix).</summary>
internal readonly record struct ProxyHeader(int Version, IPEndPoint? Source, IPEndPoint? Destination);

/// <summary>The PROXY protocol v1/v2 header parser: a pure function over the bytes received so far.</summary>
internal static class ProxyProtocolParser
{
    public const int MaxV1Length = 107;
    /// <summary>
    /// The largest v2 payload (addresses + TLVs) accepted. The spec bounds a v2 header only by its 16-bit
    /// length; balancers send addresses plus a few TLVs (AWS: a VPC endpoint id, GCP: a connection id,
    /// HAProxy: ALPN, authority, a CRC), far under this.
    /// </summary>
    public const int MaxV2PayloadLength = 2048;

    private static ReadOnlySpan<byte> V1Signature => "PROXY "u8;
    private static ReadOnlySpan<byte> V2Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

    /// <summary>
    /// Parses a header at the start of <paramref name="input"/>. Done: <paramref name="consumed"/> is just
    /// past it. NotProxy: the input starts with neither signature (decided from the first byte that differs).
    /// </summary>
    public static ProxyParseStatus Parse(in ReadOnlySequence<byte> input, out SequencePosition consumed, out ProxyHeader header, out ProxyRejectionReason reason)
    {
        consumed = input.Start;
        header = default;
        reason = ProxyRejectionReason.None;

        Span<byte> prefix = stackalloc byte[16];
        int have = (int)Math.Min(input.Length, prefix.Length);
        input.Slice(0, have).CopyTo(prefix);
        var start = prefix[..have];

        bool maybeV1 = StartsLike(start, V1Signature), maybeV2 = StartsLike(start, V2Signature);
        if (!maybeV1 && !maybeV2) return ProxyParseStatus.NotProxy;
        if (maybeV1 && have >= V1Signature.Length) return ParseV1(input, out consumed, out header, out reason);
        if (maybeV2 && have >= V2Signature.Length) return ParseV2(input, start, out consumed, out header, out reason);
        return ProxyParseStatus.NeedMoreData;
    }

    /// <summary>True when the bytes so far agree with the signature over their common length.</summary>
    private static bool StartsLike(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        int n = Math.Min(data.Length, signature.Length);
        return data[..n].SequenceEqual(signature[..n]);
    }

    private static ProxyParseStatus ParseV1(in ReadOnlySequence<byte> input, out SequencePosition consumed, out ProxyHeader header, out ProxyRejectionReason reason)
    {
        consumed = input.Start;
        header = default;
        reason = ProxyRejectionReason.None;
        var window = input.Slice(0, Math.Min(input.Length, MaxV1Length));
        var lf = window.PositionOf((byte)'\n');
        if (lf is null)
        {
            if (window.Length >= MaxV1Length) { reason = ProxyRejectionReason.V1TooLong; return ProxyParseStatus.Rejected; }
            return ProxyParseStatus.NeedMoreData;
        }
        Span<byte> line = stackalloc byte[MaxV1Length];
        var lineSequence = window.Slice(0, lf.Value);
        int length = (int)lineSequence.Length;
        lineSequence.CopyTo(line);
        // The line must end in CRLF: a bare LF is as wrong here as it is in HTTP.
        if (length == 0 || line[length - 1] != (byte)'\r' || !TryParseV1Line(line[..(length - 1)], out header))
        {
            reason = ProxyRejectionReason.V1Malformed;
            return ProxyParseStatus.Rejected;
        }
        consumed = input.GetPosition(1, lf.Value);
        return ProxyParseStatus.Done;
    }

    /// <summary>The line without its CRLF, "PROXY " included.</summary>
    private static bool TryParseV1Line(ReadOnlySpan<byte> line, out ProxyHeader header)
    {
        header = new ProxyHeader(1, null, null);
        var rest = line[V1Signature.Length..];
        if (rest.StartsWith("UNKNOWN"u8))
        {
            // "the receiver must ignore anything presented before the CRLF is found" after UNKNOWN.
            return rest.Length == 7 || rest[7] == (byte)' ';
        }
        AddressFamily family;
        if (rest.StartsWith("TCP4 "u8)) family = AddressFamily.InterNetwork;
        else if (rest.StartsWith("TCP6 "u8)) family = AddressFamily.InterNetworkV6;
        else return false;
        rest = rest[5..];

        // Exactly four fields, one space apart (an empty field from a double space fails its own parse).
        if (!NextField(ref rest, out var sourceText) || !NextField(ref rest, out var destinationText) || !NextField(ref rest, out var sourcePortText)) return false;
        var destinationPortText = rest;
        if (destinationPortText.IndexOf((byte)' ') >= 0) return false;
        if (!TryParseAddress(sourceText, family, out var source) || !TryParseAddress(destinationText, family, out var destination)) return false;
        if (!TryParsePort(sourcePortText, out int sourcePort) || !TryParsePort(destinationPortText, out int destinationPort)) return false;
        header = new ProxyHeader(1, new IPEndPoint(source, sourcePort), new IPEndPoint(destination, destinationPort));
        return true;
    }

    private static bool NextField(ref ReadOnlySpan<byte> rest, out ReadOnlySpan<byte> field)
    {
        int space = rest.IndexOf((byte)' ');
        field = space < 0 ? default : rest[..space];
        if (space < 0) return false;
        rest = rest[(space + 1)..];
        return true;
    }

    private static bool TryParseAddress(ReadOnlySpan<byte> text, AddressFamily family, out IPAddress address)
    {
        address = IPAddress.None;
        if (text.IsEmpty || text.Length > 45) return false;
        Span<char> chars = stackalloc char[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            byte b = text[i];
            bool allowed = family == AddressFamily.InterNetwork ? b is (>= (byte)'0' and <= (byte)'9') or (byte)'.'
                : b is (>= (byte)'0' and <= (byte)'9') or (>= (byte)'a' and <= (byte)'f') or (>= (byte)'A' and <= (byte)'F') or (byte)':' or (byte)'.';
            if (!allowed) return false;
            chars[i] = (char)b;
        }
        if (family == AddressFamily.InterNetwork && !Server.ClientAddress.IsDottedQuad(chars)) return false;
        return IPAddress.TryParse(chars, out address!) && address.AddressFamily == family;
    }

    private static bool TryParsePort(ReadOnlySpan<byte> text, out int port)
    {
        port = 0;
        if (text.Length is 0 or > 5) return false;
        foreach (byte b in text)
        {
            if (b is < (byte)'0' or > (byte)'9') return false;
            port = port * 10 + (b - '0');
        }
        return port <= 65535;
    }

    private static ProxyParseStatus ParseV2(in ReadOnlySequence<byte> input, ReadOnlySpan<byte> start, out SequencePosition consumed, out ProxyHeader header, out ProxyRejectionReason reason)
    {
        consumed = input.Start;
        header = default;
        reason = ProxyRejectionReason.None;
        if (start.Length < 16) return ProxyParseStatus.NeedMoreData;
        byte versionCommand = start[12], familyTransport = start[13];
        int length = BinaryPrimitives.ReadUInt16BigEndian(start[14..]);
        int command = versionCommand & 0x0F;
        if (versionCommand >> 4 != 2 || command > 1) { reason = ProxyRejectionReason.V2BadVersionOrCommand; return ProxyParseStatus.Rejected; }
        int family = familyTransport >> 4, transport = familyTransport & 0x0F;
        if (family > 3 || transport > 2) { reason = ProxyRejectionReason.V2BadFamily; return ProxyParseStatus.Rejected; }
        if (length > MaxV2PayloadLength) { reason = ProxyRejectionReason.V2TooLarge; return ProxyParseStatus.Rejected; }
        int needed = family switch { 1 => 12, 2 => 36, 3 => 216, _ => 0 };
        if (command == 1 && length < needed) { reason = ProxyRejectionReason.V2AddressTooShort; return ProxyParseStatus.Rejected; }
        if (input.Length < 16 + length) return ProxyParseStatus.NeedMoreData;

        header = new ProxyHeader(2, null, null);
        if (command == 1 && family is 1 or 2)
        {
            Span<byte> addresses = stackalloc byte[36];
            input.Slice(16, needed).CopyTo(addresses);
            int size = family == 1 ? 4 : 16;
            var source = new IPAddress(addresses[..size]);
            var destination = new IPAddress(addresses.Slice(size, size));
            int sourcePort = BinaryPrimitives.ReadUInt16BigEndian(addresses[(2 * size)..]);
            int destinationPort = BinaryPrimitives.ReadUInt16BigEndian(addresses[(2 * size + 2)..]);
            header = new ProxyHeader(2, new IPEndPoint(source, sourcePort), new IPEndPoint(destination, destinationPort));
        }
        consumed = input.GetPosition(16 + length);
        return ProxyParseStatus.Done;
    }
}
