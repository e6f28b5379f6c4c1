#include "supervisor/proxy/http_body.h"

#include <doctest/doctest.h>

using namespace bulwark::proxy;

namespace {

// Feeds `in` whole, or one byte at a time; returns what was emitted and sets *used.
std::string feed(BodyFramer& f, std::string_view in, size_t* used, bool bytewise = false) {
  std::string out;
  *used = 0;
  if (!bytewise) {
    *used = f.feed(in, &out);
    return out;
  }
  for (size_t i = 0; i < in.size() && !f.done() && !f.failed(); ++i) *used += f.feed(in.substr(i, 1), &out);
  return out;
}

RequestHead head_of(std::string_view raw, RequestContext ctx = RequestContext::kProxy) {
  RequestParse r = parse_request_head(raw, kMaxHeadBytes, ctx);
  REQUIRE_MESSAGE(r.status == ParseStatus::kComplete, r.error);
  return r.head;
}

ResponseHead response_of(std::string_view raw) {
  ResponseParse r = parse_response_head(raw);
  REQUIRE_MESSAGE(r.status == ParseStatus::kComplete, r.error);
  return r.head;
}

}  // namespace

TEST_CASE("Content-Length bodies end after exactly that many bytes; the next request is left alone") {
  auto f = BodyFramer::length(5);
  size_t used = 0;
  CHECK(feed(f, "hel", &used) == "hel");
  CHECK(used == 3);
  CHECK_FALSE(f.done());
  CHECK(feed(f, "loGET / HTTP/1.1", &used) == "lo");
  CHECK(used == 2);
  CHECK(f.done());
  CHECK(feed(f, "more", &used).empty());
  CHECK(used == 0);
  CHECK(BodyFramer::length(0).done());
  CHECK(BodyFramer::none().done());
}

TEST_CASE("chunked request bodies are re-encoded canonically: extensions and trailers dropped") {
  const std::string in = "5;name=\"x\"\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-Trailer: sneaky\r\n\r\nGET /next HTTP/1.1\r\n";
  for (bool bytewise : {false, true}) {
    CAPTURE(bytewise);
    auto f = BodyFramer::chunked(true);
    size_t used = 0;
    std::string out = feed(f, in, &used, bytewise);
    CHECK(f.done());
    CHECK(out == "5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n");
    CHECK(in.substr(used) == "GET /next HTTP/1.1\r\n");
  }
}

TEST_CASE("chunked response bodies pass verbatim and are framed the same") {
  const std::string body = "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n";
  auto f = BodyFramer::chunked(false);
  size_t used = 0;
  CHECK(feed(f, body + "HTTP/1.1 200", &used) == body);
  CHECK(used == body.size());
  CHECK(f.done());
}

TEST_CASE("chunked framing refuses what a server might read differently") {
  struct Case {
    std::string in, error;
  };
  std::vector<Case> cases = {
      {"zz\r\n", "chunk size is not a hexadecimal number"},
      {"5\nhello\r\n", "unexpected character after the chunk size"},  // bare LF
      {"5\r\nhelloX\r\n", "chunk data not followed by CRLF"},
      {"5\r\nhello\rX", "chunk data not followed by CRLF"},
      {"1000000000000000\r\n", "chunk size too large"},
      {"-5\r\n", "chunk size is not a hexadecimal number"},
      {"5\r\r\n", "chunk size line not ended by CRLF"},
      {"5;a\x01\r\n", "control character in a chunk extension"},
      {"0\r\nBad\x01\r\n\r\n", "control character in the chunked trailer"},
      {"5;" + std::string(5000, 'a') + "\r\n", "chunk size line too long"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.in);
    auto f = BodyFramer::chunked(true);
    std::string out;
    f.feed(c.in, &out);
    CHECK(f.failed());
    CHECK(f.error() == c.error);
  }
}

TEST_CASE("until-close bodies take everything") {
  auto f = BodyFramer::until_close();
  size_t used = 0;
  CHECK(feed(f, "anything at all", &used) == "anything at all");
  CHECK_FALSE(f.done());
}

