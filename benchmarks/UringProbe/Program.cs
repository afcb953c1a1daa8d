using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

// Where this sits: outside the server. A single-threaded loop that answers every request with the same
// preformatted /plaintext response, over one of two kernel interfaces, so the two can be compared in one
// binary under the same wrk load as scripts/bench-e2e.sh:
//   --uring  (default) io_uring: multishot accept, multishot receive into a provided-buffer ring, one send
//            per batch of requests, and one io_uring_enter per loop pass (submit + wait).
//   --epoll  level-triggered epoll: epoll_wait, then one recv and one send per ready socket.
// There is no HTTP parser: a request is counted at each "\r\n\r\n" (the counter survives buffer boundaries),
// which is enough for wrk's GETs, pipelined or not. What is measured is the kernel interface and the loop,
// not HTTP: the gap between these and PipeServer is what PipeServer's own code costs.
//
// Usage: UringProbe [--uring|--epoll] [--port N]   (127.0.0.1; SIGTERM or Ctrl+C stops it)
internal static unsafe partial class Program
{
    private static ReadOnlySpan<byte> Response =>
        "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nServer: P\r\nDate: Mon, 07 Dec 2026 02:00:00 GMT\r\n\r\nHello, World!"u8;

    // Responses are sent from one read-only native block holding this many copies back to back, so a
    // pipelined batch of up to MaxBatch requests is one send and no response is ever copied per request.
    private const int MaxBatch = 64;
    internal static byte* Responses;
    internal static int ResponseLength;
    internal static volatile bool Stopping;

    private static int Main(string[] args)
    {
        bool epoll = args.Contains("--epoll");
        int port = 8080;
        int i = Array.IndexOf(args, "--port");
        if (i >= 0 && i + 1 < args.Length) port = int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture);

        ResponseLength = Response.Length;
        Responses = (byte*)NativeMemory.Alloc((nuint)(ResponseLength * MaxBatch));
        for (int k = 0; k < MaxBatch; k++) Response.CopyTo(new Span<byte>(Responses + k * ResponseLength, ResponseLength));

        // The listening socket comes from .NET (bind/listen are not what is measured); only its fd is used.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
        listener.Listen(4096);
        listener.Blocking = false; // epoll mode accepts until EAGAIN; io_uring does not care
        int lfd = (int)listener.Handle;

        using var stop = System.Runtime.InteropServices.PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; Stopping = true; });
        using var stopInt = System.Runtime.InteropServices.PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; Stopping = true; });
        Console.WriteLine($"UringProbe {(epoll ? "epoll" : "io_uring")} listening on http://127.0.0.1:{port}/");
        return epoll ? EpollLoop.Run(lfd) : UringLoop.Run(lfd);
    }

    /// <summary>Counts "\r\n\r\n" in data; state is how many bytes of the terminator the previous buffer ended with.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int CountRequests(byte* data, int length, ref byte state)
    {
        int count = 0, s = state;
        for (int k = 0; k < length; k++)
        {
            byte b = data[k];
            // The terminator is \r \n \r \n: even states wait for \r, odd ones for \n.
            if (b == (byte)'\r') s = s == 2 ? 3 : 1;
            else if (b == (byte)'\n' && (s & 1) == 1) { s++; if (s == 4) { count++; s = 0; } }
            else s = 0;
        }
        state = (byte)s;
        return count;
    }
}

/// <summary>The libc and raw syscalls both loops need (LibraryImport: no runtime stubs, Native AOT safe).</summary>
internal static unsafe partial class Native
{
    public const int EAGAIN = 11, EINTR = 4, ENOBUFS = 105, ETIME = 62, EBUSY = 16;

