using System.Buffers;
using PipeServer.Http;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Http;

// The request body as a PipeReader, read the ways a handler may read it (ReadAsync, TryRead), while the
// connection uses the same input for its own wake-ups (drain, timeouts).
public class RequestBodyReadTests
{
    [Fact]
    public async Task TryRead_that_meets_a_connection_wake_up_leaves_the_body_readable()
    {
        var inHandler = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var wokeUp = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var conn = new InMemoryConnection(async (req, res) =>
        {
            long total = 0;
            var first = await req.Body.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
            total += first.Buffer.Length;
            req.Body.AdvanceTo(first.Buffer.End);
            inHandler.SetResult();
            await wokeUp.Task.WaitAsync(TimeSpan.FromSeconds(5));
            // The connection's CancelPendingRead is pending on the input: TryRead meets it and must not
            // leave the input's read open behind it.
            if (req.Body.TryRead(out var tried))
            {
                total += tried.Buffer.Length;
                req.Body.AdvanceTo(tried.Buffer.End);
            }
            while (true)
            {
                var result = await req.Body.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(5));
                total += result.Buffer.Length;
                req.Body.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted) break;
            }
            await res.WriteTextAsync(total.ToString(System.Globalization.CultureInfo.InvariantCulture));
        });
        await conn.SendAsync("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello");
        await inHandler.Task.WaitAsync(TimeSpan.FromSeconds(5));
        conn.Connection.RequestClose(); // a drain: wakes the input's reader, which the body must ignore
        wokeUp.SetResult();
        await conn.SendAsync("world");
        var text = await conn.ReadUntilAsync("\r\n\r\n10");
        Assert.StartsWith("HTTP/1.1 200 OK\r\n", text);
        Assert.EndsWith("\r\n\r\n10", text);
    }
}
