#include "services/gateway-api/inference.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <set>

#include "services/gateway-api/providers.h"
#include "shared/error.h"
#include "shared/subjects.h"
#include "shared/util.h"

namespace bulwark::gateway {

namespace {

void check_privacy(std::string* privacy, const std::string& field) {
  if (privacy->empty()) *privacy = "any";
  if (*privacy != "any" && *privacy != "local-only")
    throw Error(Code::kInvalidArgument, field + ": must be any or local-only, got '" + *privacy + "'", field);
}

std::string scope_label(const std::string& scope) { return scope.empty() ? "global" : "sandbox " + scope; }

bool gone(const v1::Sandbox& s) { return s.phase() == v1::DELETED || s.phase() == v1::STOPPING; }

}  // namespace

void normalize_inference(v1::InferenceConfig& c,
                         const std::function<std::optional<ProviderRow>(const std::string&)>& find_provider) {
  auto bad = [](const std::string& field, const std::string& why) {
    return Error(Code::kInvalidArgument, field + ": " + why, field);
  };
  check_privacy(c.mutable_privacy(), "privacy");
  if (c.routes().empty()) throw bad("routes", "at least one route is required");
  std::set<std::string> matches;
  for (int i = 0; i < c.routes_size(); ++i) {
    auto* r = c.mutable_routes(i);
    const std::string rf = "routes[" + std::to_string(i) + "]";
    if (r->match().empty()) throw bad(rf + ".match", "required: the model pattern ('*' matches any model)");
    // The first matching route wins, so a repeated pattern could never be used.
    if (!matches.insert(r->match()).second)
      throw bad(rf + ".match", "'" + r->match() + "' is already the pattern of an earlier route; add backends to that one");
    if (r->backends().empty()) throw bad(rf + ".backends", "at least one backend is required");
    for (int j = 0; j < r->backends_size(); ++j) {
      auto* b = r->mutable_backends(j);
      const std::string bf = rf + ".backends[" + std::to_string(j) + "]";
      if (b->provider().empty()) throw bad(bf + ".provider", "required: a provider name");
      auto p = find_provider(b->provider());
      if (!p) throw bad(bf + ".provider", "no provider named '" + b->provider() + "' (see GET /v1/providers)");
      if (auto why = inference_problem(p->type, p->base_url); !why.empty())
        throw bad(bf + ".provider", "provider '" + b->provider() + "' cannot serve inference: " + why);
      check_privacy(b->mutable_privacy(), bf + ".privacy");
      if (!std::isfinite(b->cost()) || b->cost() < 0)
        throw bad(bf + ".cost", "must be a finite number >= 0, got " + std::to_string(b->cost()));
    }
  }
}

InferenceRoutes::InferenceRoutes(Store& store, RoutePublisher& pub) : store_(store), pub_(pub) {}

std::string InferenceRoutes::scope_of(const std::string& ref, bool for_write, const std::string& field) {
  if (ref.empty()) return "";
  auto s = store_.find(ref);
  if (!s) throw Error(Code::kNotFound, "no sandbox with id or name '" + ref + "'", field);
  if (for_write && gone(*s))
    throw Error(Code::kFailedPrecondition, "sandbox '" + ref + "' is " + v1::SandboxPhase_Name(s->phase()) +
                                               ": it takes no inference routes", field);
  return s->sandbox_id();
}

void InferenceRoutes::publish(const std::string& what, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    throw Error(Code::kUnavailable, "cannot " + what + " in NATS KV " + subjects::kInferenceRoutesBucket + " (" + e.what() +
                                        "); nothing was changed: retry once NATS is back");
  }
}

