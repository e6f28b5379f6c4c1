#include "cli/format.h"

#include <algorithm>

#include "cli/client.h"

namespace bulwark::cli {

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string sandbox_table(const std::vector<nlohmann::json>& sandboxes) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "ID", "PHASE", "EXIT", "DRIVER", "REASON"}};
  for (const auto& s : sandboxes) {
    rows.push_back({s.value("name", ""), s.value("sandbox_id", ""), s.value("phase", ""),
                    s.contains("exit_code") ? std::to_string(s["exit_code"].get<int>()) : "-",
                    s.value("driver_id", "-"), s.value("reason", "")});
  }
  return table(rows);
}

std::pair<std::string, std::string> key_value(const std::string& flag, const std::string& kv) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) throw CliError{kUsage, flag + " '" + kv + "' must look like KEY=VALUE"};
  return {kv.substr(0, eq), kv.substr(eq + 1)};
}

std::string denial_table(const std::vector<nlohmann::json>& lines) {
  std::vector<std::vector<std::string>> rows = {{"LAYER", "BINARY", "TARGET", "REQUEST", "RULE", "VERSION", "REASON"}};
  for (const auto& l : lines) {
    const auto d = l.value("denial", nlohmann::json::object());
    std::string target = d.value("host", "");
    if (d.value("port", 0) != 0) target += ":" + std::to_string(d.value("port", 0));
    std::string request = d.value("method", "");
    if (!d.value("path", "").empty()) request += (request.empty() ? "" : " ") + d.value("path", "");
    std::string layer = d.value("layer", "?") + (d.value("audit", false) ? " (audit)" : "");
    rows.push_back({layer, d.value("binary", ""), target, request, d.value("rule", ""),
                    d.value("policy_version", "0") == "0" ? "" : d.value("policy_version", ""), d.value("reason", "")});
  }
  return table(rows);
}

}  // namespace bulwark::cli
