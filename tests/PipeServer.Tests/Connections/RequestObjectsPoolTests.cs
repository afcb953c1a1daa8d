using System.Buffers;
using System.Net;
using System.Text;
using PipeServer.Connections;
using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using Xunit;

namespace PipeServer.Tests.Connections;

// The per-request objects (HttpRequest, HttpResponse, the head, the body readers) are pooled across
// connections while a connection is idle (Connections/RequestObjects.cs). These tests dirty every part of
// them a handler can touch on one connection, let it go idle (which returns them), and look at them from a
// request on another connection: nothing of the first request may show. On the linux transport with one
// event loop the second request is served with the very same objects (the loop's spare set), which the
// tests check too, so the reset is proven on reused objects rather than merely on fresh ones.
public class RequestObjectsPoolTests
{
    private sealed class Seen
    {
        public HttpRequest? DirtyRequest;
        public HttpResponse? DirtyResponse;
        public int Reused;
    }

    private static async Task<HttpServer> StartAsync(string transport, Seen seen)
    {
        var router = new Router();
        router.MapPost("/dirty/{id}", async (request, response) =>
        {
            seen.DirtyRequest = request;
            seen.DirtyResponse = response;
            using var reader = new StreamReader(request.BodyStream);
            string body = await reader.ReadToEndAsync();
            _ = request.Headers;                 // materialised header list
            _ = request.ClientAddress;           // cached per request
            response.StatusCode = 201;
            response.ReasonPhrase = "Dirty";
            response.ContentType = "application/x-dirty";
            response.Headers.Add("X-Dirty", request.GetHeader("X-Secret") ?? "?");
            await response.WriteTextAsync($"dirty {request.RouteValues["id"]} {body} {request.Trailers["X-Trailer"]}", "application/x-dirty");
        });
        router.MapPost("/throws/{id}", (request, response) =>
        {
            seen.DirtyRequest = request;
            seen.DirtyResponse = response;
            response.StatusCode = 418;
            response.ContentLength = 99;
            response.Headers.Add("X-Dirty", "thrown");
            response.Body.Write("half a body"u8);
            throw new InvalidOperationException("the handler fails after dirtying its response");
        });
        router.MapPost("/complete", async (request, response) =>
        {
            await request.Body.CompleteAsync();
            response.StatusCode = 204;
        });
        router.MapGet("/probe", async (request, response) =>
        {
            if (ReferenceEquals(request, seen.DirtyRequest) && ReferenceEquals(response, seen.DirtyResponse)) seen.Reused++;
            // Everything read before the response is touched: what the handler is handed.
            var body = await request.Body.ReadAsync();
            var report = new StringBuilder()
                .Append($"method={request.Method} path={request.Path} query=[{request.Query}] q={request.GetQueryValue("q") ?? "null"} route={request.Route}\n")
                .Append($"headers={string.Join(",", request.Headers.Select(h => h.Key))} secret={request.GetHeader("X-Secret") ?? "null"}\n")
                .Append($"routeValues={request.RouteValues.Count} id={(request.TryGetRouteValue("id", out var id) ? id : "none")}\n")
                .Append($"contentLength={request.ContentLength?.ToString() ?? "null"} chunked={request.IsChunked} trailers={request.Trailers.Count} body={body.Buffer.Length}/{body.IsCompleted}\n")
                .Append($"client={request.ClientAddress} scheme={request.Scheme} aborted={request.Aborted.IsCancellationRequested}\n")
                .Append($"status={response.StatusCode} reason={response.ReasonPhrase ?? "null"} type={response.ContentType ?? "null"} length={response.ContentLength?.ToString() ?? "null"}")
                .Append($" headers={response.Headers.Count} started={response.HasStarted} written={response.BodyBytesWritten}\n");
            request.Body.AdvanceTo(body.Buffer.End);
            await response.WriteTextAsync(report.ToString());
        });
        var options = new HttpServerOptions { Address = IPAddress.Loopback, Port = 0, ShutdownTimeout = TimeSpan.FromSeconds(5), Transport = TransportData.Kind(transport) };
        // One event loop: every connection is served on the same thread, so the set one returns is the set the next rents.
        var server = new HttpServer(options, router.HandleAsync) { StartLinuxTransport = log => new PipeServer.Transports.Linux.LinuxTransport(1, log) };
        await server.StartAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(transport, server.Transport!.Name);
        return server;
    }

    private const string CleanProbe =
        "method=GET path=/probe query=[] q=null route=/probe\n" +
        "headers=Host secret=null\n" +
        "routeValues=0 id=none\n" +
        "contentLength=null chunked=False trailers=0 body=0/True\n" +
        "client=127.0.0.1 scheme=http aborted=False\n" +
        "status=200 reason=null type=null length=null headers=0 started=False written=0\n";

