using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PipeServer.StaticFiles;

// Where this sits: between the request's path (StaticPath) and the read. Two ways to open, both refusing to
// leave the root:
//
//   OpenBeneath (Linux, the common case): one openat2(2) relative to the root directory's descriptor with
//     RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: the kernel itself refuses any step out of the root and any
//     symbolic link on the way, so a path it opens is, by construction, what realpath(3) + the containment
//     check would have allowed, with no string compared and no per-component readlink. A path with a link
//     anywhere in it (ELOOP) goes the second way, which decides where the link may lead.
//   OpenForReading (links, other systems): after StaticPath.Resolve said "this real path is under the root".
//     O_NOFOLLOW: a link put in its last place since is not followed out of the root (the last component's
//     TOCTOU window closed); O_NONBLOCK: a FIFO under the root would block open(2) until a writer came,
//     holding a thread (with --transport linux, a whole event loop); non-blocking it opens at once. Regular
//     files ignore O_NONBLOCK. Elsewhere the managed open is used, without those two guarantees.
//
// The root's descriptor is held open (RootDirectory), but it is no cache that can go stale: every request
// first compares the root path's device and inode (one statx) with the held descriptor's, and reopens when
// the directory at that path was replaced. What a request gets back is a raw descriptor with its fstat
// (statx) answers, no SafeFileHandle: a small file's request allocates nothing.

/// <summary>What <see cref="FileOpener.OpenBeneath"/> found.</summary>
internal enum OpenOutcome : byte
{
    Opened,
    /// <summary>Nothing there (or unreadable): 404.</summary>
    NotFound,
    /// <summary>A link on the way, or no openat2 here: resolve the path by string (StaticPath.Resolve) instead.</summary>
    Resolve,
    /// <summary>Asked for cached lookups only, and a step of the path is not in the kernel's cache: open it where waiting is allowed.</summary>
    WouldBlock,
    /// <summary>Out of descriptors or memory (EMFILE, ENFILE, ENOMEM), or a lease holder asks to wait (EAGAIN): 503, for this request only.</summary>
    Unavailable,
}

internal enum FileKind : byte { Regular, Directory, Other }

/// <summary>An open file: a raw descriptor (Linux) or a handle (elsewhere), and what fstat said. Closed by <see cref="Dispose"/>, once.</summary>
internal struct OpenedFile : IDisposable
{
    public int Fd;                    // Linux; -1 otherwise
    public SafeFileHandle? Handle;    // elsewhere
    public FileKind Kind;
    public long Length;
    public DateTimeOffset Modified;

    /// <summary>
    /// Reads from the page cache only (preadv2 with RWF_NOWAIT): never waits for a disk, so an event loop can
    /// call it. Returns bytes read (0 at the end), or -1 when the bytes are not cached (read with ReadAsync).
    /// </summary>
    public readonly int ReadCached(Span<byte> destination, long offset)
    {
        if (Handle is not null) return RandomAccess.Read(Handle, destination, offset);
        if (!FileOpener.CanReadNoWait) return -1; // no preadv2 in this libc: the thread pool reads
        while (true)
        {
            nint n = FileOpener.PreadNoWait(Fd, destination, offset, out int errno);
            if (n >= 0) return (int)n;
            if (errno == FileOpener.EINTR) continue;
            if (errno is FileOpener.EAGAIN or FileOpener.ENOSYS) return -1;
            if (errno == FileOpener.EOPNOTSUPP) return FileOpener.Pread(Fd, destination, offset); // a file system without RWF_NOWAIT
            throw new IOException($"pread failed: errno {errno}");
        }
    }

    /// <summary>Reads on the thread pool (a cold file): the caller awaits instead of a loop blocking.</summary>
    public readonly ValueTask<int> ReadAsync(Memory<byte> destination, long offset, CancellationToken cancellationToken) =>
        Handle is not null ? RandomAccess.ReadAsync(Handle, destination, offset, cancellationToken) : ReadRawAsync(Fd, destination, offset, cancellationToken);

