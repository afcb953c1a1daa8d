using System.Globalization;
using System.Net;
using PipeServer.Hosting;
using PipeServer.Server;
using PipeServer.Transports;

namespace PipeServer.Cli;

// The one place where command-line flags and PIPESERVER_* environment variables become options.
// Precedence: flag > environment > default. Every value is checked here; a bad one is a clear message
// and exit code 1, never a stack trace.

/// <summary>
/// Options of the executable: the server's plus the executable's own. MaxConnectionsFromLimit: the connection
/// cap was derived from the file descriptor limit (no --max-connections). Warnings: settings that are allowed
/// but risky, for the log once it exists.
/// </summary>
public sealed record ExecutableOptions(HttpServerOptions Server, TimeSpan HeartbeatInterval, Microsoft.Extensions.Logging.LogLevel LogLevel,
    bool Metrics = false, LogFormat LogFormat = LogFormat.Text, bool MaxConnectionsFromLimit = false, IReadOnlyList<string>? Warnings = null)
{
    /// <summary>"--address", "PIPESERVER_PORT"...: where the listen address was set, for the warning that socket activation ignores them.</summary>
    public IReadOnlyList<string> ListenOptionsGiven { get; init; } = [];

    /// <summary>Where the admin listener binds (--admin-port, --admin-address); null: no admin port unless systemd passes a socket named "admin".</summary>
    public AdminEndPoint? Admin { get; init; }

    /// <summary>Whether the traffic port serves /healthz, /readyz and /metrics too (--admin-on-traffic-port). Default true.</summary>
    public bool AdminOnTrafficPort { get; init; } = true;

    /// <summary>"--admin-port", "PIPESERVER_ADMIN_ADDRESS"...: as <see cref="ListenOptionsGiven"/>, for the admin listener's socket.</summary>
    public IReadOnlyList<string> AdminListenOptionsGiven { get; init; } = [];

    /// <summary>--root: the real path of the directory to serve instead of the demo endpoints, or null (StaticFiles/).</summary>
    public string? Root { get; init; }
}

/// <summary>The admin listener's address and port (0 picks a free one).</summary>
public sealed record AdminEndPoint(IPAddress Address, int Port);

public enum LogFormat { Text, Json }

public sealed class CommandLineException(string message) : Exception(message);

public static class CommandLine
{
    /// <summary>ValueName null: a switch that takes no value on the command line (true/false/1/0 in the environment).</summary>
    private sealed record Option(string Name, string? ValueName, string Help);

    // Upper bounds, each enforced below against its own flag and printed in --help (README "Bounds" lists them).
    // The line and header-section maxima together (64 KiB + 512 KiB) fit in the 1 MiB per-connection input
    // buffer, so no combination of flags can trip HttpServerOptions.Validate's "whole head fits" rule.
    internal const int MaxPort = 65535;
    internal const double MaxSeconds = 86400;
    internal const int MaxConnectionsLimit = 1_000_000;
    internal const int MaxRequestLineLimit = 64 * 1024;
    internal const int MaxHeaderCountLimit = 10_000;
    internal const int MaxHeadersSizeLimit = 512 * 1024;
    internal const double MaxRate = 1e9;
    internal const int MaxTrustedProxies = 64;

