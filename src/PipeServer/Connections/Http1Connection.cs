using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using Microsoft.Extensions.Logging;
using PipeServer.Http;
using PipeServer.Server;

using PipeServer.Transports;

namespace PipeServer.Connections;

// Where this sits: step 3 of a request's journey, and the loop around all the others. HttpServer accepts a
// socket, has its transport (Transports/) wrap it, and runs one Http1Connection over its IDuplexPipe:
//
//   ReadRequestHeadAsync  parse line + headers (HttpParser -> RequestHead), bounded by the header timeout
//   ProcessRequestAsync   set up the body reader, run the handler, end the response, drain an unread body
//   loop                  while keep-alive; flush only when about to wait for input (one flush per batch
//                         of pipelined requests)
//
// Two signals from outside, never confused (docs/architecture.md §3):
//   RequestClose()  drain: finish the response in flight (and requests already received behind it), send
//                   "Connection: close", then stop. An idle connection stops at once, unless the client has
//                   already sent its next request (even one still in the kernel): that one is answered first.
//                   The drain delay (ServerLifetime.CloseAfterResponse) follows the same rule, per response.
//   Abort()         now: the handler's Aborted token fires and the socket is reset.
// The shutdown token is never passed into a read in the middle of a request; a drain only wakes a read
// that is waiting for the *next* request.

internal sealed partial class Http1Connection : IResponseOwner, IRequestBodyOwner, IRequestOwner
{
    private enum HeadOutcome { Ready, Rejected, Closed }
    private enum TimeoutKind { None, RequestHeaders, KeepAlive }

    private readonly IDuplexPipe _transport;
    private readonly ITransportControl _control;
    // The server's constants (options, limits, handler, lifetime, logs, metrics, abort token), shared by all its
    // connections (Http1ConnectionSettings.cs); read through these properties under their old field names.
    private readonly Http1ConnectionSettings _shared;
    private HttpServerOptions _options => _shared.Options;
    private HttpParserLimits _limits => _shared.Limits;
    private RequestHandler _app => _shared.App;
    private ServerLifetime _lifetime => _shared.Lifetime;
    private ILogger _logger => _shared.Logger;
    // The Aborted token's source, linked to the server's abort token, made the first time someone asks for
    // Aborted (a handler that passes it to a wait): most connections never do, and 150 B of linked source and
    // registration per idle keep-alive connection add up. _aborted remembers an abort that came first.
    private CancellationToken _serverAbort => _shared.ServerAbort;
    private CancellationTokenSource? _abortCts; // published with Interlocked.CompareExchange; any thread may read it
    private int _aborted;                       // 1 once Abort or OnPeerFailure ran (any thread)
    private ServerMetrics? _metrics => _shared.Metrics;
    private ILogger? _accessLog => _shared.AccessLog;

    // Per-request state, rented (RequestObjects.cs) when a request's first bytes arrive and returned when the
    // connection goes idle, so an idle keep-alive connection holds none of it. Null while idle (written and read
    // by the connection's own flow); the three properties are its members, under their old field names.
    private RequestObjects? _objects;
    private RequestHead _head => _objects!.Head;
    private HttpRequest _request => _objects!.Request;
    private HttpResponse _response => _objects!.Response;
    private RequestBody _body = RequestObjects.IdleBody; // read by the heartbeat thread too: never null, never another connection's
    private ConnectionClientInfo _client;  // who this connection's requests come from (the peer, or a PROXY header's source)
    private string _scheme = "http";
    private HeaderParseState _headerState;
    private RequestRejectionReason _rejection;

    private int _state;           // ConnectionState; written by the connection, read by the server
    private int _endReason;       // ConnectionEndReason; first writer wins
    private volatile bool _drainRequested;
    private bool _expectContinue, _continueSent, _forceClose, _outputPending;
    private bool _closeForUnreadBody; // this response said "Connection: close" because the unread body is over MaxUnreadBodyDrain
    private long _requestStarted;      // Stopwatch timestamp of the first byte of the current request
    /// <summary>Only read the clock when the access log or a metrics listener can use it.</summary>
    private bool _timed => _accessLog is not null || (_metrics?.RequestsObserved ?? false);
    private bool _headLineParsed;

    // Timeouts: one deadline at a time, checked by the server's heartbeat (see OnHeartbeat).
    private long _timeoutAt = long.MaxValue;   // Environment.TickCount64 deadline; read by the heartbeat thread
    private TimeoutKind _timeoutKind;
    private volatile bool _timeoutFired;

    // Request body data rate, measured by the heartbeat only while the handler waits for body bytes.
    private long _lastHeartbeatTicks;
    private long _bodyWaitMs;
    private volatile bool _bodyTimedOut;

