using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using PipeServer.Transports;
using PipeServer.Connections;
using PipeServer.Demo;
using PipeServer.Routing;
using PipeServer.Server;
using PipeServer.Tests.Infrastructure;
using PipeServer.Transports.Linux;

namespace PipeServer.Tests.Transports;

// Where this sits: the test rig for the Linux transport's own tests, which look inside a LinuxConnection
// (its loop, kernel bytes, discard counts). It does what HttpServer.Accept does (TcpListener on
// 127.0.0.1:0, NoDelay, a transport + Http1Connection pair per socket, the demo routes on a Router, a
// heartbeat that checks timeouts and send stalls) and keeps every pair so tests can look at both halves.
// HttpServer itself runs on this transport with --transport linux; the socket and process tests cover
// that through TestServer/ServerProcess and Infrastructure/TransportData.cs.

internal sealed class LinuxTestHost : IAsyncDisposable
{
    public sealed class Entry
    {
        public LinuxConnection Transport = null!;
        public Http1Connection Protocol = null!;
        public Task Task = Task.CompletedTask;
        public int PeerFailures;
        public readonly TaskCompletionSource PeerFailed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public void OnPeerFailure()
        {
            Interlocked.Increment(ref PeerFailures);
            Protocol?.OnPeerFailure();
            PeerFailed.TrySetResult();
        }
    }

    private readonly TcpListener _listener;
    private readonly BlockMemoryPool _blocks = new();
    private readonly PipeOptions _inputOptions, _outputOptions;
    private readonly CancellationTokenSource _stop = new();
    private readonly CancellationTokenSource _abortAll = new();
    private readonly Action<Socket>? _configureAccepted;
    private readonly Timer? _heartbeat;
    private readonly Task _acceptLoop;
    private long _nextId;

    private LinuxTestHost(int loops, HttpServerOptions options, Action<Router>? routes, Action<Socket>? configureAccepted, bool heartbeat)
    {
        Options = options;
        Transport = new LinuxTransport(loops, Log);
        DemoEndpoints.Map(Router, Lifetime);
        routes?.Invoke(Router);
        _configureAccepted = configureAccepted;
        // The same pipe bounds HttpServer builds from its options.
        _inputOptions = new PipeOptions(_blocks, pauseWriterThreshold: options.MaxInputBufferSize, resumeWriterThreshold: options.MaxInputBufferSize / 2,
            minimumSegmentSize: BlockMemoryPool.BlockSize, useSynchronizationContext: false);
        _outputOptions = new PipeOptions(_blocks, pauseWriterThreshold: options.MaxOutputBufferSize, resumeWriterThreshold: options.MaxOutputBufferSize / 2,
            minimumSegmentSize: BlockMemoryPool.BlockSize, useSynchronizationContext: false);
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start(512);
        if (heartbeat) _heartbeat = new Timer(_ => OnHeartbeat(), null, 50, 50);
        _acceptLoop = AcceptLoopAsync();
    }

    public static LinuxTestHost Start(int loops = 2, Func<HttpServerOptions, HttpServerOptions>? configure = null, Action<Router>? routes = null,
        Action<Socket>? configureAccepted = null, bool heartbeat = true)
    {
        var options = new HttpServerOptions { Address = IPAddress.Loopback, Port = 0 };
        if (configure is not null) options = configure(options);
        options.Validate();
        return new LinuxTestHost(loops, options, routes, configureAccepted, heartbeat);
    }

    public HttpServerOptions Options { get; }
    /// <summary>Errors logged by the loops or the protocol: a test may assert there are none.</summary>
    public ErrorLog Log { get; } = new();
    public LinuxTransport Transport { get; }
    public Router Router { get; } = new();
    public ServerLifetime Lifetime { get; } = new();
    public ServerMetrics Metrics { get; } = new();
    public ConcurrentQueue<Entry> Entries { get; } = new();
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public Task<RawConnection> ConnectAsync() => RawConnection.ConnectAsync(Port);

    /// <summary>Waits (bounded) for the n-th accepted connection (1-based) and returns it.</summary>
    public async Task<Entry> WaitForEntryAsync(int n = 1, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var all = Entries.ToArray();
            if (all.Length >= n) return all[n - 1];
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"expected {n} connection(s), have {all.Length}");
            await Task.Delay(5);
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (true)
        {
            Socket socket;
            try { socket = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (Exception) when (_stop.IsCancellationRequested) { return; }
            catch (SocketException) { continue; }
            socket.NoDelay = true;
            _configureAccepted?.Invoke(socket);
            var entry = new Entry();
            var transport = Transport.Create(socket, _inputOptions, _outputOptions, entry.OnPeerFailure);
            entry.Transport = transport;
            entry.Protocol = new Http1Connection(Interlocked.Increment(ref _nextId), transport, transport, Options, Router.HandleAsync, Lifetime,
                Log, _abortAll.Token, transport.RemoteEndPoint, Metrics);
            entry.Task = RunAsync(entry);
            // Listed once its protocol waits for the first byte (ProcessAsync runs synchronously up to that
            // read): a test that waits for the entry before sending knows the bytes will meet it on the loop.
            Entries.Enqueue(entry);
        }
    }

    private static async Task RunAsync(Entry entry)
    {
        var transport = entry.Transport.RunAsync();
        await entry.Protocol.ProcessAsync();
        await transport;
    }

    private void OnHeartbeat()
    {
        long now = Environment.TickCount64;
        foreach (var entry in Entries)
        {
            if (entry.Task.IsCompleted) continue;
            entry.Protocol.OnHeartbeat(now);
            if (entry.Transport.IsSendStalled(now, Options.MinResponseDataRate, Options.MinResponseDataRateGracePeriod)) entry.Protocol.Abort(ConnectionEndReason.ResponseTimeout);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        try { await _acceptLoop.WaitAsync(TimeSpan.FromSeconds(5)); } catch (TimeoutException) { }
        if (_heartbeat is not null) await _heartbeat.DisposeAsync();
        _abortAll.Cancel();
        foreach (var entry in Entries) entry.Protocol.Abort(ConnectionEndReason.Aborted);
        try { await Task.WhenAll(Entries.Select(e => e.Task)).WaitAsync(TimeSpan.FromSeconds(5)); } catch (TimeoutException) { }
        Transport.Dispose();
        Lifetime.Dispose();
        Metrics.Dispose();
        _blocks.Dispose();
        _stop.Dispose();
        _abortAll.Dispose();
        // Every test also asserts that neither the loops nor the protocol logged an error.
        if (!Log.Entries.IsEmpty) throw new InvalidOperationException("logged: " + string.Join("\n", Log.Entries));
    }
}

/// <summary>Keeps every warning and error logged, with its exception, for assertions and failure messages.</summary>
internal sealed class ErrorLog : ILogger
{
    public ConcurrentQueue<string> Entries { get; } = new();
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel)) Entries.Enqueue($"{logLevel}: {formatter(state, exception)} {exception}");
    }
}
