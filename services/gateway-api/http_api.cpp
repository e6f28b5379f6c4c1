#include "services/gateway-api/http_api.h"

#include <google/protobuf/empty.pb.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "bulwark/v1/common.pb.h"
#include "services/gateway-api/gateway_metrics.h"
#include "services/gateway-api/paging.h"
#include "services/gateway-api/watch.h"
#include "services/gateway-api/watch_http.h"
#include "shared/error.h"
#include "shared/proto_json.h"
#include "shared/util.h"

namespace bulwark::gateway {

namespace {
constexpr const char* kJson = "application/json";
constexpr size_t kMaxBody = 1 << 20;

// The query string's parameters in order, each split at its first '=' (httplib's own parser keeps
// only the last part of "label=k=v") and percent-decoded. Parsed from the target, never from a
// form-encoded body (curl -d sends JSON bodies labelled as forms).
using Query = std::vector<std::pair<std::string, std::string>>;
Query query_of(const httplib::Request& req) {
  Query out;
  size_t q = req.target.find('?');
  if (q == std::string::npos) return out;
  std::string s = req.target.substr(q + 1);
  size_t start = 0;
  while (start <= s.size()) {
    size_t amp = s.find('&', start);
    std::string kv = s.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    if (!kv.empty()) {
      size_t eq = kv.find('=');
      out.emplace_back(httplib::detail::decode_url(kv.substr(0, eq), true),
                       eq == std::string::npos ? "" : httplib::detail::decode_url(kv.substr(eq + 1), true));
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return out;
}

std::vector<std::string> values(const Query& q, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [k, v] : q)
    if (k == name) out.push_back(v);
  return out;
}

// A parameter given at most once.
std::optional<std::string> single(const Query& q, const std::string& name) {
  auto v = values(q, name);
  if (v.size() > 1) throw Error(Code::kInvalidArgument, name + ": given " + std::to_string(v.size()) + " times, at most once", name);
  if (v.empty()) return std::nullopt;
  return v[0];
}

void send_error(httplib::Response& res, const Error& e) {
  res.status = http_status(e.code());
  res.set_content(error_json(e.code(), e.what(), e.field()), kJson);
}

// Runs a route; every failure becomes a JSON error with the right status.
void guarded(httplib::Response& res, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    send_error(res, e);
  } catch (const std::exception& e) {
    spdlog::error("request failed: {}", e.what());
    send_error(res, Error(Code::kInternal, e.what()));
  }
}

void send(httplib::Response& res, int status, const google::protobuf::Message& m) {
  res.status = status;
  res.set_content(message_to_json(m), kJson);
}

bool flag(const Query& q, const char* name) {
  auto v = single(q, name);
  if (!v) return false;
  if (*v == "" || *v == "true" || *v == "1") return true;
  if (*v == "false" || *v == "0") return false;
  throw Error(Code::kInvalidArgument, std::string(name) + ": must be true or false, got '" + *v + "'", name);
}

size_t count_param(const Query& q, const char* name, size_t dflt, size_t max) {
  auto v = single(q, name);
  if (!v) return dflt;
  try {
    size_t pos = 0;
    long long n = std::stoll(*v, &pos);
    if (pos == v->size() && n > 0) return std::min(static_cast<size_t>(n), max);
  } catch (const std::exception&) {
  }
  throw Error(Code::kInvalidArgument, std::string(name) + ": must be a positive integer, got '" + *v + "'", name);
}

// A --wait longer than this is a mistake (a CI job would hang), not a wish.
constexpr uint32_t kMaxWaitMs = 5 * 60 * 1000;  // policy-service's default --max-wait
void check_wait(uint32_t wait_ms) {
  if (wait_ms > kMaxWaitMs)
    throw Error(Code::kInvalidArgument, "wait_ms: at most " + std::to_string(kMaxWaitMs) + ", got " + std::to_string(wait_ms), "wait_ms");
}

void require_json(const httplib::Request& req) {
  auto ct = req.get_header_value("Content-Type");
  // curl -d sends form encoding by default; CI scripts rarely set the header, so take the body as
  // JSON then too. Any other declared type is a mistake worth naming.
  if (!ct.empty() && ct.find("json") == std::string::npos && ct != "application/x-www-form-urlencoded")
    throw Error(Code::kInvalidArgument, "Content-Type must be application/json, got '" + ct + "'", "Content-Type");
}

template <class M>
M body_as(const httplib::Request& req) {
  require_json(req);
  M m;
  json_to_message(req.body.empty() ? "{}" : req.body, &m);
  return m;
}

std::string key_of(const std::string& method, const std::string& path) { return method + " " + path; }

// The caller of the request this thread is serving (httplib runs a request on one thread, and the
// route handlers take no context): set by RestApi::serve around the handler.
thread_local const Caller* t_caller = nullptr;
struct CallerScope {
  explicit CallerScope(const Caller* c) { t_caller = c; }
  ~CallerScope() { t_caller = nullptr; }
  CallerScope(const CallerScope&) = delete;
  CallerScope& operator=(const CallerScope&) = delete;
};
// The token_id the request acts as; "" with --auth none.
std::string caller_id() { return t_caller ? t_caller->token_id : ""; }
// Idempotency keys are per token: one CI job's key must never replay another job's sandbox.
std::string owned_key(const std::string& key) { return key.empty() || !t_caller ? key : t_caller->token_id + ":" + key; }

// The client's X-Request-Id when it is a plain token, else a fresh one; sent back and audited.
std::string request_id_of(const httplib::Request& req) {
  auto id = req.get_header_value("X-Request-Id");
  if (!id.empty() && id.size() <= 64 &&
      id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == std::string::npos)
    return id;
  return random_hex(8);
}

Tokens& tokens_of(Tokens* t) {
  if (!t) throw Error(Code::kFailedPrecondition, "authentication is off on this gateway (--auth none): there are no API tokens");
  return *t;
}
}  // namespace

const std::vector<RouteSpec>& route_specs() {
  static const std::vector<RouteSpec> kRoutes = {
      {"GET", "/healthz", {}, false, false, true},
      {"GET", "/v1/status", {"timeout_ms"}},
      {"POST", "/v1/sandboxes", {}, true},
      {"GET", "/v1/sandboxes", {"all", "phase", "label", "limit", "page_token"}},
      {"GET", "/v1/sandboxes/{sandbox_id}", {}},
      {"DELETE", "/v1/sandboxes/{sandbox_id}", {}},
      {"POST", "/v1/sandboxes/{sandbox_id}/stop", {}},
      {"POST", "/v1/sandboxes/{sandbox_id}/start", {}},
      {"GET", "/v1/sandboxes/{sandbox_id}/logs", {"tail", "stream", "since", "follow"}},
      // Server-Sent Events of phase changes and denials (watch_http.h).
      {"GET", "/v1/sandboxes/{sandbox_id}/events", {}},
      {"GET", "/v1/events", {"sandbox_id"}},
      {"PUT", "/v1/sandboxes/{sandbox_id}/policy", {}},
      {"PATCH", "/v1/sandboxes/{sandbox_id}/policy", {}},
      {"GET", "/v1/sandboxes/{sandbox_id}/policy", {"version"}},
      {"GET", "/v1/sandboxes/{sandbox_id}/policy/versions", {}},
      {"POST", "/v1/policies/validate", {}},
      // The approval flow (proposals.h): {name} is the sandbox's name or id, as for its policy.
      {"GET", "/v1/policies/{name}/pending", {"all"}},
      {"POST", "/v1/policies/{name}/pending/{proposal_id}/approve", {}},
      {"POST", "/v1/policies/{name}/pending/{proposal_id}/reject", {}},
      {"POST", "/v1/providers", {}, true},
      {"GET", "/v1/providers", {"limit", "page_token"}},
      {"GET", "/v1/providers/{name}", {}},
      {"PATCH", "/v1/providers/{name}", {}},
      {"DELETE", "/v1/providers/{name}", {}},
      {"PUT", "/v1/inference", {"sandbox_id"}},
      {"GET", "/v1/inference", {"sandbox_id"}},
      {"DELETE", "/v1/inference", {"sandbox_id"}},
      // Not `creates`: an Idempotency-Key answer is stored, and this one carries the secret.
      {"POST", "/v1/tokens", {}},
      {"GET", "/v1/tokens", {}},
      {"DELETE", "/v1/tokens/{token_id}", {}},
      {"GET", "/v1/audit", {"since", "limit"}},
      // Into a running sandbox (docs/exec.md); the files routes move tar archives.
      {"POST", "/v1/sandboxes/{sandbox_id}/exec", {"stream"}},
      {"PUT", "/v1/sandboxes/{sandbox_id}/files", {"path"}, false, true, false, kMaxUpload},
      {"GET", "/v1/sandboxes/{sandbox_id}/files", {"path"}},
  };
  return kRoutes;
}

std::string path_regex(const std::string& tmpl) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    char c = tmpl[i];
    if (c == '{') {
      size_t close = tmpl.find('}', i);
      if (close == std::string::npos) throw std::logic_error("unclosed '{' in route " + tmpl);
      out += "([^/]+)";
      i = close;
    } else if (std::string_view(".^$|()[]*+?\\").find(c) != std::string_view::npos) {
      out += '\\';
      out += c;
    } else {
      out += c;
    }
  }
  return out;
}