    /// <summary>
    /// A connection's first request, made before anything is dirtied. The server starts a connection's protocol
    /// on the accepting thread, so a first request whose bytes the loop has already received is served there,
    /// with that thread's spare set rather than the loop's (about 1 run in 10 on linux). Every request after
    /// it runs on the loop, so the reuse the tests count is then certain.
    /// </summary>
    private static async Task FirstRequestAsync(RawConnection c) => Assert.Equal(CleanProbe, await ProbeAsync(c));

    private static async Task<string> ProbeAsync(RawConnection c)
    {
        await c.SendAsync("GET /probe HTTP/1.1\r\nHost: b\r\n\r\n");
        var response = await c.ReadResponseAsync();
        Assert.Equal(200, response.Status);
        return response.BodyText;
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_request_on_another_connection_sees_nothing_of_the_previous_request_served_with_the_same_objects(string transport)
    {
        var seen = new Seen();
        await using var server = await StartAsync(transport, seen);
        await using var dirty = await RawConnection.ConnectAsync(server.EndPoint!.Port);
        await using var probe = await RawConnection.ConnectAsync(server.EndPoint!.Port);
        await FirstRequestAsync(dirty);
        await FirstRequestAsync(probe);
        for (int round = 0; round < 3; round++)
        {
            // A chunked body with a trailer, a route value, a query, headers; a response with a status, reason,
            // type, a header and a body. Then the connection stays open and idle: its objects go back.
            await dirty.SendAsync(
                "POST /dirty/42?q=secret HTTP/1.1\r\nHost: a\r\nX-Secret: s3cret\r\nTransfer-Encoding: chunked\r\n\r\n" +
                "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n");
            var response = await dirty.ReadResponseAsync();
            Assert.Equal(201, response.Status);
            Assert.Equal("dirty 42 hello t", response.BodyText);
            Assert.Equal("s3cret", response.Header("X-Dirty"));

            Assert.Equal(CleanProbe, await ProbeAsync(probe));
        }
        if (transport == "linux") Assert.Equal(3, seen.Reused); // the same objects, reset
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task Objects_returned_by_a_connection_whose_handler_threw_are_clean_for_the_next(string transport)
    {
        var seen = new Seen();
        await using var server = await StartAsync(transport, seen);
        await using var probe = await RawConnection.ConnectAsync(server.EndPoint!.Port);
        await FirstRequestAsync(probe);
        await using (var thrower = await RawConnection.ConnectAsync(server.EndPoint!.Port))
        {
            await FirstRequestAsync(thrower);
            await thrower.SendAsync("POST /throws/7?q=secret HTTP/1.1\r\nHost: a\r\nX-Secret: s3cret\r\nContent-Length: 4\r\n\r\nbody");
            var response = await thrower.ReadResponseAsync();
            Assert.Equal(500, response.Status);
            Assert.Null(response.Header("X-Dirty"));
            Assert.Contains(await thrower.WaitForCloseAsync(), RawConnection.ClosedWithoutAnswer);
        }
        Assert.Equal(CleanProbe, await ProbeAsync(probe));
        if (transport == "linux") Assert.Equal(1, seen.Reused);
    }

    [Theory, MemberData(nameof(TransportData.All), MemberType = typeof(TransportData))]
    public async Task A_body_a_handler_completed_is_not_completed_for_the_next_request(string transport)
    {
        // A handler that completes its (empty) body, as Pipelines code often does when it is done reading,
        // marked the pooled reader completed for good: the next request given that set, on this connection
        // or another client's, got ObjectDisposedException from Body.ReadAsync, and a 500.
        var seen = new Seen();
        await using var server = await StartAsync(transport, seen);
        await using var completer = await RawConnection.ConnectAsync(server.EndPoint!.Port);
        await completer.SendAsync("POST /complete HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        Assert.Equal(204, (await completer.ReadResponseAsync()).Status);
        Assert.Equal(CleanProbe, await ProbeAsync(completer)); // the same connection's next request
        await completer.SendAsync("POST /complete HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        Assert.Equal(204, (await completer.ReadResponseAsync()).Status);
        await using var probe = await RawConnection.ConnectAsync(server.EndPoint!.Port);
        Assert.Equal(CleanProbe, await ProbeAsync(probe)); // another client's
    }

    [Fact]
    public void A_returned_set_holds_nothing_of_its_connection()
    {
        var objects = RequestObjects.Rent();
        objects.Request.RouteValues.Add("id", "42");
        objects.Request.Route = "/dirty/{id}";
        objects.Response.Headers.Add("X-Dirty", "1");
        objects.Response.ContentType = "application/x-dirty";
        RequestObjects.Return(objects);
        Assert.Empty(objects.Request.RouteValues);
        Assert.Null(objects.Request.Route);
        Assert.Null(objects.Request.RemoteEndPoint);
        Assert.Equal(0, objects.Response.Headers.Count);
        Assert.Null(objects.Response.ContentType);
        Assert.Same(objects, RequestObjects.Rent()); // this thread's spare
    }
}
