using System.IO.Pipelines;

namespace PipeServer.Connections;

// Where this sits: between accept and the first request, with --proxy-protocol only. HttpServer's
// RunConnectionAsync calls ReadAsync on the connection's input before Http1Connection.ProcessAsync; on
// Accepted the header's bytes are consumed and the HTTP loop reads from the byte after them; on anything
// else the connection is closed without a response, as HAProxy's accept-proxy and nginx's
// "listen ... proxy_protocol" do (nginx logs "broken header" and closes; there is no HTTP to answer yet).
//
//   peer in --trusted-proxies   a header is required (the spec: the receiver must not guess).
//   any other peer              a header is refused: one that starts with a PROXY signature is closed,
//                               anything else is left unconsumed for HTTP. (HAProxy: "expect-proxy layer4
//                               if { src -f trusted }".)
//
// Bounded like a request head: the header must arrive within the request-header timeout, and v1 is at
// most 107 bytes, v2 at most 16 + 2048. A drain (RequestClose cancels the pending read) or an abort ends the wait.

internal enum ProxyReadOutcome : byte
{
    /// <summary>A trusted peer's header was read; the HTTP bytes follow.</summary>
    Accepted,
    /// <summary>An untrusted peer sent no header: HTTP starts at the first byte (nothing consumed).</summary>
    NoHeader,
    /// <summary>Missing (trusted peer), malformed, or sent by an untrusted peer: close.</summary>
    Rejected,
    /// <summary>The peer closed or went away, or the server is draining (RequestClose): close quietly.</summary>
    Closed,
    /// <summary>No complete header within the request-header timeout: close quietly (there is no request to answer with 408).</summary>
    TimedOut,
}

internal static class ProxyProtocolReader
{
    public static async ValueTask<(ProxyReadOutcome Outcome, ProxyHeader Header, ProxyRejectionReason Reason)> ReadAsync(
        PipeReader input, bool headerRequired, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(cts.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (result.IsCanceled) { input.AdvanceTo(buffer.Start); return (ProxyReadOutcome.Closed, default, default); }
                var status = ProxyProtocolParser.Parse(buffer, out var consumed, out var header, out var reason);
                switch (status)
                {
                    case ProxyParseStatus.Done when headerRequired:
                        input.AdvanceTo(consumed);
                        return (ProxyReadOutcome.Accepted, header, default);
                    case ProxyParseStatus.NotProxy when !headerRequired:
                        input.AdvanceTo(buffer.Start); // nothing examined: the HTTP loop's first read sees these bytes at once
                        return (ProxyReadOutcome.NoHeader, default, default);
                    case ProxyParseStatus.NeedMoreData:
                        input.AdvanceTo(buffer.Start, buffer.End);
                        if (result.IsCompleted) return (ProxyReadOutcome.Closed, default, default);
                        continue;
                    default: // a header where none may be, none where one must be, or a broken one
                        input.AdvanceTo(buffer.Start);
                        return (ProxyReadOutcome.Rejected, default, status == ProxyParseStatus.Rejected ? reason : default);
                }
            }
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            return (ProxyReadOutcome.TimedOut, default, default);
        }
        catch (Exception ex) when (Http1Connection.IsExpectedDisconnect(ex))
        {
            return (ProxyReadOutcome.Closed, default, default);
        }
    }
}
