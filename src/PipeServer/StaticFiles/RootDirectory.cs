using System.Text;
using Microsoft.Win32.SafeHandles;

namespace PipeServer.StaticFiles;

// Where this sits: owned by one StaticFileHandler; the descriptor FileOpener.OpenBeneath opens files beneath.
// Held open between requests, and checked on every one: one statx of the root's path (device, inode) against
// the held descriptor's. A directory moved into the root's place (a deploy that renames) is noticed on the next
// request and reopened; the old descriptor is closed once no request uses it (SafeHandle's reference count).
// Nothing about a file is kept here, only which directory the root path names.

internal sealed class RootDirectory : IDisposable
{
    private sealed record Held(SafeFileHandle Handle, ulong Device, ulong Inode);

    private readonly byte[] _pathZ;    // the real root, UTF-8, NUL-terminated
    private readonly Lock _reopen = new();
    private volatile Held? _held;

    public RootDirectory(string realRoot)
    {
        _pathZ = Encoding.UTF8.GetBytes(realRoot + "\0");
    }

    /// <summary>
    /// The descriptor of the directory the root path names now, or null when it cannot be used (gone, a link
    /// now, no openat2 here): the caller then resolves by path, which fails the same way the open would.
    /// </summary>
    public SafeFileHandle? Current()
    {
        if (!FileOpener.IsNative || !FileOpener.Identity(_pathZ, out ulong device, out ulong inode)) return null;
        var held = _held;
        if (held is not null && held.Device == device && held.Inode == inode) return held.Handle;
        lock (_reopen)
        {
            held = _held;
            if (held is not null && held.Device == device && held.Inode == inode) return held.Handle;
            var handle = FileOpener.OpenDirectoryPath(_pathZ);
            if (handle is null) return null;
            if (!FileOpener.Identity(handle, out device, out inode)) { handle.Dispose(); return null; }
            _held = new Held(handle, device, inode);
            held?.Handle.Dispose(); // closed when the last request using it releases it
            return handle;
        }
    }

    public void Dispose() => _held?.Handle.Dispose();
}