TEST_CASE("request framing: chunked only as the sole coding, Content-Length, or none") {
  std::string error;
  auto chunked = request_framing(head_of("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"), &error);
  REQUIRE(chunked);
  CHECK(chunked->kind() == BodyFramer::Kind::kChunked);
  auto len = request_framing(head_of("POST http://h/ HTTP/1.1\r\nContent-Length: 12\r\n\r\n"), &error);
  REQUIRE(len);
  CHECK(len->kind() == BodyFramer::Kind::kLength);
  CHECK(len->declared_length() == 12);
  auto none = request_framing(head_of("GET http://h/ HTTP/1.1\r\n\r\n"), &error);
  REQUIRE(none);
  CHECK(none->done());
  CHECK_FALSE(request_framing(head_of("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), &error));
  CHECK(error == "Transfer-Encoding other than plain \"chunked\" is not accepted on an inspected request");
  CHECK_FALSE(request_framing(
      head_of("POST http://h/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), &error));
}

TEST_CASE("response framing follows RFC 9112 6.3") {
  std::string error;
  auto kind = [&](std::string_view raw, std::string_view method = "GET") {
    auto f = response_framing(response_of(raw), method, &error);
    REQUIRE(f);
    return f->kind();
  };
  CHECK(kind("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD") == BodyFramer::Kind::kNone);
  CHECK(kind("HTTP/1.1 204 No Content\r\n\r\n") == BodyFramer::Kind::kNone);
  CHECK(kind("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n") == BodyFramer::Kind::kNone);
  CHECK(kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == BodyFramer::Kind::kChunked);
  CHECK(kind("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n") == BodyFramer::Kind::kUntilClose);
  CHECK(kind("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n") == BodyFramer::Kind::kLength);
  CHECK(kind("HTTP/1.1 200 OK\r\n\r\n") == BodyFramer::Kind::kUntilClose);
  CHECK_FALSE(response_framing(response_of("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"), "GET", &error));
  CHECK(error == "the response's Content-Length is not one decimal number");
}

TEST_CASE("the upstream head: Host from the tunnel, framing rewritten, hop-by-hop and Upgrade dropped") {
  RequestHead h = head_of(
      "POST /a/../b?q=1 HTTP/1.1\r\nHost: evil.internal\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
      "Upgrade: h2c\r\nTE: trailers\r\nProxy-Authorization: x\r\nTransfer-Encoding: chunked\r\nAccept: */*\r\n\r\n",
      RequestContext::kOrigin);
  CHECK(h.form == TargetForm::kOrigin);
  CHECK(h.path == "/a/../b?q=1");
  CHECK(upstream_request_head(h, "/b?q=1", "api.example.com", BodyFramer::chunked(true), false) ==
        "POST /b?q=1 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n");
  RequestHead g = head_of("GET /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n", RequestContext::kOrigin);
  CHECK(upstream_request_head(g, "/x", "h:8443", BodyFramer::length(0), true) ==
        "GET /x HTTP/1.0\r\nHost: h:8443\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  CHECK(connection_has(h.headers, "KEEP-ALIVE"));
  CHECK_FALSE(connection_has(h.headers, "close"));
}

TEST_CASE("requests inside an inspected tunnel: origin-form and https:// URLs; CONNECT and * refused") {
  RequestHead a = head_of("GET https://API.example.com/x HTTP/1.1\r\n\r\n", RequestContext::kOrigin);
  CHECK(a.form == TargetForm::kAbsolute);
  CHECK(a.host == "api.example.com");
  CHECK(a.port == 443);
  CHECK(a.path == "/x");
  auto bad = [](std::string_view raw) {
    RequestParse r = parse_request_head(raw, kMaxHeadBytes, RequestContext::kOrigin);
    CHECK(r.status == ParseStatus::kBad);
    return r.error;
  };
  CHECK(bad("CONNECT a:443 HTTP/1.1\r\n\r\n") == "CONNECT inside an inspected tunnel is not accepted");
  CHECK(bad("OPTIONS * HTTP/1.1\r\n\r\n") == "asterisk-form target (OPTIONS *) cannot be proxied");
  CHECK(bad("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").find("unsupported HTTP version") != std::string::npos);
  // Outside a tunnel origin-form stays refused.
  CHECK(parse_request_head("GET /x HTTP/1.1\r\n\r\n").status == ParseStatus::kBad);
}

TEST_CASE("a chunked body can be decoded: only the data comes out, extensions and trailers dropped") {
  auto f = BodyFramer::chunked_decoded();
  size_t used = 0;
  std::string in = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nGET / HTTP/1.1\r\n";
  CHECK(feed(f, in, &used) == "hello world");
  CHECK(f.done());
  CHECK(used == in.find("GET"));
  auto g = BodyFramer::chunked_decoded();
  CHECK(feed(g, in, &used, true) == "hello world");
  CHECK(g.done());
  auto bad = BodyFramer::chunked_decoded();
  feed(bad, "zz\r\n", &used);
  CHECK(bad.failed());
}