    private static async ValueTask<int> ReadRawAsync(int fd, Memory<byte> destination, long offset, CancellationToken cancellationToken)
    {
        using var borrowed = new SafeFileHandle(fd, ownsHandle: false); // the slow path only: an allocation is fine here
        return await RandomAccess.ReadAsync(borrowed, destination, offset, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A handle for APIs that need one (the transport's file send): borrowed on Linux, not owning the descriptor.</summary>
    public readonly SafeFileHandle AsHandle() => Handle ?? new SafeFileHandle(Fd, ownsHandle: false);

    public void Dispose()
    {
        if (Fd >= 0) { FileOpener.Close(Fd); Fd = -1; }
        Handle?.Dispose();
        Handle = null;
    }
}

internal static partial class FileOpener
{
    private const int O_RDONLY = 0, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000, O_PATH = 0x200000;
    internal const int EPERM = 1, ENOENT = 2, EINTR = 4, ENXIO = 6, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EXDEV = 18, ENODEV = 19, ENOTDIR = 20,
        EINVAL = 22, ENFILE = 23, EMFILE = 24, ENAMETOOLONG = 36, ENOSYS = 38, ELOOP = 40, EOPNOTSUPP = 95;

    private static readonly int NoFollow = !OperatingSystem.IsLinux() ? 0 : RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.X86 => 0x20000,
        Architecture.Arm64 or Architecture.Arm => 0x8000,
        _ => 0,
    };
    private static readonly int ODirectory = !OperatingSystem.IsLinux() ? 0 : RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.X86 => 0x10000,
        Architecture.Arm64 or Architecture.Arm => 0x4000,
        _ => 0,
    };

    // On 32-bit, a file past 2 GiB opens only with O_LARGEFILE (else EOVERFLOW): glibc's open64 adds it, and the
    // raw openat2 syscall gets nothing from libc, so both opens here pass it themselves. 64-bit kernels force it.
    private static readonly int LargeFile = Environment.Is64BitProcess || !OperatingSystem.IsLinux() ? 0 : RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X86 => 0x8000,
        Architecture.Arm => 0x20000,
        _ => 0,
    };

    /// <summary>
    /// Whether raw descriptors (open, statx, preadv2) are used: Linux on the architectures whose flags are known,
    /// with a statx this process can call. statx is glibc 2.28 and musl 1.2.5, and older container seccomp
    /// profiles refuse it (EPERM): asked once here, and without it every file goes the managed way, as on other
    /// systems, instead of failing every request.
    /// </summary>
    public static bool IsNative => s_native;

    private static readonly bool s_native = NoFollow != 0 && ProbeStatx();

    private static bool ProbeStatx()
    {
        Span<byte> buffer = stackalloc byte[StatxSize];
        try
        {
            if (statx(AT_FDCWD, "/\0"u8, 0, STATX_TYPE, buffer) == 0) return true;
            return Marshal.GetLastPInvokeError() is not (ENOSYS or EPERM);
        }
        catch (EntryPointNotFoundException) { return false; }
    }

