#pragma once
// `bulwark sandbox list`: flags into GET /v1/sandboxes queries, and pages followed. Pure: the
// HTTP call is passed in.
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace bulwark::cli {

struct SandboxListFlags {
  bool all = false;
  std::vector<std::string> labels;  // KEY=VALUE, all must match
  std::vector<std::string> phases;  // any of them; case does not matter (ready = READY)
  size_t limit = 0;                 // at most this many in all; 0 = every one
  std::string page_token;           // set: fetch this one page only
};

// The largest page the gateway serves (services/gateway-api/paging.h).
inline constexpr size_t kMaxPage = 1000;

// GET path for one page. Throws CliError(kUsage) naming --label for one without '='.
std::string sandbox_list_path(const SandboxListFlags& f, const std::string& page_token, size_t page_size);

// {"sandboxes": [...], "next_page_token": T}: the pages fetch() returns, followed until the last or
// until f.limit sandboxes; T is where a later call would go on ("" when nothing is left). With
// f.page_token only that page is fetched.
nlohmann::json list_sandboxes(const SandboxListFlags& f, const std::function<nlohmann::json(const std::string& path)>& fetch);

}  // namespace bulwark::cli
