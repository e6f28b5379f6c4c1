#pragma once
// `bulwark provider` flags turned into REST bodies (Provider JSON), and providers printed as a
// table. Pure (the environment is a parameter), so --from-env is unit-tested without touching the
// CLI's own environment.
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::cli {

struct ProviderFlags {
  std::string name;
  std::string type;                          // create only
  std::vector<std::string> credentials;      // --credential KEY=VALUE
  std::vector<std::string> remove;           // --remove-credential KEY (update only)
  bool from_env = false;                     // --from-env
  std::optional<std::string> base_url;       // --base-url (given, possibly "")
};

// A REST body and the environment variable names --from-env took (never their values).
struct ProviderRequest {
  nlohmann::json body;
  std::vector<std::string> taken;
};

// NAME=VALUE pairs of an environment block (environ).
std::map<std::string, std::string> environment(char** envp);

// POST /v1/providers. --credential wins over what --from-env found for the same key. Throws
// CliError(kUsage) when --from-env finds nothing and no --credential is given (naming the variables
// it looked for), or when a flag is malformed.
ProviderRequest provider_create_body(const ProviderFlags& f, const std::map<std::string, std::string>& env);
// PATCH /v1/providers/NAME: credentials to set or (value "") remove, base_url when given. type is
// the provider's (for --from-env). Throws CliError(kUsage) when there is nothing to change.
ProviderRequest provider_update_body(const ProviderFlags& f, const std::string& type,
                                     const std::map<std::string, std::string>& env);

// NAME, TYPE, BASE URL, CREDENTIALS (KEY=value as the gateway sent it: masked), UPDATED.
std::string provider_table(const std::vector<nlohmann::json>& providers);

}  // namespace bulwark::cli