    /// <summary>A file under the real path <paramref name="realPath"/> (after Resolve), opened and stat'ed; false when it cannot be opened (gone, unreadable, a link now).</summary>
    public static bool OpenForReading(string realPath, out OpenedFile file)
    {
        file = new OpenedFile { Fd = -1 };
        if (IsNative)
        {
            int fd = open(realPath, O_RDONLY | O_NONBLOCK | O_CLOEXEC | NoFollow | LargeFile);
            if (fd < 0) return false;
            file.Fd = fd;
            if (!Stat(fd, ref file)) { file.Dispose(); return false; }
            return true;
        }
        try
        {
            if (System.IO.Directory.Exists(realPath)) { file.Kind = FileKind.Directory; return true; }
            var handle = File.OpenHandle(realPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            file.Handle = handle;
            try
            {
                file.Length = RandomAccess.GetLength(handle);
                file.Modified = new DateTimeOffset(File.GetLastWriteTimeUtc(handle), TimeSpan.Zero);
                file.Kind = FileKind.Regular;
            }
            catch (NotSupportedException) { file.Kind = FileKind.Other; } // not seekable: a FIFO, a device
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            file.Dispose();
            return false;
        }
    }

    /// <summary>
    /// Opens <paramref name="relative"/> (plain segments, no NUL; empty for the root itself) beneath the root's
    /// descriptor, no symbolic link followed, and stats it. <paramref name="cachedOnly"/>: only if every step
    /// of the lookup is in the kernel's dentry cache (RESOLVE_CACHED, Linux 5.12), else WouldBlock, so an event
    /// loop never waits for a disk to read a directory.
    /// </summary>
    public static OpenOutcome OpenBeneath(SafeFileHandle root, ReadOnlySpan<byte> relative, out OpenedFile file, bool cachedOnly = false)
    {
        file = new OpenedFile { Fd = -1 };
        if (!s_openat2) return OpenOutcome.Resolve;
        Span<byte> path = stackalloc byte[relative.Length + 2];
        if (relative.IsEmpty) path[0] = (byte)'.';
        relative.CopyTo(path);
        path[Math.Max(1, relative.Length)] = 0;
        bool cached = cachedOnly && s_resolveCached;
        var how = new OpenHow
        {
            Flags = (ulong)(O_RDONLY | O_NONBLOCK | O_CLOEXEC | LargeFile),
            Resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | (cached ? RESOLVE_CACHED : 0),
        };
        bool added = false;
        nint fd;
        try
        {
            root.DangerousAddRef(ref added); // a root reopened meanwhile is closed only once nobody uses the old one
            do fd = openat2(SYS_openat2, (int)root.DangerousGetHandle(), path, ref how, Marshal.SizeOf<OpenHow>());
            while (fd < 0 && Marshal.GetLastPInvokeError() == EINTR);
        }
        catch (ObjectDisposedException) { return OpenOutcome.Resolve; } // the root was replaced and its old descriptor closed just now
        finally { if (added) root.DangerousRelease(); }
        if (fd < 0)
        {
            switch (Marshal.GetLastPInvokeError())
            {
                case EAGAIN when cached: return OpenOutcome.WouldBlock;
                case EINVAL when cached:
                    s_resolveCached = false; // a kernel before 5.12: every open may wait, as open(2) always could
                    return OpenBeneath(root, relative, out file, cachedOnly: false);
                case var errno:
                    // Only "this kernel has no openat2" (before Linux 5.6) or "this process may not call it" (a
                    // seccomp filter answers EPERM for every call, so the root itself is refused too) turn it off
                    // for good. EPERM can also be one file's (fanotify, a LSM): then it is that file's answer.
                    if (errno == ENOSYS || (errno == EPERM && ProbeRootRefused(root))) { s_openat2 = false; return OpenOutcome.Resolve; }
                    return OutcomeOf(errno);
            }
        }
        file.Fd = (int)fd;
        if (!Stat(file.Fd, ref file)) { file.Dispose(); return OpenOutcome.NotFound; }
        return OpenOutcome.Opened;
    }

    /// <summary>
    /// What an openat2 errno means for this request (never for the next one). Nothing there, unreadable, or
    /// nothing a file server serves (ENXIO: a unix socket; ENODEV: a device without a driver; EPERM: refused for
    /// this file) is 404, as EACCES is (a client learns nothing about what it may not read). Running out of
    /// descriptors or memory is the server's trouble, not the path's: 503, which says "try again", where nginx
    /// answers 500 for any open error it does not name. A link on the way, or anything unforeseen, goes to
    /// Resolve, whose open(2) gives its own answer.
    /// </summary>
    internal static OpenOutcome OutcomeOf(int errno) => errno switch
    {
        ENOENT or ENOTDIR or EACCES or ENAMETOOLONG or ENXIO or ENODEV or EPERM => OpenOutcome.NotFound,
        EMFILE or ENFILE or ENOMEM or EAGAIN => OpenOutcome.Unavailable,
        _ => OpenOutcome.Resolve, // ELOOP, EXDEV: a link on the way, where it leads is Resolve's to judge
    };

    /// <summary>EPERM on a file: is it the process (seccomp: "." beneath the root is refused too) rather than the file?</summary>
    private static bool ProbeRootRefused(SafeFileHandle root)
    {
        var how = new OpenHow { Flags = (ulong)(O_PATH | O_CLOEXEC), Resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS };
        bool added = false;
        try
        {
            root.DangerousAddRef(ref added);
            nint fd;
            do fd = openat2(SYS_openat2, (int)root.DangerousGetHandle(), ".\0"u8, ref how, Marshal.SizeOf<OpenHow>());
            while (fd < 0 && Marshal.GetLastPInvokeError() == EINTR);
            if (fd >= 0) { close((int)fd); return false; }
            return Marshal.GetLastPInvokeError() is EPERM or ENOSYS;
        }
        catch (ObjectDisposedException) { return false; }
        finally { if (added) root.DangerousRelease(); }
    }

    /// <summary>For tests: whether openat2 is still in use (an errno of one request must not turn it off for the process).</summary>
    internal static bool Openat2InUse => s_openat2;

    private static volatile bool s_openat2 = OperatingSystem.IsLinux() && IsNative;
    private static volatile bool s_resolveCached = true;

    /// <summary>The root directory as a descriptor for OpenBeneath (O_PATH: no read permission needed, nothing read); -1 if it cannot be opened.</summary>
    public static SafeFileHandle? OpenDirectoryPath(ReadOnlySpan<byte> pathZ)
    {
        int fd = openZ(pathZ, O_PATH | O_CLOEXEC | ODirectory | NoFollow);
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>statx of a path (not following a last link): device and inode, for "is this still the directory we hold?".</summary>
    public static bool Identity(ReadOnlySpan<byte> pathZ, out ulong device, out ulong inode) => Identity(AT_FDCWD, pathZ, AT_SYMLINK_NOFOLLOW, out device, out inode);

    public static bool Identity(SafeFileHandle handle, out ulong device, out ulong inode)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            return Identity((int)handle.DangerousGetHandle(), ""u8, AT_EMPTY_PATH, out device, out inode);
        }
        finally { if (added) handle.DangerousRelease(); }
    }

