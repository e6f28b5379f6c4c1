#include "cli/agent_presets.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cli/client.h"
#include "cli/format.h"
#include "shared/error.h"
#include "shared/policy.h"
#include "shared/providers.h"

#ifndef BULWARK_SOURCE_PRESETS_DIR
#define BULWARK_SOURCE_PRESETS_DIR ""
#endif

namespace bulwark::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void bad(const std::string& file, const YAML::Node& n, const std::string& field, const std::string& why) {
  const YAML::Mark m = n.Mark();
  std::string where = file + (m.is_null() ? "" : ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1));
  throw Error(Code::kInvalidArgument, where + ": " + field + ": " + why, field);
}

void only_keys(const std::string& file, const YAML::Node& map, const std::string& field, const std::set<std::string>& known) {
  if (!map.IsMap()) bad(file, map, field, "expected a mapping");
  for (const auto& kv : map) {
    std::string k = kv.first.as<std::string>();
    if (!known.count(k)) {
      std::string list;
      for (const auto& s : known) list += (list.empty() ? "" : ", ") + s;
      bad(file, kv.first, field.empty() ? k : field + "." + k, "unknown key (expected one of " + list + ")");
    }
  }
}

std::string scalar(const std::string& file, const YAML::Node& n, const std::string& field) {
  if (!n.IsScalar()) bad(file, n, field, "expected a string");
  return n.as<std::string>();
}

std::vector<std::string> strings(const std::string& file, const YAML::Node& n, const std::string& field) {
  if (!n.IsSequence()) bad(file, n, field, "expected a list of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i) out.push_back(scalar(file, n[i], field + "[" + std::to_string(i) + "]"));
  return out;
}

bool boolean(const std::string& file, const YAML::Node& n, const std::string& field) {
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    bad(file, n, field, "expected true or false");
  }
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

AgentPreset parse_agent_preset(const std::string& text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(Code::kInvalidArgument, file + ":" + std::to_string(e.mark.line + 1) + ": not YAML: " + e.msg);
  }
  only_keys(file, root, "",
            {"name", "description", "image", "command", "version_command", "env", "providers", "denied_hosts", "policy"});
  AgentPreset p;
  p.file = file;
  for (const char* k : {"name", "image", "command", "policy"})
    if (!root[k]) bad(file, root, k, "missing (a preset needs name, image, command and policy)");
  p.name = scalar(file, root["name"], "name");
  if (auto e = providers::check_name(p.name); !e.empty()) bad(file, root["name"], "name", "'" + p.name + "' " + e);
  if (root["description"]) p.description = scalar(file, root["description"], "description");
  p.image = scalar(file, root["image"], "image");
  p.command = strings(file, root["command"], "command");
  if (p.command.empty()) bad(file, root["command"], "command", "empty (the agent's default command)");
  if (root["version_command"]) p.version_command = strings(file, root["version_command"], "version_command");
  if (const auto env = root["env"]) {
    if (!env.IsMap()) bad(file, env, "env", "expected a mapping of NAME: value");
    for (const auto& kv : env) {
      std::string k = kv.first.as<std::string>();
      if (auto e = providers::check_credential_key(k); !e.empty()) bad(file, kv.first, "env." + k, e);
      p.env[k] = scalar(file, kv.second, "env." + k);
    }
  }
  if (const auto ps = root["providers"]) {
    if (!ps.IsSequence()) bad(file, ps, "providers", "expected a list of {type, ...}");
    for (size_t i = 0; i < ps.size(); ++i) {
      const std::string f = "providers[" + std::to_string(i) + "]";
      only_keys(file, ps[i], f, {"type", "name", "env_vars", "base_url_env", "required"});
      ProviderNeed n;
      if (!ps[i]["type"]) bad(file, ps[i], f + ".type", "missing");
      n.type = scalar(file, ps[i]["type"], f + ".type");
      const auto* prof = providers::find(n.type);
      if (!prof) bad(file, ps[i]["type"], f + ".type", "'" + n.type + "' is not one of " + providers::type_names());
      n.name = ps[i]["name"] ? scalar(file, ps[i]["name"], f + ".name") : n.type;
      if (auto e = providers::check_name(n.name); !e.empty()) bad(file, ps[i], f + ".name", "'" + n.name + "' " + e);
      n.env_vars = ps[i]["env_vars"] ? strings(file, ps[i]["env_vars"], f + ".env_vars") : prof->env_vars;
      if (n.env_vars.empty()) bad(file, ps[i], f + ".env_vars", "a " + n.type + " provider has no standard variable: list them");
      if (ps[i]["base_url_env"]) n.base_url_env = scalar(file, ps[i]["base_url_env"], f + ".base_url_env");
      if (ps[i]["required"]) n.required = boolean(file, ps[i]["required"], f + ".required");
      p.providers.push_back(std::move(n));
    }
  }
  if (root["denied_hosts"]) p.denied_hosts = strings(file, root["denied_hosts"], "denied_hosts");
  const auto pol = root["policy"];
  if (!pol.IsMap()) bad(file, pol, "policy", "expected the sandbox policy as a mapping (version: 1, ...)");
  YAML::Emitter e;
  e << pol;
  p.policy_yaml = std::string(e.c_str()) + "\n";
  // The same parser the gateway and the supervisor use: a preset that would be refused at create
  // time is refused here, with its problems.
  policy::parse_policy(p.policy_yaml, file + " (policy)");
  return p;
}

