// samples/JsonApi: a small JSON API on PipeServer's public API.
//
//   GET    /todos?done=true|false   the list, optionally filtered by a query parameter
//   GET    /todos/{id}              one item (404 if there is none)
//   POST   /todos                   {"title": "..."} → 201 with the item and a Location header
//   POST   /todos/{id}/done         marks it done
//   DELETE /todos/{id}              removes it
//
// Beside the HTTP server, a background job runs under the same ServiceManager: every --purge-interval
// seconds it removes the items that are done. The manager starts the two in order under one root token,
// and a signal (SIGTERM, SIGINT) stops them in reverse: the job first, then the server drains. A fault of
// either (the job throws, the listener dies) stops both and the exit code says so.
//
// Run: dotnet run --project samples/JsonApi -- --port 8080 [--transport sockets|linux] [--purge-interval 5]

using System.Collections.Concurrent;
using System.Net;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using PipeServer.Hosting;
using PipeServer.Http;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Transports;

int port = int.Parse(Option("--port") ?? "8080", System.Globalization.CultureInfo.InvariantCulture);
var transport = Option("--transport") == "linux" ? TransportKind.Linux : TransportKind.Sockets;
var purgeInterval = TimeSpan.FromSeconds(double.Parse(Option("--purge-interval") ?? "5", System.Globalization.CultureInfo.InvariantCulture));

using var loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true));
var logger = loggerFactory.CreateLogger("JsonApi");

var store = new TodoStore();
var router = new Router()
    .MapGet("/todos", (req, res) =>
    {
        // A query parameter: absent means every item.
        bool? done = req.GetQueryValue("done") switch { "true" => true, "false" => false, _ => null };
        var items = store.All().Where(t => done is null || t.Done == done).ToArray();
        return res.WriteJsonAsync(items, TodoJson.Default.TodoArray);
    })
    .MapGet("/todos/{id}", (req, res) =>
        TryGetItem(req, out var todo) ? res.WriteJsonAsync(todo, TodoJson.Default.Todo) : NotFound(res))
    .MapPost("/todos", CreateAsync)
    .MapPost("/todos/{id}/done", (req, res) =>
    {
        if (!TryGetItem(req, out var todo)) return NotFound(res);
        var done = store.Update(todo with { Done = true });
        return res.WriteJsonAsync(done, TodoJson.Default.Todo);
    })
    .MapDelete("/todos/{id}", (req, res) =>
    {
        if (!TryGetItem(req, out var todo)) return NotFound(res);
        store.Remove(todo.Id);
        res.StatusCode = 204;
        return ValueTask.CompletedTask;
    });

async ValueTask CreateAsync(HttpRequest req, HttpResponse res)
{
    NewTodo? input;
    try { input = await req.ReadJsonAsync(TodoJson.Default.NewTodo, req.Aborted); }
    catch (JsonException) { input = null; }
    if (input is not { Title.Length: > 0 and <= 200 })
    {
        res.StatusCode = 400;
        await res.WriteTextAsync("expected {\"title\": \"1 to 200 characters\"}\n");
        return;
    }
    var todo = store.Add(input.Title);
    res.StatusCode = 201;
    res.Headers.Set("Location", $"/todos/{todo.Id}");
    await res.WriteJsonAsync(todo, TodoJson.Default.Todo);
}

// The route value is a string; the handler decides what a valid id is.
bool TryGetItem(HttpRequest req, out Todo todo)
{
    todo = null!;
    return req.TryGetRouteValue("id", out var raw) && int.TryParse(raw, System.Globalization.NumberStyles.None, null, out int id)
        && store.TryGet(id, out todo);
}

static ValueTask NotFound(HttpResponse res)
{
    res.StatusCode = 404;
    return res.WriteTextAsync("no such item\n");
}

var options = new HttpServerOptions { Address = IPAddress.Loopback, Port = port, Transport = transport, ShutdownTimeout = TimeSpan.FromSeconds(10) };
await using var server = new HttpServer(options, router.HandleAsync, loggerFactory.CreateLogger("PipeServer"));

HostedService[] services =
[
    new HttpServerService(server, listeners =>
    {
        foreach (var listener in listeners) Console.WriteLine($"Listening on {listener.Url}");
    }),
    new PurgeJob(store, purgeInterval, logger),
];
// One deadline for stopping everything: the server's own shutdown timeout plus a margin.
var manager = new ServiceManager(services, logger, options.ShutdownTimeout + TimeSpan.FromSeconds(5));

using var root = new CancellationTokenSource();
void OnSignal(PosixSignalContext context)
{
    context.Cancel = true; // we stop gracefully, not the runtime's default handler
    logger.LogInformation("{Signal}: stopping", context.Signal);
    root.Cancel();
}
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);

var outcome = await manager.RunAsync(root);
logger.LogInformation("Stopped: {Outcome}", outcome);
return (int)outcome; // 0 clean, 1 a fault, 2 the deadline passed

string? Option(string name)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

/// <summary>An item of the list. Immutable: an update replaces it.</summary>
public sealed record Todo(int Id, string Title, bool Done);

/// <summary>What a client posts.</summary>
public sealed record NewTodo(string Title);

/// <summary>The items, shared by every connection's handlers and the purge job (hence concurrent).</summary>
public sealed class TodoStore
{
    private readonly ConcurrentDictionary<int, Todo> _items = new();
    private int _nextId;

    public Todo Add(string title)
    {
        var todo = new Todo(Interlocked.Increment(ref _nextId), title, false);
        _items[todo.Id] = todo;
        return todo;
    }

    public bool TryGet(int id, out Todo todo) => _items.TryGetValue(id, out todo!);
    public Todo Update(Todo todo) => _items[todo.Id] = todo;
    public bool Remove(int id) => _items.TryRemove(id, out _);
    public IEnumerable<Todo> All() => _items.Values.OrderBy(t => t.Id);
}

/// <summary>The background job: removes done items every <c>interval</c>, until the manager's root token fires.</summary>
public sealed partial class PurgeJob(TodoStore store, TimeSpan interval, ILogger logger) : HostedService
{
    public override string Name => "purge";

    public override async Task RunAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(interval);
        // WaitForNextTickAsync throws OperationCanceledException when stopping fires: the manager takes that as a clean stop.
        while (await timer.WaitForNextTickAsync(stopping))
        {
            int purged = 0;
            foreach (var todo in store.All().Where(t => t.Done).ToArray())
                if (store.Remove(todo.Id)) purged++;
            if (purged > 0) LogPurged(logger, purged);
        }
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Purged {Count} done item(s)")]
    private static partial void LogPurged(ILogger logger, int count);
}

/// <summary>JSON without reflection: System.Text.Json's source generator writes the (de)serialisers at build time.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(Todo))]
[JsonSerializable(typeof(Todo[]))]
[JsonSerializable(typeof(NewTodo))]
internal sealed partial class TodoJson : JsonSerializerContext;
