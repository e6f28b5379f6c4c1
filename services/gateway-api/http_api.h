#pragma once
// The REST surface: routes, JSON in and out (protobuf JSON mapping), errors as
// {"error": {"code", "message", "field"}} with the matching HTTP status. docs/openapi.yaml is its
// contract; route_specs() is the list of what is served, which the contract test compares with it.
#include <httplib.h>

#include <functional>
#include <string>
#include <vector>

#include "services/gateway-api/audit_log.h"
#include "services/gateway-api/authz.h"
#include "services/gateway-api/exec.h"
#include "services/gateway-api/idempotency.h"
#include "services/gateway-api/inference.h"
#include "services/gateway-api/proposals.h"
#include "services/gateway-api/providers.h"
#include "services/gateway-api/rate_limit.h"
#include "services/gateway-api/sandboxes.h"
#include "services/gateway-api/status.h"
#include "services/gateway-api/store.h"
#include "services/gateway-api/tokens.h"
#include "shared/error.h"

namespace bulwark::gateway {

// One route as docs/openapi.yaml names it.
struct RouteSpec {
  std::string method;              // GET, POST, PUT, PATCH, DELETE
  std::string path;                // OpenAPI template: /v1/sandboxes/{sandbox_id}
  std::vector<std::string> query;  // the query parameters it takes; any other is refused (400)
  bool creates = false;            // a POST that creates something: honours Idempotency-Key
  bool rate_limited = true;        // /healthz is not: a probe must not fail because clients are busy
  bool open = false;               // answered without a token (/healthz only; docs/security.md)
  size_t max_body = 0;             // the largest request body it takes; 0 = 1 MiB (PUT files takes tars)
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
  // Authentication (tokens.h): every route but the open ones needs a token, then authz.h decides.
  // Null only with --auth none (local development; the gateway says so loudly).
  Tokens* tokens = nullptr;
  AuditLog* audit = nullptr;  // null: mutating calls are not recorded
  ExecService* exec = nullptr;  // exec and file transfer (exec.h); null: those routes answer 503
  Proposals* proposals = nullptr;  // the approval flow (proposals.h); null: those routes answer 503
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
  // The rate limit, admit, then the route; *caller and *sandbox_id are what the audit row names.
  void serve_admitted(const RouteSpec& spec, const httplib::Request& req, httplib::Response& res, const Handler& h,
                      std::optional<Caller>* caller, std::string* sandbox_id);
  // Authenticates (setting *caller at once, so a refusal is audited with its token) and authorizes;
  // *sandbox_id is set to the sandbox the route names, if it exists.
  void admit(const RouteSpec& spec, const httplib::Request& req, std::optional<Caller>* caller, std::string* sandbox_id);
  void record(const RouteSpec& spec, const httplib::Request& req, const httplib::Response& res, const std::optional<Caller>& c,
              std::string sandbox_id, const std::string& request_id);
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
