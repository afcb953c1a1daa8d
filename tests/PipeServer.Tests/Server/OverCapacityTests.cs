using PipeServer.Tests.Infrastructure;
using PipeServer.Tests.Lifecycle;
using Xunit;

namespace PipeServer.Tests.Server;

// The connection cap over a real socket: the preformatted 503 must be a whole, well-framed response
// (its Content-Length counts exactly the body that follows) and the connection must end with a FIN.
public class OverCapacityTests
{
    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Over_the_cap_the_503_is_exactly_its_declared_length_and_ends_with_a_fin(string transport)
    {
        await using var server = await TestServer.StartAsync(transport, o => o with { MaxConnections = 1 });
        await using var admitted = await server.ConnectAsync();
        await server.WaitForConnectionCountAsync(1);

        await using var refused = await server.ConnectAsync();
        // ReadToEndAsync returns at the FIN and throws on a reset: every byte the server sent, nothing else.
        FileDescriptorTests.AssertWhole503(await refused.ReadToEndAsync());
        Assert.Equal(1, server.Server.RejectedConnections);

        await admitted.SendAsync("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await admitted.ReadResponseAsync()).Status);
    }
}