    public Http1Connection(long id, IDuplexPipe transport, ITransportControl control, HttpServerOptions options,
        RequestHandler app, ServerLifetime lifetime, ILogger logger, CancellationToken serverAbort, IPEndPoint? remote = null,
        ServerMetrics? metrics = null, ILogger? accessLog = null)
        : this(id, transport, control, new Http1ConnectionSettings(options, app, lifetime, logger, serverAbort, metrics, accessLog), remote)
    {
    }

    /// <summary>A connection of a server that shares <paramref name="settings"/> among all its connections (HttpServer).</summary>
    internal Http1Connection(long id, IDuplexPipe transport, ITransportControl control, Http1ConnectionSettings settings, IPEndPoint? remote)
    {
        _shared = settings;
        Id = id;
        _transport = transport;
        _control = control;
        RemoteEndPoint = remote;
        _client = ConnectionClientInfo.Of(remote, settings.Options.TrustedProxies);
    }

    /// <summary>
    /// The connection came in on a Unix socket (its peer has no address): the access log writes "unix:" for
    /// the peer, as nginx does, and the peer is a trusted proxy only with <see cref="HttpServerOptions.TrustUnixSocketPeers"/>.
    /// </summary>
    public bool IsUnixPeer
    {
        get => _isUnixPeer;
        init
        {
            _isUnixPeer = value;
            _client = ConnectionClientInfo.Of(RemoteEndPoint, _options.TrustedProxies, value && _options.TrustUnixSocketPeers);
        }
    }
    private readonly bool _isUnixPeer;

    /// <summary>What the access log writes for a Unix-socket peer (nginx's $remote_addr there).</summary>
    internal const string UnixPeerAddress = "unix:";

    /// <summary>url.scheme of the listener this connection came from ("http", "https" through TLS): a metrics attribute, and HttpRequest.Scheme.</summary>
    public string UrlScheme
    {
        get => _scheme;
        init => _scheme = value;
    }

    /// <summary>A trusted balancer's PROXY header named the client: requests on this connection come from it.</summary>
    internal void SetProxiedClient(IPEndPoint source) => _client = ConnectionClientInfo.Of(source, _options.TrustedProxies);

    /// <summary>
    /// Ends a connection that never reached its first request (its PROXY header was missing, malformed, or
    /// from an untrusted peer): nothing is written; the pipes complete so the transport closes the socket.
    /// </summary>
    internal async Task CloseBeforeFirstRequestAsync(ConnectionEndReason reason)
    {
        SetEndReason(reason);
        Volatile.Write(ref _state, (int)ConnectionState.Closed);
        await _transport.Output.CompleteAsync().ConfigureAwait(false);
        await _transport.Input.CompleteAsync().ConfigureAwait(false);
        _abortCts?.Dispose();
    }

    public long Id { get; }
    public IPEndPoint? RemoteEndPoint { get; }
    public ConnectionState State => (ConnectionState)Volatile.Read(ref _state);
    public ConnectionEndReason EndReason => (ConnectionEndReason)Volatile.Read(ref _endReason);
    public int RequestsServed { get; private set; }
    /// <summary>Fires when the connection is aborted: by Abort(), the server's abort token, or the peer going away.</summary>
    public CancellationToken Aborted
    {
        get
        {
            var cts = Volatile.Read(ref _abortCts);
            if (cts is null)
            {
                var made = CancellationTokenSource.CreateLinkedTokenSource(_serverAbort);
                cts = Interlocked.CompareExchange(ref _abortCts, made, null) ?? made;
                if (cts != made) made.Dispose(); // another thread published first
                // An abort that ran before the source existed found nothing to cancel: cancel it now. (Abort sets
                // the flag with a full fence before it reads the field; we publish before reading the flag.)
                else if (Volatile.Read(ref _aborted) != 0) CancelAborted(made);
            }
            return cts.Token;
        }
    }

    private bool IsAborted => Volatile.Read(ref _aborted) != 0 || _serverAbort.IsCancellationRequested;

    /// <summary>Records the abort and fires the Aborted token if anyone holds it.</summary>
    private void FireAborted()
    {
        Interlocked.Exchange(ref _aborted, 1);
        if (Volatile.Read(ref _abortCts) is { } cts) CancelAborted(cts);
    }

    private void CancelAborted(CancellationTokenSource cts)
    {
        try { cts.Cancel(); } catch (ObjectDisposedException) { } catch (AggregateException ex) { LogConnectionFault(_logger, Id, ex); }
    }

    PipeWriter IResponseOwner.Output => _transport.Output;
    // Offered by a transport that can (Transports/ISendFileFeature.cs); through TLS the control is the TLS connection, which cannot.
    ISendFileFeature? IResponseOwner.SendFile => _control as ISendFileFeature;

