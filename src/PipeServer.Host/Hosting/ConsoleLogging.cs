using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;
using Microsoft.Extensions.Logging.Abstractions;
using PipeServer.Cli;
using PipeServer.Server;

namespace PipeServer.Hosting;

// Where this sits: the executable's logging set-up, used once by Program.cs. Two streams share stdout:
//
//   operational log  every category, at --log-level; simple single-line text, or one JSON object per line.
//   access log       "PipeServer.AccessLog", at Information whatever --log-level says (an operator who turns
//                    the server's own chatter down to warnings still wants every request). In text mode it
//                    has a console logger of its own whose formatter writes the message alone, so each line
//                    is pure Combined Log Format; in JSON mode it shares the JSON formatter (same shape as
//                    every other event) with a filter rule that lifts its category to Information.
//
// The "Listening on URL" announcement is a plain line in text mode (scripts and tests read it) and, in JSON
// mode, a JSON event of category "PipeServer.Listening" lifted to Information the same way, so that every
// line on stdout parses as JSON. The admin listener's is "Admin listening on URL" (EventId 3, same category),
// so that whatever reads the first "Listening on" line for the traffic port never takes the admin port.

/// <summary>The executable's logger factories and the two lines that must not depend on --log-level.</summary>
public sealed class ConsoleLogging : IDisposable
{
    public const string ListeningCategory = "PipeServer.Listening";
    private readonly ILoggerFactory? _accessFactory;
    private readonly ILogger _listening;
    private readonly LogFormat _format;

    public ConsoleLogging(ExecutableOptions options)
    {
        _format = options.LogFormat;
        Factory = LoggerFactory.Create(b =>
        {
            b.SetMinimumLevel(options.LogLevel);
            // The admin listener's server: warnings and errors only (its shutdown phases and transport line would
            // read as the traffic server's); never below --log-level.
            b.AddFilter(Admin.AdminListener.LogCategory, options.LogLevel > LogLevel.Warning ? options.LogLevel : LogLevel.Warning);
            if (options.LogFormat == LogFormat.Json)
            {
                b.AddJsonConsole(o => { o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ"; o.UseUtcTimestamp = true; });
                b.AddFilter(AccessLog.Category, LogLevel.Information);
                b.AddFilter(ListeningCategory, LogLevel.Information);
            }
            else
                b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; o.UseUtcTimestamp = true; });
        });
        if (options.Server.AccessLog && options.LogFormat == LogFormat.Text)
        {
            _accessFactory = LoggerFactory.Create(b => b
                .SetMinimumLevel(LogLevel.Information)
                .AddConsole(o => o.FormatterName = MessageOnlyFormatter.FormatterName)
                // Registered directly, not with AddConsoleFormatter: that one binds options from configuration
                // by reflection, which Native AOT cannot do. The console provider picks formatters from DI by name.
                .Services.TryAddEnumerable(ServiceDescriptor.Singleton<ConsoleFormatter, MessageOnlyFormatter>()));
        }
        AccessLogger = options.Server.AccessLog ? (_accessFactory ?? Factory).CreateLogger(AccessLog.Category) : NullLogger.Instance;
        _listening = Factory.CreateLogger(ListeningCategory);
    }

    public ILoggerFactory Factory { get; }
    /// <summary>The access log's logger (a null logger when --access-log is off: the server never calls it then).</summary>
    public ILogger AccessLogger { get; }

    /// <summary>The "Listening on ..." line: plain text, or a JSON event with the URL as a property.</summary>
    public void Announce(string line)
    {
        if (_format == LogFormat.Json)
        {
            const string prefix = "Listening on ";
            if (line.StartsWith(prefix, StringComparison.Ordinal)) LogListening(_listening, line[prefix.Length..], null);
            else LogAnnouncement(_listening, line, null);
            return;
        }
        Console.Out.WriteLine(line);
        Console.Out.Flush();
    }

    /// <summary>
    /// One listener's "Listening on URL" line, with its fd and name when systemd passed it: plain text, or a JSON
    /// event with Url (and Fd, FdName) as properties.
    /// </summary>
    public void AnnounceListening(ListenerInfo listener)
    {
        if (_format == LogFormat.Json)
        {
            if (listener.Fd is int fd) LogListeningOnPassed(_listening, listener.Url, fd, listener.Name ?? SystemdSocketActivation.UnknownName, null);
            else LogListening(_listening, listener.Url, null);
            return;
        }
        Console.Out.WriteLine("Listening on " + listener.Url + listener.Origin);
        Console.Out.Flush();
    }

    /// <summary>The admin listener's "Admin listening on URL" line (with its fd and name when systemd passed it), text or JSON as <see cref="AnnounceListening"/>.</summary>
    public void AnnounceAdminListening(ListenerInfo listener)
    {
        if (_format == LogFormat.Json)
        {
            if (listener.Fd is int fd) LogAdminListeningOnPassed(_listening, listener.Url, fd, listener.Name ?? SystemdSocketActivation.UnknownName, null);
            else LogAdminListening(_listening, listener.Url, null);
            return;
        }
        Console.Out.WriteLine("Admin listening on " + listener.Url + listener.Origin);
        Console.Out.Flush();
    }

    public void Dispose()
    {
        // Disposing a console logger factory flushes its queue: the last access lines are written before exit.
        _accessFactory?.Dispose();
        Factory.Dispose();
    }

    private static readonly Action<ILogger, string, Exception?> LogListening =
        LoggerMessage.Define<string>(LogLevel.Information, new EventId(1, "Listening"), "Listening on {Url}");
    private static readonly Action<ILogger, string, int, string, Exception?> LogListeningOnPassed =
        LoggerMessage.Define<string, int, string>(LogLevel.Information, new EventId(1, "Listening"), "Listening on {Url} (fd {Fd}, name {FdName})");
    private static readonly Action<ILogger, string, Exception?> LogAdminListening =
        LoggerMessage.Define<string>(LogLevel.Information, new EventId(3, "AdminListening"), "Admin listening on {Url}");
    private static readonly Action<ILogger, string, int, string, Exception?> LogAdminListeningOnPassed =
        LoggerMessage.Define<string, int, string>(LogLevel.Information, new EventId(3, "AdminListening"), "Admin listening on {Url} (fd {Fd}, name {FdName})");
    private static readonly Action<ILogger, string, Exception?> LogAnnouncement =
        LoggerMessage.Define<string>(LogLevel.Information, new EventId(2, "Announcement"), "{Announcement}");

    /// <summary>Writes the message and nothing else: the access log's text lines are already complete, escaped CLF.</summary>
    internal sealed class MessageOnlyFormatter() : ConsoleFormatter(FormatterName)
    {
        public const string FormatterName = "pipeserver-message-only";

        public override void Write<TState>(in LogEntry<TState> logEntry, IExternalScopeProvider? scopeProvider, TextWriter textWriter)
        {
            textWriter.Write(logEntry.Formatter(logEntry.State, logEntry.Exception));
            textWriter.Write('\n');
        }
    }
}