    private static readonly Option[] Options =
    [
        new("address", "ADDR", "IP address to listen on (default 0.0.0.0); ignored, with a warning, when systemd passes sockets"),
        new("port", "N", "TCP port, 0 to 65535; 0 picks a free one (default 8080); ignored, with a warning, when systemd passes sockets"),
        new("shutdown-timeout", "SECONDS", "after accepting stops, how long in-flight requests may finish before they are aborted, 0 to 86400 (default 30)"),
        new("drain-delay", "SECONDS", "on shutdown, keep serving with Connection: close this long while readiness fails, 0 to 86400 (default 0)"),
        new("request-header-timeout", "SECONDS", "the request line and headers must arrive within this, more than 0 to 86400 (default 10)"),
        new("keep-alive-timeout", "SECONDS", "close an idle keep-alive connection after this; keep it above a pooling balancer's idle timeout; more than 0 to 86400 (default 130)"),
        new("max-connections", "N", "open connections allowed at once, 1 to 1000000; more get 503 (default: from the file descriptor limit, max(limit - max(256, limit/8), limit/4))"),
        new("max-request-body-size", "BYTES", "largest request body accepted, 0 to 9223372036854775807; larger gets 413 (default 30000000)"),
        new("max-request-line-size", "BYTES", "longest request line, 64 to 65536; longer gets 414 (default 8192)"),
        new("max-request-header-count", "N", "most header fields, 1 to 10000; more gets 431 (default 100)"),
        new("max-request-headers-size", "BYTES", "largest header section, 64 to 524288; larger gets 431 (default 32768)"),
        new("min-request-body-rate", "BYTES_PER_SECOND", "slower uploads get 408 after a 5 s grace (counted while the handler waits for body bytes), 0 to 1000000000, 0 turns it off (default 240)"),
        new("min-response-rate", "BYTES_PER_SECOND", "per-send stall rule, not an average: a send to the client (up to 4 KiB) that makes no progress within max(5 s, its size / rate) aborts the connection; 0 to 1000000000, 0 turns it off (default 240)"),
        new("heartbeat-interval", "SECONDS", "log a heartbeat line this often, 0 to 86400, 0 turns it off (default 30)"),
        new("log-level", "LEVEL", "trace, debug, information, warning, error, critical or none (default information); the access log and the Listening line are not filtered by it"),
        new("log-format", "FORMAT", "text or json (default text); json: every line on standard output is one JSON object"),
        new("access-log", null, "one line per request, Combined Log Format (text) or a JSON object with the same fields, whatever --log-level says"),
        new("trusted-proxies", "LIST", "comma-separated addresses or CIDR ranges of balancers (at most 64), and unix: for peers on a Unix socket: only their X-Forwarded-For and PROXY headers set the client address (default none)"),
        new("proxy-protocol", null, "connections from --trusted-proxies must start with a PROXY protocol v1 or v2 header (HAProxy send-proxy / send-proxy-v2); others must not"),
        new("metrics", null, "serve GET /metrics in the Prometheus text format on the traffic port (the admin port always serves it)"),
        new("admin-port", "PORT", "also serve /healthz, /readyz and /metrics on this port, 0 to 65535 (0 picks a free one): outside --max-connections (16 connections of its own), open until the process exits (default: off)"),
        new("admin-address", "ADDR", "IP address of the admin port (default: --address); needs --admin-port"),
        new("admin-on-traffic-port", "BOOL", "true or false (default true): false stops serving /healthz, /readyz and /metrics on the traffic port (404), so only the admin port has them; needs an admin port"),
        new("root", "DIR", "serve the files under DIR for GET and HEAD instead of the demo endpoints (/healthz, /readyz and /metrics stay where they are served); DIR must exist and be readable"),
        new("tls-cert", "FILE", "serve HTTPS with this PEM certificate (the server's first, then intermediates, as certbot's fullchain.pem); needs --tls-key; reloaded when the files change"),
        new("tls-key", "FILE", "the certificate's PEM private key, unencrypted (certbot's privkey.pem); needs --tls-cert"),
        new("transport", "NAME", "auto, sockets or linux (default auto); linux (Linux only) serves connections on epoll event loops, one per CPU the process may use, where a handler that blocks its thread stalls the other connections of its loop, and fails the start (exit 1) if they cannot run; auto is linux on Linux and sockets elsewhere, falling back to sockets with a warning if linux cannot start"),
    ];

