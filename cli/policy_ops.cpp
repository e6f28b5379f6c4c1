#include "cli/policy_ops.h"

#include <charconv>

#include "cli/client.h"
#include "cli/format.h"

namespace bulwark::cli {
namespace {

struct Target {
  std::string host;
  uint32_t port = 0;
  std::vector<std::string> rest;  // what followed host:port, split on ':' up to `parts` fields
};

// "host:port:a:b..." with `extra` more fields; the last one keeps any further ':' (paths may hold it).
Target split(const std::string& flag, const std::string& form, const std::string& v, size_t extra, bool port_optional,
             size_t min_extra) {
  auto bad = [&](const std::string& why) { return CliError{kUsage, flag + " '" + v + "': " + why + " (expected " + form + ")"}; };
  std::vector<std::string> parts;
  size_t start = 0;
  while (parts.size() < 1 + 1 + extra) {
    size_t c = v.find(':', start);
    if (c == std::string::npos || parts.size() == 1 + extra) {
      parts.push_back(v.substr(start));
      break;
    }
    parts.push_back(v.substr(start, c - start));
    start = c + 1;
  }
  Target t;
  t.host = parts[0];
  if (t.host.empty()) throw bad("the host is empty");
  if (parts.size() < 2) {
    if (!port_optional) throw bad("the port is missing");
  } else {
    const std::string& p = parts[1];
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), t.port);
    if (ec != std::errc() || end != p.data() + p.size() || t.port == 0 || t.port > 65535)
      throw bad("the port must be a number from 1 to 65535, got '" + p + "'");
  }
  for (size_t i = 2; i < parts.size(); ++i) t.rest.push_back(parts[i]);
  if (t.rest.size() < min_extra) throw bad("a field is missing");
  for (const auto& r : t.rest)
    if (r.empty()) throw bad("a field is empty");
  return t;
}

// A YAML flow string, quoted so any path or method survives as text.
std::string yaml_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// The network_policies key a new endpoint goes under when --network-policy is not given.
std::string key_for(const std::string& host) {
  std::string k;
  for (char c : host) k += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return k;
}

nlohmann::json rule_op(const char* op, const std::string& flag, const std::string& v, bool deny, const std::string& key) {
  auto t = split(flag, "host:port:METHOD:PATH", v, 2, false, 2);
  if (t.rest[1].front() != '/')
    throw CliError{kUsage, flag + " '" + v + "': the path must start with '/' (expected host:port:METHOD:PATH)"};
  return {{op,
           {{"network_policy", key},
            {"host", t.host},
            {"port", t.port},
            {"rule_yaml", "{method: " + yaml_quoted(t.rest[0]) + ", path: " + yaml_quoted(t.rest[1]) + "}"},
            {"deny", deny}}}};
}

}  // namespace

nlohmann::json update_operations(const UpdateFlags& f) {
  nlohmann::json ops = nlohmann::json::array();
  for (const auto& v : f.add_endpoint) {
    auto t = split("--add-endpoint", "host:port[:access]", v, 1, false, 0);
    std::string endpoint = "{host: " + yaml_quoted(t.host) + ", port: " + std::to_string(t.port);
    if (!t.rest.empty()) {
      const auto& a = t.rest[0];
      if (a != "read-only" && a != "read-write" && a != "full")
        throw CliError{kUsage, "--add-endpoint '" + v + "': access must be read-only, read-write or full, got '" + a + "'"};
      endpoint += ", protocol: rest, access: " + a;
    }
    endpoint += "}";
    ops.push_back({{"add_endpoint",
                    {{"network_policy", f.network_policy.empty() ? key_for(t.host) : f.network_policy},
                     {"endpoint_yaml", endpoint},
                     {"binaries", f.binaries}}}});
  }
  for (const auto& v : f.add_allow) ops.push_back(rule_op("add_rule", "--add-allow", v, false, f.network_policy));
  for (const auto& v : f.add_deny) ops.push_back(rule_op("add_rule", "--add-deny", v, true, f.network_policy));
  for (const auto& v : f.remove_allow) ops.push_back(rule_op("remove_rule", "--remove-allow", v, false, f.network_policy));
  for (const auto& v : f.remove_deny) ops.push_back(rule_op("remove_rule", "--remove-deny", v, true, f.network_policy));
  for (const auto& v : f.remove_endpoint) {
    auto t = split("--remove-endpoint", "host[:port]", v, 0, true, 0);
    ops.push_back({{"remove_endpoint", {{"network_policy", f.network_policy}, {"host", t.host}, {"port", t.port}}}});
  }
  if (ops.empty())
    throw CliError{kUsage, "policy update: give at least one of --add-endpoint, --add-allow, --add-deny, --remove-endpoint, "
                           "--remove-allow, --remove-deny"};
  return ops;
}

std::string proposal_table(const std::vector<nlohmann::json>& proposals) {
  std::vector<std::vector<std::string>> rows = {{"ID", "HITS", "BINARY", "ENDPOINT", "NETWORK_POLICY", "STATUS", "LAST REASON"}};
  for (const auto& p : proposals)
    rows.push_back({std::to_string(p.value("proposal_id", int64_t{0})), std::to_string(p.value("hits", int64_t{0})),
                    p.value("binary", ""), p.value("host", "") + ":" + std::to_string(p.value("port", 0)),
                    p.value("network_policy", ""), p.value("status", ""), p.value("last_reason", "")});
  return table(rows);
}

std::string approval_line(const nlohmann::json& answer) {
  const auto& p = answer.contains("proposal") ? answer["proposal"] : nlohmann::json::object();
  const auto& w = answer.contains("policy") ? answer["policy"] : nlohmann::json::object();
  std::string line = "proposal " + std::to_string(p.value("proposal_id", int64_t{0})) + " approved: " +
                     p.value("binary", "") + " may reach " + p.value("host", "") + ":" + std::to_string(p.value("port", 0)) +
                     " (network_policies." + p.value("network_policy", "") + "); policy version " + w.value("version", "?");
  return line + (w.value("acknowledged", false) ? ", enforced\n" : ", not yet confirmed by the sandbox\n");
}

}  // namespace bulwark::cli