std::string error_json(Code code, const std::string& message, const std::string& field) {
  return error_json(std::string(code_name(code)), message, field);
}

std::string error_json(const std::string& code, const std::string& message, const std::string& field) {
  v1::ErrorBody b;
  b.mutable_error()->set_code(code);
  b.mutable_error()->set_message(message);
  b.mutable_error()->set_field(field);
  return message_to_json(b);
}

RestApi::RestApi(ApiDeps deps) : d_(std::move(deps)), limiter_(d_.limits.rate, d_.limits.burst) {}

void RestApi::add(httplib::Server& srv, const std::string& method, const std::string& path, Handler h) {
  const auto& specs = route_specs();
  auto it = std::find_if(specs.begin(), specs.end(), [&](const RouteSpec& s) { return s.method == method && s.path == path; });
  // A route missing from route_specs() would be missing from the contract test: refuse to start.
  if (it == specs.end()) throw std::logic_error("route " + key_of(method, path) + " is not in route_specs()");
  installed_.push_back(key_of(method, path));
  const RouteSpec& spec = *it;
  auto fn = [this, &spec, h = std::move(h)](const httplib::Request& req, httplib::Response& res) { serve(spec, req, res, h); };
  std::string re = path_regex(path);
  if (method == "GET") srv.Get(re, fn);
  else if (method == "POST") srv.Post(re, fn);
  else if (method == "PUT") srv.Put(re, fn);
  else if (method == "PATCH") srv.Patch(re, fn);
  else if (method == "DELETE") srv.Delete(re, fn);
  else throw std::logic_error("unsupported method " + method);
}

