#include "supervisor/proxy/http_head.h"

#include <doctest/doctest.h>

using namespace bulwark::proxy;

namespace {
RequestParse parse(std::string_view s) { return parse_request_head(s); }

// The error of a head that must be refused as malformed.
std::string bad(std::string_view s) {
  RequestParse r = parse(s);
  CHECK_MESSAGE(r.status == ParseStatus::kBad, "expected kBad for: ", s);
  return r.error;
}

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("CONNECT host:port is authority-form, and bytes after the head are left for the tunnel") {
  std::string in = "CONNECT API.Example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n\x16\x03\x01";
  RequestParse r = parse(in);
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.method == "CONNECT");
  CHECK(r.head.form == TargetForm::kAuthority);
  CHECK(r.head.host == "api.example.com");
  CHECK(r.head.port == 443);
  CHECK(r.head.path.empty());
  CHECK(r.head.version_minor == 1);
  CHECK(r.head.head_bytes == in.size() - 3);
  REQUIRE(r.head.header("HOST") != nullptr);
  CHECK(*r.head.header("host") == "api.example.com:443");
  CHECK(r.head.header("missing") == nullptr);
}

TEST_CASE("CONNECT to a bracketed IPv6 literal and to an IPv4 literal") {
  RequestParse r = parse("CONNECT [2001:DB8::1]:8443 HTTP/1.1\r\n\r\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.host == "2001:db8::1");
  CHECK(r.head.port == 8443);
  r = parse("CONNECT 10.1.2.3:22 HTTP/1.0\r\n\r\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.host == "10.1.2.3");
  CHECK(r.head.port == 22);
  CHECK(r.head.version_minor == 0);
}

TEST_CASE("bad CONNECT authorities are refused, saying why") {
  CHECK(contains(bad("CONNECT example.com HTTP/1.1\r\n\r\n"), "no port"));
  CHECK(contains(bad("CONNECT example.com: HTTP/1.1\r\n\r\n"), "no port"));
  CHECK(contains(bad("CONNECT example.com:0 HTTP/1.1\r\n\r\n"), "out of range"));
  CHECK(contains(bad("CONNECT example.com:65536 HTTP/1.1\r\n\r\n"), "out of range"));
  CHECK(contains(bad("CONNECT example.com:443x HTTP/1.1\r\n\r\n"), "bad port"));
  CHECK(contains(bad("CONNECT example.com:-1 HTTP/1.1\r\n\r\n"), "bad port"));
  CHECK(contains(bad("CONNECT 2001:db8::1:443 HTTP/1.1\r\n\r\n"), "brackets"));
  CHECK(contains(bad("CONNECT [2001:db8::1:443 HTTP/1.1\r\n\r\n"), "unterminated"));
  CHECK(contains(bad("CONNECT [not-v6]:443 HTTP/1.1\r\n\r\n"), "not an IPv6 address"));
  CHECK(contains(bad("CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n"), "zone"));
  CHECK(contains(bad("CONNECT [::1]x:443 HTTP/1.1\r\n\r\n"), "after ']'"));
  CHECK(contains(bad("CONNECT user@example.com:443 HTTP/1.1\r\n\r\n"), "invalid character in host"));
  CHECK(contains(bad("CONNECT ex%61mple.com:443 HTTP/1.1\r\n\r\n"), "invalid character in host"));
  CHECK(contains(bad("CONNECT :443 HTTP/1.1\r\n\r\n"), "empty host"));
  CHECK(contains(bad("CONNECT " + std::string(254, 'a') + ":443 HTTP/1.1\r\n\r\n"), "253"));
}

TEST_CASE("absolute-form URLs: default port 80, path and query kept, empty path becomes /") {
  RequestParse r = parse("GET http://Example.COM/a/b?c=d&e HTTP/1.1\r\nAccept: */*\r\n\r\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.form == TargetForm::kAbsolute);
  CHECK(r.head.host == "example.com");
  CHECK(r.head.port == 80);
  CHECK(r.head.path == "/a/b?c=d&e");

  r = parse("POST HTTP://h.example:8080 HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.host == "h.example");
  CHECK(r.head.port == 8080);
  CHECK(r.head.path == "/");

  r = parse("GET http://h.example?q=1 HTTP/1.1\r\n\r\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.path == "/?q=1");

  r = parse("GET http://[::1]:9000/x#frag HTTP/1.1\r\n\r\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.host == "::1");
  CHECK(r.head.port == 9000);
  CHECK(r.head.path == "/x");

  r = parse("GET http://h.example:/ HTTP/1.1\r\n\r\n");  // an empty port means the default
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.port == 80);
}

TEST_CASE("targets a proxy cannot serve are refused with a pointer to the fix") {
  CHECK(contains(bad("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"), "absolute URL"));
  CHECK(contains(bad("GET https://example.com/ HTTP/1.1\r\n\r\n"), "use CONNECT"));
  CHECK(contains(bad("GET ftp://example.com/ HTTP/1.1\r\n\r\n"), "unsupported URL scheme"));
  CHECK(contains(bad("GET http://user:pw@example.com/ HTTP/1.1\r\n\r\n"), "user info"));
  CHECK(contains(bad("OPTIONS * HTTP/1.1\r\n\r\n"), "asterisk"));
  CHECK(contains(bad("GET example.com HTTP/1.1\r\n\r\n"), "neither"));
  CHECK(contains(bad("GET http:///path HTTP/1.1\r\n\r\n"), "empty host"));
}

TEST_CASE("malformed request lines") {
  CHECK(contains(bad("\r\n\r\n"), "empty request line"));
  CHECK(contains(bad("GET http://h/ HTTP/1.1 extra\r\n\r\n"), "METHOD TARGET"));
  CHECK(contains(bad("GET  http://h/ HTTP/1.1\r\n\r\n"), "METHOD TARGET"));
  CHECK(contains(bad("GET http://h/\r\n\r\n"), "METHOD TARGET"));
  CHECK(contains(bad("GET http://h/ HTTP/2.0\r\n\r\n"), "unsupported HTTP version"));
  CHECK(contains(bad("GET http://h/ FOO/1.1\r\n\r\n"), "HTTP version"));
  CHECK(contains(bad("G(T http://h/ HTTP/1.1\r\n\r\n"), "method"));
  CHECK(contains(bad("GET http://h/\x01 HTTP/1.1\r\n\r\n"), "control character"));
}

TEST_CASE("malformed header fields") {
  CHECK(contains(bad("GET http://h/ HTTP/1.1\r\nNoColon\r\n\r\n"), "without a colon"));
  CHECK(contains(bad("GET http://h/ HTTP/1.1\r\nHost : h\r\n\r\n"), "whitespace between"));
  CHECK(contains(bad("GET http://h/ HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n"), "folding"));
  CHECK(contains(bad("GET http://h/ HTTP/1.1\r\n: v\r\n\r\n"), "empty name"));
  CHECK(contains(bad("GET http://h/ HTTP/1.1\r\nBad{Name: v\r\n\r\n"), "header name"));
  CHECK(contains(bad("GET http://h/ HTTP/1.1\r\nA: b\x01\r\n\r\n"), "control character"));
  CHECK(contains(bad("GET http://h/ HTTP/1.1\r\nA: b\rc\r\n\r\n"), "bare CR"));
  CHECK(contains(bad("POST http://h/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
                 "both Content-Length and Transfer-Encoding"));
  CHECK(contains(bad("POST http://h/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), "conflicting"));
  CHECK(contains(bad("POST http://h/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), "not a number"));
  // The same length twice is harmless.
  CHECK(parse("POST http://h/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n").status ==
        ParseStatus::kComplete);
}

TEST_CASE("header values are trimmed and bare LF line ends are accepted") {
  RequestParse r = parse("GET http://h/ HTTP/1.1\nX-A: \t spaced value \t\nX-B:\n\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  REQUIRE(r.head.headers.size() == 2);
  CHECK(r.head.headers[0].name == "X-A");
  CHECK(r.head.headers[0].value == "spaced value");
  CHECK(r.head.headers[1].value.empty());
}

TEST_CASE("an unfinished head is incomplete, unless what is there is already wrong") {
  CHECK(parse("").status == ParseStatus::kIncomplete);
  CHECK(parse("CONN").status == ParseStatus::kIncomplete);
  CHECK(parse("CONNECT example.com:443 HT").status == ParseStatus::kIncomplete);
  CHECK(parse("CONNECT example.com:443 HTTP/1.1\r\n").status == ParseStatus::kIncomplete);
  CHECK(parse("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n").status == ParseStatus::kIncomplete);
  CHECK(parse("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r").status == ParseStatus::kIncomplete);
  // A finished but bad first line, TLS, and binary junk need not wait for the rest.
  CHECK(contains(bad("GET http://h/ HTTP/9.9\r\nHost: x\r\n"), "unsupported HTTP version"));
  CHECK(contains(bad(std::string("\x16\x03\x01\x02\x00", 5)), "TLS"));
  CHECK(contains(bad("\x01\x02garbage"), "method"));
}

TEST_CASE("heads over the limit are too large, finished or not") {
  std::string big = "GET http://h/ HTTP/1.1\r\nX-Big: " + std::string(kMaxHeadBytes, 'a');
  RequestParse r = parse(big);
  CHECK(r.status == ParseStatus::kTooLarge);
  CHECK(contains(r.error, "65536"));
  CHECK(parse(big + "\r\n\r\n").status == ParseStatus::kTooLarge);
  CHECK(parse_request_head("GET http://h/ HTTP/1.1\r\nA: b\r\n\r\n", 20).status == ParseStatus::kTooLarge);
  CHECK(parse_request_head("GET http://h/ HTTP/1.1\r\n\r\n", 26).status == ParseStatus::kComplete);
}

TEST_CASE("find_head_end sees the blank line across read boundaries") {
  std::string s = "GET http://h/ HTTP/1.1\r\nA: b\r\n\r\nbody";
  CHECK(find_head_end(s) == s.size() - 4);
  // Found from any start up to just after the newline that precedes the blank line.
  for (size_t from = 0; from <= s.size() - 6; ++from) CHECK(find_head_end(s, from) == s.size() - 4);
  CHECK(find_head_end("a\n\nb") == 3);
  CHECK(find_head_end("a\r\nb\r\n") == std::string_view::npos);
}

TEST_CASE("parse_authority and format_authority") {
  std::string err;
  auto a = parse_authority("Example.com", 80, &err);
  REQUIRE(a);
  CHECK(a->host == "example.com");
  CHECK(a->port == 80);
  CHECK_FALSE(parse_authority("example.com", 0, &err));
  CHECK(contains(err, "no port"));
  a = parse_authority("[::1]", 80, &err);
  REQUIRE(a);
  CHECK(a->host == "::1");
  CHECK(format_authority("::1", 443) == "[::1]:443");
  CHECK(format_authority("example.com", 80) == "example.com:80");
}

TEST_CASE("a forwarded request goes origin-form, Host from the URL, without Proxy-* or hop-by-hop headers") {
  RequestParse r = parse(
      "POST http://api.example:8080/v1/x?y=1 HTTP/1.1\r\n"
      "Host: evil.example\r\n"
      "Proxy-Connection: keep-alive\r\n"
      "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
      "Connection: keep-alive, X-Secret-Hop\r\n"
      "X-Secret-Hop: 1\r\n"
      "Keep-Alive: timeout=5\r\n"
      "TE: trailers\r\n"
      "Upgrade: websocket\r\n"
      "Content-Type: application/json\r\n"
      "Content-Length: 2\r\n"
      "\r\n{}");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(forward_request_head(r.head) ==
        "POST /v1/x?y=1 HTTP/1.1\r\n"
        "Host: api.example:8080\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 2\r\n"
        "Connection: close\r\n\r\n");

  r = parse("GET http://[2001:db8::5]/ HTTP/1.0\r\nConnection: Content-Length\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  // The default port is left out of Host; framing headers survive being named in Connection.
  CHECK(forward_request_head(r.head) ==
        "GET / HTTP/1.0\r\nHost: [2001:db8::5]\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

TEST_CASE("response heads: parsed, and rewritten to close the connection") {
  ResponseParse r = parse_response_head(
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: a\r\n"
      "Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-End: b\r\n\r\nhello");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.status == 200);
  CHECK(r.head.reason == "OK");
  CHECK(client_response_head(r.head) ==
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nX-End: b\r\n"
        "Connection: close\r\n\r\n");

  r = parse_response_head("HTTP/1.0 204\r\n\r\n");
  REQUIRE(r.status == ParseStatus::kComplete);
  CHECK(r.head.status == 204);
  CHECK(r.head.reason.empty());
  CHECK(client_response_head(r.head) == "HTTP/1.0 204 \r\nConnection: close\r\n\r\n");

  CHECK(parse_response_head("HTTP/1.1 200 OK\r\n").status == ParseStatus::kIncomplete);
  CHECK(parse_response_head("HTTP/1.1 2000 OK\r\n\r\n").status == ParseStatus::kBad);
  CHECK(parse_response_head("HTTP/1.1 OK\r\n\r\n").status == ParseStatus::kBad);
  CHECK(parse_response_head("SSH-2.0-OpenSSH\r\n\r\n").status == ParseStatus::kBad);
  CHECK(parse_response_head("HTTP/1.1 200 OK\r\nX: " + std::string(kMaxHeadBytes, 'a')).status ==
        ParseStatus::kTooLarge);
}
