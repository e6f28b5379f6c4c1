#include "cli/sandbox_ops.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>

#include "cli/client.h"
#include "cli/format.h"

namespace bulwark::cli {

namespace {
std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string enc(const std::string& s) { return httplib::detail::encode_query_param(s); }
}  // namespace

std::string sandbox_list_path(const SandboxListFlags& f, const std::string& page_token, size_t page_size) {
  std::vector<std::string> q;
  if (f.all) q.push_back("all=true");
  for (const auto& l : f.labels) {
    key_value("--label", l);  // KEY=VALUE or a usage error
    q.push_back("label=" + enc(l));
  }
  for (const auto& p : f.phases) q.push_back("phase=" + enc(upper(p)));
  q.push_back("limit=" + std::to_string(page_size));
  if (!page_token.empty()) q.push_back("page_token=" + enc(page_token));
  std::string path = "/v1/sandboxes";
  for (size_t i = 0; i < q.size(); ++i) path += (i == 0 ? "?" : "&") + q[i];
  return path;
}

nlohmann::json list_sandboxes(const SandboxListFlags& f, const std::function<nlohmann::json(const std::string&)>& fetch) {
  auto out = nlohmann::json{{"sandboxes", nlohmann::json::array()}, {"next_page_token", ""}};
  std::string token = f.page_token;
  // Pages as large as allowed: fewer round trips; --limit asks for no more than it prints.
  for (;;) {
    size_t want = f.limit == 0 ? kMaxPage : std::min(kMaxPage, f.limit - out["sandboxes"].size());
    auto page = fetch(sandbox_list_path(f, token, want));
    for (const auto& s : page.value("sandboxes", nlohmann::json::array())) out["sandboxes"].push_back(s);
    token = page.value("next_page_token", "");
    out["next_page_token"] = token;
    if (token.empty() || !f.page_token.empty() || (f.limit != 0 && out["sandboxes"].size() >= f.limit)) return out;
  }
}

}  // namespace bulwark::cli
