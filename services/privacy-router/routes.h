#pragma once
// Route tables and backend selection, pure: which backends may serve (sandbox, model), in which
// order, and which are left out and why. The tables arrive from KV `inference_routes` (router.cpp
// feeds them in); nothing here touches NATS or a socket.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bulwark/v1/inference.pb.h"
#include "shared/providers.h"

namespace bulwark::privacy_router {

inline constexpr const char* kLocalOnly = "local-only";

// '*' matches any run of characters (also none); every other character matches itself.
bool glob_match(const std::string& pattern, const std::string& s);

struct Selection {
  bool matched = false;
  std::string match;  // the route's pattern
  std::string scope;  // "sandbox" | "global"
  bool local_only = false;  // the sandbox (or the global table) allows only local-only backends
  std::vector<v1::InferenceBackend> candidates;  // to try in this order
  std::vector<std::string> skipped;              // "provider: why it is left out"
  std::string route_label() const { return matched ? match + " (" + scope + ")" : ""; }
};

class RouteTable {
 public:
  // key: "global" or "sandbox.<sandbox_id>" (the KV key). Returns false for any other key.
  bool put(const std::string& key, const v1::InferenceConfig& cfg);
  bool remove(const std::string& key);

  // The sandbox's routes in order, then the global ones; the first whose match fits the model
  // wins. Candidates: its backends by cost (cheapest first, ties in listed order), without those
  // that are not local-only when the sandbox (or the global table) says local-only.
  Selection select(const std::string& sandbox_id, const std::string& model) const;
  // GET /v1/models: every exact match, plus the explicit models of wildcard routes' backends;
  // no duplicates, in route order. Under local-only, only what a local-only backend serves.
  std::vector<std::string> models(const std::string& sandbox_id) const;
  bool local_only(const std::string& sandbox_id) const;
  bool empty() const { return !global_ && sandboxes_.empty(); }

 private:
  const v1::InferenceConfig* sandbox(const std::string& sandbox_id) const;
  std::optional<v1::InferenceConfig> global_;
  std::map<std::string, v1::InferenceConfig> sandboxes_;
};

// Why a resolved provider cannot serve a request of this style, or "" when it can.
// profile is nullptr when the provider's type is unknown.
std::string backend_unusable(const std::string& provider, const std::string& type, const providers::Profile* profile,
                             providers::ApiStyle request);

}  // namespace bulwark::privacy_router