    public static string Usage()
    {
        var lines = new List<string>
        {
            "Usage: PipeServer [options]",
            "",
            "An HTTP/1.1 server on sockets and System.IO.Pipelines, with a graceful shutdown.",
            "",
            "Options (each also settable as an environment variable PIPESERVER_<NAME>, e.g. PIPESERVER_PORT;",
            "a flag wins over the environment; seconds may be fractional, e.g. 0.5):",
        };
        // The widest "--name VALUE" plus two spaces, so a long value name never runs into its help text.
        int width = Options.Max(o => $"  --{o.Name} {o.ValueName}".TrimEnd().Length) + 2;
        foreach (var o in Options)
            lines.Add($"  --{o.Name} {o.ValueName}".TrimEnd().PadRight(width) + o.Help);
        lines.Add("  --help".PadRight(width) + "print this help and exit");
        lines.Add("");
        lines.Add("Signals: SIGTERM, SIGINT or SIGHUP start a graceful shutdown; a second one exits at once.");
        lines.Add("Exit codes: 0 clean shutdown, 1 could not start or a fault, 2 shutdown deadline passed and");
        lines.Add("connections were aborted, 3 forced by a second signal.");
        return string.Join(Environment.NewLine, lines);
    }

    /// <summary>
    /// Returns null when --help was asked. Throws CommandLineException with a clear message on bad input.
    /// <paramref name="fileDescriptorLimit"/>, the process's RLIMIT_NOFILE when known, is what the default --max-connections derives from.
    /// </summary>
    public static ExecutableOptions? Parse(string[] args, IReadOnlyDictionary<string, string?> environment, long? fileDescriptorLimit = null)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var fromArgs = new HashSet<string>(StringComparer.Ordinal);
        foreach (var o in Options)
        {
            var envName = "PIPESERVER_" + o.Name.Replace('-', '_').ToUpperInvariant();
            if (environment.TryGetValue(envName, out var v) && !string.IsNullOrEmpty(v)) values[o.Name] = v;
        }

