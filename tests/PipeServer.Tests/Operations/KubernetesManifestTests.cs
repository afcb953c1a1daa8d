using System.Globalization;
using PipeServer.Admin;
using PipeServer.Cli;
using PipeServer.Server;
using Xunit;
using YamlDotNet.RepresentationModel;

namespace PipeServer.Tests.Operations;

// deploy/kubernetes.yaml, read as YAML (YamlDotNet) and checked against the server itself: every flag and
// PIPESERVER_* variable it sets is one the executable has, parsed by the executable's own CommandLine (so its
// defaults apply where the manifest is silent), the probes are on the admin port, and the grace period
// covers the longest shutdown the server can take.
public class KubernetesManifestTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "PipeServer.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("no PipeServer.sln above " + AppContext.BaseDirectory);
    }

    private static string ManifestText => File.ReadAllText(Path.Combine(Root, "deploy", "kubernetes.yaml"));

    private static List<YamlMappingNode> Documents()
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(ManifestText));
        return stream.Documents.Select(d => (YamlMappingNode)d.RootNode).ToList();
    }

    private static YamlMappingNode Kind(string kind) => Assert.Single(Documents(), d => Scalar(d, "kind") == kind);

    private static YamlNode Path_(YamlNode node, params string[] keys)
    {
        foreach (var key in keys)
        {
            var map = Assert.IsType<YamlMappingNode>(node);
            Assert.True(map.Children.TryGetValue(new YamlScalarNode(key), out var next), $"no '{key}' in the manifest");
            node = next;
        }
        return node;
    }

    private static string Scalar(YamlNode node, params string[] keys) => Assert.IsType<YamlScalarNode>(Path_(node, keys)).Value!;
    private static bool Has(YamlNode node, string key) => node is YamlMappingNode map && map.Children.ContainsKey(new YamlScalarNode(key));
    private static double Number(YamlNode node, params string[] keys) => double.Parse(Scalar(node, keys), CultureInfo.InvariantCulture);

    private static YamlMappingNode Container() =>
        (YamlMappingNode)Assert.Single(((YamlSequenceNode)Path_(Kind("Deployment"), "spec", "template", "spec", "containers")).Children);

    private static string[] Args() => ((YamlSequenceNode)Path_(Container(), "args")).Children.Select(n => ((YamlScalarNode)n).Value!).ToArray();

    private static Dictionary<string, string?> Env() =>
        ((YamlSequenceNode)Path_(Container(), "env")).Children.ToDictionary(e => Scalar(e, "name"), e => (string?)Scalar(e, "value"));

    /// <summary>The manifest's container, as the executable would read its arguments and environment.</summary>
    private static ExecutableOptions Options() => CommandLine.Parse(Args(), Env())!;

    private static int ContainerPort(string name) =>
        (int)Number(Assert.Single(((YamlSequenceNode)Path_(Container(), "ports")).Children, p => Scalar(p, "name") == name), "containerPort");

    /// <summary>A probe's port: a port name of the container resolved to its number, or a number.</summary>
    private static int ProbePort(string probe)
    {
        var port = Scalar(Container(), probe, "httpGet", "port");
        return int.TryParse(port, out int n) ? n : ContainerPort(port);
    }

    [Fact]
    public void Every_flag_and_variable_is_one_the_server_has_and_the_container_ports_are_the_ones_it_listens_on()
    {
        var usage = CommandLine.Usage();
        foreach (var flag in Args().Where(a => a.StartsWith("--", StringComparison.Ordinal)))
            Assert.Contains("  " + flag + " ", usage);
        // CommandLine ignores PIPESERVER_ variables it does not know: a misspelt one would silently do nothing.
        foreach (var name in Env().Keys.Where(k => k.StartsWith("PIPESERVER_", StringComparison.Ordinal)))
            Assert.Contains("  --" + name["PIPESERVER_".Length..].ToLowerInvariant().Replace('_', '-') + " ", usage);

        var options = Options();
        Assert.Equal(ContainerPort("http"), options.Server.Port);
        Assert.NotNull(options.Admin);
        Assert.Equal(ContainerPort("admin"), options.Admin!.Port);
        Assert.True(options.Server.DrainDelay > TimeSpan.Zero, "no drain delay: balancers would send to a pod that stopped accepting");
    }

    [Fact]
    public void Readiness_and_liveness_probe_the_admin_port()
    {
        int admin = Options().Admin!.Port;
        Assert.Equal("/readyz", Scalar(Container(), "readinessProbe", "httpGet", "path"));
        Assert.Equal("/healthz", Scalar(Container(), "livenessProbe", "httpGet", "path"));
        Assert.Equal(admin, ProbePort("readinessProbe"));
        Assert.Equal(admin, ProbePort("livenessProbe"));
        // The Service sends traffic to the traffic port, never to the admin one.
        var service = Kind("Service");
        var target = Scalar(Assert.Single(((YamlSequenceNode)Path_(service, "spec", "ports")).Children), "targetPort");
        Assert.Equal(Options().Server.Port, int.TryParse(target, out int n) ? n : ContainerPort(target));
    }

    [Fact]
    public void One_slow_probe_does_not_take_a_pod_out_and_liveness_is_the_more_patient()
    {
        var container = Container();
        double Setting(string probe, string key, double kubernetesDefault) =>
            Has(Path_(container, probe), key) ? Number(container, probe, key) : kubernetesDefault;
        foreach (var probe in (string[])["readinessProbe", "livenessProbe"])
        {
            Assert.True(Setting(probe, "timeoutSeconds", 1) >= 2, $"{probe}: a 1 s timeout fails on a pause every pod sees at once");
            Assert.True(Setting(probe, "failureThreshold", 3) >= 2, $"{probe}: one failed probe must not be enough");
        }
        double Tolerance(string probe) => Setting(probe, "periodSeconds", 10) * Setting(probe, "failureThreshold", 3);
        Assert.True(Tolerance("livenessProbe") > Tolerance("readinessProbe"), "a restart must need longer than taking the pod out of the Service");
    }

    [Fact]
    public void The_grace_period_covers_drain_delay_shutdown_timeout_abort_grace_and_the_admin_close()
    {
        var options = Options();
        var spec = Path_(Kind("Deployment"), "spec", "template", "spec");
        // A preStop hook runs before SIGTERM and its time counts against the same grace period.
        double preStop = Has(Container(), "lifecycle") && Has(Path_(Container(), "lifecycle"), "preStop")
            ? Number(Container(), "lifecycle", "preStop", "sleep", "seconds") : 0;
        var bound = options.Server.DrainDelay + options.Server.ShutdownTimeout + HttpServer.AbortGrace + AdminListener.StopBound + TimeSpan.FromSeconds(preStop);
        double grace = Number(spec, "terminationGracePeriodSeconds");
        Assert.True(grace >= bound.TotalSeconds, $"terminationGracePeriodSeconds {grace} < {bound.TotalSeconds}: the kubelet's SIGKILL would cut the shutdown");
        // The comment's arithmetic is the code's.
        Assert.Contains($"abort grace ({HttpServer.AbortGrace.TotalSeconds.ToString(CultureInfo.InvariantCulture)})", ManifestText);
        Assert.Contains($"admin close ({AdminListener.StopBound.TotalSeconds.ToString(CultureInfo.InvariantCulture)}) = {bound.TotalSeconds.ToString(CultureInfo.InvariantCulture)}", ManifestText);
    }
}
