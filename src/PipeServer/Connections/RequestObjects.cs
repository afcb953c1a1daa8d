using PipeServer.Http;

namespace PipeServer.Connections;

// Where this sits: beside Http1Connection (step 3 of a request's journey). The objects a request is served
// with (its RequestHead, the HttpRequest and HttpResponse a handler sees, the body readers) are rented from
// here when a request's first bytes arrive and returned when the connection goes idle: nothing received,
// nothing in flight, about to wait for the client. An idle keep-alive connection then holds none of them
// (~0.6 KiB a connection: 6 MB at 10,000 idle connections). A pipelined batch keeps one set for the whole batch.
//
// The pool: one spare set per thread first (a Linux event loop serves request after request on its own
// thread, so the set it returns is the set it rents next: no interlocked operation, no shared cache line),
// then a small shared stack under a lock (a handler that awaited returns its set on the thread it resumed
// on, which may not be the one that rents next). Process-wide rather than per server: once detached a set
// holds nothing of any server or connection. The per-thread spare also keeps its small pooled arrays (the
// head's bytes and slots, the response's staging array; stale bytes in them, as in any pooled array), so
// the request after it rents none; a shared set gives them back to the ArrayPool.
//
// Invariants: a set is rented by one connection at a time. Everything a handler can see of the previous
// request is reset when the next one starts (RequestHead.Reset, HttpRequest.Reset and SetConnectionClient,
// HttpResponse.Reset, the body reader's Reset), as it was when the objects belonged to one connection; on
// return the set drops every reference to its last connection (Detach), so a pooled set keeps no closed
// connection's pipes or handler state alive.

/// <summary>The per-request objects of a connection, pooled while the connection is idle.</summary>
internal sealed class RequestObjects
{
    private const int MaxShared = 64; // beyond the per-thread spares: sets in use at once past this are made and dropped

    [ThreadStatic] private static RequestObjects? t_spare;
    private static readonly Lock s_sharedLock = new();
    private static readonly Stack<RequestObjects> s_shared = new(); // guarded by s_sharedLock

    /// <summary>What an idle connection's body field points at: complete, never handed to a handler, shared.</summary>
    internal static readonly EmptyRequestBody IdleBody = EmptyRequestBody.Create();

    public readonly RequestHead Head = new();
    public readonly HttpRequest Request = new();
    public readonly HttpResponse Response = new();
    public readonly EmptyRequestBody EmptyBody = EmptyRequestBody.Create();
    public ContentLengthRequestBody? ContentLengthBody; // made on first use: most sets never serve a body
    public ChunkedRequestBody? ChunkedBody;

    private RequestObjects() { }

    public static RequestObjects Rent()
    {
        var spare = t_spare;
        if (spare is not null)
        {
            t_spare = null;
            return spare;
        }
        lock (s_sharedLock)
        {
            if (s_shared.TryPop(out spare)) return spare;
        }
        return new RequestObjects();
    }

    /// <summary>Back to the pool; the caller no longer uses the set (its request is over).</summary>
    public static void Return(RequestObjects objects)
    {
        if (t_spare is null)
        {
            // The thread's spare keeps its small pooled arrays (the head's bytes and slots, the response's
            // staging array): on a loop thread it is the set the next request rents, so an unpipelined request
            // pays no ArrayPool rent and return for them. The shared sets give theirs back.
            objects.Detach(keepBuffers: true);
            t_spare = objects;
            return;
        }
        objects.Detach(keepBuffers: false);
        lock (s_sharedLock)
        {
            if (s_shared.Count < MaxShared) s_shared.Push(objects);
        }
    }

    private void Detach(bool keepBuffers)
    {
        Head.Release(keepSmall: keepBuffers);
        Head.Reset(); // drops the last request's strings too
        Request.Detach();
        Response.Detach(keepStaging: keepBuffers);
        EmptyBody.Detach();
        ContentLengthBody?.Detach();
        ChunkedBody?.Detach();
    }
}