v1::InferenceConfig InferenceRoutes::put(const std::string& sandbox, v1::InferenceConfig c) {
  std::string scope = scope_of(sandbox, true, "sandbox_id");
  if (!c.sandbox_id().empty()) {
    std::string named = scope_of(c.sandbox_id(), true, "sandbox_id");
    if (!sandbox.empty() && named != scope)
      throw Error(Code::kInvalidArgument,
                  "sandbox_id: the body names sandbox '" + c.sandbox_id() + "' but ?sandbox_id= names '" + sandbox + "'",
                  "sandbox_id");
    scope = named;
  }
  normalize_inference(c, [this](const std::string& n) { return store_.find_provider(n); });
  c.set_sandbox_id(scope);
  *c.mutable_updated_at() = now_timestamp();
  const std::string key = subjects::inference_routes_key(scope);

  std::lock_guard lock(mu_);
  auto before = store_.find_inference(scope);
  publish("publish the " + scope_label(scope) + " inference routes", [&] { pub_.put(key, c.SerializeAsString()); });
  try {
    store_.put_inference(c);
  } catch (...) {
    // Put KV back as SQLite has it, so the routers never run a table the gateway does not have.
    try {
      if (before) pub_.put(key, before->SerializeAsString());
      else pub_.erase(key);
    } catch (const std::exception& e) {
      spdlog::error("cannot restore KV key {} after a failed store: {} (the next gateway start repairs it)", key, e.what());
    }
    throw;
  }
  spdlog::info("inference routes of {} set: {} route(s)", scope_label(scope), c.routes_size());
  return c;
}

v1::InferenceConfig InferenceRoutes::get(const std::string& sandbox) {
  std::string scope = scope_of(sandbox, false, "sandbox_id");
  auto c = store_.find_inference(scope);
  if (!c)
    throw Error(Code::kNotFound, "no inference routes for " + (scope.empty() ? "the global scope" : "sandbox '" + sandbox + "'"),
                "sandbox_id");
  return *c;
}

void InferenceRoutes::remove(const std::string& sandbox) {
  std::string scope = scope_of(sandbox, false, "sandbox_id");
  const std::string key = subjects::inference_routes_key(scope);
  std::lock_guard lock(mu_);
  auto before = store_.find_inference(scope);
  if (!before)
    throw Error(Code::kNotFound, "no inference routes for " + (scope.empty() ? "the global scope" : "sandbox '" + sandbox + "'"),
                "sandbox_id");
  publish("delete the " + scope_label(scope) + " inference routes", [&] { pub_.erase(key); });
  try {
    store_.delete_inference(scope);
  } catch (...) {
    try {
      pub_.put(key, before->SerializeAsString());
    } catch (const std::exception& e) {
      spdlog::error("cannot restore KV key {} after a failed delete: {} (the next gateway start repairs it)", key, e.what());
    }
    throw;
  }
  spdlog::info("inference routes of {} deleted", scope_label(scope));
}

void InferenceRoutes::drop_sandbox(const std::string& sandbox_id) {
  std::lock_guard lock(mu_);
  if (!store_.delete_inference(sandbox_id)) return;
  spdlog::info("inference routes of sandbox {} deleted with it", sandbox_id);
  try {
    pub_.erase(subjects::inference_routes_key(sandbox_id));
  } catch (const std::exception& e) {
    spdlog::warn("cannot erase the inference routes of deleted sandbox {} from KV: {} (erased at the next gateway start)",
                 sandbox_id, e.what());
  }
}

void InferenceRoutes::sync() {
  std::lock_guard lock(mu_);
  std::set<std::string> keep;
  for (const auto& c : store_.list_inference()) {
    if (!c.sandbox_id().empty()) {
      auto s = store_.find(c.sandbox_id());
      if (!s || s->sandbox_id() != c.sandbox_id() || gone(*s)) {
        store_.delete_inference(c.sandbox_id());
        spdlog::info("inference routes of deleted sandbox {} dropped", c.sandbox_id());
        continue;
      }
    }
    const std::string key = subjects::inference_routes_key(c.sandbox_id());
    pub_.put(key, c.SerializeAsString());
    keep.insert(key);
  }
  size_t erased = 0;
  for (const auto& k : pub_.keys())
    if (!keep.count(k)) pub_.erase(k), ++erased;
  spdlog::info("inference routes: {} table(s) published to KV {}{}", keep.size(), subjects::kInferenceRoutesBucket,
               erased ? ", " + std::to_string(erased) + " stale key(s) erased" : std::string());
}

}  // namespace bulwark::gateway