    private static bool Identity(int dirFd, ReadOnlySpan<byte> pathZ, int flags, out ulong device, out ulong inode)
    {
        Span<byte> buffer = stackalloc byte[StatxSize];
        device = inode = 0;
        if (statx(dirFd, pathZ.IsEmpty ? "\0"u8 : pathZ, flags, STATX_INO, buffer) != 0) return false;
        inode = BinaryPrimitives.ReadUInt64LittleEndian(buffer[32..]);
        device = (ulong)BinaryPrimitives.ReadUInt32LittleEndian(buffer[136..]) << 32 | BinaryPrimitives.ReadUInt32LittleEndian(buffer[140..]);
        return true;
    }

    /// <summary>fstat through statx (its layout is the same on every architecture): kind, size, modification time.</summary>
    private static bool Stat(int fd, ref OpenedFile file)
    {
        Span<byte> buffer = stackalloc byte[StatxSize];
        if (statx(fd, "\0"u8, AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE | STATX_MTIME, buffer) != 0) return false;
        int mode = BinaryPrimitives.ReadUInt16LittleEndian(buffer[28..]) & S_IFMT;
        file.Kind = mode == S_IFREG ? FileKind.Regular : mode == S_IFDIR ? FileKind.Directory : FileKind.Other;
        file.Length = (long)BinaryPrimitives.ReadUInt64LittleEndian(buffer[40..]);
        long seconds = BinaryPrimitives.ReadInt64LittleEndian(buffer[112..]);
        uint nanoseconds = BinaryPrimitives.ReadUInt32LittleEndian(buffer[120..]);
        // The same instant File.GetLastWriteTimeUtc gives (100 ns ticks), so the ETag is the one it would make.
        file.Modified = new DateTimeOffset(DateTime.UnixEpoch.Ticks + seconds * TimeSpan.TicksPerSecond + nanoseconds / 100, TimeSpan.Zero);
        return true;
    }

