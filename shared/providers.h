#pragma once
// Provider types: what each kind of credential is called, how a backend wants it presented, and
// where its API lives. One table shared by the gateway (validation, the agent's environment), the
// CLI (--from-env discovery) and the privacy-router (credential injection). Pure data and logic.
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::providers {

enum class ApiStyle { kNone, kOpenAi, kAnthropic };

struct Profile {
  std::string type;                   // "anthropic", ...
  std::vector<std::string> env_vars;  // discovered by --from-env, in order of preference
  bool inference = false;             // serves inference.local; never given to the agent as env
  ApiStyle api = ApiStyle::kNone;     // the request style its backend speaks
  std::string auth_header;            // "authorization" (Bearer) or "x-api-key"
  bool bearer = false;                // "Bearer <key>" rather than the key alone
  std::string default_base_url;       // empty: the provider must set base_url to serve inference
};

// Every known type, in a stable order (for help texts and errors).
const std::vector<Profile>& all();
// nullptr when the type is unknown.
const Profile* find(const std::string& type);
// "anthropic|openai|nvidia|github|generic"
std::string type_names();

// The credentials of a type found in an environment (name -> value; empty values are ignored).
// For a type with several aliases (GITHUB_TOKEN, GH_TOKEN) the first present one is kept.
std::map<std::string, std::string> discover(const Profile& p, const std::map<std::string, std::string>& env);

// The secret that authenticates to the backend: the first of the profile's env_vars present in
// credentials, else API_KEY, else the only credential; nullopt when there is none (a keyless
// local server).
std::optional<std::string> backend_key(const Profile& p, const std::map<std::string, std::string>& credentials);

// "sk-a…wxyz"-style: enough to tell two keys apart, never enough to use one.
std::string mask(const std::string& secret);

// Names: 1-63 of [a-z0-9_-], starting with a letter or digit. Returns the problem or "".
std::string check_name(const std::string& name);
// Credential keys must be environment variable names: [A-Za-z_][A-Za-z0-9_]*. Returns the problem or "".
std::string check_credential_key(const std::string& key);

}  // namespace bulwark::providers
