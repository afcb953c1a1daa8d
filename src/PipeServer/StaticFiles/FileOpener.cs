using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PipeServer.StaticFiles;

// Where this sits: between StaticPath.Resolve (which said "this real path is under the root") and the read.
// File.OpenHandle would do, but for two things only the open(2) flags can say:
//   - O_NOFOLLOW: Resolve returned a path with no link in it; if a link has been put in its last place since,
//     the open fails instead of following it out of the root (the last component's TOCTOU window closed);
//   - O_NONBLOCK: a FIFO under the root would block open(2) until a writer came, holding a thread (with
//     --transport linux, a whole event loop) forever; non-blocking, it opens at once and reads as empty.
// Regular files ignore O_NONBLOCK. The flag values are Linux's for x64 and arm64 (O_NOFOLLOW differs between
// them); elsewhere the managed open is used, without those two guarantees.

internal static partial class FileOpener
{
    private const int O_RDONLY = 0, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;

    private static readonly int NoFollow = !OperatingSystem.IsLinux() ? 0 : RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.X86 => 0x20000,
        Architecture.Arm64 or Architecture.Arm => 0x8000,
        _ => 0,
    };

    /// <summary>A read-only handle on <paramref name="realPath"/>, or null when it cannot be opened (gone, unreadable, a link now).</summary>
    public static SafeFileHandle? OpenForReading(string realPath)
    {
        if (NoFollow != 0)
        {
            int fd = open(realPath, O_RDONLY | O_NONBLOCK | O_CLOEXEC | NoFollow);
            return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
        }
        try
        {
            return File.OpenHandle(realPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    // open(2) is variadic (a mode follows with O_CREAT); without O_CREAT glibc never reads it.
    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);
}
