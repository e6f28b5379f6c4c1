#include "services/privacy-router/routes.h"

#include <algorithm>

#include "services/privacy-router/api.h"
#include "shared/subjects.h"

namespace bulwark::privacy_router {
namespace {

constexpr const char* kSandboxPrefix = "sandbox.";

bool is_local_only(const std::string& privacy) { return privacy == kLocalOnly; }

std::string privacy_of(const v1::InferenceBackend& b) { return b.privacy().empty() ? "any" : b.privacy(); }

}  // namespace

bool glob_match(const std::string& pattern, const std::string& s) {
  // Greedy with one backtrack point: the last '*' seen absorbs one more character on a mismatch.
  size_t p = 0, i = 0, star = std::string::npos, mark = 0;
  while (i < s.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = i;
    } else if (p < pattern.size() && pattern[p] == s[i]) {
      ++p;
      ++i;
    } else if (star != std::string::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool RouteTable::put(const std::string& key, const v1::InferenceConfig& cfg) {
  if (key == subjects::kInferenceGlobalKey) {
    global_ = cfg;
    return true;
  }
  if (key.rfind(kSandboxPrefix, 0) == 0 && key.size() > std::string(kSandboxPrefix).size()) {
    sandboxes_[key.substr(std::string(kSandboxPrefix).size())] = cfg;
    return true;
  }
  return false;
}

bool RouteTable::remove(const std::string& key) {
  if (key == subjects::kInferenceGlobalKey) {
    global_.reset();
    return true;
  }
  if (key.rfind(kSandboxPrefix, 0) == 0) return sandboxes_.erase(key.substr(std::string(kSandboxPrefix).size())) > 0;
  return false;
}

const v1::InferenceConfig* RouteTable::sandbox(const std::string& sandbox_id) const {
  auto it = sandboxes_.find(sandbox_id);
  return it == sandboxes_.end() ? nullptr : &it->second;
}

bool RouteTable::local_only(const std::string& sandbox_id) const {
  const auto* sb = sandbox(sandbox_id);
  return (sb && is_local_only(sb->privacy())) || (global_ && is_local_only(global_->privacy()));
}

Selection RouteTable::select(const std::string& sandbox_id, const std::string& model) const {
  Selection sel;
  sel.local_only = local_only(sandbox_id);
  const v1::InferenceRoute* route = nullptr;
  const auto* sb = sandbox(sandbox_id);
  for (const auto& [cfg, scope] : {std::pair{sb, "sandbox"}, std::pair{global_ ? &*global_ : nullptr, "global"}}) {
    if (!cfg || route) continue;
    for (const auto& r : cfg->routes()) {
      if (glob_match(r.match(), model)) {
        route = &r;
        sel.scope = scope;
        break;
      }
    }
  }
  if (!route) return sel;
  sel.matched = true;
  sel.match = route->match();
  std::vector<v1::InferenceBackend> order(route->backends().begin(), route->backends().end());
  std::stable_sort(order.begin(), order.end(),
                   [](const v1::InferenceBackend& a, const v1::InferenceBackend& b) { return a.cost() < b.cost(); });
  for (auto& b : order) {
    if (sel.local_only && !is_local_only(b.privacy())) {
      sel.skipped.push_back(b.provider() + ": privacy is '" + privacy_of(b) +
                            "' but this sandbox may use only local-only backends");
      continue;
    }
    sel.candidates.push_back(std::move(b));
  }
  return sel;
}

std::vector<std::string> RouteTable::models(const std::string& sandbox_id) const {
  const bool lo = local_only(sandbox_id);
  std::vector<std::string> out;
  auto add = [&](const std::string& id) {
    if (!id.empty() && std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
  };
  for (const auto* cfg : {sandbox(sandbox_id), global_ ? &*global_ : nullptr}) {
    if (!cfg) continue;
    for (const auto& r : cfg->routes()) {
      const bool wildcard = r.match().find('*') != std::string::npos;
      for (const auto& b : r.backends()) {
        if (lo && !is_local_only(b.privacy())) continue;
        add(wildcard ? b.model() : r.match());
      }
    }
  }
  return out;
}

std::string backend_unusable(const std::string& provider, const std::string& type, const providers::Profile* profile,
                             providers::ApiStyle request) {
  if (!profile) return "provider " + provider + " has unknown type '" + type + "'";
  if (profile->api == providers::ApiStyle::kNone)
    return "provider " + provider + " is of type " + type + ", which serves no inference API";
  if (profile->api != request)
    return std::string("speaks ") + style_name(profile->api) + ", request is " + style_name(request);
  return "";
}

}  // namespace bulwark::privacy_router
