#pragma once
// The REST surface: routes, JSON in and out (protobuf JSON mapping), errors as
// {"error": {"code", "message", "field"}} with the matching HTTP status. docs/openapi.yaml is its
// contract; route_specs() is the list of what is served, which the contract test compares with it.
#include <httplib.h>

#include <functional>
#include <string>
#include <vector>

#include "services/gateway-api/idempotency.h"
#include "services/gateway-api/inference.h"
#include "services/gateway-api/providers.h"
#include "services/gateway-api/rate_limit.h"
#include "services/gateway-api/sandboxes.h"
#include "services/gateway-api/status.h"
#include "services/gateway-api/store.h"
#include "shared/error.h"

namespace bulwark::gateway {

// One route as docs/openapi.yaml names it.
struct RouteSpec {
  std::string method;              // GET, POST, PUT, PATCH, DELETE
  std::string path;                // OpenAPI template: /v1/sandboxes/{sandbox_id}
  std::vector<std::string> query;  // the query parameters it takes; any other is refused (400)
  bool creates = false;            // a POST that creates something: honours Idempotency-Key
  bool rate_limited = true;        // /healthz is not: a probe must not fail because clients are busy
};

// Every route the gateway serves. install_routes registers exactly these (and refuses to start
// otherwise), so this list cannot drift from the server.
const std::vector<RouteSpec>& route_specs();
// The regex httplib matches for a path template: each {param} becomes ([^/]+). Pure.
std::string path_regex(const std::string& path_template);

struct RateLimitOptions {
  double rate = 100;   // requests per second per client address; 0 = no limit
  double burst = 200;  // requests a client may send at once
};

// What the routes work on. status may be null (then /v1/status answers 503).
struct ApiDeps {
  Sandboxes& sandboxes;
  Providers& providers;
  InferenceRoutes& inference;
  Store& store;  // the answers kept for Idempotency-Key
  StatusBoard* status = nullptr;
  std::function<bool()> nats_connected;
  RateLimitOptions limits;
};

// The routes and their shared state (rate limiter, Idempotency-Key locks); must outlive the server.
class RestApi {
 public:
  explicit RestApi(ApiDeps deps);
  void install(httplib::Server& srv);

 private:
  using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  void add(httplib::Server& srv, const std::string& method, const std::string& path, Handler h);
  void serve(const RouteSpec& spec, const httplib::Request& req, httplib::Response& res, const Handler& h);
  void serve_idempotent(const RouteSpec& spec, const std::string& key, const httplib::Request& req, httplib::Response& res,
                        const Handler& h);

  ApiDeps d_;
  RateLimiter limiter_;
  KeyLocks key_locks_;
  std::vector<std::string> installed_;  // "METHOD path", to check against route_specs()
};

// The JSON error body; shared by the routes and the server's own errors (404, 413, ...).
std::string error_json(Code code, const std::string& message, const std::string& field = {});
// The same with a code that has no bulwark::Code (resource_exhausted for 429).
std::string error_json(const std::string& code, const std::string& message, const std::string& field = {});

}  // namespace bulwark::gateway
