using PipeServer.StaticFiles;
using Xunit;

namespace PipeServer.Tests.StaticFiles;

// Unit tests of the Range parser (RFC 9110 §14.1–14.2) against a 10 000-byte representation unless said.
public class ByteRangesTests
{
    private static (RangeOutcome Outcome, List<ByteRange> Ranges) Parse(string header, long length = 10_000, int max = 16)
    {
        var ranges = new List<ByteRange>();
        return (ByteRanges.Parse(header, length, max, ranges), ranges);
    }

    [Theory]
    [InlineData("bytes=0-499", 0, 499)]
    [InlineData("bytes=500-999", 500, 999)]
    [InlineData("bytes=-500", 9500, 9999)]          // suffix
    [InlineData("bytes=9500-", 9500, 9999)]         // open
    [InlineData("bytes=0-0", 0, 0)]
    [InlineData("bytes=-1", 9999, 9999)]
    [InlineData("bytes=0-999999999", 0, 9999)]      // end past the length: the last byte
    [InlineData("bytes=-20000", 0, 9999)]           // suffix longer than the file: all of it
    [InlineData("BYTES=1-2", 1, 2)]                 // the unit is case-insensitive
    [InlineData("bytes= 1-2 ", 1, 2)]               // OWS around list elements
    [InlineData("bytes=1-2, ", 1, 2)]               // an empty list element counts for nothing
    [InlineData("bytes=20000-30000, 5-6", 5, 6)]    // the unsatisfiable one is dropped
    public void A_single_satisfiable_range(string header, long first, long last)
    {
        var (outcome, ranges) = Parse(header);
        Assert.Equal(RangeOutcome.Partial, outcome);
        Assert.Equal([new ByteRange(first, last)], ranges);
    }

    [Theory]
    [InlineData("bytes=10000-")]
    [InlineData("bytes=10000-20000")]
    [InlineData("bytes=-0")]
    [InlineData("bytes=10000-10001, 20000-")]
    public void Nothing_inside_the_representation_is_unsatisfiable(string header) =>
        Assert.Equal(RangeOutcome.Unsatisfiable, Parse(header).Outcome);

    [Fact]
    public void Every_range_of_an_empty_file_is_unsatisfiable()
    {
        Assert.Equal(RangeOutcome.Unsatisfiable, Parse("bytes=0-", length: 0).Outcome);
        Assert.Equal(RangeOutcome.Unsatisfiable, Parse("bytes=-5", length: 0).Outcome);
    }

    [Theory]
    [InlineData("items=0-1")]           // an unknown unit is ignored (a MUST)
    [InlineData("bytes")]
    [InlineData("bytes=")]
    [InlineData("bytes=a-b")]
    [InlineData("bytes=5-1")]           // last < first: invalid, not unsatisfiable
    [InlineData("bytes=1-2;x")]
    [InlineData("bytes=--1")]
    [InlineData("bytes=1")]
    [InlineData("bytes=+1-2")]
    [InlineData("bytes=1234567890123456789-")] // more digits than a long: bad syntax, not a wrap-around
    [InlineData("bytes=0-1,a")]         // one bad element spoils the whole field
    public void Bad_syntax_or_unknown_unit_means_the_whole_file(string header) =>
        Assert.Equal(RangeOutcome.Whole, Parse(header).Outcome);

    [Fact]
    public void Several_ranges_are_kept_in_order()
    {
        var (outcome, ranges) = Parse("bytes=0-9, 100-109, -10");
        Assert.Equal(RangeOutcome.Partial, outcome);
        Assert.Equal([new ByteRange(0, 9), new ByteRange(100, 109), new ByteRange(9990, 9999)], ranges);
    }

    [Fact]
    public void More_ranges_than_the_bound_give_the_whole_file()
    {
        Assert.Equal(RangeOutcome.Partial, Parse(string.Join(",", Enumerable.Range(0, 16).Select(i => $"{i * 10}-{i * 10 + 1}")).Insert(0, "bytes="), max: 16).Outcome);
        Assert.Equal(RangeOutcome.Whole, Parse("bytes=" + string.Join(",", Enumerable.Range(0, 17).Select(i => $"{i * 10}-{i * 10 + 1}")), max: 16).Outcome);
    }

    [Fact]
    public void Overlapping_ranges_adding_up_to_more_than_the_file_give_the_whole_file() =>
        Assert.Equal(RangeOutcome.Whole, Parse("bytes=0-, 0-, 0-", length: 100).Outcome);
}