std::vector<std::string> preset_dirs(const std::map<std::string, std::string>& env, const std::string& exe_dir) {
  std::vector<std::string> dirs;
  if (auto it = env.find("BULWARK_PRESETS_DIR"); it != env.end() && !it->second.empty()) dirs.push_back(it->second);
  if (!exe_dir.empty()) {
    dirs.push_back(exe_dir + "/presets");
    dirs.push_back(exe_dir + "/../share/bulwark/presets");
  }
  if (std::string src = BULWARK_SOURCE_PRESETS_DIR; !src.empty()) dirs.push_back(src);
  return dirs;
}

std::vector<AgentPreset> load_presets(const std::vector<std::string>& dirs) {
  for (const auto& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(d, ec))
      if (e.path().extension() == ".yaml") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    std::vector<AgentPreset> out;
    for (const auto& f : files) {
      std::ifstream in(f);
      std::stringstream ss;
      ss << in.rdbuf();
      if (!in) throw CliError{kFailure, "cannot read preset " + f.string()};
      try {
        out.push_back(parse_agent_preset(ss.str(), f.string()));
      } catch (const policy::PolicyInvalid& e) {
        std::string all;
        for (const auto& pr : e.problems) all += "\n  " + pr.to_string();
        throw CliError{kFailure, "preset " + f.string() + " has an invalid policy:" + all};
      } catch (const Error& e) {
        throw CliError{kFailure, std::string("preset ") + e.what()};
      }
    }
    return out;
  }
  throw CliError{kUsage, "no agent presets found (looked in " + join(dirs, ", ") +
                             "); set BULWARK_PRESETS_DIR to the repository's deploy/presets"};
}

AgentPreset load_preset(const std::string& name, const std::vector<std::string>& dirs) {
  auto all = load_presets(dirs);
  std::vector<std::string> names;
  for (auto& p : all) {
    if (p.name == name) return std::move(p);
    names.push_back(p.name);
  }
  throw CliError{kUsage, "--agent " + name + ": no such preset; known: " + join(names, ", ") + " (see `bulwark agent list`)"};
}

void apply_preset(const AgentPreset& p, json& spec) {
  if (!spec.contains("image")) spec["image"] = p.image;
  if (!spec.contains("command")) spec["command"] = p.command;
  if (!spec.contains("policy")) spec["policy"] = p.policy_yaml;
  for (const auto& [k, v] : p.env)
    if (!spec["env"].contains(k)) spec["env"][k] = v;
  if (!spec["labels"].contains("agent")) spec["labels"]["agent"] = p.name;
}