    [LibraryImport("libc", SetLastError = true)] public static partial nint syscall(nint number, nint a1, nint a2, nint a3, nint a4, nint a5, nint a6);
    [LibraryImport("libc", SetLastError = true)] public static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);
    [LibraryImport("libc", SetLastError = true)] public static partial int close(int fd);
    [LibraryImport("libc", SetLastError = true)] public static partial int setsockopt(int fd, int level, int name, int* value, int length);
    [LibraryImport("libc", SetLastError = true)] public static partial int accept4(int fd, nint addr, nint addrlen, int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial nint recv(int fd, byte* buf, nint len, int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial nint send(int fd, byte* buf, nint len, int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial int epoll_create1(int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial int epoll_ctl(int epfd, int op, int fd, byte* ev);
    [LibraryImport("libc", SetLastError = true)] public static partial int epoll_wait(int epfd, byte* events, int max, int timeout);

    public static int Errno => Marshal.GetLastPInvokeError();

    /// <summary>TCP_NODELAY on an accepted socket, as PipeServer does: responses are written whole.</summary>
    public static void NoDelay(int fd) { int one = 1; setsockopt(fd, 6 /* IPPROTO_TCP */, 1 /* TCP_NODELAY */, &one, 4); }
}

/// <summary>Level-triggered epoll: epoll_wait, then recv + send for each ready connection.</summary>
internal static unsafe class EpollLoop
{
    // epoll_event is packed to 12 bytes on x86-64 and 16 elsewhere: read and written by offset.
    private static readonly int EventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    private static readonly int DataOffset = EventSize == 12 ? 4 : 8;

    public static int Run(int lfd)
    {
        int ep = Native.epoll_create1(0x80000);
        Add(ep, lfd);
        const int MaxEvents = 256;
        byte* events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * EventSize));
        byte* buffer = (byte*)NativeMemory.Alloc(65536);
        var state = new byte[65536]; // terminator state per fd
        while (!Program.Stopping)
        {
            int n = Native.epoll_wait(ep, events, MaxEvents, 1000); // bounded: a stop request is seen within 1 s
            if (n < 0) { if (Native.Errno == Native.EINTR) continue; return 1; }
            for (int e = 0; e < n; e++)
            {
                int fd = (int)*(ulong*)(events + e * EventSize + DataOffset);
                if (fd == lfd)
                {
                    int cfd;
                    while ((cfd = Native.accept4(lfd, 0, 0, 0x800 | 0x80000)) >= 0)
                    {
                        if (cfd >= state.Length) { Native.close(cfd); continue; }
                        state[cfd] = 0; Native.NoDelay(cfd); Add(ep, cfd);
                    }
                    continue;
                }
                nint got = Native.recv(fd, buffer, 65536, 0);
                if (got <= 0)
                {
                    if (got < 0 && Native.Errno == Native.EAGAIN) continue;
                    Native.close(fd); // closing removes it from the epoll set
                    continue;
                }
                int requests = Program.CountRequests(buffer, (int)got, ref state[fd]);
                if (!SendAll(fd, requests)) Native.close(fd);
            }
        }
        return 0;
    }

    private static bool SendAll(int fd, int requests)
    {
        while (requests > 0)
        {
            int batch = Math.Min(requests, 64);
            byte* p = Program.Responses;
            nint left = batch * Program.ResponseLength;
            while (left > 0)
            {
                nint sent = Native.send(fd, p, left, 0x4000 /* MSG_NOSIGNAL */);
                if (sent < 0)
                {
                    // A full socket buffer never happens under wrk; spinning keeps the probe simple and is counted.
                    if (Native.Errno == Native.EAGAIN) continue;
                    return false;
                }
                p += sent; left -= sent;
            }
            requests -= batch;
        }
        return true;
    }

    private static void Add(int ep, int fd)
    {
        byte* ev = stackalloc byte[16];
        *(uint*)ev = 0x001; // EPOLLIN, level-triggered
        *(ulong*)(ev + DataOffset) = (ulong)fd;
        Native.epoll_ctl(ep, 1, fd, ev);
    }
}

/// <summary>
/// io_uring with the rings mapped by hand. Setup flags: SINGLE_ISSUER (only this thread submits) and
/// DEFER_TASKRUN (completion work runs only when this thread asks for events, never by interrupting it),
/// SUBMIT_ALL (a failing SQE does not stop the rest of the batch). One io_uring_enter per pass submits
/// everything the previous pass queued and waits for at least one completion (1 s bound).
/// </summary>
internal static unsafe class UringLoop
{
    private const int SysSetup = 425, SysEnter = 426, SysRegister = 427; // the same numbers on every architecture

    private const uint SetupSubmitAll = 1u << 7, SetupCoopTaskrun = 1u << 8, SetupSingleIssuer = 1u << 12, SetupDeferTaskrun = 1u << 13, SetupCqSize = 1u << 3;
    private const uint EnterGetEvents = 1u << 0, EnterExtArg = 1u << 3;
    private const byte OpAccept = 13, OpSend = 26, OpRecv = 27;
    private const byte SqeBufferSelect = 1 << 5;
    private const ushort RecvMultishot = 1 << 1, AcceptMultishot = 1 << 0;
    private const uint CqeFBuffer = 1u << 0, CqeFMore = 1u << 1;
    private const int RegisterPbufRing = 22;

    private const uint SqEntries = 1024, CqEntries = 8192;
    private const int BufferCount = 1024, BufferSize = 4096; // the provided-buffer ring: 4 MiB
    private const ushort BufferGroup = 0;

    // user_data: what completed (high byte) and for which fd (low 32 bits).
    private const ulong KindAccept = 1UL << 56, KindRecv = 2UL << 56, KindSend = 3UL << 56;

    private static int _ring;
    private static uint* _sqHead, _sqTail, _cqHead, _cqTail;
    private static uint _sqMask, _cqMask, _sqLocalTail, _sqSubmitted;
    private static byte* _sqes, _cqes;
    private static byte* _bufRing, _buffers;
    private static ushort _bufTail;

    // Per connection, indexed by fd.
    private const int MaxFd = 65536;
    private static readonly byte[] State = new byte[MaxFd];      // "\r\n\r\n" matcher
    private static readonly int[] Owed = new int[MaxFd];         // requests read but not yet answered
    private static readonly int[] SendLeft = new int[MaxFd];     // bytes of the send in flight
    private static readonly nint[] SendFrom = new nint[MaxFd];   // where the send in flight starts
    private static readonly bool[] Sending = new bool[MaxFd];    // one send in flight at most, so bytes stay in order
    private static readonly bool[] Receiving = new bool[MaxFd];  // the multishot receive is still armed
    private static readonly bool[] Closing = new bool[MaxFd];

    public static int Run(int lfd)
    {
        Setup();
        QueueAccept(lfd);
        long* ts = stackalloc long[2]; ts[0] = 1; ts[1] = 0;               // __kernel_timespec: 1 s
        ulong* arg = stackalloc ulong[3]; arg[0] = 0; arg[1] = 0; arg[2] = (ulong)ts; // io_uring_getevents_arg
        while (!Program.Stopping)
        {
            Volatile.Write(ref *_sqTail, _sqLocalTail);
            uint toSubmit = _sqLocalTail - _sqSubmitted;
            nint r = Native.syscall(SysEnter, _ring, (nint)toSubmit, 1, (nint)(EnterGetEvents | EnterExtArg), (nint)arg, 24);
            if (r >= 0) _sqSubmitted += (uint)r;
            else
            {
                int errno = Native.Errno;
                // ETIME: the 1 s bound passed; EINTR: a signal; EBUSY: completions must be reaped first.
                if (errno != Native.ETIME && errno != Native.EINTR && errno != Native.EBUSY && errno != Native.EAGAIN)
                { Console.Error.WriteLine($"io_uring_enter failed: errno {errno}"); return 1; }
            }
            Reap(lfd);
        }
        return 0;
    }

    private static void Setup()
    {
        byte* p = stackalloc byte[120]; // io_uring_params
        new Span<byte>(p, 120).Clear();
        *(uint*)(p + 4) = CqEntries;
        *(uint*)(p + 8) = SetupSingleIssuer | SetupDeferTaskrun | SetupSubmitAll | SetupCqSize;
        _ring = (int)Native.syscall(SysSetup, (nint)SqEntries, (nint)p, 0, 0, 0, 0);
        if (_ring < 0) throw new InvalidOperationException($"io_uring_setup failed: errno {Native.Errno}");
        uint sqEntries = *(uint*)p, cqEntries = *(uint*)(p + 4), features = *(uint*)(p + 20);
        if ((features & 1) == 0) throw new InvalidOperationException("kernel lacks IORING_FEAT_SINGLE_MMAP");
        byte* sqOff = p + 40, cqOff = p + 80;
        // One mapping holds both rings (FEAT_SINGLE_MMAP); the SQ index array comes after the CQEs, so it is the larger size.
        nuint sqSize = *(uint*)(sqOff + 24) + sqEntries * 4;
        nuint cqSize = *(uint*)(cqOff + 20) + cqEntries * 16;
        nuint size = Math.Max(sqSize, cqSize);
        byte* rings = (byte*)Native.mmap(0, size, 3, 0x1 | 0x8000 /* MAP_SHARED|MAP_POPULATE */, _ring, 0);
        _sqes = (byte*)Native.mmap(0, sqEntries * 64, 3, 0x1 | 0x8000, _ring, 0x10000000);
        if ((nint)rings == -1 || (nint)_sqes == -1) throw new InvalidOperationException($"mmap failed: errno {Native.Errno}");
        _sqHead = (uint*)(rings + *(uint*)(sqOff + 0));
        _sqTail = (uint*)(rings + *(uint*)(sqOff + 4));
        _sqMask = *(uint*)(rings + *(uint*)(sqOff + 8));
        uint* array = (uint*)(rings + *(uint*)(sqOff + 24));
        for (uint k = 0; k < sqEntries; k++) array[k] = k; // SQE slot i is always ring index i
        _cqHead = (uint*)(rings + *(uint*)(cqOff + 0));
        _cqTail = (uint*)(rings + *(uint*)(cqOff + 4));
        _cqMask = *(uint*)(rings + *(uint*)(cqOff + 8));
        _cqes = rings + *(uint*)(cqOff + 20);
        _sqLocalTail = _sqSubmitted = *_sqTail;

        // The provided-buffer ring: page-aligned array of io_uring_buf {u64 addr; u32 len; u16 bid; u16 resv},
        // whose tail is the resv field of entry 0 (offset 14).
        _bufRing = (byte*)NativeMemory.AlignedAlloc(BufferCount * 16, 4096);
        new Span<byte>(_bufRing, BufferCount * 16).Clear();
        _buffers = (byte*)NativeMemory.AlignedAlloc((nuint)BufferCount * BufferSize, 4096);
        byte* reg = stackalloc byte[40]; // io_uring_buf_reg
        new Span<byte>(reg, 40).Clear();
        *(ulong*)reg = (ulong)_bufRing;
        *(uint*)(reg + 8) = BufferCount;
        *(ushort*)(reg + 12) = BufferGroup;
        if (Native.syscall(SysRegister, _ring, RegisterPbufRing, (nint)reg, 1, 0, 0) < 0)
            throw new InvalidOperationException($"IORING_REGISTER_PBUF_RING failed: errno {Native.Errno}");
        for (ushort b = 0; b < BufferCount; b++) ProvideBuffer(b);
        PublishBuffers();
    }

    private static void ProvideBuffer(ushort bid)
    {
        byte* e = _bufRing + (_bufTail & (BufferCount - 1)) * 16;
        *(ulong*)e = (ulong)(_buffers + (nint)bid * BufferSize);
        *(uint*)(e + 8) = BufferSize;
        *(ushort*)(e + 12) = bid;
        _bufTail++;
    }

    private static void PublishBuffers() => Volatile.Write(ref *(ushort*)(_bufRing + 14), _bufTail);

    private static byte* NextSqe()
    {
        if (_sqLocalTail - Volatile.Read(ref *_sqHead) >= SqEntries - 1)
        {
            // The SQ is full (never under this load): submit what is queued without waiting.
            Volatile.Write(ref *_sqTail, _sqLocalTail);
            nint r = Native.syscall(SysEnter, _ring, (nint)(_sqLocalTail - _sqSubmitted), 0, 0, 0, 0);
            if (r > 0) _sqSubmitted += (uint)r;
        }
        byte* sqe = _sqes + (_sqLocalTail & _sqMask) * 64;
        new Span<byte>(sqe, 64).Clear();
        _sqLocalTail++;
        return sqe;
    }

    private static void QueueAccept(int lfd)
    {
        byte* sqe = NextSqe();
        sqe[0] = OpAccept;
        *(int*)(sqe + 4) = lfd;
        *(ushort*)(sqe + 2) = AcceptMultishot;   // ioprio carries the accept flags
        *(uint*)(sqe + 28) = 0x80000;            // SOCK_CLOEXEC
        *(ulong*)(sqe + 32) = KindAccept | (uint)lfd;
    }

    private static void QueueRecv(int fd)
    {
        byte* sqe = NextSqe();
        sqe[0] = OpRecv;
        sqe[1] = SqeBufferSelect;
        *(ushort*)(sqe + 2) = RecvMultishot;
        *(int*)(sqe + 4) = fd;
        *(ulong*)(sqe + 32) = KindRecv | (uint)fd;
        *(ushort*)(sqe + 40) = BufferGroup;
        Receiving[fd] = true;
    }

    private static void QueueSend(int fd, byte* data, int length)
    {
        byte* sqe = NextSqe();
        sqe[0] = OpSend;
        *(int*)(sqe + 4) = fd;
        *(ulong*)(sqe + 16) = (ulong)data;
        *(uint*)(sqe + 24) = (uint)length;
        *(uint*)(sqe + 28) = 0x4000; // MSG_NOSIGNAL
        *(ulong*)(sqe + 32) = KindSend | (uint)fd;
        Sending[fd] = true;
        SendLeft[fd] = length;
        SendFrom[fd] = (nint)data;
    }

    /// <summary>Starts the next send if none is in flight: up to MaxBatch owed responses, from the shared block.</summary>
    private static void StartSend(int fd)
    {
        if (Sending[fd] || Owed[fd] == 0) return;
        int batch = Math.Min(Owed[fd], 64);
        Owed[fd] -= batch;
        QueueSend(fd, Program.Responses, batch * Program.ResponseLength);
    }

    private static void Reap(int lfd)
    {
        uint head = *_cqHead;
        uint tail = Volatile.Read(ref *_cqTail);
        bool buffersReturned = false;
        while (head != tail)
        {
            byte* cqe = _cqes + (head & _cqMask) * 16;
            ulong data = *(ulong*)cqe;
            int res = *(int*)(cqe + 8);
            uint flags = *(uint*)(cqe + 12);
            int fd = (int)(uint)data;
            switch (data & (0xFFUL << 56))
            {
                case KindAccept:
                    if (res >= 0)
                    {
                        if (res >= MaxFd) { Native.close(res); break; }
                        State[res] = 0; Owed[res] = 0; Sending[res] = false; Closing[res] = false;
                        Native.NoDelay(res);
                        QueueRecv(res);
                    }
                    if ((flags & CqeFMore) == 0 && !Program.Stopping) QueueAccept(lfd); // the multishot accept ended: re-arm
                    break;
                case KindRecv:
                    if ((flags & CqeFBuffer) != 0)
                    {
                        ushort bid = (ushort)(flags >> 16);
                        if (res > 0) Owed[fd] += Program.CountRequests(_buffers + (nint)bid * BufferSize, res, ref State[fd]);
                        ProvideBuffer(bid); // the bytes are counted: the buffer goes straight back to the kernel
                        buffersReturned = true;
                    }
                    if ((flags & CqeFMore) == 0) Receiving[fd] = false;
                    if (res > 0) StartSend(fd);
                    else if (res == -Native.ENOBUFS) { } // the ring ran dry; re-armed below once buffers are back
                    else Closing[fd] = true;             // EOF or an error
                    if (!Receiving[fd] && !Closing[fd]) QueueRecv(fd);
                    break;
                case KindSend:
                    Sending[fd] = false;
                    if (res < 0) Closing[fd] = true;
                    else if (res < SendLeft[fd])
                    {
                        // A short send: the rest goes next, before any later response.
                        QueueSend(fd, (byte*)SendFrom[fd] + res, SendLeft[fd] - res);
                    }
                    else StartSend(fd);
                    break;
            }
            if (Closing[fd] && !Receiving[fd] && !Sending[fd] && (data & (0xFFUL << 56)) != KindAccept)
            {
                Closing[fd] = false; // exactly once: the last of its operations has completed
                Native.close(fd);
            }
            head++;
        }
        Volatile.Write(ref *_cqHead, head);
        if (buffersReturned) PublishBuffers();
    }
}