    /// <summary>The keep-alive loop. Never throws: every end is recorded in <see cref="EndReason"/>.</summary>
    public async Task ProcessAsync()
    {
        var input = _transport.Input;
        var output = _transport.Output;
        SetTimeout(TimeoutKind.RequestHeaders, _options.RequestHeaderTimeout); // counts from accept on a new connection
        bool afterRequest = false;
        try
        {
            while (true)
            {
                // The wait for a request's first bytes happens here, in this method's own state machine (made
                // once per connection), so an idle keep-alive connection does not also hold ReadRequestHeadAsync's
                // pooled box (~200 B) while it is idle: that method then usually completes without suspending.
                bool haveInput = input.TryRead(out var first);
                // Between requests the keep-alive timeout runs, unless the next request's bytes are already here
                // (a pipelined batch): then its header timeout starts at once (ReadRequestHeadAsync, first byte),
                // and a keep-alive deadline set here would only be overwritten: a clock read per request saved.
                if (afterRequest && (!haveInput || first.Buffer.IsEmpty)) SetTimeout(TimeoutKind.KeepAlive, _options.KeepAliveTimeout);
                if (afterRequest && haveInput && first.IsCanceled && first.Buffer.IsEmpty && !first.IsCompleted)
                {
                    // A wake-up with no bytes that was meant for the request just served (a heartbeat that read its
                    // header deadline as the head completed, a body-rate check as the body ended) or a drain: no
                    // request is here, so this is the idle path below (flush, drain check, objects back) rather
                    // than a wait inside ReadRequestHeadAsync holding the request objects and their arrays.
                    input.AdvanceTo(first.Buffer.Start, first.Buffer.End);
                    haveInput = false;
                }
                afterRequest = false;
                if (!haveInput)
                {
                    // About to wait for the client: flush the responses of the batch just served (one write for
                    // a pipelined batch), and close now if asked to drain.
                    if (_outputPending)
                    {
                        _outputPending = false;
                        var flush = await output.FlushAsync().ConfigureAwait(false);
                        if (flush.IsCompleted) { SetEndReason(ConnectionEndReason.ClientAborted); break; }
                    }
                    if (_drainRequested && await CloseIdleUnlessAnotherRequestAsync(output).ConfigureAwait(false)) break;
                    ReturnRequestObjects(); // idle: nothing in flight, nothing received
                    first = await input.ReadAsync().ConfigureAwait(false);
                }
                if (_objects is null) RentRequestObjects();
                var outcome = await ReadRequestHeadAsync(input, output, first).ConfigureAwait(false);
                if (outcome == HeadOutcome.Closed) break;
                if (outcome == HeadOutcome.Rejected)
                {
                    WriteRejection(_rejection);
                    RecordRejectedRequest();
                    break;
                }
                ClearTimeout();
                bool keepGoing = await ProcessRequestAsync().ConfigureAwait(false);
                // The head keeps its pooled arrays for the next request of a pipelined batch (Reset reuses
                // them): they go back with the request objects when the connection goes idle or ends
                // (ReturnRequestObjects -> RequestHead.Release), so an idle connection still holds none.
                // Releasing them here cost two pool rents and returns per request, and a clear of the slots.
                if (!keepGoing) break;

                Volatile.Write(ref _state, (int)ConnectionState.Idle);
                afterRequest = true; // the keep-alive timeout is set at the top of the loop
            }
        }
        catch (Exception ex) when (IsExpectedDisconnect(ex))
        {
            SetEndReason(ConnectionEndReason.ClientAborted);
        }
        catch (Exception ex)
        {
            // Anything else is a bug in this server: log it once, here at the top of the connection.
            LogConnectionFault(_logger, Id, ex);
            SetEndReason(ConnectionEndReason.ApplicationError);
            _control.Abort();
        }
        finally
        {
            Volatile.Write(ref _state, (int)ConnectionState.Closed);
            ClearTimeout();
            ReturnRequestObjects();
            if (_outputPending)
            {
                try { await output.FlushAsync().ConfigureAwait(false); } catch (Exception ex) when (IsExpectedDisconnect(ex)) { }
            }
            await output.CompleteAsync().ConfigureAwait(false);
            await input.CompleteAsync().ConfigureAwait(false);
            _abortCts?.Dispose();
        }
    }

    private void RentRequestObjects()
    {
        var objects = _objects = RequestObjects.Rent();
        objects.Request.SetConnectionClient(_client);
        objects.Request.Scheme = _scheme;
    }