ProviderPlan plan_providers(const AgentPreset& p, const std::vector<json>& existing,
                            const std::vector<std::string>& explicit_names, const std::map<std::string, std::string>& env) {
  ProviderPlan plan;
  std::map<std::string, std::string> type_of;
  for (const auto& e : existing) type_of[e.value("name", "")] = e.value("type", "");
  std::set<std::string> covered;  // types the user attached with --provider
  for (const auto& n : explicit_names)
    if (auto it = type_of.find(n); it != type_of.end()) covered.insert(it->second);
  std::set<std::string> taken(explicit_names.begin(), explicit_names.end());
  for (const auto& need : p.providers) {
    if (covered.count(need.type)) continue;
    const auto* prof = providers::find(need.type);
    ProviderAction a;
    a.type = need.type;
    a.inference = prof && prof->inference;
    // An existing one: the one named like the need, else the first of the type.
    for (const auto& e : existing) {
      if (e.value("type", "") != need.type || taken.count(e.value("name", ""))) continue;
      if (a.name.empty() || e.value("name", "") == need.name) a.name = e.value("name", "");
    }
    if (!a.name.empty()) {
      a.from = "existing";
    } else {
      json creds = json::object();
      std::vector<std::string> found;
      // The type's own variables are aliases of one credential (GITHUB_TOKEN, GH_TOKEN): the first
      // present one is kept. Others the preset lists (COPILOT_GITHUB_TOKEN) are kept as well.
      auto alias = [&](const std::string& v) {
        return prof && std::find(prof->env_vars.begin(), prof->env_vars.end(), v) != prof->env_vars.end();
      };
      bool have_alias = false;
      for (const auto& v : need.env_vars) {
        auto it = env.find(v);
        if (it == env.end() || it->second.empty() || (alias(v) && have_alias)) continue;
        have_alias = have_alias || alias(v);
        creds[v] = it->second;
        found.push_back(v);
      }
      if (found.empty()) {
        if (need.required)
          plan.warnings.push_back("no " + need.type + " provider: export " + join(need.env_vars, " or ") +
                                  " and run again, or `bulwark provider create --type " + need.type + " ...`");
        continue;
      }
      if (type_of.count(need.name))
        throw CliError{kUsage, "--agent " + p.name + ": a provider named " + need.name + " exists with type " +
                                   type_of[need.name] + "; attach a " + need.type + " provider with --provider NAME"};
      a.name = need.name;
      a.create = true;
      a.from = "from " + join(found, ", ");
      a.body = {{"name", a.name}, {"type", a.type}, {"credentials", creds}};
      if (!need.base_url_env.empty())
        if (auto it = env.find(need.base_url_env); it != env.end() && !it->second.empty()) {
          a.body["base_url"] = it->second;
          a.from += " and " + need.base_url_env;
        }
    }
    taken.insert(a.name);
    plan.attach.push_back(std::move(a));
  }
  return plan;
}

std::string attach_line(const ProviderAction& a) {
  return "attached provider " + a.name + " (" + (a.from == "existing" ? "existing " + a.type + " provider" : a.from) + ")";
}

std::optional<json> sandbox_routes(const ProviderPlan& plan, bool global_table_exists) {
  if (global_table_exists) return std::nullopt;
  json backends = json::array();
  for (const auto& a : plan.attach)
    if (a.inference) backends.push_back({{"provider", a.name}, {"privacy", "any"}});
  if (backends.empty()) return std::nullopt;
  // One route: the router skips a backend of the other API style, so Anthropic-style calls reach
  // the anthropic provider and OpenAI-style calls the openai one, whatever the model is called.
  return json{{"routes", json::array({{{"match", "*"}, {"backends", backends}}})}};
}

std::string preset_table(const std::vector<AgentPreset>& presets) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "IMAGE", "COMMAND", "PROVIDERS", "DESCRIPTION"}};
  for (const auto& p : presets) {
    std::vector<std::string> types;
    for (const auto& n : p.providers) types.push_back(n.type + (n.required ? "" : "?"));
    rows.push_back({p.name, p.image, join(p.command, " "), types.empty() ? "-" : join(types, ","), p.description});
  }
  return table(rows);
}

}  // namespace bulwark::cli
