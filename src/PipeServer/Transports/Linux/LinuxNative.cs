using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace PipeServer.Transports.Linux;

// Where this sits: the bottom of the Linux transport. The few libc calls the event loops make, declared
// with LibraryImport (source-generated marshalling: no runtime stubs, so Native AOT keeps working and no
// package is needed). Every call that can fail sets errno, read back with Marshal.GetLastPInvokeError.
//
// Buffers cross as Span<byte>: the generated code pins them for the length of the call only, which is all a
// synchronous syscall needs. The one place that needs raw addresses is sendmsg's iovec array (several
// segments pinned at once), and that is the only unsafe code in this folder (AddressOf below).
//
// Constants are Linux's generic values (x86-64 and arm64 agree on all of them); epoll_event is the one
// struct whose layout differs (packed to 12 bytes on x86-64 only), so it is read and written by offset.

internal static partial class LinuxNative
{
    private const string Libc = "libc";

    // epoll(7)
    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
    public const uint EPOLLIN = 0x001, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010;

    // eventfd(2)
    public const int EFD_CLOEXEC = 0x80000, EFD_NONBLOCK = 0x800;

    // sockets
    public const int MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000, MSG_MORE = 0x8000;
    public const int SOL_SOCKET = 1, SO_ERROR = 4, SO_LINGER = 13;
    public const int SHUT_WR = 1;
    public const uint FIONREAD = 0x541B;

    // fcntl(2)
    public const int F_GETFL = 3, F_SETFL = 4, O_NONBLOCK = 0x800;

    // errno(3)
    public const int EINTR = 4, EAGAIN = 11, EPIPE = 32, ECONNRESET = 104;

    /// <summary>Bytes per epoll_event: 12 on x86-64 (the kernel declares it packed there) and i386, 16 elsewhere.</summary>
    public static readonly int EpollEventSize = RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.X86 ? 12 : 16;
    private static readonly int EpollDataOffset = EpollEventSize == 12 ? 4 : 8;

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int epoll_create1(int flags);

