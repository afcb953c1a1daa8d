using System.Collections;

namespace PipeServer.Http;

/// <summary>
/// An ordered list of header fields: names compare case-insensitively, repeated fields are kept in the
/// order they arrived (RFC 9110 §5.3). Reused for later requests (pooled with the request and response): do not keep it.
/// </summary>
public sealed class HttpHeaders : IEnumerable<KeyValuePair<string, string>>
{
    private readonly List<KeyValuePair<string, string>> _fields = []; // grows on first use: an idle connection holds no array

    /// <summary>The number of fields.</summary>
    public int Count => _fields.Count;

    /// <summary>The field at <paramref name="index"/>, in order.</summary>
    public KeyValuePair<string, string> this[int index] => _fields[index];

    /// <summary>Appends a field (another of the same name is kept).</summary>
    public void Add(string name, string value) => _fields.Add(new(name, value));

    /// <summary>Replaces every field of that name with one field.</summary>
    public void Set(string name, string value)
    {
        Remove(name);
        _fields.Add(new(name, value));
    }

    /// <summary>Removes every field of that name; false when there was none.</summary>
    public bool Remove(string name)
    {
        bool removed = false;
        for (int i = _fields.Count - 1; i >= 0; i--)
        {
            if (!string.Equals(_fields[i].Key, name, StringComparison.OrdinalIgnoreCase)) continue;
            _fields.RemoveAt(i);
            removed = true;
        }
        return removed;
    }

    /// <summary>True when a field of that name is present.</summary>
    public bool Contains(string name) => IndexOf(name) >= 0;

    /// <summary>The first value of that name, or null.</summary>
    public string? this[string name]
    {
        get { int i = IndexOf(name); return i < 0 ? null : _fields[i].Value; }
    }

    /// <summary>Every value of that name, in order.</summary>
    public IEnumerable<string> GetValues(string name)
    {
        foreach (var f in _fields)
            if (string.Equals(f.Key, name, StringComparison.OrdinalIgnoreCase)) yield return f.Value;
    }

    /// <summary>Removes every field.</summary>
    public void Clear() => _fields.Clear();

    private int IndexOf(string name)
    {
        for (int i = 0; i < _fields.Count; i++)
            if (string.Equals(_fields[i].Key, name, StringComparison.OrdinalIgnoreCase)) return i;
        return -1;
    }

    /// <summary>Enumerates the fields in order, without allocating.</summary>
    public List<KeyValuePair<string, string>>.Enumerator GetEnumerator() => _fields.GetEnumerator();
    IEnumerator<KeyValuePair<string, string>> IEnumerable<KeyValuePair<string, string>>.GetEnumerator() => GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