void RestApi::admit(const RouteSpec& spec, const httplib::Request& req, std::optional<Caller>* caller, std::string* sandbox_id) {
  if (!spec.open && d_.tokens) *caller = d_.tokens->authenticate(req.get_header_value("Authorization"), to_millis(now_timestamp()));
  // The owner of the sandbox the route names (by id or name), looked up only once the token is good.
  std::optional<std::string> owner;
  std::string ref;
  if (names_sandbox(spec.path) && req.matches.size() > 1) {
    ref = req.matches[1];
    if (auto s = d_.store.find(ref)) {
      owner = s->owner();
      *sandbox_id = s->sandbox_id();
    }
  }
  if (*caller) {
    auto d = authorize(**caller, spec.method, spec.path, owner, ref);
    if (!d.allowed) throw Error(d.code, d.reason, d.code == Code::kNotFound ? "sandbox_id" : "");
  }
}

void RestApi::record(const RouteSpec& spec, const httplib::Request& req, const httplib::Response& res,
                     const std::optional<Caller>& c, std::string sandbox_id, const std::string& request_id) {
  if (!d_.audit) return;
  AuditRow r;
  r.at_ms = to_millis(now_timestamp());
  if (c) {
    r.token_id = c->token_id;
    r.token_name = c->name;
    r.scope = scope_name(c->scope);
  }
  r.method = spec.method;
  r.path = req.path;
  auto body = nlohmann::json::parse(res.body, nullptr, false);
  // A create names its new sandbox only in the answer.
  if (sandbox_id.empty() && spec.path == "/v1/sandboxes" && body.is_object()) sandbox_id = body.value("sandbox_id", "");
  r.sandbox_id = std::move(sandbox_id);
  r.status = res.status;
  r.result = "ok";
  if (res.status >= 400)
    r.result = body.is_object() && body.contains("error") && body["error"].is_object() ? body["error"].value("code", "error")
                                                                                          : "http_" + std::to_string(res.status);
  r.remote_addr = req.remote_addr;
  r.request_id = request_id;
  d_.audit->record(std::move(r));
}