    public static int Pread(int fd, Span<byte> destination, long offset)
    {
        while (true)
        {
            nint n = Environment.Is64BitProcess ? pread(fd, destination, destination.Length, offset) : pread64(fd, destination, destination.Length, offset);
            if (n >= 0) return (int)n;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR) throw new IOException($"pread failed: errno {errno}");
        }
    }

    /// <summary>
    /// preadv2 with RWF_NOWAIT: bytes read, or -1 with <paramref name="errno"/> (EAGAIN: not cached). A libc
    /// without preadv2 (before glibc 2.26, musl) answers ENOSYS, once: after that <see cref="CanReadNoWait"/> is false.
    /// </summary>
    public static unsafe nint PreadNoWait(int fd, Span<byte> destination, long offset, out int errno)
    {
        errno = 0;
        nint n;
        try
        {
            fixed (byte* p = destination)
            {
                var vector = new IoVec { Base = (nint)p, Length = destination.Length };
                n = Environment.Is64BitProcess ? preadv2(fd, ref vector, 1, offset, RWF_NOWAIT) : preadv64v2(fd, ref vector, 1, offset, RWF_NOWAIT);
            }
        }
        catch (EntryPointNotFoundException)
        {
            s_preadv2 = false;
            errno = ENOSYS;
            return -1;
        }
        if (n < 0) errno = Marshal.GetLastPInvokeError();
        return n;
    }

    /// <summary>False once preadv2 turned out to be missing from this libc: then no read can promise not to wait, and every one goes to the thread pool.</summary>
    public static bool CanReadNoWait => s_preadv2;

    private static volatile bool s_preadv2 = true;

    public static void Close(int fd) => close(fd);

    // ---- libc -------------------------------------------------------------------------------------------

    private const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, AT_EMPTY_PATH = 0x1000;
    private const uint STATX_TYPE = 0x1, STATX_MTIME = 0x40, STATX_INO = 0x100, STATX_SIZE = 0x200;
    private const int StatxSize = 256; // struct statx, the same on every architecture
    private const int S_IFMT = 0xF000, S_IFREG = 0x8000, S_IFDIR = 0x4000;
    private const int RWF_NOWAIT = 0x8;
    private const nint SYS_openat2 = 437; // the same number on every architecture (added after the tables were unified)
    private const ulong RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04, RESOLVE_BENEATH = 0x08, RESOLVE_CACHED = 0x20;

    [StructLayout(LayoutKind.Sequential)]
    private struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public nint Base;
        public nint Length;
    }

    // open(2) is variadic (a mode follows with O_CREAT); without O_CREAT glibc never reads it.
    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true)]
    private static partial int openZ(ReadOnlySpan<byte> pathZ, int flags);

    // openat2 has no glibc wrapper: syscall(2), variadic in C, with integer and pointer arguments only, which
    // the x86-64 and AArch64 Linux ABIs pass exactly as fixed ones.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial nint openat2(nint number, int dirFd, ReadOnlySpan<byte> pathZ, ref OpenHow how, nint size);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int statx(int dirFd, ReadOnlySpan<byte> pathZ, int flags, uint mask, Span<byte> buffer);

    // The offset is off_t: 64 bits on a 64-bit process, 32 on a 32-bit one, where only the *64 entry points
    // take the long these declarations pass. Which one is called is decided by Environment.Is64BitProcess (a
    // constant to the JIT), so a 64-bit process never needs the *64 names (musl may drop them).
    [LibraryImport("libc", SetLastError = true)]
    private static partial nint pread(int fd, Span<byte> buffer, nint count, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint pread64(int fd, Span<byte> buffer, nint count, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint preadv2(int fd, ref IoVec vector, int count, long offset, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint preadv64v2(int fd, ref IoVec vector, int count, long offset, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);
}
