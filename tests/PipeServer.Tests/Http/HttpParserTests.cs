using PipeServer.Http;
using Xunit;
using static PipeServer.Tests.Http.HeadParsing;

namespace PipeServer.Tests.Http;

// Every case runs through every feed in HeadParsing.Feeds: whole, one byte per read, one byte per
// segment, and 7-byte reads split into single-byte segments. The result must not depend on the split.
public class HttpParserTests
{
    private static Outcome ParseEveryWay(string input)
    {
        Outcome? first = null;
        foreach (var (chunk, segments) in Feeds)
        {
            var outcome = Parse(input, chunk, segments);
            if (first is null) { first = outcome; continue; }
            Assert.Equal(first.Complete, outcome.Complete);
            Assert.Equal(first.Reason, outcome.Reason);
            Assert.Equal(first.Consumed, outcome.Consumed);
            if (first.Complete)
            {
                Assert.Equal(first.Head.Target, outcome.Head.Target);
                Assert.Equal(first.Head.Headers.ToList(), outcome.Head.Headers.ToList());
            }
        }
        return first!;
    }

    [Fact]
    public void Parses_a_simple_get()
    {
        var o = ParseEveryWay("GET /path/x?a=1&b=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
        Assert.True(o.Complete);
        Assert.Equal(PipeServer.Http.HttpMethod.Get, o.Head.Method);
        Assert.Equal("/path/x?a=1&b=2", o.Head.Target);
        Assert.Equal("/path/x", o.Head.Path);
        Assert.Equal("a=1&b=2", o.Head.Query);
        Assert.Equal(HttpVersion.Http11, o.Head.Version);
        Assert.Equal("example.com", o.Head.Headers["host"]);
        Assert.True(o.Head.KeepAlive);
        Assert.Equal(-1, o.Head.ContentLength);
    }

    [Fact]
    public void Stops_exactly_at_the_end_of_the_head()
    {
        const string head = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
        var o = ParseEveryWay(head + "hello");
        Assert.True(o.Complete);
        Assert.Equal(head.Length, o.Consumed);
        Assert.Equal(5, o.Head.ContentLength);
    }

    [Fact]
    public void Keeps_repeated_fields_in_order_and_names_case_insensitive()
    {
        var o = ParseEveryWay("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nX-B:3\r\nX-A:  4 \t\r\n\r\n");
        Assert.True(o.Complete);
        Assert.Equal(["1", "2", "4"], o.Head.Headers.GetValues("X-A"));
        Assert.Equal("3", o.Head.Headers["x-b"]);
    }

    [Fact]
    public void Incomplete_input_asks_for_more()
    {
        var o = ParseEveryWay("GET / HTTP/1.1\r\nHost: a\r\n");
        Assert.False(o.Complete);
        Assert.Equal(RequestRejectionReason.None, o.Reason);
    }

    [Theory]
    [InlineData("GET / HTTP/1.0\r\n\r\n", false)]
    [InlineData("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, Upgrade\r\n\r\n", true)]
    [InlineData("GET / HTTP/1.2\r\nHost: a\r\n\r\n", true)]
    public void Decides_keep_alive_by_version_and_connection(string request, bool keepAlive)
    {
        var o = ParseEveryWay(request);
        Assert.True(o.Complete);
        Assert.Equal(keepAlive, o.Head.KeepAlive);
    }

    [Fact]
    public void A_higher_minor_version_is_served_as_1_1()
    {
        var o = ParseEveryWay("GET / HTTP/1.7\r\nHost: a\r\n\r\n");
        Assert.True(o.Complete);
        Assert.Equal(HttpVersion.Http11, o.Head.Version);
    }

    [Theory]
    [InlineData("GET http://example.com/a/b?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", "/a/b", "q=1", RequestTargetForm.Absolute)]
    [InlineData("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "/", "", RequestTargetForm.Absolute)]
    [InlineData("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "*", "", RequestTargetForm.Asterisk)]
    [InlineData("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "example.com:443", "", RequestTargetForm.Authority)]
    [InlineData("GET /caf%C3%A9/a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n", "/café/a%2Fb", "", RequestTargetForm.Origin)]
    public void Parses_every_target_form(string request, string path, string query, RequestTargetForm form)
    {
        var o = ParseEveryWay(request);
        Assert.True(o.Complete);
        Assert.Equal(form, o.Head.TargetForm);
        Assert.Equal(path, o.Head.Path);
        Assert.Equal(query, o.Head.Query);
    }

    [Fact]
    public void Ignores_a_custom_method_token_but_keeps_its_name()
    {
        var o = ParseEveryWay("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.True(o.Complete);
        Assert.Equal(PipeServer.Http.HttpMethod.Custom, o.Head.Method);
        Assert.Equal("PURGE", o.Head.MethodName);
    }

    [Theory]
    // line endings: bare LF anywhere (CVE-2025-55315 class), bare CR
    [InlineData("GET / HTTP/1.1\nHost: a\r\n\r\n", RequestRejectionReason.InvalidLineEnding)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\n\r\n", RequestRejectionReason.InvalidLineEnding)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n\n", RequestRejectionReason.InvalidLineEnding)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", RequestRejectionReason.InvalidLineEnding)]
    [InlineData("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidLineEnding)]
    // request line
    [InlineData("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidMethod)]
    [InlineData(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidMethod)]
    [InlineData("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidRequestLine)]
    [InlineData("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidHttpVersion)]
    [InlineData("GET /\x7F HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidRequestTarget)]
    [InlineData("GET /\u00e9 HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidRequestTarget)]
    [InlineData("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidRequestTarget)]
    [InlineData("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidRequestTarget)]
    [InlineData("GET * HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidTargetForMethod)]
    [InlineData("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidTargetForMethod)]
    [InlineData("GET / HTTP/1.x\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidHttpVersion)]
    [InlineData("GET / HTTP/11\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidHttpVersion)]
    [InlineData("GET / http/1.1\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidHttpVersion)]
    [InlineData("GET /\r\nHost: a\r\n\r\n", RequestRejectionReason.InvalidRequestLine)]
    [InlineData("GET / HTTP/2.0\r\nHost: a\r\n\r\n", RequestRejectionReason.UnsupportedHttpVersion)]
    [InlineData("GET / HTTP/0.9\r\nHost: a\r\n\r\n", RequestRejectionReason.UnsupportedHttpVersion)]
    // header lines
    [InlineData("GET / HTTP/1.1\r\nHost : a\r\n\r\n", RequestRejectionReason.WhitespaceBeforeColon)]
    [InlineData("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", RequestRejectionReason.WhitespaceBeforeColon)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  continued\r\n\r\n", RequestRejectionReason.ObsoleteLineFolding)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n\tX: 1\r\n\r\n", RequestRejectionReason.ObsoleteLineFolding)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX(Y): 1\r\n\r\n", RequestRejectionReason.InvalidHeaderName)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", RequestRejectionReason.InvalidHeaderName)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", RequestRejectionReason.InvalidHeaderName)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", RequestRejectionReason.InvalidHeaderValue)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", RequestRejectionReason.InvalidHeaderValue)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nX: \x7F\r\n\r\n", RequestRejectionReason.InvalidHeaderValue)]
    // Host
    [InlineData("GET / HTTP/1.1\r\n\r\n", RequestRejectionReason.MissingHost)]
    [InlineData("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", RequestRejectionReason.MultipleHost)]
    [InlineData("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", RequestRejectionReason.InvalidHost)]
    [InlineData("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", RequestRejectionReason.InvalidHost)]
    // framing
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", RequestRejectionReason.ContentLengthWithTransferEncoding)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", RequestRejectionReason.ContentLengthWithTransferEncoding)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", RequestRejectionReason.MultipleContentLength)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", RequestRejectionReason.InvalidContentLength)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", RequestRejectionReason.InvalidContentLength)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", RequestRejectionReason.InvalidContentLength)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", RequestRejectionReason.InvalidContentLength)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", RequestRejectionReason.InvalidContentLength)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", RequestRejectionReason.InvalidContentLength)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", RequestRejectionReason.InvalidContentLength)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", RequestRejectionReason.FinalTransferCodingNotChunked)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", RequestRejectionReason.FinalTransferCodingNotChunked)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", RequestRejectionReason.FinalTransferCodingNotChunked)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", RequestRejectionReason.UnsupportedTransferCoding)]
    [InlineData("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", RequestRejectionReason.UnsupportedTransferCoding)]
    [InlineData("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", RequestRejectionReason.TransferEncodingInHttp10)]
    public void Rejects_with_a_typed_reason(string request, object expected)
    {
        var o = ParseEveryWay(request);
        Assert.False(o.Complete);
        Assert.Equal((RequestRejectionReason)expected, o.Reason);
    }

    [Theory]
    [InlineData(RequestRejectionReason.RequestLineTooLong, 414)]
    [InlineData(RequestRejectionReason.HeadersTooLarge, 431)]
    [InlineData(RequestRejectionReason.TooManyHeaders, 431)]
    [InlineData(RequestRejectionReason.BodyTooLarge, 413)]
    [InlineData(RequestRejectionReason.UnsupportedTransferCoding, 501)]
    [InlineData(RequestRejectionReason.UnsupportedHttpVersion, 505)]
    [InlineData(RequestRejectionReason.RequestHeadersTimeout, 408)]
    [InlineData(RequestRejectionReason.InvalidLineEnding, 400)]
    public void Maps_reasons_to_status_codes(object reason, int status) =>
        Assert.Equal(status, RequestRejection.StatusCodeFor((RequestRejectionReason)reason));

    [Fact]
    public void Rejects_a_request_line_over_the_limit_even_before_its_end_arrives()
    {
        var limits = new HttpParserLimits(MaxRequestLineSize: 64);
        var longTarget = "GET /" + new string('a', 100);
        foreach (var (chunk, segments) in Feeds)
        {
            Assert.Equal(RequestRejectionReason.RequestLineTooLong, Parse(longTarget, chunk, segments, limits).Reason);
            Assert.Equal(RequestRejectionReason.RequestLineTooLong, Parse(longTarget + " HTTP/1.1\r\nHost: a\r\n\r\n", chunk, segments, limits).Reason);
        }
        Assert.True(Parse("GET /" + new string('a', 40) + " HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits).Complete);
    }

    [Fact]
    public void Rejects_too_many_and_too_large_headers()
    {
        var limits = new HttpParserLimits(MaxRequestLineSize: 8192, MaxHeaderCount: 5, MaxHeaderBytes: 200);
        var many = "GET / HTTP/1.1\r\nHost: a\r\n" + string.Concat(Enumerable.Range(0, 5).Select(i => $"X-{i}: v\r\n")) + "\r\n";
        var large = "GET / HTTP/1.1\r\nHost: a\r\nX: " + new string('v', 300) + "\r\n\r\n";
        var largeUnterminated = "GET / HTTP/1.1\r\nHost: a\r\nX: " + new string('v', 300);
        foreach (var (chunk, segments) in Feeds)
        {
            Assert.Equal(RequestRejectionReason.TooManyHeaders, Parse(many, chunk, segments, limits).Reason);
            Assert.Equal(RequestRejectionReason.HeadersTooLarge, Parse(large, chunk, segments, limits).Reason);
            Assert.Equal(RequestRejectionReason.HeadersTooLarge, Parse(largeUnterminated, chunk, segments, limits).Reason);
        }
        var four = "GET / HTTP/1.1\r\nHost: a\r\n" + string.Concat(Enumerable.Range(0, 4).Select(i => $"X-{i}: v\r\n")) + "\r\n";
        Assert.True(Parse(four, limits: limits).Complete);
    }

    [Fact]
    public void Accepts_obs_text_and_tabs_in_values()
    {
        var o = ParseEveryWay("GET / HTTP/1.1\r\nHost: a\r\nX: caf\u00e9\tok\r\n\r\n");
        Assert.True(o.Complete);
        Assert.Equal("caf\u00e9\tok", o.Head.Headers["X"]);
    }

    [Fact]
    public void Recognises_expect_100_continue_and_chunked()
    {
        var o = ParseEveryWay("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        Assert.True(o.Complete);
        Assert.True(o.Head.ExpectContinue);
        Assert.True(o.Head.IsChunked);
    }
}