    [LibraryImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
    private static partial int epoll_ctl_raw(int epfd, int op, int fd, Span<byte> ev);

    [LibraryImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
    private static partial int epoll_wait_raw(int epfd, Span<byte> events, int maxevents, int timeout);

    [LibraryImport(Libc, EntryPoint = "recv", SetLastError = true)]
    private static partial nint recv_raw(int fd, Span<byte> buf, nint len, int flags);

    [LibraryImport(Libc, EntryPoint = "send", SetLastError = true)]
    private static partial nint send_raw(int fd, ReadOnlySpan<byte> buf, nint len, int flags);

    [LibraryImport(Libc, EntryPoint = "sendmsg", SetLastError = true)]
    private static partial nint sendmsg_raw(int fd, in MessageHeader msg, int flags);

    // The offset is off_t*: 64 bits on a 64-bit process, 32 on a 32-bit one, where only sendfile64 takes the
    // long this passes. SendFile picks by Environment.Is64BitProcess (a JIT constant), so a 64-bit process never
    // needs the *64 name (musl keeps it only for old binaries).
    [LibraryImport(Libc, EntryPoint = "sendfile", SetLastError = true)]
    private static partial nint sendfile_raw(int outFd, int inFd, ref long offset, nint count);

    [LibraryImport(Libc, EntryPoint = "sendfile64", SetLastError = true)]
    private static partial nint sendfile64_raw(int outFd, int inFd, ref long offset, nint count);

    [LibraryImport(Libc, EntryPoint = "preadv2", SetLastError = true)]
    private static partial nint preadv2_raw(int fd, ref IoVector vector, int count, long offset, int flags);

    [LibraryImport(Libc, EntryPoint = "preadv64v2", SetLastError = true)]
    private static partial nint preadv64v2_raw(int fd, ref IoVector vector, int count, long offset, int flags);

    [LibraryImport(Libc, EntryPoint = "pread", SetLastError = true)]
    private static partial nint pread_raw(int fd, Span<byte> buffer, nint count, long offset);

    [LibraryImport(Libc, EntryPoint = "pread64", SetLastError = true)]
    private static partial nint pread64_raw(int fd, Span<byte> buffer, nint count, long offset);

    /// <summary>pread(2), retried on EINTR; it may wait for a disk, so never on a loop. Bytes read, 0 at the end, -1 with errno.</summary>
    public static nint Pread(int fd, Span<byte> buffer, long offset)
    {
        while (true)
        {
            nint n = Environment.Is64BitProcess ? pread_raw(fd, buffer, buffer.Length, offset) : pread64_raw(fd, buffer, buffer.Length, offset);
            if (n >= 0 || Marshal.GetLastPInvokeError() != EINTR) return n;
        }
    }

    private const int RWF_NOWAIT = 0x8;
    private static volatile bool s_preadv2 = true;

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVector
    {
        public nint Base;
        public nint Length;
    }

    /// <summary>
    /// Whether the byte of <paramref name="fd"/> at <paramref name="offset"/> is in the page cache: a one-byte
    /// preadv2 with RWF_NOWAIT, which never waits for a disk. True when it cannot tell (no preadv2 in this libc,
    /// a file system without RWF_NOWAIT, the file's end): the caller then does what it did before it asked.
    /// </summary>
    public static unsafe bool IsCached(int fd, long offset)
    {
        if (!s_preadv2) return true;
        byte one;
        var vector = new IoVector { Base = (nint)(&one), Length = 1 };
        try
        {
            while (true)
            {
                nint n = Environment.Is64BitProcess ? preadv2_raw(fd, ref vector, 1, offset, RWF_NOWAIT) : preadv64v2_raw(fd, ref vector, 1, offset, RWF_NOWAIT);
                if (n >= 0) return true;
                int errno = Marshal.GetLastPInvokeError();
                if (errno == EINTR) continue;
                return errno != EAGAIN;
            }
        }
        catch (EntryPointNotFoundException) { s_preadv2 = false; return true; }
    }

    // fcntl is variadic in C; one int after the command is passed exactly as a fixed argument (as ioctl below).
    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int fcntl_int(int fd, int cmd, int arg);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    private static partial nint read_raw(int fd, Span<byte> buf, nint count);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    private static partial nint write_raw(int fd, ReadOnlySpan<byte> buf, nint count);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport(Libc, SetLastError = true)]
    public static partial int shutdown(int fd, int how);

    [LibraryImport(Libc, EntryPoint = "setsockopt", SetLastError = true)]
    private static partial int setsockopt_raw(int fd, int level, int name, ReadOnlySpan<byte> value, uint len);

    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    private static partial int getsockopt_raw(int fd, int level, int name, Span<byte> value, ref uint len);

    // ioctl is variadic in C; one pointer-sized argument after the request is passed exactly as a fixed one
    // on the SysV x86-64 and AAPCS64 Linux ABIs.
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl_int(int fd, nuint request, out int value);

    [LibraryImport(Libc, EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static partial int sched_getaffinity_raw(int pid, nint size, Span<byte> mask);

    public static int Errno => Marshal.GetLastPInvokeError();

    public static int EpollCtl(int epfd, int op, int fd, uint events, ulong data)
    {
        Span<byte> ev = stackalloc byte[16];
        ev.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(ev, events);
        BinaryPrimitives.WriteUInt64LittleEndian(ev[EpollDataOffset..], data);
        return epoll_ctl_raw(epfd, op, fd, ev);
    }

    public static int EpollWait(int epfd, Span<byte> events, int timeoutMs) =>
        epoll_wait_raw(epfd, events, events.Length / EpollEventSize, timeoutMs);

    public static (uint Events, ulong Data) EpollEventAt(ReadOnlySpan<byte> events, int index)
    {
        var ev = events.Slice(index * EpollEventSize, EpollEventSize);
        return (BinaryPrimitives.ReadUInt32LittleEndian(ev), BinaryPrimitives.ReadUInt64LittleEndian(ev[EpollDataOffset..]));
    }

    /// <summary>recv(2), never blocking whatever the fd's mode (MSG_DONTWAIT). Returns bytes, 0 at EOF, -1 with errno.</summary>
    public static nint Recv(int fd, Span<byte> buffer) => recv_raw(fd, buffer, buffer.Length, MSG_DONTWAIT);

    /// <summary>send(2) without blocking and without SIGPIPE on a reset peer (MSG_NOSIGNAL); <paramref name="more"/>: more follows at once (MSG_MORE, one segment for head and file).</summary>
    public static nint Send(int fd, ReadOnlySpan<byte> buffer, bool more = false) =>
        send_raw(fd, buffer, buffer.Length, MSG_DONTWAIT | MSG_NOSIGNAL | (more ? MSG_MORE : 0));

    /// <summary>
    /// sendfile(2): up to <paramref name="count"/> bytes of <paramref name="fileFd"/> from <paramref name="offset"/>
    /// (advanced by what was sent) to the socket, copied by the kernel from the page cache. It has no flags
    /// argument: it blocks unless the socket is O_NONBLOCK (see <see cref="SetNonBlocking"/>). No SIGPIPE: the
    /// runtime ignores it. Returns bytes sent, 0 at the file's end, -1 with errno (EAGAIN: the socket is full).
    /// </summary>
    public static nint SendFile(int socketFd, int fileFd, ref long offset, long count) => Environment.Is64BitProcess
        ? sendfile_raw(socketFd, fileFd, ref offset, (nint)count)
        : sendfile64_raw(socketFd, fileFd, ref offset, (nint)count);

    /// <summary>True when the descriptor is in non-blocking mode (O_NONBLOCK); false on error.</summary>
    public static bool IsNonBlocking(int fd)
    {
        int flags = fcntl_int(fd, F_GETFL, 0);
        return flags >= 0 && (flags & O_NONBLOCK) != 0;
    }

    /// <summary>Puts a socket that accept4 made blocking into non-blocking mode (its other flags are none that F_SETFL changes).</summary>
    public static int SetNonBlocking(int fd) => fcntl_int(fd, F_SETFL, O_NONBLOCK);

    /// <summary>
    /// sendmsg(2) over the first segments of <paramref name="buffer"/> (gathered: one syscall for a
    /// multi-segment response). sendmsg rather than writev because writev takes no MSG_NOSIGNAL.
    /// </summary>
    public static nint SendSegments(int fd, in ReadOnlySequence<byte> buffer, IoVecScratch scratch, out long offered, bool more = false)
    {
        int count = 0;
        offered = 0;
        try
        {
            foreach (var segment in buffer)
            {
                if (segment.IsEmpty) continue;
                scratch.Handles[count] = segment.Pin();
                scratch.Vectors[count] = new IoVec { Base = AddressOf(scratch.Handles[count]), Length = segment.Length };
                offered += segment.Length;
                if (++count == scratch.Vectors.Length) break;
            }
            var header = new MessageHeader { Iov = scratch.VectorsAddress, IovLength = count };
            return sendmsg_raw(fd, header, MSG_DONTWAIT | MSG_NOSIGNAL | (more ? MSG_MORE : 0));
        }
        finally
        {
            for (int i = 0; i < count; i++) scratch.Handles[i].Dispose();
        }
    }

    // The only unsafe code in the folder: a pinned segment's address for an iovec. The MemoryHandle keeps the
    // segment pinned until it is disposed, after the syscall returns.
    private static unsafe nint AddressOf(in MemoryHandle handle) => (nint)handle.Pointer;

    /// <summary>Reads an eventfd's counter (resetting it). Non-blocking fd: EAGAIN when nothing was signalled.</summary>
    public static void DrainEventFd(int fd)
    {
        Span<byte> value = stackalloc byte[8];
        _ = read_raw(fd, value, 8);
    }

    public static void SignalEventFd(int fd)
    {
        Span<byte> one = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(one, 1);
        _ = write_raw(fd, one, 8);
    }

    /// <summary>SO_LINGER on, 0 seconds: the next close() sends RST and drops unsent data.</summary>
    public static int SetLingerZero(int fd)
    {
        Span<byte> linger = stackalloc byte[8]; // struct linger { int l_onoff; int l_linger; }
        BinaryPrimitives.WriteInt32LittleEndian(linger, 1);
        BinaryPrimitives.WriteInt32LittleEndian(linger[4..], 0);
        return setsockopt_raw(fd, SOL_SOCKET, SO_LINGER, linger, 8);
    }

    /// <summary>The socket's pending error (SO_ERROR), clearing it; 0 when none.</summary>
    public static int PendingError(int fd)
    {
        Span<byte> value = stackalloc byte[4];
        uint len = 4;
        return getsockopt_raw(fd, SOL_SOCKET, SO_ERROR, value, ref len) == 0 ? BinaryPrimitives.ReadInt32LittleEndian(value) : Errno;
    }

    /// <summary>FIONREAD: bytes in the socket's receive queue not yet read; 0 on error.</summary>
    public static int BytesReadable(int fd) => ioctl_int(fd, FIONREAD, out int value) == 0 ? value : 0;

    /// <summary>How many CPUs this process may run on (sched_getaffinity: `taskset -c 0` gives 1).</summary>
    public static int UsableCpuCount()
    {
        Span<byte> mask = stackalloc byte[1024 / 8]; // CPU_SETSIZE
        mask.Clear();
        int bytes = sched_getaffinity_raw(0, mask.Length, mask);
        if (bytes <= 0) return Environment.ProcessorCount;
        int count = 0;
        foreach (byte b in mask) count += System.Numerics.BitOperations.PopCount(b);
        return Math.Max(1, count);
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public nint Base;
        public nint Length;
    }

    // struct msghdr, natural layout: the same on every 64-bit Linux (and on 32-bit, with nint fields).
    [StructLayout(LayoutKind.Sequential)]
    public struct MessageHeader
    {
        public nint Name;
        public uint NameLength;
        public nint Iov;
        public nint IovLength;
        public nint Control;
        public nint ControlLength;
        public int Flags;
    }

    /// <summary>One loop's reusable arrays for a gathered send (touched by the loop thread only).</summary>
    public sealed class IoVecScratch
    {
        public const int MaxSegments = 64; // 64 × 4 KiB pipe segments: 256 KiB per call, past any socket buffer
        // Allocated pinned once (it holds no references), so msghdr can carry its address without a GCHandle per call.
        public readonly IoVec[] Vectors = GC.AllocateArray<IoVec>(MaxSegments, pinned: true);
        public readonly MemoryHandle[] Handles = new MemoryHandle[MaxSegments];
        public readonly nint VectorsAddress;
        public IoVecScratch() => VectorsAddress = Marshal.UnsafeAddrOfPinnedArrayElement(Vectors, 0);
    }
}
