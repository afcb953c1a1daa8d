using System.Collections;
using System.Diagnostics.CodeAnalysis;

namespace PipeServer.Http;

// Where this sits: on the request, filled by the router (Routing/Router.cs) when a template such as
// "/users/{id}" matched, read by the handler. Pooled with the request itself (Connections/RequestObjects.cs), cleared
// per request: a literal route never touches it, so it costs nothing on the hot path.

/// <summary>
/// The values of a matched route template's parameters, by name (case-insensitive), percent-decoded.
/// Reused for a later request: copy a value (it is a string) rather than keep the collection.
/// </summary>
public sealed class RouteValues : IReadOnlyDictionary<string, string>
{
    // A template has a handful of parameters: a list beats a dictionary here, and is reused with the request.
    private readonly List<KeyValuePair<string, string>> _values = [];

    /// <summary>The number of parameters the matched template has.</summary>
    public int Count => _values.Count;

    /// <summary>The value of <paramref name="name"/>; a <see cref="KeyNotFoundException"/> when the route has no such parameter.</summary>
    public string this[string name] => TryGetValue(name, out var value) ? value : throw new KeyNotFoundException($"The matched route has no parameter '{name}'.");

    /// <summary>The value of <paramref name="name"/> (case-insensitive), if the matched template has that parameter.</summary>
    public bool TryGetValue(string name, [MaybeNullWhen(false)] out string value)
    {
        foreach (var (key, v) in _values)
        {
            if (string.Equals(key, name, StringComparison.OrdinalIgnoreCase)) { value = v; return true; }
        }
        value = null;
        return false;
    }

    /// <summary>True when the matched template has a parameter of that name.</summary>
    public bool ContainsKey(string name) => TryGetValue(name, out _);
    /// <summary>The parameter names, in template order.</summary>
    public IEnumerable<string> Keys => _values.Select(kv => kv.Key);
    /// <summary>The values, in template order.</summary>
    public IEnumerable<string> Values => _values.Select(kv => kv.Value);
    /// <summary>Enumerates (name, value) in template order.</summary>
    public IEnumerator<KeyValuePair<string, string>> GetEnumerator() => _values.GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    internal void Add(string name, string value) => _values.Add(new(name, value));

    internal void Clear()
    {
        if (_values.Count > 0) _values.Clear();
    }
}
