using System.Net;
using System.Net.Sockets;
using System.Text;

namespace PipeServer.Benchmarks;

/// <summary>
/// Load tool for the idle-connection measurement (not a BenchmarkDotNet benchmark):
///   idle --port P --count N --hold SECONDS
/// opens N keep-alive connections to 127.0.0.1:P, sends one GET /plaintext on each and reads the answer,
/// prints "READY n" and keeps them open and silent for SECONDS, then closes them all.
/// </summary>
public static class IdleConnections
{
    public static async Task<int> RunAsync(string[] args)
    {
        int port = int.Parse(Arg(args, "--port"), System.Globalization.CultureInfo.InvariantCulture);
        int count = int.Parse(Arg(args, "--count"), System.Globalization.CultureInfo.InvariantCulture);
        int hold = int.Parse(Arg(args, "--hold"), System.Globalization.CultureInfo.InvariantCulture);
        var request = Encoding.ASCII.GetBytes("GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n");
        var sockets = new List<Socket>(count);
        var buffer = new byte[4096];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        try
        {
            for (int i = 0; i < count; i++)
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), deadline.Token);
                await s.SendAsync(request, SocketFlags.None, deadline.Token);
                int n = await s.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
                if (n == 0 || !buffer.AsSpan(0, n).StartsWith("HTTP/1.1 200"u8)) throw new InvalidOperationException($"connection {i}: no 200");
                sockets.Add(s);
            }
            Console.WriteLine($"READY {sockets.Count}");
            await Task.Delay(TimeSpan.FromSeconds(hold));
            return 0;
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine($"idle: {ex.Message} after {sockets.Count} connections");
            return 1;
        }
        finally
        {
            foreach (var s in sockets) s.Dispose();
        }
    }

    private static string Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        if (i < 0 || i + 1 >= args.Length) throw new ArgumentException($"missing {name}");
        return args[i + 1];
    }
}
