using System.Runtime.InteropServices;

namespace PipeServer.Hosting;

// Where this sits: the first thing Program.Main does, before anything opens a socket. Every connection is
// one file descriptor, and so is much of what the process needs to live: the .NET runtime takes two (a pipe)
// to start each new thread and aborts the whole process with "Out of memory." when it cannot get them
// (see docs/deploy.md, "File descriptors"). So the executable
//   1. raises the soft RLIMIT_NOFILE to the hard limit, as Go does since 1.19 (CoreCLR's PAL already does
//      this at start-up; a Native AOT build does not), and
//   2. derives the default connection cap from the limit, keeping descriptors back for everything else.
// The library (HttpServer) never calls setrlimit: how many descriptors a process may use is the
// executable's decision; the server only takes a cap (HttpServerOptions.MaxConnections). Linux only;
// elsewhere RaiseSoftToHard returns null and nothing is derived.

/// <summary>The process's file descriptor limit, and the connection cap that follows from it.</summary>
public static class FileDescriptorLimit
{
    /// <summary>Descriptors kept back for the runtime, logs, metrics and handlers, at the least (an idle JIT server holds about 115).</summary>
    public const int MinimumReserve = 256;

    /// <summary>What <see cref="RaiseSoftToHard"/> found and did.</summary>
    /// <param name="SoftBefore">The soft limit the process started with.</param>
    /// <param name="Limit">The soft limit now in force: the hard limit unless raising it failed.</param>
    /// <param name="Hard">The hard limit.</param>
    public sealed record Result(long SoftBefore, long Limit, long Hard)
    {
        public bool Raised => Limit > SoftBefore;
    }

    /// <summary>Raises the soft RLIMIT_NOFILE to the hard limit. Null where this is not Linux or getrlimit fails.</summary>
    public static Result? RaiseSoftToHard()
    {
        if (!OperatingSystem.IsLinux()) return null;
        if (getrlimit(RlimitNofile, out var limit) != 0) return null;
        long before = ToLong(limit.Current);
        if (limit.Current < limit.Maximum)
        {
            var raised = new RLimit { Current = limit.Maximum, Maximum = limit.Maximum };
            if (setrlimit(RlimitNofile, in raised) == 0) limit = raised; // on failure the old soft limit stays: still a limit to derive from
        }
        return new Result(before, ToLong(limit.Current), ToLong(limit.Maximum));
    }

    /// <summary>
    /// The default connection cap for a descriptor limit: <c>max(limit − max(256, limit / 8), limit / 4)</c>.
    /// An eighth of the limit, and at least 256, stays free for what is not a client connection; a very low
    /// limit (under 342) still gives connections a quarter of it.
    /// </summary>
    public static int ConnectionCap(long limit)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        long reserve = Math.Max(MinimumReserve, limit / 8);
        long cap = Math.Max(limit - reserve, limit / 4);
        return (int)Math.Clamp(cap, 1, int.MaxValue);
    }

    private static long ToLong(nuint value) => value > long.MaxValue ? long.MaxValue : (long)value; // RLIM_INFINITY

    private const int RlimitNofile = 7; // RLIMIT_NOFILE on every Linux architecture .NET runs on

    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit
    {
        public nuint Current; // rlim_t is unsigned long
        public nuint Maximum;
    }

    // DllImport rather than LibraryImport: the project builds without unsafe code (AllowUnsafeBlocks=false) and
    // LibraryImport's generated stubs need it. Both signatures are blittable (ints, and a struct of two
    // pointer-sized integers passed by reference), so no marshalling stub is generated at run time and
    // Native AOT binds them directly.
    [DllImport("libc", SetLastError = true)]
    private static extern int getrlimit(int resource, out RLimit limit);

    [DllImport("libc", SetLastError = true)]
    private static extern int setrlimit(int resource, in RLimit limit);
}
