using System.Net;
using PipeServer.Http;
using PipeServer.Server;
using PipeServer.StaticFiles;
using PipeServer.Tests.Infrastructure;

namespace PipeServer.Tests.StaticFiles;

/// <summary>
/// A temporary tree (root/ with a few files, and a secret beside root/ that no request may read) and an
/// in-process server on port 0 whose only handler is a StaticFileHandler over root/.
/// </summary>
public sealed class StaticFileServer : IAsyncDisposable
{
    public const string SecretMarker = "TOP-SECRET-OUTSIDE-THE-ROOT";

    private StaticFileServer(DirectoryInfo tree, string root, HttpServer server, CapturingLogger logger)
    {
        Tree = tree; Root = root; Server = server; Logger = logger;
    }

    public DirectoryInfo Tree { get; }
    public string Root { get; }
    public HttpServer Server { get; }
    public CapturingLogger Logger { get; }
    public int Port => Server.EndPoint!.Port;

    public static async Task<StaticFileServer> StartAsync(string transport, Func<StaticFileOptions, StaticFileOptions>? configure = null,
        Action<string>? populate = null, TimeSpan? shutdownTimeout = null)
    {
        var tree = Directory.CreateTempSubdirectory("pipeserver-static-");
        var root = Path.Combine(tree.FullName, "root");
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(tree.FullName, "secret.txt"), SecretMarker);
        File.WriteAllText(Path.Combine(root, "hello.txt"), "Hello, files!\n");
        File.WriteAllText(Path.Combine(root, "index.html"), "<h1>root index</h1>\n");
        File.WriteAllText(Path.Combine(root, ".env"), SecretMarker);
        Directory.CreateDirectory(Path.Combine(root, ".git"));
        File.WriteAllText(Path.Combine(root, ".git", "config"), SecretMarker);
        Directory.CreateDirectory(Path.Combine(root, "docs"));
        File.WriteAllText(Path.Combine(root, "docs", "index.html"), "<h1>docs</h1>\n");
        Directory.CreateDirectory(Path.Combine(root, "empty"));
        File.WriteAllText(Path.Combine(root, "empty", "a.txt"), "a");
        File.WriteAllText(Path.Combine(root, "empty", ".hidden"), "h");
        File.WriteAllBytes(Path.Combine(root, "digits.bin"), Digits(10_000));
        File.WriteAllBytes(Path.Combine(root, "zero.txt"), []);
        File.CreateSymbolicLink(Path.Combine(root, "outside-link"), Path.Combine(tree.FullName, "secret.txt"));
        Directory.CreateSymbolicLink(Path.Combine(root, "outside-dir"), tree.FullName);
        File.CreateSymbolicLink(Path.Combine(root, "inside-link.txt"), Path.Combine(root, "hello.txt"));
        populate?.Invoke(root);

        var options = new StaticFileOptions { Root = root };
        if (configure is not null) options = configure(options);
        var handler = new StaticFileHandler(options);
        var logger = new CapturingLogger("PipeServer.Server");
        var server = new HttpServer(new HttpServerOptions
        {
            Address = IPAddress.Loopback, Port = 0, Transport = TransportData.Kind(transport),
            ShutdownTimeout = shutdownTimeout ?? TimeSpan.FromSeconds(5),
        }, handler.HandleAsync, logger);
        await server.StartAsync();
        if (server.Transport?.Name != transport) throw new InvalidOperationException($"asked for {transport}, runs {server.Transport?.Name}");
        return new StaticFileServer(tree, root, server, logger);
    }

    /// <summary>Bytes whose value says their offset (mod 10, as ASCII digits): a wrong range shows in the body.</summary>
    public static byte[] Digits(int length)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++) bytes[i] = (byte)('0' + i % 10);
        return bytes;
    }

    public Task<RawConnection> ConnectAsync() => RawConnection.ConnectAsync(Port);

    /// <summary>One request on a fresh connection; <paramref name="headers"/> are extra lines without CRLF.</summary>
    public async Task<RawResponse> GetAsync(string target, string method = "GET", params string[] headers)
    {
        await using var c = await ConnectAsync();
        var extra = string.Concat(headers.Select(h => h + "\r\n"));
        await c.SendAsync($"{method} {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
        return await c.ReadResponseAsync(noBody: method == "HEAD");
    }

    /// <summary>How many of this process's descriptors are open on a file under the tree (Linux /proc), the root directory's own aside.</summary>
    public int OpenHandlesUnderTree()
    {
        int count = 0;
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                var target = new FileInfo(fd).LinkTarget;
                // The root directory itself is held open by the handler (O_PATH, for openat2): a directory, not a file it serves.
                if (target is not null && target.StartsWith(Tree.FullName, StringComparison.Ordinal) && target != Root) count++;
            }
            catch (IOException) { } // closed while we looked
            catch (UnauthorizedAccessException) { }
        }
        return count;
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        try { Tree.Delete(recursive: true); } catch (IOException) { }
    }
}
