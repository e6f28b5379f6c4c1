#pragma once
// /metrics, /readyz and /livez on a listener of their own, apart from any API port (and its
// tokens): what a Prometheus scraper or a load balancer's probe reaches.
// Used by every Service (--metrics-listen) and by the supervisor, which is no Service.
#include <functional>
#include <memory>
#include <string>

namespace bulwark {

class MetricsListener {
 public:
  // not_ready: what /readyz answers ("" = ready). Throws Error naming field metrics-listen when
  // the address is malformed or cannot be bound.
  MetricsListener(const std::string& listen, std::function<std::string()> not_ready);
  ~MetricsListener();
  MetricsListener(const MetricsListener&) = delete;
  MetricsListener& operator=(const MetricsListener&) = delete;

 private:
  struct Impl;  // the HTTP server and its thread (cpp-httplib stays out of this header)
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulwark
