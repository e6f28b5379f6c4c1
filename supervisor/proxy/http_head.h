#pragma once
// HTTP/1.x message heads as an egress proxy sees them: the request head a client sends to the
// proxy (CONNECT authority-form or absolute-form), and the response head an upstream sends back.
// Pure functions over a byte buffer, so every malformed input can be unit-tested without sockets.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::proxy {

// Request line plus headers above this size get 431; a response head above it gets 502.
inline constexpr size_t kMaxHeadBytes = 64 * 1024;

struct HeaderField {
  std::string name;   // as received
  std::string value;  // surrounding spaces and tabs trimmed
};

enum class ParseStatus {
  kIncomplete,  // no blank line yet and nothing wrong so far: read more
  kComplete,
  kBad,       // malformed; error says what (it goes into the 400 body)
  kTooLarge,  // the head is (or would be) larger than the limit
};

enum class TargetForm {
  kAuthority,  // CONNECT host:port
  kAbsolute,   // GET http://host:port/path
  kOrigin,     // GET /path (only inside a tunnel the proxy inspects)
};

// Which request targets a head may carry.
enum class RequestContext {
  // Sent to the proxy: CONNECT host:port, or an absolute http:// URL.
  kProxy,
  // Sent through an inspected tunnel to the server the client believes it talks to: origin-form
  // "/path?query", or an absolute http:// or https:// URL (its authority is filled in). CONNECT
  // and "*" are refused: neither can be judged as a path.
  kOrigin,
};

struct RequestHead {
  std::string method;
  std::string target;  // verbatim from the request line
  int version_minor = 1;  // HTTP/1.<minor>; only 1.0 and 1.1 are accepted
  std::vector<HeaderField> headers;
  TargetForm form = TargetForm::kAuthority;
  std::string host;   // lower-case; an IPv6 literal without its brackets; empty for origin-form
  uint16_t port = 0;  // from the target; http:// without a port means 80, https:// 443
  // absolute-form: origin-form path and query ("/" when empty); origin-form: the target; CONNECT: empty
  std::string path;
  size_t head_bytes = 0;  // bytes of the buffer the head took, blank line included

  // The first header of that name (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const;
};

struct RequestParse {
  ParseStatus status = ParseStatus::kIncomplete;
  RequestHead head;   // filled when kComplete
  std::string error;  // when kBad or kTooLarge
};

// Parses the request head at the start of buf. Bytes after the head (a request body, or a TLS
// ClientHello sent eagerly after CONNECT) are left for the caller: they start at head.head_bytes.
// Lines may end in CRLF or a bare LF. A first line that can already be seen to be wrong (binary
// junk, TLS sent to a plain-HTTP proxy) is kBad before the head is complete.
RequestParse parse_request_head(std::string_view buf, size_t max_head_bytes = kMaxHeadBytes,
                                RequestContext context = RequestContext::kProxy);

// Where the head ends (just past its blank line), or npos. The search for the newline before the
// blank line starts at from - 1, so a reader that found no end in its first `old` bytes can pass
// old - 3 and look only at what is new instead of re-parsing.
size_t find_head_end(std::string_view buf, size_t from = 0);

struct Authority {
  std::string host;  // lower-case; IPv6 without brackets
  uint16_t port = 0;
};

// "host:port", "[v6]:port", or (when default_port != 0) "host" / "[v6]" / "host:" meaning
// default_port. Hosts are DNS names ([A-Za-z0-9._-]), IPv4 or bracketed IPv6 literals; user info,
// percent-encoding, zone ids and port 0 are refused. On failure *error says why.
std::optional<Authority> parse_authority(std::string_view s, uint16_t default_port, std::string* error);

// "host:port", bracketing IPv6 literals.
std::string format_authority(const std::string& host, uint16_t port);

// The head to send upstream for an absolute-form request: origin-form request line, Host taken
// from the URL (a received Host is replaced, as RFC 9112 3.2.2 requires of a proxy), Proxy-*,
// hop-by-hop headers and those named in Connection removed, and "Connection: close" because this
// first cut opens one upstream connection per request.
std::string forward_request_head(const RequestHead& head);

struct ResponseHead {
  int version_minor = 1;
  int status = 0;
  std::string reason;
  std::vector<HeaderField> headers;
  size_t head_bytes = 0;
};

struct ResponseParse {
  ParseStatus status = ParseStatus::kIncomplete;
  ResponseHead head;
  std::string error;
};

ResponseParse parse_response_head(std::string_view buf, size_t max_head_bytes = kMaxHeadBytes);

// The final response head to relay to the client: hop-by-hop headers removed and
// "Connection: close" added, so the client does not try to reuse a connection the proxy will close.
// Framing headers (Content-Length, Transfer-Encoding) are kept: the body is relayed verbatim.
std::string client_response_head(const ResponseHead& head);

}  // namespace bulwark::proxy
