#include "cli/provider_ops.h"

#include "cli/client.h"
#include "cli/format.h"
#include "shared/providers.h"

namespace bulwark::cli {
namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

const providers::Profile& profile_of(const std::string& type) {
  const auto* p = providers::find(type);
  if (!p) throw CliError{kUsage, "--type '" + type + "' is not one of " + providers::type_names()};
  return *p;
}

// --credential KEY=VALUE; an empty value would read as "remove" on update, so it is refused.
void add_credentials(const std::vector<std::string>& flags, nlohmann::json& creds) {
  for (const auto& c : flags) {
    auto [k, v] = key_value("--credential", c);
    if (v.empty()) throw CliError{kUsage, "--credential " + k + "= has an empty value (to remove a key: --remove-credential " + k + ")"};
    creds[k] = v;
  }
}

// What --from-env found for the type, into creds (never over an explicit --credential).
std::vector<std::string> discover_into(const std::string& type, const std::map<std::string, std::string>& env,
                                       nlohmann::json& creds, bool required) {
  const auto& prof = profile_of(type);
  std::vector<std::string> taken;
  for (const auto& [k, v] : providers::discover(prof, env)) {
    if (creds.contains(k)) continue;
    creds[k] = v;
    taken.push_back(k);
  }
  if (taken.empty() && required) {
    if (prof.env_vars.empty())
      throw CliError{kUsage, "--from-env: a " + type + " provider has no standard variable to look for; give --credential KEY=VALUE"};
    throw CliError{kUsage, "--from-env: none of " + join(prof.env_vars, ", ") +
                               " is set in this environment; export one or give --credential KEY=VALUE"};
  }
  return taken;
}

}  // namespace

std::map<std::string, std::string> environment(char** envp) {
  std::map<std::string, std::string> out;
  for (char** e = envp; e && *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos && eq > 0) out.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return out;
}

ProviderRequest provider_create_body(const ProviderFlags& f, const std::map<std::string, std::string>& env) {
  ProviderRequest r;
  nlohmann::json creds = nlohmann::json::object();
  add_credentials(f.credentials, creds);
  if (f.from_env) r.taken = discover_into(f.type, env, creds, f.credentials.empty());
  r.body = {{"name", f.name}, {"type", f.type}, {"credentials", creds}};
  if (f.base_url && !f.base_url->empty()) r.body["base_url"] = *f.base_url;
  return r;
}

ProviderRequest provider_update_body(const ProviderFlags& f, const std::string& type,
                                     const std::map<std::string, std::string>& env) {
  ProviderRequest r;
  nlohmann::json creds = nlohmann::json::object();
  add_credentials(f.credentials, creds);
  for (const auto& k : f.remove) {
    if (creds.contains(k)) throw CliError{kUsage, "--credential and --remove-credential both name " + k};
    creds[k] = "";  // the gateway removes a key set to ""
  }
  if (f.from_env) r.taken = discover_into(type, env, creds, f.credentials.empty() && f.remove.empty());
  r.body = nlohmann::json::object();
  if (!creds.empty()) r.body["credentials"] = creds;
  if (f.base_url) r.body["base_url"] = *f.base_url;
  if (r.body.empty())
    throw CliError{kUsage, "provider update: give at least one of --credential, --remove-credential, --base-url, --from-env"};
  return r;
}

std::string provider_table(const std::vector<nlohmann::json>& ps) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "TYPE", "BASE URL", "CREDENTIALS", "UPDATED"}};
  for (const auto& p : ps) {
    std::vector<std::string> creds;
    const nlohmann::json given = p.value("credentials", nlohmann::json::object());  // items() must not outlive it
    for (const auto& [k, v] : given.items())
      creds.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : std::string("?")));
    std::string base = p.value("base_url", "");
    rows.push_back({p.value("name", ""), p.value("type", ""), base.empty() ? "-" : base,
                    creds.empty() ? "-" : join(creds, ","), p.value("updated_at", "")});
  }
  return table(rows);
}

}  // namespace bulwark::cli
