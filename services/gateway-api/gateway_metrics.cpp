#include "services/gateway-api/gateway_metrics.h"

namespace bulwark::gateway {

void observe_request(const std::string& route, const std::string& method, int status,
                     std::chrono::steady_clock::time_point started) {
  static auto& requests = metrics::registry().counter(
      "bulwark_http_requests_total", "REST requests served, by OpenAPI route, method and HTTP status code.",
      {"route", "method", "code"});
  static auto& duration = metrics::registry().histogram(
      "bulwark_http_request_duration_seconds",
      "Time to serve a REST request until its handler returned (a streamed body may go on after), by route and method.",
      {"route", "method"});
  requests.with({route, method, std::to_string(status == -1 ? 200 : status)}).inc();
  duration.with({route, method})
      .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
}

void count_denial(const v1::LogLine& line) {
  static auto& denials = metrics::registry().counter(
      "bulwark_denials_total",
      "Confinement decisions reported by sandboxes (proxy, network, landlock, seccomp); mode audit = allowed but reported.",
      {"layer", "mode"});
  if (line.stream() != "denial") return;
  const std::string& layer = line.denial().layer();
  denials.with({layer.empty() ? "unknown" : layer, line.denial().audit() ? "audit" : "enforce"}).inc();
}

metrics::Registry::Collector watch_sandboxes(Store& store) {
  auto& sandboxes = metrics::registry().gauge("bulwark_sandboxes", "Sandbox records by phase (DELETED ones included).", {"phase"});
  return metrics::registry().add_collector([&store, &sandboxes] {
    auto counts = store.count_by_phase();
    for (int i = v1::PENDING; i <= v1::SandboxPhase_MAX; ++i) {
      if (!v1::SandboxPhase_IsValid(i)) continue;
      auto phase = static_cast<v1::SandboxPhase>(i);
      auto it = counts.find(phase);
      sandboxes.with({v1::SandboxPhase_Name(phase)}).set(it == counts.end() ? 0 : static_cast<double>(it->second));
    }
  });
}

}  // namespace bulwark::gateway