        for (int i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg is "--help" or "-h") return null;
            if (!arg.StartsWith("--", StringComparison.Ordinal)) throw new CommandLineException($"unexpected argument '{arg}'");
            var name = arg[2..];
            string? value = null;
            int eq = name.IndexOf('=');
            if (eq >= 0) { value = name[(eq + 1)..]; name = name[..eq]; }
            var option = Array.Find(Options, o => o.Name == name) ?? throw new CommandLineException($"unknown option '--{name}' (see --help)");
            if (option.ValueName is null)
            {
                values[name] = value ?? "true";
                fromArgs.Add(name);
                continue;
            }
            if (value is null)
            {
                if (i + 1 >= args.Length) throw new CommandLineException($"option '--{name}' needs a value");
                value = args[++i];
            }
            values[name] = value;
            fromArgs.Add(name);
        }

        var server = new HttpServerOptions();
        if (values.TryGetValue("address", out var address))
        {
            if (!IPAddress.TryParse(address, out var ip)) throw new CommandLineException($"--address: '{address}' is not an IP address");
            server = server with { Address = ip };
        }
        if (values.TryGetValue("port", out var port)) server = server with { Port = ParseInt("port", port, 0, MaxPort) };
        if (values.TryGetValue("shutdown-timeout", out var st)) server = server with { ShutdownTimeout = ParseSeconds("shutdown-timeout", st, allowZero: true) };
        if (values.TryGetValue("drain-delay", out var dd)) server = server with { DrainDelay = ParseSeconds("drain-delay", dd, allowZero: true) };
        if (values.TryGetValue("request-header-timeout", out var rht)) server = server with { RequestHeaderTimeout = ParseSeconds("request-header-timeout", rht, allowZero: false) };
        if (values.TryGetValue("keep-alive-timeout", out var kat)) server = server with { KeepAliveTimeout = ParseSeconds("keep-alive-timeout", kat, allowZero: false) };
        if (values.TryGetValue("max-connections", out var mc)) server = server with { MaxConnections = ParseInt("max-connections", mc, 1, MaxConnectionsLimit) };
        if (values.TryGetValue("max-request-body-size", out var mb)) server = server with { MaxRequestBodySize = ParseLong("max-request-body-size", mb, 0, long.MaxValue) };

        if (values.TryGetValue("max-request-line-size", out var mrl)) server = server with { MaxRequestLineSize = ParseInt("max-request-line-size", mrl, 64, MaxRequestLineLimit) };
        if (values.TryGetValue("max-request-header-count", out var mhc)) server = server with { MaxRequestHeaderCount = ParseInt("max-request-header-count", mhc, 1, MaxHeaderCountLimit) };
        if (values.TryGetValue("max-request-headers-size", out var mhs)) server = server with { MaxRequestHeadersTotalSize = ParseInt("max-request-headers-size", mhs, 64, MaxHeadersSizeLimit) };
        if (values.TryGetValue("min-request-body-rate", out var mbr)) server = server with { MinRequestBodyDataRate = ParseRate("min-request-body-rate", mbr) };
        if (values.TryGetValue("min-response-rate", out var mrr)) server = server with { MinResponseDataRate = ParseRate("min-response-rate", mrr) };

        var heartbeat = values.TryGetValue("heartbeat-interval", out var hb) ? ParseSeconds("heartbeat-interval", hb, allowZero: true) : TimeSpan.FromSeconds(30);
        var level = Microsoft.Extensions.Logging.LogLevel.Information;
        if (values.TryGetValue("log-level", out var ll)) level = ParseLogLevel(ll);

        bool metrics = values.TryGetValue("metrics", out var m) && ParseSwitch("metrics", m);
        if (values.TryGetValue("access-log", out var al)) server = server with { AccessLog = ParseSwitch("access-log", al) };
        if (values.TryGetValue("trusted-proxies", out var tp))
        {
            var (networks, unix) = ParseTrustedProxies(tp);
            server = server with { TrustedProxies = networks, TrustUnixSocketPeers = unix };
        }
        if (values.TryGetValue("proxy-protocol", out var pp)) server = server with { ProxyProtocol = ParseSwitch("proxy-protocol", pp) };
        if (server.ProxyProtocol && server.TrustedProxies.Count == 0 && !server.TrustUnixSocketPeers)
            throw new CommandLineException("--proxy-protocol: needs --trusted-proxies (the balancers whose PROXY header is believed)");
        if (values.TryGetValue("transport", out var tr)) server = server with { Transport = ParseTransport(tr) };
        var admin = ParseAdmin(values, server);
        bool adminOnTraffic = !values.TryGetValue("admin-on-traffic-port", out var aot) || ParseSwitch("admin-on-traffic-port", aot);
        values.TryGetValue("tls-cert", out var tlsCert);
        values.TryGetValue("tls-key", out var tlsKey);
        if (tlsCert is not null || tlsKey is not null) server = server with { Tls = ParseTls(tlsCert, tlsKey) };
        var format = LogFormat.Text;
        if (values.TryGetValue("log-format", out var lf))
            format = lf.ToLowerInvariant() switch
            {
                "text" => LogFormat.Text,
                "json" => LogFormat.Json,
                _ => throw new CommandLineException($"--log-format: '{lf}' is not text or json"),
            };

        // The cap keeps descriptors back for the runtime (docs/deploy.md, "File descriptors"). An explicit value
        // above it is allowed, as nginx and HAProxy allow it, with a warning: the operator may know better
        // (the limit is about to be raised), and refusing to start would turn a capacity risk into an outage.
        var warnings = new List<string>();
        bool fromLimit = false;
        if (fileDescriptorLimit is long fdLimit and > 0)
        {
            int cap = FileDescriptorLimit.ConnectionCap(fdLimit);
            if (server.MaxConnections is null)
            {
                server = server with { MaxConnections = cap };
                fromLimit = true;
            }
            else if (server.MaxConnections > cap)
            {
                warnings.Add($"--max-connections {server.MaxConnections} is more than the {cap} connections the file descriptor limit of {fdLimit} leaves room for: " +
                    "near that many connections the process can run out of descriptors, and the .NET runtime aborts when it cannot get one to start a thread. " +
                    "Raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower --max-connections.");
            }
        }

        try { server.Validate(); }
        catch (ArgumentException ex) { throw new CommandLineException(ex.Message); }
        // Socket activation ignores them (Program warns, naming them as the operator wrote them).
        string? root = null;
        if (values.TryGetValue("root", out var rootValue))
        {
            try { root = StaticFiles.StaticFileHandler.CheckRoot(rootValue); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                throw new CommandLineException($"--root: {ex.Message}");
            }
        }
        List<string> Given(params string[] names)
        {
            var given = new List<string>();
            foreach (var name in names)
                if (fromArgs.Contains(name)) given.Add("--" + name);
                else if (values.ContainsKey(name)) given.Add("PIPESERVER_" + name.Replace('-', '_').ToUpperInvariant());
            return given;
        }
        return new ExecutableOptions(server, heartbeat, level, metrics, format, fromLimit, warnings)
        {
            ListenOptionsGiven = Given("address", "port"),
            Admin = admin,
            AdminOnTrafficPort = adminOnTraffic,
            AdminListenOptionsGiven = Given("admin-address", "admin-port"),
            Root = root,
        };
    }

    /// <summary>
    /// --admin-port and --admin-address. The address defaults to --address: a kubelet probes the pod's address,
    /// which is where the traffic port listens too. The same port as the traffic one on an overlapping address
    /// is refused here, with a message naming both flags, rather than left to fail as a bind of the traffic port
    /// (the admin listener binds first). (Under socket activation --port is ignored, but still compared.)
    /// </summary>
    private static AdminEndPoint? ParseAdmin(Dictionary<string, string> values, HttpServerOptions server)
    {
        IPAddress? address = null;
        if (values.TryGetValue("admin-address", out var raw))
        {
            if (!IPAddress.TryParse(raw, out address)) throw new CommandLineException($"--admin-address: '{raw}' is not an IP address");
            if (!values.ContainsKey("admin-port")) throw new CommandLineException("--admin-address: needs --admin-port");
        }
        if (!values.TryGetValue("admin-port", out var port)) return null;
        var admin = new AdminEndPoint(address ?? server.Address, ParseInt("admin-port", port, 0, MaxPort));
        bool overlap = admin.Address.Equals(server.Address) || IsWildcard(admin.Address) || IsWildcard(server.Address);
        if (admin.Port != 0 && admin.Port == server.Port && overlap)
            throw new CommandLineException($"--admin-port: {admin.Port} is also the traffic port (--port); the admin port needs a port of its own");
        return admin;
    }

    private static bool IsWildcard(IPAddress address) => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);

    /// <summary>Names only: Enum.TryParse would also take "42" or "2", and a level of 42 silently logs nothing.</summary>
    private static Microsoft.Extensions.Logging.LogLevel ParseLogLevel(string value) => value.ToLowerInvariant() switch
    {
        "trace" => Microsoft.Extensions.Logging.LogLevel.Trace,
        "debug" => Microsoft.Extensions.Logging.LogLevel.Debug,
        "information" or "info" => Microsoft.Extensions.Logging.LogLevel.Information,
        "warning" or "warn" => Microsoft.Extensions.Logging.LogLevel.Warning,
        "error" => Microsoft.Extensions.Logging.LogLevel.Error,
        "critical" => Microsoft.Extensions.Logging.LogLevel.Critical,
        "none" => Microsoft.Extensions.Logging.LogLevel.None,
        _ => throw new CommandLineException($"--log-level: '{value}' is not one of trace, debug, information, warning, error, critical, none"),
    };

    /// <summary>Both or neither; both readable, the key the certificate's. Loaded here so a bad pair is exit 1 before anything binds.</summary>
    private static Tls.TlsOptions ParseTls(string? certificate, string? key)
    {
        if (certificate is null) throw new CommandLineException("--tls-key: needs --tls-cert (the certificate the key belongs to)");
        if (key is null) throw new CommandLineException("--tls-cert: needs --tls-key (the certificate's private key)");
        try { _ = Tls.TlsCertificates.Load(certificate, key); }
        catch (Tls.TlsCertificateException ex) { throw new CommandLineException(ex.Message); }
        return new Tls.TlsOptions(certificate, key);
    }

    /// <summary>Names only, as for the log level; linux is refused up front where it cannot run.</summary>
    private static TransportKind ParseTransport(string value)
    {
        var kind = value.ToLowerInvariant() switch
        {
            "auto" => TransportKind.Auto,
            "sockets" => TransportKind.Sockets,
            "linux" => TransportKind.Linux,
            _ => throw new CommandLineException($"--transport: '{value}' is not auto, sockets or linux"),
        };
        if (kind == TransportKind.Linux && !OperatingSystem.IsLinux())
            throw new CommandLineException($"--transport: linux needs Linux (epoll); this is {System.Runtime.InteropServices.RuntimeInformation.OSDescription}; use sockets");
        return kind;
    }

    /// <summary>"10.0.0.1,10.1.0.0/16,::1,unix:": single addresses become /32 or /128 networks; "unix:" trusts Unix-socket peers.</summary>
    private static (IReadOnlyList<IPNetwork> Networks, bool Unix) ParseTrustedProxies(string value)
    {
        var list = new List<IPNetwork>();
        bool unix = false;
        foreach (var raw in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            IPNetwork network;
            if (raw == "unix:")
            {
                unix = true; // nginx's set_real_ip_from unix: (a Unix peer has no address to list)
                continue;
            }
            if (raw.Contains('/'))
            {
                // .NET 10 quietly masks host bits ("10.0.0.1/8" becomes 10.0.0.0/8); refuse them instead: such an
                // entry is a typo for either a range or one address, and trusting the wrong one is a spoofing hole.
                if (!IPNetwork.TryParse(raw, out network) || !IPAddress.TryParse(raw.AsSpan(0, raw.IndexOf('/')), out var given) || !given.Equals(network.BaseAddress))
                    throw new CommandLineException($"--trusted-proxies: '{raw}' is not an address or a CIDR range (a range's host bits must be zero, e.g. 10.0.0.0/8)");
            }
            else if (IPAddress.TryParse(raw, out var ip))
            {
                ip = ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip;
                network = new IPNetwork(ip, ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128);
            }
            else throw new CommandLineException($"--trusted-proxies: '{raw}' is not an address, a CIDR range or unix:");
            list.Add(network);
        }
        if (list.Count == 0 && !unix) throw new CommandLineException("--trusted-proxies: the list is empty");
        if (list.Count > MaxTrustedProxies) throw new CommandLineException($"--trusted-proxies: {list.Count} entries, at most {MaxTrustedProxies} (use CIDR ranges)");
        return (list, unix);
    }

    private static int ParseInt(string name, string value, int min, int max)
    {
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < min || n > max)
            throw new CommandLineException($"--{name}: '{value}' is not a whole number from {min} to {max}");
        return n;
    }

    private static long ParseLong(string name, string value, long min, long max)
    {
        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long n) || n < min || n > max)
            throw new CommandLineException($"--{name}: '{value}' is not a whole number from {min} to {max}");
        return n;
    }

    private static bool ParseSwitch(string name, string value) => value.ToLowerInvariant() switch
    {
        "true" or "1" or "yes" or "on" => true,
        "false" or "0" or "no" or "off" => false,
        _ => throw new CommandLineException($"--{name}: '{value}' is not true or false"),
    };

    private static double ParseRate(string name, string value)
    {
        if (!double.TryParse(value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double r) || double.IsNaN(r) || r < 0 || r > MaxRate)
            throw new CommandLineException($"--{name}: '{value}' is not a number of bytes per second from 0 to 1000000000");
        return r;
    }

    private static TimeSpan ParseSeconds(string name, string value, bool allowZero)
    {
        const double max = MaxSeconds;
        if (!double.TryParse(value, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double s) ||
            double.IsNaN(s) || s < 0 || s > max || (!allowZero && s == 0))
            throw new CommandLineException($"--{name}: '{value}' is not a number of seconds from {(allowZero ? "0" : "more than 0")} to {max}");
        return TimeSpan.FromSeconds(s);
    }
}
