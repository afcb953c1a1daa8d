using PipeServer.StaticFiles;
using Xunit;

namespace PipeServer.Tests.StaticFiles;

// Unit tests of the precondition order of RFC 9110 §13.2.2 and of If-Range (§13.1.5).
public class ConditionalsTests
{
    private const string ETag = "\"2a-8df508f132e809a\"";
    private static readonly DateTimeOffset Modified = new(2026, 12, 2, 10, 0, 0, 500, TimeSpan.Zero); // sub-second part on purpose
    private const string ModifiedText = "Wed, 02 Dec 2026 10:00:00 GMT";
    private const string Before = "Wed, 02 Dec 2026 09:59:59 GMT";
    private const string After = "Wed, 02 Dec 2026 10:00:01 GMT";

    private static ConditionalOutcome Eval(string? ifMatch = null, string? ifUnmodifiedSince = null, string? ifNoneMatch = null, string? ifModifiedSince = null, bool getOrHead = true) =>
        Conditionals.Evaluate(ifMatch, ifUnmodifiedSince, ifNoneMatch, ifModifiedSince, ETag, Modified, getOrHead);

    [Fact] public void No_conditions_proceed() => Assert.Equal(ConditionalOutcome.Proceed, Eval());

    [Theory]
    [InlineData(ETag)]
    [InlineData("*")]
    [InlineData("\"other\", " + ETag)]
    [InlineData("\"other\"," + ETag + ",\"third\"")]
    [InlineData("W/" + ETag)]                    // If-None-Match compares weakly
    [InlineData("\"a,b\", " + ETag)]             // a comma inside a tag does not split it
    public void If_None_Match_that_matches_is_304(string value) => Assert.Equal(ConditionalOutcome.NotModified, Eval(ifNoneMatch: value));

    [Theory]
    [InlineData("\"other\"")]
    [InlineData("\"2a-8df508f132e809b\"")]
    [InlineData("2a-8df508f132e809a")]           // unquoted: malformed, matches nothing
    [InlineData("\"unterminated")]
    public void If_None_Match_that_does_not_match_proceeds(string value) => Assert.Equal(ConditionalOutcome.Proceed, Eval(ifNoneMatch: value));

    [Fact]
    public void If_None_Match_takes_precedence_over_If_Modified_Since()
    {
        // Not modified by date, but the tag differs: the tag decides (§13.1.3).
        Assert.Equal(ConditionalOutcome.Proceed, Eval(ifNoneMatch: "\"other\"", ifModifiedSince: After));
        // And the other way round.
        Assert.Equal(ConditionalOutcome.NotModified, Eval(ifNoneMatch: ETag, ifModifiedSince: Before));
    }

    [Theory]
    [InlineData(ModifiedText, ConditionalOutcome.NotModified)]   // equal at one-second resolution
    [InlineData(After, ConditionalOutcome.NotModified)]
    [InlineData(Before, ConditionalOutcome.Proceed)]
    [InlineData("Wednesday, 02-Dec-26 10:00:00 GMT", ConditionalOutcome.NotModified)] // RFC 850 form
    [InlineData("Wed Dec  2 10:00:00 2026", ConditionalOutcome.NotModified)]          // asctime form
    [InlineData("yesterday", ConditionalOutcome.Proceed)]                             // invalid: ignored
    public void If_Modified_Since(string value, object expected) => Assert.Equal((ConditionalOutcome)expected, Eval(ifModifiedSince: value));

    [Fact]
    public void If_Modified_Since_is_only_for_GET_and_HEAD() =>
        Assert.Equal(ConditionalOutcome.Proceed, Eval(ifModifiedSince: After, getOrHead: false));

    [Fact]
    public void If_Match_compares_strongly_and_fails_with_412()
    {
        Assert.Equal(ConditionalOutcome.Proceed, Eval(ifMatch: ETag));
        Assert.Equal(ConditionalOutcome.Proceed, Eval(ifMatch: "*"));
        Assert.Equal(ConditionalOutcome.PreconditionFailed, Eval(ifMatch: "W/" + ETag));
        Assert.Equal(ConditionalOutcome.PreconditionFailed, Eval(ifMatch: "\"other\""));
    }

    [Fact]
    public void If_Unmodified_Since()
    {
        Assert.Equal(ConditionalOutcome.PreconditionFailed, Eval(ifUnmodifiedSince: Before));
        Assert.Equal(ConditionalOutcome.Proceed, Eval(ifUnmodifiedSince: ModifiedText));
        Assert.Equal(ConditionalOutcome.Proceed, Eval(ifMatch: ETag, ifUnmodifiedSince: Before)); // If-Match present: ignored
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData(ETag, true)]
    [InlineData("W/" + ETag, false)]         // a weak tag never matches in If-Range
    [InlineData("\"other\"", false)]
    [InlineData(ModifiedText, true)]         // exactly the Last-Modified date
    [InlineData(After, false)]               // a later date is not "exactly"
    [InlineData(Before, false)]
    [InlineData("garbage", false)]
    public void If_Range(string? value, bool rangeApplies) => Assert.Equal(rangeApplies, Conditionals.IfRangeAllows(value, ETag, Modified));

    [Fact]
    public void The_ETag_changes_with_size_and_with_mtime()
    {
        var a = Conditionals.ETagFor(42, Modified);
        Assert.StartsWith("\"", a);
        Assert.EndsWith("\"", a);
        Assert.NotEqual(a, Conditionals.ETagFor(43, Modified));
        Assert.NotEqual(a, Conditionals.ETagFor(42, Modified.AddTicks(1))); // within the same second too
    }
}
