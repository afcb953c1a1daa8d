using System.IO.Pipelines;
using System.Net.Sockets;

namespace PipeServer.Transports.Sockets;

// Where this sits: the portable transport behind the seam (../ConnectionTransport.cs). It owns nothing but
// the connections it makes: each SocketConnection runs on the thread pool through .NET's socket engine.

/// <summary>The portable transport: .NET sockets, on every OS (what auto picks off Linux).</summary>
internal sealed class SocketTransport : ConnectionTransport
{
    public override string Name => "sockets";

    public override SocketConnection Create(Socket accepted, PipeOptions inputOptions, PipeOptions outputOptions, Action onPeerFailure) =>
        new(accepted, inputOptions, outputOptions, onPeerFailure);
}