void RestApi::serve(const RouteSpec& spec, const httplib::Request& req, httplib::Response& res, const Handler& h) {
  const auto started = std::chrono::steady_clock::now();
  const std::string request_id = request_id_of(req);
  res.set_header("X-Request-Id", request_id);
  std::optional<Caller> caller;
  std::string sandbox_id;
  serve_admitted(spec, req, res, h, &caller, &sandbox_id);
  if (res.status == 401) res.set_header("WWW-Authenticate", R"(Bearer realm="bulwark")");
  if (is_mutating(spec.method)) record(spec, req, res, caller, std::move(sandbox_id), request_id);
  observe_request(spec.path, spec.method, res.status, started);  // bulwark_http_requests_total, by OpenAPI route
}

void RestApi::serve_admitted(const RouteSpec& spec, const httplib::Request& req, httplib::Response& res, const Handler& h,
                             std::optional<Caller>* caller, std::string* sandbox_id) {
  // The rate limit comes first, so a client over it costs no work (inside the route rather than a
  // pre-routing handler: httplib has then read the body, and the connection stays usable).
  if (spec.rate_limited) {
    auto wait = limiter_.take(req.remote_addr, RateClock::now());
    if (wait.count() > 0) {
      res.status = 429;
      res.set_header("Retry-After", retry_after_seconds(wait));
      res.set_content(error_json("resource_exhausted",
                                 fmt::format("rate limit: at most {:g} requests per second (bursts of {:g}) from {}; retry after {} s",
                                             d_.limits.rate, d_.limits.burst, req.remote_addr, retry_after_seconds(wait))),
                      kJson);
      return;
    }
  }
  guarded(res, [&] {
    // httplib's own limit is the largest of any route's; each route's own is checked here, first,
    // as httplib would have (a body too large is refused whoever sends it).
    if (size_t max = spec.max_body ? spec.max_body : kMaxBody; req.body.size() > max)
      throw Error(Code::kPayloadTooLarge, "request body over " + std::to_string(max) + " bytes");
    // Who, then whether: 401 before 403/404, and both before the request is looked at any further.
    admit(spec, req, caller, sandbox_id);
    CallerScope scope(*caller ? &**caller : nullptr);
    for (const auto& [k, v] : query_of(req))
      if (std::find(spec.query.begin(), spec.query.end(), k) == spec.query.end())
        throw Error(Code::kInvalidArgument,
                    k + ": unknown query parameter of " + key_of(spec.method, spec.path) +
                        (spec.query.empty() ? " (it takes none)" : ""),
                    k);
    std::string key = req.get_header_value(kIdempotencyHeader);
    if (spec.creates && req.has_header(kIdempotencyHeader)) {
      check_idempotency_key(key);
      serve_idempotent(spec, key, req, res, h);
    } else {
      h(req, res);
    }
  });
}

void RestApi::serve_idempotent(const RouteSpec& spec, const std::string& key, const httplib::Request& req,
                               httplib::Response& res, const Handler& h) {
  // Per token: another token's key is another key (owned_key does the same for sandbox records).
  const std::string scope = key_of(spec.method, spec.path) + (t_caller ? " " + t_caller->token_id : "");
  const std::string fingerprint = request_fingerprint(req.body);
  // Held while the request runs: a concurrent retry waits, then finds the answer.
  std::lock_guard lock(key_locks_.of(scope, key));
  int64_t now = to_millis(now_timestamp());
  auto stored = d_.store.find_idempotent(scope, key, now - kIdempotencyTtlMs);
  switch (decide_idempotency(stored ? std::optional(stored->fingerprint) : std::nullopt, fingerprint)) {
    case IdempotencyDecision::kReplay:
      res.status = stored->status;
      res.set_header("Idempotent-Replayed", "true");
      res.set_content(stored->body, kJson);
      return;
    case IdempotencyDecision::kConflict:
      throw Error(Code::kAlreadyExists,
                  std::string(kIdempotencyHeader) + ": '" + key + "' was used for a different request to " + scope +
                      "; a retry must send the same body, a new request a new key",
                  kIdempotencyHeader);
    case IdempotencyDecision::kRun:
      break;
  }
  h(req, res);
  // Only what succeeded is kept: a refused request changed nothing, and may be retried, fixed,
  // under the same key.
  if (res.status >= 200 && res.status < 300) d_.store.save_idempotent(scope, key, {fingerprint, res.status, res.body, now});
}

