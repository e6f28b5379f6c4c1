#pragma once
// gateway-api's Prometheus metrics (docs/observability.md): REST requests by OpenAPI route, the
// sandboxes by phase (read from the store at each scrape), and the denials the sandboxes' confinement
// layers report (counted from the "denial" log lines the gateway ingests; the supervisor has no
// listener of its own).
#include <chrono>
#include <string>

#include "bulwark/v1/sandbox.pb.h"
#include "services/gateway-api/store.h"
#include "shared/metrics.h"

namespace bulwark::gateway {

// One REST request served: route is the OpenAPI template (/v1/sandboxes/{sandbox_id}), never the
// raw path, so the label set stays bounded. status -1 (httplib's "not set yet") counts as 200.
void observe_request(const std::string& route, const std::string& method, int status,
                     std::chrono::steady_clock::time_point started);
// bulwark_denials_total{layer,mode} for a LogLine of stream "denial"; other lines are ignored.
void count_denial(const v1::LogLine& line);
// bulwark_sandboxes{phase} from store.count_by_phase() at each scrape, every phase present (0
// when none), while the handle lives.
[[nodiscard]] metrics::Registry::Collector watch_sandboxes(Store& store);

}  // namespace bulwark::gateway
