#include "cli/format.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>

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

std::string human_duration(int64_t ms) {
  if (ms < 0) ms = 0;
  if (ms < 10000) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000);
    std::string s = buf;
    if (s.size() > 3 && s.compare(s.size() - 3, 3, ".0s") == 0) s.erase(s.size() - 3, 2);
    return s;
  }
  int64_t s = ms / 1000, m = s / 60, h = m / 60, d = h / 24;
  if (d > 0) return std::to_string(d) + "d" + std::to_string(h % 24) + "h";
  if (h > 0) return std::to_string(h) + "h" + std::to_string(m % 60) + "m";
  if (m > 0) return std::to_string(m) + "m" + std::to_string(s % 60) + "s";
  return std::to_string(s) + "s";
}

namespace {
// int64 fields arrive as strings in the protobuf JSON mapping.
int64_t int_of(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return 0;
  const auto& v = j[key];
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) {
    try {
      return std::stoll(v.get<std::string>());
    } catch (const std::exception&) {
    }
  }
  return 0;
}
std::string count_of(const nlohmann::json& j, const char* key) { return std::to_string(int_of(j, key)); }

}  // namespace

void emit_yaml(YAML::Emitter& e, const nlohmann::json& j) {
  if (j.is_object()) {
    e << YAML::BeginMap;
    for (const auto& [k, v] : j.items()) {
      e << YAML::Key << k << YAML::Value;
      emit_yaml(e, v);
    }
    e << YAML::EndMap;
  } else if (j.is_array()) {
    e << YAML::BeginSeq;
    for (const auto& v : j) emit_yaml(e, v);
    e << YAML::EndSeq;
  } else if (j.is_string()) {
    e << j.get<std::string>();
  } else if (j.is_boolean()) {
    e << j.get<bool>();
  } else if (j.is_number_integer()) {
    e << j.get<int64_t>();
  } else if (j.is_number()) {
    e << j.get<double>();
  } else {
    e << YAML::Null;
  }
}


std::string to_yaml(const nlohmann::json& j) {
  YAML::Emitter e;
  emit_yaml(e, j);
  return std::string(e.c_str()) + "\n";
}

std::string status_table(const nlohmann::json& st, const std::string& gateway_url) {
  std::string out = "gateway " + gateway_url + "  version " + st.value("version", "?") + "  up " +
                    human_duration(int_of(st, "uptime_ms")) + "  NATS " +
                    (st.value("nats_connected", false) ? "connected" : "DISCONNECTED") + "\n\n";
  std::vector<std::vector<std::string>> services = {{"SERVICE", "LIVE", "VERSION", "UPTIME", "INSTANCE"}};
  for (const auto& s : st.value("services", nlohmann::json::array())) {
    bool live = s.value("live", false);
    services.push_back({s.value("service", "?"), live ? "yes" : "no", live ? s.value("version", "") : "-",
                        live ? human_duration(int_of(s, "uptime_ms")) : "-", live ? s.value("instance_id", "") : s.value("error", "")});
  }
  out += table(services) + "\n";
  const auto drivers = st.value("drivers", nlohmann::json::array());
  if (drivers.empty()) {
    out += "no driver is sending heartbeats: sandboxes cannot be placed\n";
  } else {
    std::vector<std::vector<std::string>> rows = {{"DRIVER", "KIND", "CAPACITY", "FREE", "STATE", "VERSION"}};
    for (const auto& d : drivers)
      rows.push_back({d.value("driver_id", "?"), d.value("kind", ""), count_of(d, "capacity"), count_of(d, "free_slots"),
                      d.value("draining", false) ? "draining" : "ready", d.value("version", "")});
    out += table(rows);
  }
  // In lifecycle order, only the phases that have sandboxes.
  static const char* kPhases[] = {"PENDING", "SCHEDULED", "STARTING", "READY", "EXITED", "STOPPING", "DELETED", "FAILED"};
  std::string counts;
  const auto by_phase = st.value("sandboxes_by_phase", nlohmann::json::object());
  for (const char* p : kPhases) {
    int64_t n = int_of(by_phase, p);
    if (n > 0) counts += (counts.empty() ? "" : ", ") + std::string(p) + " " + std::to_string(n);
  }
  out += "\nsandboxes: " + (counts.empty() ? std::string("none") : counts) + "\n";
  return out;
}

}  // namespace bulwark::cli
