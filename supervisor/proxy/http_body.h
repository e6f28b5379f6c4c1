#pragma once
// Where an HTTP/1.1 message body ends. An inspecting proxy must know exactly, or the bytes it
// takes for a body could be a second request the server reads and the proxy never judged
// (request smuggling). Pure: fed bytes, says how many belong to the body.
//
// Request bodies are re-encoded rather than passed through: Content-Length is resent as parsed,
// and a chunked body is sent as canonical chunks without extensions or trailers, so the server
// frames the bytes exactly as the proxy did. Response bodies are only framed (passed verbatim).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/proxy/http_head.h"

namespace bulwark::proxy {

class BodyFramer {
 public:
  enum class Kind { kNone, kLength, kChunked, kUntilClose };

  static BodyFramer none() { return BodyFramer(Kind::kNone, 0, false); }
  static BodyFramer length(uint64_t n) { return BodyFramer(Kind::kLength, n, false); }
  // reencode: what feed() emits is canonical chunks; otherwise the bytes as received.
  static BodyFramer chunked(bool reencode) { return BodyFramer(Kind::kChunked, 0, reencode); }
  // Chunked, emitting only the decoded data (no sizes, extensions or trailers): for a body the
  // proxy consumes itself (inference.local) rather than sends on.
  static BodyFramer chunked_decoded() {
    BodyFramer f(Kind::kChunked, 0, false);
    f.decode_ = true;
    return f;
  }
  static BodyFramer until_close() { return BodyFramer(Kind::kUntilClose, 0, false); }

  // Takes the prefix of `in` that belongs to the body and appends what to send on to *out.
  // Returns how many bytes of `in` it took: fewer than in.size() only once done() or failed().
  size_t feed(std::string_view in, std::string* out);

  Kind kind() const { return kind_; }
  uint64_t declared_length() const { return total_; }  // kLength: the Content-Length
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kFailed; }
  const std::string& error() const { return error_; }

 private:
  enum class State { kSize, kSizeSpace, kExt, kSizeLf, kData, kDataCr, kDataLf, kTrailer, kTrailerLf, kDone, kFailed };
  BodyFramer(Kind k, uint64_t n, bool reencode);
  size_t fail(std::string why);

  Kind kind_;
  State state_;
  uint64_t total_ = 0;
  uint64_t remaining_ = 0;  // kLength: body bytes left; kChunked: bytes left of this chunk
  bool reencode_ = false;
  bool decode_ = false;
  int size_digits_ = 0;
  size_t line_bytes_ = 0;     // of the current chunk-size or trailer line
  size_t trailer_bytes_ = 0;  // of the whole trailer section
  std::string error_;
};

// A request's body framing (RFC 9112 6.3): "Transfer-Encoding: chunked" (exactly that coding),
// else Content-Length, else no body. nullopt with *error for any other transfer coding or a
// Content-Length that is not one number (parse_request_head already refused both at once).
std::optional<BodyFramer> request_framing(const RequestHead& head, std::string* error);

// A response's body framing, given the method of the request it answers: none for HEAD, 1xx, 204
// and 304; chunked when the last transfer coding is chunked; until the connection closes for any
// other transfer coding or when no length is given; else Content-Length. nullopt with *error for
// an unusable Content-Length.
std::optional<BodyFramer> response_framing(const ResponseHead& head, std::string_view request_method,
                                           std::string* error);

// True when a "Connection" header of these lists the token (case-insensitive).
bool connection_has(const std::vector<HeaderField>& headers, std::string_view token);

// The head to send upstream for a request the policy allowed: "METHOD target HTTP/1.x", Host set
// to `host_header`, framing as `body` sends it (Content-Length or Transfer-Encoding: chunked),
// hop-by-hop headers, Proxy-*, Upgrade and TE dropped (no protocol switch the proxy could not
// follow), and "Connection: close" when `close`.
std::string upstream_request_head(const RequestHead& head, std::string_view target, std::string_view host_header,
                                  const BodyFramer& body, bool close);

}  // namespace bulwark::proxy
