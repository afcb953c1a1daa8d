using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Server.Kestrel.Core;

// Kestrel at its fastest, not at its most convenient: one terminal middleware writing preformatted bytes
// with a Content-Length (the shape of TechEmpower's ASP.NET Core "platform" entries), logging off, and the
// Server header on, as PipeServer sends one too.
// Usage: KestrelBaseline --urls http://127.0.0.1:PORT [--inline true] [--tls-cert FILE --tls-key FILE]
// With --tls-cert/--tls-key (PEM, the same files PipeServer is given by scripts/bench-tls.sh) it listens on
// HTTPS instead, HTTP/1.1 only, so both servers do the same TLS work.
// --inline true is "tuned Kestrel" as TechEmpower's platform entries run it: the socket transport's
// continuations run inline on the I/O thread (UnsafePreferInlineScheduling) instead of hopping to the
// thread pool; the benchmark script also sets DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 for it, so
// the runtime's epoll thread runs socket completions itself.
var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { Args = args });
bool inline = string.Equals(builder.Configuration["inline"], "true", StringComparison.OrdinalIgnoreCase);
builder.WebHost.UseKestrelCore().ConfigureKestrel(o => o.AddServerHeader = true);
builder.WebHost.UseSockets(o => o.UnsafePreferInlineScheduling = inline);
string? tlsCert = builder.Configuration["tls-cert"], tlsKey = builder.Configuration["tls-key"];
if (tlsCert is not null && tlsKey is not null)
{
    var port = new Uri(builder.Configuration["urls"] ?? "https://127.0.0.1:5001").Port;
    var certificate = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(tlsCert, tlsKey);
    builder.WebHost.UseKestrelHttpsConfiguration();
    builder.WebHost.ConfigureKestrel(o => o.Listen(System.Net.IPAddress.Loopback, port, listen =>
    {
        listen.Protocols = HttpProtocols.Http1;
        listen.UseHttps(certificate);
    }));
}
else builder.WebHost.UseUrls(builder.Configuration["urls"] ?? "http://127.0.0.1:5000");
var app = builder.Build();

byte[] plaintext = "Hello, World!"u8.ToArray();
app.Run(async context =>
{
    var response = context.Response;
    var path = context.Request.Path.Value;
    if (path == "/plaintext")
    {
        response.StatusCode = 200;
        response.ContentType = "text/plain";
        response.ContentLength = plaintext.Length;
        await response.Body.WriteAsync(plaintext);
    }
    else if (path == "/json")
    {
        response.StatusCode = 200;
        response.ContentType = "application/json";
        var message = new JsonMessage("Hello, World!");
        response.ContentLength = 27;
        await JsonSerializer.SerializeAsync(response.Body, message, BaselineJsonContext.Default.JsonMessage);
    }
    else if (path == "/healthz")
    {
        response.StatusCode = 200;
    }
    else
    {
        response.StatusCode = 404;
    }
});
Console.WriteLine("Listening on " + (builder.Configuration["urls"] ?? "http://127.0.0.1:5000") + (inline ? " (inline scheduling)" : ""));
await app.RunAsync();

public readonly record struct JsonMessage([property: JsonPropertyName("message")] string Message);

[JsonSerializable(typeof(JsonMessage))]
internal sealed partial class BaselineJsonContext : JsonSerializerContext;
