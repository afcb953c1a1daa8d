using System.Text.RegularExpressions;
using Xunit;

namespace PipeServer.Tests.Operations;

// Issue 10, "Shipped configurations that hurt", read from the shipped files themselves. ./build.sh lb-test
// proves the behaviour with the real HAProxy and nginx; these guard the exact findings on any machine,
// where those tools may be missing: a directive that came back would be caught here first.
public class BalancerConfigTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PipeServer.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("no PipeServer.sln above " + AppContext.BaseDirectory);
    }

    /// <summary>The file's directives: comments and blank lines dropped, whitespace collapsed.</summary>
    private static string[] Directives(string file) =>
        File.ReadAllLines(Path.Combine(Root, "deploy", file))
            .Select(l => (l.Contains('#') ? l[..l.IndexOf('#')] : l).Trim())
            .Where(l => l.Length > 0)
            .Select(l => Regex.Replace(l, @"\s+", " "))
            .ToArray();

    private static string[] Words(string directive) => directive.TrimEnd(';').Split(' ')[1..];

    [Fact]
    public void Nginx_retries_a_refused_connect_and_never_turns_retries_off_or_replays_a_post()
    {
        var next = Assert.Single(Directives("nginx-pipeserver.conf.template"), d => d.StartsWith("proxy_next_upstream ", StringComparison.Ordinal));
        var words = Words(next);
        Assert.Contains("error", words);                   // a stopped instance's refused connect goes to the other one
        Assert.DoesNotContain("off", words);               // "off" anywhere in the list is off for the whole directive
        Assert.DoesNotContain("non_idempotent", words);    // it means "do pass POSTs on"
    }

    [Fact]
    public void Haproxy_replays_only_safe_methods_never_on_a_timeout_and_keeps_its_httplog_lines()
    {
        var d = Directives("haproxy.cfg");
        var retryOn = Words(Assert.Single(d, l => l.StartsWith("retry-on ", StringComparison.Ordinal)));
        Assert.Contains("conn-failure", retryOn);
        Assert.DoesNotContain("response-timeout", retryOn); // a slow request would run again on the other server
        Assert.DoesNotContain("all-retryable-errors", retryOn);
        // Layer-7 retries (anything beyond conn-failure) limited to GET and HEAD.
        if (retryOn.Any(w => w != "conn-failure"))
            Assert.Contains("http-request disable-l7-retry unless METH_GET || METH_HEAD", d);
        // option httplog writes at info: a log line filtered to warning or above drops every request line.
        Assert.Contains("option httplog", d);
        var log = Assert.Single(d, l => l.StartsWith("log stdout", StringComparison.Ordinal) || (l.StartsWith("log ", StringComparison.Ordinal) && l != "log global"));
        Assert.Matches(@"\b(info|debug)$", log);
    }
}