    /// <summary>Gives the request objects back (their head's buffers first); the connection holds none until its next request.</summary>
    private void ReturnRequestObjects()
    {
        if (_objects is not { } objects) return;
        _body = RequestObjects.IdleBody; // before the set can reach another connection: the heartbeat reads _body
        _objects = null;
        RequestObjects.Return(objects);
    }

    /// <summary>Drain signal: finish what is in flight and what is already received, then close. An idle connection with nothing received closes now.</summary>
    public void RequestClose()
    {
        _drainRequested = true;
        // Wakes a read that waits for the next request; a read inside a request body ignores it.
        try { _transport.Input.CancelPendingRead(); } catch (InvalidOperationException) { }
    }

    /// <summary>Abort signal: the handler's token fires and the socket is reset.</summary>
    public void Abort(ConnectionEndReason reason = ConnectionEndReason.Aborted)
    {
        SetEndReason(reason);
        FireAborted();
        _control.Abort();
    }

    /// <summary>The peer reset the connection or a write failed: requests in flight can no longer be answered.</summary>
    internal void OnPeerFailure()
    {
        SetEndReason(ConnectionEndReason.ClientAborted);
        FireAborted();
    }

    /// <summary>
    /// Called by the server's heartbeat (one timer for all connections, as in Kestrel) instead of a timer per
    /// connection or a CancellationTokenSource per request: a deadline is a long write, checking it is a
    /// long read, and an expired one wakes the connection's pending read.
    /// </summary>
    public void OnHeartbeat(long nowTicks)
    {
        long sinceLast = _lastHeartbeatTicks == 0 ? 0 : nowTicks - _lastHeartbeatTicks;
        _lastHeartbeatTicks = nowTicks;
        CheckBodyDataRate(sinceLast);
        if (nowTicks < Volatile.Read(ref _timeoutAt)) return;
        Volatile.Write(ref _timeoutAt, long.MaxValue);
        _timeoutFired = true;
        try { _transport.Input.CancelPendingRead(); } catch (InvalidOperationException) { }
    }

    /// <summary>Minimum request body data rate (Kestrel's MinRequestBodyDataRate): a slow upload gets 408.</summary>
    private void CheckBodyDataRate(long elapsedMs)
    {
        // This runs on the heartbeat thread while the request may end: the body reader then goes back to the
        // pool and may be lent to another connection. State first, and the reader looked at again before acting,
        // so another client's counters never time this connection out.
        if (_options.MinRequestBodyDataRate <= 0 || State != ConnectionState.Active) return;
        var body = Volatile.Read(ref _body);
        if (body.IsComplete || !body.IsWaitingForData) return;
        _bodyWaitMs += elapsedMs;
        if (_bodyWaitMs <= _options.MinRequestBodyDataRateGracePeriod.TotalMilliseconds) return;
        if (body.BytesConsumed >= _options.MinRequestBodyDataRate * _bodyWaitMs / 1000.0) return;
        if (!ReferenceEquals(Volatile.Read(ref _body), body) || State != ConnectionState.Active) return;
        _bodyTimedOut = true;
        try { _transport.Input.CancelPendingRead(); } catch (InvalidOperationException) { }
    }

    bool IRequestBodyOwner.BodyReadTimedOut => _bodyTimedOut;

    private void SetTimeout(TimeoutKind kind, TimeSpan timeout)
    {
        _timeoutKind = kind;
        _timeoutFired = false;
        Volatile.Write(ref _timeoutAt, Environment.TickCount64 + (long)timeout.TotalMilliseconds);
    }

    private void ClearTimeout()
    {
        _timeoutKind = TimeoutKind.None;
        Volatile.Write(ref _timeoutAt, long.MaxValue);
        _timeoutFired = false;
    }

    private void SetEndReason(ConnectionEndReason reason) =>
        Interlocked.CompareExchange(ref _endReason, (int)reason, (int)ConnectionEndReason.Unknown);

