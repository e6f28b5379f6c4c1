#pragma once
// The production answer to inference.local: each request the egress proxy hands over
// (proxy::InferenceFn) becomes an InferenceCall on bulwark.inference.call.<sandbox_id>, answered by
// one privacy-router with a stream of InferenceFrames (head, chunks, end; seq 0, 1, 2, ...) on a
// reply subject of this client's own.
//
// One wildcard subscription (<inbox>.*) serves every call; each call's reply subject is
// <inbox>.<call_id>. So a call costs no subscription of its own, a late frame of a finished or
// cancelled call finds nothing and is dropped, and a no-responders status from the server lands
// on the call it answers.
//
// Failures the agent sees (JSON bodies like the proxy's own):
//   no privacy-router subscribed                 -> 503 "no privacy-router is running; ..."
//   no frame within first_frame_timeout          -> 504
//   a seq gap (a frame lost: slow consumer, ...)  -> end("lost frames ...")
//   no frame within idle_timeout after the head  -> end("... idle ...") (a truncated body)
// A call the proxy cancels (the client left) is forgotten at once. Thread-safe.
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "shared/bus.h"
#include "supervisor/proxy/inference.h"

namespace bulwark::supervisor {

class InferenceClient {
 public:
  struct Options {
    std::string sandbox_id;
    // Longer than the router's own first-byte timeout (300 s), so the router's answer (a 504 of
    // its own, naming the backend) normally comes first.
    std::chrono::milliseconds first_frame_timeout{std::chrono::seconds(310)};
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(130)};
  };
  // Room left in one NATS message for everything of a call but its body.
  static constexpr size_t kEnvelopeBytes = 64 * 1024;

  // Subscribes to its inbox at once. Throws Error when it cannot. bus must outlive this client.
  InferenceClient(Bus& bus, Options o);
  // Ends every call in flight ("the supervisor is stopping"), unsubscribes and waits for the
  // NATS callback to be done with this client.
  ~InferenceClient();
  InferenceClient(const InferenceClient&) = delete;
  InferenceClient& operator=(const InferenceClient&) = delete;

  // Starts one call; returns at once (never blocks on the network).
  void call(proxy::InferenceRequest req, std::shared_ptr<proxy::InferenceSink> sink);
  // For EgressProxy::Options::inference. Safe to call after this client is gone (it answers 503).
  proxy::InferenceFn handler();
  // The largest request body that fits one NATS message: the server's max_payload minus
  // kEnvelopeBytes (0 when the server allows less than that).
  size_t max_request_bytes() const;
  size_t active_calls() const;

  struct Core;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace bulwark::supervisor
