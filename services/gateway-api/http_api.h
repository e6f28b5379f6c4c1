#pragma once
// The REST surface: routes, JSON in and out (protobuf JSON mapping), errors as
// {"error": {"code", "message", "field"}} with the matching HTTP status.
#include <httplib.h>

#include <functional>

#include "services/gateway-api/inference.h"
#include "services/gateway-api/providers.h"
#include "services/gateway-api/sandboxes.h"
#include "shared/error.h"

namespace bulwark::gateway {

struct HealthInfo {
  std::function<bool()> nats_connected;
};

void install_routes(httplib::Server& srv, Sandboxes& sandboxes, Providers& providers, InferenceRoutes& inference,
                    HealthInfo health);

// The JSON error body; shared by the routes and the server's own errors (404, 413, ...).
std::string error_json(Code code, const std::string& message, const std::string& field = {});

}  // namespace bulwark::gateway
