using PipeServer.Transports;
using Xunit;

namespace PipeServer.Tests.Infrastructure;

// Where this sits: the one list of transports that every socket and process test runs against
// ([Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))] with a string
// transport parameter handed to TestServer.StartAsync or ServerProcess.StartAsync). A new transport is one
// more line here, and every such test runs over it.

public static class TransportData
{
    /// <summary>Every transport this OS can run, by its --transport name.</summary>
    public static TheoryData<string> All
    {
        get
        {
            var data = new TheoryData<string> { "sockets" };
            if (LinuxTransportSupported) data.Add("linux");
            return data;
        }
    }

    /// <summary>
    /// A theory's own cases, each run on every transport: the rows of the static member
    /// <paramref name="member"/> of <paramref name="type"/>, with the transport name appended as the last argument.
    /// </summary>
    public static IEnumerable<object?[]> Cross(Type type, string member)
    {
        var property = type.GetProperty(member, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
            ?? throw new ArgumentException($"{type.Name}.{member} is not a public static property");
        var rows = (IEnumerable<object?[]>)property.GetValue(null)!;
        foreach (var row in rows)
            foreach (var transport in (IEnumerable<object?[]>)All)
                yield return [.. row, .. transport];
    }

    private static bool LinuxTransportSupported => PipeServer.Transports.Linux.LinuxTransport.IsSupported;

    public static TransportKind Kind(string transport) => transport switch
    {
        "sockets" => TransportKind.Sockets,
        "linux" => TransportKind.Linux,
        _ => throw new ArgumentOutOfRangeException(nameof(transport), transport, "not a transport name"),
    };
}