void RestApi::install(httplib::Server& srv) {
  size_t max_body = kMaxBody;
  for (const auto& s : route_specs()) max_body = std::max(max_body, s.max_body);
  srv.set_payload_max_length(max_body);
  // Live streams (events, logs follow) each hold a thread while open: more than httplib's 8.
  srv.new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  Sandboxes& sandboxes = d_.sandboxes;
  Providers& providers = d_.providers;
  InferenceRoutes& inference = d_.inference;

  add(srv, "GET", "/healthz", [this](const httplib::Request&, httplib::Response& res) {
    bool nats = d_.nats_connected && d_.nats_connected();
    nlohmann::json body = {{"status", nats ? "ok" : "degraded"}, {"nats", nats ? "connected" : "disconnected"}};
    // A 503 carries the error object too: every 4xx/5xx of the API has one.
    if (!nats)
      body["error"] = nlohmann::json::parse(
          error_json(Code::kUnavailable, "the gateway is not connected to NATS: sandboxes cannot be placed or deleted"))["error"];
    res.status = nats ? 200 : 503;
    res.set_content(body.dump(), kJson);
  });

  add(srv, "GET", "/v1/status", [this](const httplib::Request& req, httplib::Response& res) {
    auto q = query_of(req);
    auto ms = count_param(q, "timeout_ms", static_cast<size_t>(kDefaultStatusTimeout.count()), SIZE_MAX);
    if (ms > static_cast<size_t>(kMaxStatusTimeout.count()))
      throw Error(Code::kInvalidArgument,
                  "timeout_ms: at most " + std::to_string(kMaxStatusTimeout.count()) + ", got " + std::to_string(ms), "timeout_ms");
    if (!d_.status) throw Error(Code::kUnavailable, "status is not available on this gateway");
    send(res, 200, d_.status->get(std::chrono::milliseconds(ms)));
  });

  add(srv, "POST", "/v1/sandboxes", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    bool created = false;
    auto s = sandboxes.create(body_as<v1::SandboxSpec>(req), owned_key(req.get_header_value(kIdempotencyHeader)), &created,
                              caller_id());
    // Not created: a sandbox already holds this key (one older than the kept answers).
    send(res, created ? 202 : 200, s);
  });

  add(srv, "GET", "/v1/sandboxes", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto q = query_of(req);
    auto filter = make_filter(flag(q, "all"), values(q, "phase"), values(q, "label"));
    if (t_caller) filter.owner = list_owner(*t_caller);  // a ci token sees its own sandboxes only
    size_t limit = parse_limit(single(q, "limit"));
    send(res, 200, sandboxes.list(filter, single(q, "page_token").value_or(""), limit));
  });

  add(srv, "GET", "/v1/sandboxes/{sandbox_id}", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    send(res, 200, sandboxes.get(req.matches[1]));
  });

  add(srv, "DELETE", "/v1/sandboxes/{sandbox_id}", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto s = sandboxes.remove(req.matches[1]);
    send(res, s.phase() == v1::DELETED ? 200 : 202, s);
  });

  add(srv, "POST", "/v1/sandboxes/{sandbox_id}/stop", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto body = body_as<v1::StopSandboxRequest>(req);
    if (body.grace_s() > 300) throw Error(Code::kInvalidArgument, "grace_s: at most 300 seconds", "grace_s");
    send(res, 200, sandboxes.stop(req.matches[1], std::chrono::seconds(body.grace_s() ? body.grace_s() : 10)));
  });
  add(srv, "POST", "/v1/sandboxes/{sandbox_id}/start", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    body_as<google::protobuf::Empty>(req);  // no fields: refuses a malformed or unknown-field body
    send(res, 202, sandboxes.start(req.matches[1]));
  });

  add(srv, "GET", "/v1/sandboxes/{sandbox_id}/logs", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto q = query_of(req);
    v1::LogsReply reply;
    std::string stream = single(q, "stream").value_or("");
    if (!stream.empty() && stream != "stdout" && stream != "stderr" && stream != "bulwark" && stream != "denial" &&
        stream != "inference")
      throw Error(Code::kInvalidArgument, "stream: must be stdout, stderr, bulwark, denial or inference, got '" + stream + "'",
                  "stream");
    LogFollow f{.tail = count_param(q, "tail", 1000, 100000), .stream = stream};
    if (auto since = single(q, "since")) f.since_ms = parse_since(*since, to_millis(now_timestamp()));
    if (flag(q, "follow")) return serve_log_follow(sandboxes, req.matches[1], f, res);
    for (auto& l : sandboxes.logs(req.matches[1], f.tail, stream, f.since_ms)) *reply.add_lines() = std::move(l);
    send(res, 200, reply);
  });
  // Per owner: a ci token watches its own sandboxes only (list_owner), like GET /v1/sandboxes.
  add(srv, "GET", "/v1/sandboxes/{sandbox_id}/events", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    serve_events(sandboxes, std::string(req.matches[1]), t_caller ? list_owner(*t_caller) : std::nullopt, res);
  });
  add(srv, "GET", "/v1/events", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto id = single(query_of(req), "sandbox_id");
    if (id && id->empty()) throw Error(Code::kInvalidArgument, "sandbox_id: empty (leave it out to watch every sandbox)", "sandbox_id");
    serve_events(sandboxes, id, t_caller ? list_owner(*t_caller) : std::nullopt, res);
  });

  // Policies: relayed to policy-service, which versions them (docs/policy.md).
  add(srv, "PUT", "/v1/sandboxes/{sandbox_id}/policy", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto body = body_as<v1::PolicySetRequest>(req);
    check_wait(body.wait_ms());
    send(res, 200, sandboxes.policy_set(req.matches[1], std::move(body)));
  });
  add(srv, "PATCH", "/v1/sandboxes/{sandbox_id}/policy", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto body = body_as<v1::PolicyUpdateRequest>(req);
    check_wait(body.wait_ms());
    send(res, 200, sandboxes.policy_update(req.matches[1], std::move(body)));
  });
  add(srv, "GET", "/v1/sandboxes/{sandbox_id}/policy", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto q = query_of(req);
    uint64_t version = single(q, "version") ? count_param(q, "version", 0, UINT32_MAX) : 0;
    send(res, 200, sandboxes.policy_get(req.matches[1], version));
  });
  add(srv, "GET", "/v1/sandboxes/{sandbox_id}/policy/versions", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    send(res, 200, sandboxes.policy_list(req.matches[1]));
  });
  // exec and file transfer into a running sandbox, relayed to its supervisor over NATS (exec.h).
  auto exec_service = [this]() -> ExecService& {
    if (!d_.exec) throw Error(Code::kUnavailable, "exec is not available on this gateway");
    return *d_.exec;
  };
  add(srv, "POST", "/v1/sandboxes/{sandbox_id}/exec", [&sandboxes, exec_service](const httplib::Request& req, httplib::Response& res) {
    require_json(req);
    bool stream = flag(query_of(req), "stream") || req.get_header_value("Accept").find("application/x-ndjson") != std::string::npos;
    serve_exec(exec_service(), sandboxes, req.matches[1], req.body, stream, res);
  });
  add(srv, "PUT", "/v1/sandboxes/{sandbox_id}/files", [&sandboxes, exec_service](const httplib::Request& req, httplib::Response& res) {
    serve_upload(exec_service(), sandboxes, req.matches[1], single(query_of(req), "path").value_or(""), req.body, res);
  });
  add(srv, "GET", "/v1/sandboxes/{sandbox_id}/files", [&sandboxes, exec_service](const httplib::Request& req, httplib::Response& res) {
    serve_download(exec_service(), sandboxes, req.matches[1], single(query_of(req), "path").value_or(""), res);
  });
  add(srv, "POST", "/v1/policies/validate", [&sandboxes](const httplib::Request& req, httplib::Response& res) {
    auto body = body_as<v1::PolicyValidateRequest>(req);
    if (body.yaml().empty()) throw Error(Code::kInvalidArgument, "yaml: required (the policy YAML)", "yaml");
    send(res, 200, sandboxes.policy_validate(std::move(body)));
  });

  // Proposed rules from denials (docs/policy.md "Pending proposals"); approving one is a normal
  // policy update through policy-service, acknowledged by the sandbox unless wait_ms is 0.
  auto proposals = [this]() -> Proposals& {
    if (!d_.proposals) throw Error(Code::kUnavailable, "policy proposals are not available on this gateway");
    return *d_.proposals;
  };
  auto proposal_id_of = [](const std::string& text) {
    try {
      size_t pos = 0;
      long long n = std::stoll(text, &pos);
      if (pos == text.size() && n > 0) return static_cast<int64_t>(n);
    } catch (const std::exception&) {
    }
    throw Error(Code::kInvalidArgument, "proposal_id: must be a positive integer, got '" + text + "'", "proposal_id");
  };
  add(srv, "GET", "/v1/policies/{name}/pending", [&sandboxes, proposals](const httplib::Request& req, httplib::Response& res) {
    std::string id = sandboxes.get(req.matches[1]).sandbox_id();
    nlohmann::json out = {{"proposals", nlohmann::json::array()}};
    for (const auto& p : proposals().list(id, flag(query_of(req), "all") ? "" : "pending"))
      out["proposals"].push_back(to_json(p));
    res.status = 200;
    res.set_content(out.dump(), kJson);
  });
  add(srv, "POST", "/v1/policies/{name}/pending/{proposal_id}/approve",
      [&sandboxes, proposals, proposal_id_of](const httplib::Request& req, httplib::Response& res) {
        require_json(req);
        auto body = nlohmann::json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
        if (!body.is_object()) throw Error(Code::kInvalidArgument, "the body must be a JSON object: {wait_ms, reason}");
        int64_t wait = body.value("wait_ms", int64_t{10000});
        if (wait < 0) throw Error(Code::kInvalidArgument, "wait_ms: must be 0 or more", "wait_ms");
        check_wait(static_cast<uint32_t>(std::min<int64_t>(wait, UINT32_MAX)));
        std::string reason = body.value("reason", std::string());
        std::string id = sandboxes.get(req.matches[1]).sandbox_id();
        v1::PolicyWriteReply written;
        auto p = proposals().approve(id, proposal_id_of(req.matches[2]), [&](const Proposal& p) {
          written = sandboxes.policy_update(id, approval_request(p, static_cast<uint32_t>(wait), reason));
          return written.version();
        });
        nlohmann::json out = {{"proposal", to_json(p)}, {"policy", nlohmann::json::parse(message_to_json(written))}};
        res.status = 200;
        res.set_content(out.dump(), kJson);
      });
  add(srv, "POST", "/v1/policies/{name}/pending/{proposal_id}/reject",
      [&sandboxes, proposals, proposal_id_of](const httplib::Request& req, httplib::Response& res) {
        std::string id = sandboxes.get(req.matches[1]).sandbox_id();
        nlohmann::json out = {{"proposal", to_json(proposals().reject(id, proposal_id_of(req.matches[2])))}};
        res.status = 200;
        res.set_content(out.dump(), kJson);
      });

  // Providers: credentials go in, only masked values come out (docs/api.md).
  add(srv, "POST", "/v1/providers", [&providers](const httplib::Request& req, httplib::Response& res) {
    send(res, 201, providers.create(body_as<v1::Provider>(req)));
  });
  add(srv, "GET", "/v1/providers", [&providers](const httplib::Request& req, httplib::Response& res) {
    auto q = query_of(req);
    size_t limit = parse_limit(single(q, "limit"));
    send(res, 200, providers.list(single(q, "page_token").value_or(""), limit));
  });
  add(srv, "GET", "/v1/providers/{name}", [&providers](const httplib::Request& req, httplib::Response& res) {
    send(res, 200, providers.get(req.matches[1]));
  });
  add(srv, "PATCH", "/v1/providers/{name}", [&providers](const httplib::Request& req, httplib::Response& res) {
    auto patch = body_as<v1::Provider>(req);
    // proto3 cannot tell "base_url": "" (back to the type's default) from no base_url at all.
    auto j = nlohmann::json::parse(req.body.empty() ? "{}" : req.body);
    bool base_url_given =
        (j.contains("base_url") && !j["base_url"].is_null()) || (j.contains("baseUrl") && !j["baseUrl"].is_null());
    send(res, 200, providers.update(req.matches[1], patch, base_url_given));
  });
  add(srv, "DELETE", "/v1/providers/{name}", [&providers](const httplib::Request& req, httplib::Response& res) {
    providers.remove(req.matches[1]);
    res.status = 204;
  });

  // Inference route tables: global, or one sandbox's with ?sandbox_id=<id or name>.
  add(srv, "PUT", "/v1/inference", [&inference](const httplib::Request& req, httplib::Response& res) {
    auto q = query_of(req);
    auto c = body_as<v1::InferenceConfig>(req);
    send(res, 200, inference.put(single(q, "sandbox_id").value_or(""), std::move(c)));
  });
  add(srv, "GET", "/v1/inference", [&inference](const httplib::Request& req, httplib::Response& res) {
    send(res, 200, inference.get(single(query_of(req), "sandbox_id").value_or("")));
  });
  add(srv, "DELETE", "/v1/inference", [&inference](const httplib::Request& req, httplib::Response& res) {
    inference.remove(single(query_of(req), "sandbox_id").value_or(""));
    res.status = 204;
  });

  // API tokens and the audit log (admin only, authz.h). The secret is in the create answer only.
  add(srv, "POST", "/v1/tokens", [this](const httplib::Request& req, httplib::Response& res) {
    auto t = tokens_of(d_.tokens).create(body_as<v1::CreateTokenRequest>(req), caller_id());
    res.set_header("Cache-Control", "no-store");
    send(res, 201, t);
  });
  add(srv, "GET", "/v1/tokens", [this](const httplib::Request&, httplib::Response& res) {
    v1::ListTokensReply reply;
    for (const auto& t : tokens_of(d_.tokens).list()) *reply.add_tokens() = token_json(t);
    send(res, 200, reply);
  });
  add(srv, "DELETE", "/v1/tokens/{token_id}", [this](const httplib::Request& req, httplib::Response& res) {
    send(res, 200, token_json(tokens_of(d_.tokens).revoke(req.matches[1])));
  });
  add(srv, "GET", "/v1/audit", [this](const httplib::Request& req, httplib::Response& res) {
    auto q = query_of(req);
    int64_t since = 0;
    if (auto s = single(q, "since"); s && *s != "0") since = static_cast<int64_t>(count_param(q, "since", 0, INT64_MAX));
    if (!d_.audit) throw Error(Code::kFailedPrecondition, "this gateway keeps no audit log");
    send(res, 200, d_.audit->list(since, count_param(q, "limit", 100, 1000)));
  });

  for (const auto& s : route_specs())
    if (std::find(installed_.begin(), installed_.end(), key_of(s.method, s.path)) == installed_.end())
      throw std::logic_error("route " + key_of(s.method, s.path) + " of route_specs() is not installed");

  // httplib answers unknown routes, oversize bodies and the like itself; give them JSON bodies too.
  srv.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    switch (res.status) {
      case 404:
        res.set_content(error_json(Code::kNotFound, "no route " + req.method + " " + req.path), kJson);
        break;
      case 413:
        res.set_content(error_json(Code::kPayloadTooLarge, "request body over " + std::to_string(kMaxBody) + " bytes"), kJson);
        break;
      default:
        res.set_content(error_json(res.status >= 500 ? Code::kInternal : Code::kInvalidArgument,
                                   "HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path),
                        kJson);
    }
  });
  srv.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(error_json(Code::kInternal, what), kJson);
  });
}

}  // namespace bulwark::gateway
