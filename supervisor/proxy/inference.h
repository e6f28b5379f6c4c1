#pragma once
// inference.local: the managed-inference endpoint the egress proxy serves itself, before any
// network policy is consulted (docs/proxy.md, "inference.local"). The proxy terminates the
// agent's TLS with a leaf for inference.local from the sandbox CA, parses each HTTP/1.1 request
// and hands it to an InferenceFn; the answer streams back through an InferenceSink.
//
// This header is the seam between the proxy and whatever answers (the NATS client of
// supervisor/inference_client.h in production, stubs in tests), plus the pure pieces of the
// exchange (response heads, chunk framing, JSON error bodies), testable without a socket.
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "supervisor/proxy/http_head.h"

namespace bulwark::proxy {

inline constexpr char kInferenceHost[] = "inference.local";
// The rule named in the (allowed) events of inference.local requests.
inline constexpr char kInferenceRule[] = "bulwark:inference-local";
inline constexpr size_t kDefaultInferenceMaxRequestBytes = 4 << 20;
inline constexpr size_t kDefaultInferenceMaxBufferedBytes = 16 << 20;

// One request to inference.local, complete with its body.
struct InferenceRequest {
  std::string method;
  std::string path;                   // origin-form, query included
  std::vector<HeaderField> headers;   // as sent, minus hop-by-hop and framing headers
  std::string body;                   // decoded (a chunked body arrives de-chunked)
  std::string binary;                 // the calling executable; empty when it was not identified
  pid_t pid = 0;
  std::string client_addr;
  uint16_t client_port = 0;
};

// The way back to the agent for one request. Callable from any thread; calls must come in order
// (head, chunks, end) and not concurrently. Each is posted onto the proxy's event loop and written
// to the client at once, so a server-sent-event stream reaches the agent chunk by chunk.
//   head(status, headers): Content-Length, Transfer-Encoding and Connection are replaced by the
//     proxy's own framing (chunked toward the client).
//   chunk(bytes): part of the body; empty chunks are ignored.
//   end(""): the response is complete. end(error): cut short: after the head the client sees a
//     truncated body (the connection closes without the last chunk), before it a 502 JSON error.
// Once the client is gone (it closed, it read too slowly, the proxy stopped) the sink is
// cancelled: the on_cancel callback runs once (on the proxy's thread, or at once in on_cancel
// when already cancelled) and every later call does nothing. Likewise after end().
class InferenceSink {
 public:
  virtual ~InferenceSink() = default;
  virtual void head(int status, std::vector<HeaderField> headers) = 0;
  virtual void chunk(std::string bytes) = 0;
  virtual void end(std::string error) = 0;
  // fn must be quick and must not call back into this sink's head/chunk/end synchronously
  // with locks held that those calls would need.
  virtual void on_cancel(std::function<void()> fn) = 0;
  virtual bool cancelled() const = 0;
};

// Called on the proxy's event-loop thread for each request: must not block. Answers later, from
// any thread, through the sink. An exception it throws answers 502.
using InferenceFn = std::function<void(InferenceRequest, std::shared_ptr<InferenceSink>)>;

// --- the pure pieces ---------------------------------------------------------------------------

// host (as parse_request_head lower-cases it) is inference.local.
bool is_inference_host(std::string_view host);

// {"error":{"code":...,"message":...}} and a newline; always valid JSON whatever the message holds.
std::string inference_error_body(std::string_view code, std::string_view message);

// A whole response (Content-Length) carrying inference_error_body; "Connection: close" when close.
std::string inference_error_response(int status, std::string_view code, std::string_view message, bool close);

// The request's headers as handed to the InferenceFn: hop-by-hop (Connection and what it names,
// Keep-Alive, TE, Trailer, Upgrade, Proxy-*), framing (Content-Length, Transfer-Encoding) and
// Expect dropped.
std::vector<HeaderField> inference_request_headers(const std::vector<HeaderField>& headers);

// How a response body travels to the client.
enum class BodyMode {
  kNone,     // HEAD, 204, 304: no body whatever the handler sends
  kChunked,  // HTTP/1.1: Transfer-Encoding: chunked, so a cut-short body shows as truncated
  kClose,    // HTTP/1.0 client: raw bytes, ended by closing the connection
};
BodyMode inference_body_mode(std::string_view request_method, int version_minor, int status);

// The response head for the client: status line, the handler's headers minus framing and
// hop-by-hop ones, then the proxy's framing for `mode` and "Connection: close" when close.
std::string inference_response_head(int status, const std::vector<HeaderField>& headers, BodyMode mode, bool close);

// One chunk of a chunked body: "<hex size>\r\n<data>\r\n". Empty data gives "" (a zero-size chunk
// would end the body).
std::string chunk_frame(std::string_view data);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

const char* status_reason(int status);

}  // namespace bulwark::proxy