    // Pooled builder: this method suspends when a head arrives in pieces or a wake-up (timeout, drain) comes
    // without bytes, and a fresh state-machine box each time would be an allocation on the request path.
    /// <summary>Parses the next request head, reading more as needed; Ready, Rejected (reason in _rejection) or Closed (end reason set).</summary>
    /// <param name="input">The connection's input.</param>
    /// <param name="output">The connection's output (flushed before a wait).</param>
    /// <param name="first">The first read of this request (ProcessAsync's), not yet advanced past: parsed before anything else is read.</param>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<HeadOutcome> ReadRequestHeadAsync(PipeReader input, PipeWriter output, ReadResult first)
    {
        _head.Reset();
        _headerState.Reset();
        _headLineParsed = false;
        _requestStarted = 0; // read from the clock at the first byte, and only if someone observes requests
        bool lineDone = false, anyBytes = false, haveFirst = true;
        int emptyLines = 0;

        while (true)
        {
            ReadResult result;
            if (haveFirst) result = first;
            else
            {
                // About to wait for the client: this is the one place responses are flushed, so a batch of
                // pipelined requests is answered with one write.
                if (_outputPending)
                {
                    _outputPending = false;
                    var flush = await output.FlushAsync().ConfigureAwait(false);
                    if (flush.IsCompleted) { SetEndReason(ConnectionEndReason.ClientAborted); return HeadOutcome.Closed; }
                }
                if (_drainRequested && !anyBytes && await CloseIdleUnlessAnotherRequestAsync(output).ConfigureAwait(false)) return HeadOutcome.Closed;
                result = await input.ReadAsync().ConfigureAwait(false);
            }
            haveFirst = false;
            var buffer = result.Buffer;

            if (result.IsCanceled)
            {
                // A wake-up: a timeout or a drain. It may come with bytes (a drain signalled while a pipelined
                // request was already buffered): those are a request like any other, parsed below.
                if (_timeoutFired)
                {
                    _timeoutFired = false;
                    if (_timeoutKind == TimeoutKind.KeepAlive && buffer.IsEmpty && !anyBytes)
                    {
                        input.AdvanceTo(buffer.Start, buffer.End);
                        SetEndReason(ConnectionEndReason.KeepAliveTimeout);
                        return HeadOutcome.Closed;
                    }
                    if (_timeoutKind == TimeoutKind.RequestHeaders)
                    {
                        input.AdvanceTo(buffer.Start, buffer.End);
                        SetEndReason(ConnectionEndReason.RequestHeadersTimeout);
                        if (!anyBytes && buffer.IsEmpty) return HeadOutcome.Closed; // a silent connection gets no 408
                        _rejection = RequestRejectionReason.RequestHeadersTimeout;
                        return HeadOutcome.Rejected;
                    }
                }
                if (buffer.IsEmpty)
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                    if (_drainRequested && !anyBytes && await CloseIdleUnlessAnotherRequestAsync(output).ConfigureAwait(false)) return HeadOutcome.Closed;
                    continue;
                }
            }

            if (!buffer.IsEmpty && !anyBytes)
            {
                anyBytes = true;
                if (_timed) _requestStarted = System.Diagnostics.Stopwatch.GetTimestamp();
                Volatile.Write(ref _state, (int)ConnectionState.Active);
                // The header timeout runs from the first byte of a request (from accept for the first one). None:
                // a pipelined request found waiting when the last one ended (ProcessAsync set no keep-alive timeout).
                if (_timeoutKind != TimeoutKind.RequestHeaders) SetTimeout(TimeoutKind.RequestHeaders, _options.RequestHeaderTimeout);
            }

            var reader = new SequenceReader<byte>(buffer);
            var status = ParseStatus.NeedMoreData;
            var reason = RequestRejectionReason.None;
            if (!lineDone)
            {
                // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
                while (reader.IsNext("\r\n"u8, advancePast: true))
                {
                    if (++emptyLines > 4) { _rejection = RequestRejectionReason.InvalidRequestLine; input.AdvanceTo(reader.Position); return HeadOutcome.Rejected; }
                }
                status = HttpParser.ParseRequestLine(ref reader, _head, _limits, out reason);
                if (status == ParseStatus.Done) lineDone = true;
                _headLineParsed = lineDone;
            }
            if (lineDone)
                status = HttpParser.ParseHeaders(ref reader, _head, ref _headerState, _limits, out reason);

            switch (status)
            {
                case ParseStatus.Done:
                    input.AdvanceTo(reader.Position);
                    _rejection = _head.OnHeadersComplete();
                    return _rejection == RequestRejectionReason.None ? HeadOutcome.Ready : HeadOutcome.Rejected;
                case ParseStatus.Rejected:
                    input.AdvanceTo(reader.Position);
                    _rejection = reason;
                    return HeadOutcome.Rejected;
                default:
                    input.AdvanceTo(reader.Position, buffer.End);
                    if (result.IsCompleted)
                    {
                        // EOF. Between requests that is an ordinary close; inside a head the client gave up.
                        SetEndReason(anyBytes && reader.Remaining > 0 || lineDone ? ConnectionEndReason.ClientAborted : ConnectionEndReason.ClientClosed);
                        return HeadOutcome.Closed;
                    }
                    break;
            }
        }
    }

    /// <summary>
    /// The drain of an idle connection: close it (FIN) unless the client has already sent another request.
    /// True when closed. The transport's mark is read before the look at the input, and the transport checks
    /// it again in one step with the FIN, so a request is lost only if it arrives in between those two steps
    /// of the transport: the keep-alive race no server can close (the client sees a FIN before any byte of a
    /// response, and may retry).
    /// </summary>
    private async ValueTask<bool> CloseIdleUnlessAnotherRequestAsync(PipeWriter output)
    {
        long mark = _control.ReceivedBytes;
        if (AnotherRequestAlreadyReceived()) return false;
        if (_outputPending)
        {
            // The last response goes out before the FIN.
            _outputPending = false;
            var flush = await output.FlushAsync().ConfigureAwait(false);
            if (flush.IsCompleted) { SetEndReason(ConnectionEndReason.ClientAborted); return true; }
        }
        if (!await _control.TryCloseIdleAsync(mark).ConfigureAwait(false)) return false;
        SetEndReason(ConnectionEndReason.ServerDrained);
        return true;
    }

    /// <summary>Runs one request. Returns whether the connection may serve another.</summary>
    private ValueTask<bool> ProcessRequestAsync()
    {
        var input = _transport.Input;
        _forceClose = false;
        _closeForUnreadBody = false;
        _continueSent = false;

        if (_head.ContentLength > _options.MaxRequestBodySize)
        {
            // Refused before a byte of the body is read, and before any 100 Continue is sent.
            WriteRejection(RequestRejectionReason.BodyTooLarge);
            RecordRejectedRequest();
            return new ValueTask<bool>(false);
        }

        if (_head.IsChunked)
        {
            var chunked = _objects!.ChunkedBody ??= new ChunkedRequestBody();
            chunked.Reset(input, this, _options.MaxRequestBodySize, new ChunkedLimits());
            _body = chunked;
        }
        else if (_head.ContentLength > 0)
        {
            var contentLength = _objects!.ContentLengthBody ??= new ContentLengthRequestBody();
            contentLength.Reset(input, this, _head.ContentLength, _options.MaxRequestBodySize);
            _body = contentLength;
        }
        else
        {
            // Reset like the others: a handler may have completed the last empty body (Body.CompleteAsync()),
            // and the next request, on this connection or another, must not find it completed.
            var empty = _objects!.EmptyBody;
            empty.ResetFor(input, this, 0);
            _body = empty;
        }

        _expectContinue = _head.ExpectContinue && !_body.IsComplete;
        _bodyWaitMs = 0;
        _bodyTimedOut = false;
        _request.Reset(_head, _body, Id, RemoteEndPoint, this, _lifetime.Draining);
        _response.Reset(this, _head.Method == Http.HttpMethod.Head, _head.Version);

        // Nobody observes requests: run the handler without the bookkeeping layer around it.
        return _timed ? RunObservedAsync() : RunHandlerAsync();
    }

    /// <summary>The handler, with request metrics and the access log around it.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> RunObservedAsync()
    {
        long started = _requestStarted;
        string metricMethod = MetricMethod();
        _metrics?.RequestStarted(metricMethod, UrlScheme);
        string? errorType = null;
        try
        {
            return await RunHandlerAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            errorType = ex.GetType().FullName;
            throw;
        }
        finally
        {
            RecordRequest(metricMethod, _response.HasStarted ? _response.StatusCode : 500,
                _request.Route, errorType ?? _requestErrorType, started, wasActive: true);
        }
    }

    /// <summary>A request refused before its handler ran still counts as a request, with error.type "invalid_request".</summary>
    private void RecordRejectedRequest() =>
        RecordRequest(_headLineParsed ? MetricMethod() : "_OTHER", _response.StatusCode, route: null, "invalid_request", _requestStarted, wasActive: false);

    /// <summary>Requests recorded on this connection (finished or rejected): the N of the access log's request id.</summary>
    private int _requestNumber;

    /// <summary>The one place a finished request is recorded: its duration metric and its access-log line.</summary>
    private void RecordRequest(string metricMethod, int status, string? route, string? errorType, long started, bool wasActive)
    {
        _metrics?.RequestStopped(metricMethod, UrlScheme, status, route, errorType, started, wasActive);
        _requestNumber++;
        if (_accessLog is not null && _accessLog.IsEnabled(LogLevel.Information)) LogAccess(_accessLog, status, started);
    }

    /// <summary>Only with the access log on: the allocations (strings, the entry) are the price of the line.</summary>
    private void LogAccess(ILogger log, int status, long started)
    {
        bool line = _headLineParsed; // a request refused before its line parsed logs "-" for it
        var peer = RemoteEndPoint?.Address is { } p ? ClientAddress.Normalize(p).ToString() : _isUnixPeer ? UnixPeerAddress : "-";
        var clientAddress = _request.ResolveClientAddress(_head);
        // On a Unix socket with no trusted proxy naming the client, the client is the peer: "unix:" too.
        var client = clientAddress?.ToString() ?? (_isUnixPeer && _request.ConnectionClient is null ? UnixPeerAddress : "-");
        // The port is known for the socket peer or a PROXY header's source, not for an X-Forwarded-For hop.
        int? clientPort = clientAddress is not null && clientAddress.Equals(_request.ConnectionClient) ? _request.ConnectionClientPort : null;
        // A trusted balancer's X-Request-ID ties our line to its own; bounded so a header cannot bloat the log.
        var forwardedId = _request.ConnectionClientIsTrusted ? _head.GetHeader("X-Request-ID") : null;
        AccessLog.Write(log, new AccessLogEntry
        {
            ClientAddress = client,
            ClientPort = clientPort,
            PeerAddress = peer,
            Time = DateTimeOffset.UtcNow,
            Method = line ? _head.MethodName : null,
            Target = line ? System.Text.Encoding.Latin1.GetString(_head.RawTarget) : null,
            Protocol = line ? (_head.Version == Http.HttpVersion.Http10 ? "HTTP/1.0" : "HTTP/1.1") : null,
            Status = status,
            Bytes = _response.BodyBytesWritten,
            Referer = _head.GetHeader("Referer"),
            UserAgent = _head.GetHeader("User-Agent"),
            DurationSeconds = started == 0 ? 0 : System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds,
            RequestId = forwardedId is { Length: > 0 and <= 200 } ? forwardedId
                : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Id}-{_requestNumber}"),
            ConnectionId = Id,
        });
    }

    /// <summary>OpenTelemetry's rule: known methods by name, anything else "_OTHER", so a client cannot grow the label set.</summary>
    private string MetricMethod() => _head.Method == Http.HttpMethod.Custom ? "_OTHER" : _head.MethodName;

    /// <summary>Set when a request ends in error without an exception escaping (abort, rejection, failed handler).</summary>
    private string? _requestErrorType;

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> RunHandlerAsync()
    {
        _requestErrorType = null;
        try
        {
            await _app(_request, _response).ConfigureAwait(false);
            _response.Complete();
        }
        catch (BadHttpRequestException bad)
        {
            _requestErrorType = "invalid_request";
            // The body turned out malformed, too large or too slow while the handler read it.
            if (_response.HasStarted)
            {
                Abort(bad.Reason == RequestRejectionReason.RequestBodyTimeout ? ConnectionEndReason.RequestBodyTimeout : ConnectionEndReason.BadRequest);
                return false;
            }
            WriteRejection(bad.Reason);
            return false;
        }
        catch (Exception) when (IsAborted)
        {
            // The handler gave up because the request was aborted (client gone, or shutdown deadline).
            _requestErrorType = "request_aborted";
            SetEndReason(ConnectionEndReason.ClientAborted);
            _control.Abort();
            return false;
        }
        catch (Exception ex)
        {
            LogHandlerFault(_logger, Id, _head.MethodName, _head.Path, ex);
            _requestErrorType = ex.GetType().FullName;
            if (_response.HasStarted)
            {
                // Headers are on the wire: the client can only learn of the failure by the connection ending early.
                Abort(ConnectionEndReason.ApplicationError);
                return false;
            }
            _forceClose = true;
            _response.Reset(this, _head.Method == Http.HttpMethod.Head, _head.Version);
            _response.WriteSimple(500, "Internal Server Error");
            _response.Complete();
            _outputPending = true;
            SetEndReason(ConnectionEndReason.ApplicationError);
            return false;
        }

        RequestsServed++;
        _outputPending = true;

        if (!_body.IsComplete)
        {
            // The handler left body bytes. The client never got "100 Continue", so it may not send them at all:
            // close. Otherwise read and discard them (bounded) so the next request can be parsed.
            if (_expectContinue && !_continueSent) { SetEndReason(ConnectionEndReason.ConnectionCloseRequested); return false; }
            if (!_response.KeepAlive)
            {
                if (_closeForUnreadBody) { SetEndReason(ConnectionEndReason.UnreadBodyTooLarge); return false; }
                return EndAfterResponse();
            }
            _outputPending = false;
            var flush = await _transport.Output.FlushAsync().ConfigureAwait(false);
            if (flush.IsCompleted) { SetEndReason(ConnectionEndReason.ClientAborted); return false; }
            SetTimeout(TimeoutKind.RequestHeaders, _options.RequestHeaderTimeout);
            bool drained;
            try
            {
                using var cts = new CancellationTokenSource(_options.RequestHeaderTimeout);
                drained = await _body.DrainAsync(_options.MaxUnreadBodyDrain, cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) { drained = false; }
            catch (BadHttpRequestException) { drained = false; }
            ClearTimeout();
            if (!drained) { SetEndReason(ConnectionEndReason.UnreadBodyTooLarge); return false; }
        }
        return _response.KeepAlive || EndAfterResponse();
    }

    private bool EndAfterResponse()
    {
        SetEndReason(_drainRequested || _lifetime.CloseAfterResponse ? ConnectionEndReason.ServerDrained : ConnectionEndReason.ConnectionCloseRequested);
        return false;
    }

    /// <summary>Answers a rejected request with its status and "Connection: close"; the caller then ends the loop.</summary>
    private void WriteRejection(RequestRejectionReason reason)
    {
        SetEndReason(reason switch
        {
            RequestRejectionReason.RequestHeadersTimeout => ConnectionEndReason.RequestHeadersTimeout,
            RequestRejectionReason.RequestBodyTimeout => ConnectionEndReason.RequestBodyTimeout,
            _ => ConnectionEndReason.BadRequest,
        });
        LogRejected(_logger, Id, reason);
        _forceClose = true;
        _response.Reset(this, isHead: false, Http.HttpVersion.Http11);
        _response.WriteSimple(RequestRejection.StatusCodeFor(reason), RequestRejection.Describe(reason));
        _response.Complete();
        _outputPending = true;
        // The client may still be sending (a body we refused): read it away before closing, so the kernel
        // does not answer it with an RST that could destroy the response we just wrote.
        _control.RequestLingeringClose();
    }

    bool IResponseOwner.KeepAliveAtResponseStart(HttpResponse response)
    {
        if (_forceClose || !_head.KeepAlive) return false;
        if (!_body.IsComplete)
        {
            if (_expectContinue && !_continueSent) return false;
            if (_body is ContentLengthRequestBody && _head.ContentLength - _body.BytesConsumed > _options.MaxUnreadBodyDrain) { _closeForUnreadBody = true; return false; }
        }
        // Closing (the drain delay, or a drain request): the one rule for both.
        if ((_drainRequested || _lifetime.CloseAfterResponse) && !AnotherRequestAlreadyReceived()) return false;
        return true;
    }

    /// <summary>
    /// The one rule of a closing connection: it stays open only for a request the client has already sent
    /// behind the current one. "Sent" means any of its bytes have reached us: in the input pipe, or still in
    /// the transport (the kernel's receive queue). The client sent those before it could see a
    /// "Connection: close" or our FIN, so closing now would drop them unanswered; answering them costs one
    /// more response, the last of which carries the close. Looked at in that order (transport, then pipe), so
    /// bytes moving from one to the other between the two looks are still seen.
    /// At a response start, a request arriving after this look is the pipelining race (RFC 9112 §9.3.2: the
    /// client retries what was not answered); for an idle close the transport looks once more, in one step
    /// with the FIN (CloseIdleUnlessAnotherRequestAsync).
    /// </summary>
    private bool AnotherRequestAlreadyReceived()
    {
        if (!_body.IsComplete) return false; // what follows is this request's body, not another request
        if (_control.HasUndeliveredInput) return true;
        var input = _transport.Input;
        if (!input.TryRead(out var result)) return false;
        bool any = !result.Buffer.IsEmpty;
        input.AdvanceTo(result.Buffer.Start, result.Buffer.Start); // a peek: nothing consumed or examined
        return any;
    }

    async ValueTask IRequestBodyOwner.OnBodyReadStartingAsync()
    {
        if (!_expectContinue || _continueSent || _response.HasStarted) return;
        _continueSent = true;
        _transport.Output.Write("HTTP/1.1 100 Continue\r\n\r\n"u8);
        await _transport.Output.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Resets, EOFs and closed sockets: the network's normal life, not worth an error log.</summary>
    internal static bool IsExpectedDisconnect(Exception ex) =>
        ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or OperationCanceledException or ConnectionResetException;

    [LoggerMessage(EventId = 10, Level = LogLevel.Error, Message = "Connection {ConnectionId} failed")]
    private static partial void LogConnectionFault(ILogger logger, long connectionId, Exception exception);

    [LoggerMessage(EventId = 11, Level = LogLevel.Error, Message = "Connection {ConnectionId}: handler for {Method} {Path} threw")]
    private static partial void LogHandlerFault(ILogger logger, long connectionId, string method, string path, Exception exception);

    [LoggerMessage(EventId = 12, Level = LogLevel.Debug, Message = "Connection {ConnectionId}: request rejected: {Reason}")]
    private static partial void LogRejected(ILogger logger, long connectionId, RequestRejectionReason reason);
}
