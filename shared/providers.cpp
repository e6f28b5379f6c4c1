#include "shared/providers.h"

#include <cctype>

namespace bulwark::providers {

const std::vector<Profile>& all() {
  // Env var names and auth styles as OpenShell's provider profiles give them
  // (../shared/reference/openshell-providers/).
  static const std::vector<Profile> kProfiles = {
      {"anthropic", {"ANTHROPIC_API_KEY", "CLAUDE_API_KEY"}, true, ApiStyle::kAnthropic, "x-api-key", false,
       "https://api.anthropic.com"},
      {"openai", {"OPENAI_API_KEY"}, true, ApiStyle::kOpenAi, "authorization", true, "https://api.openai.com"},
      {"nvidia", {"NVIDIA_API_KEY"}, true, ApiStyle::kOpenAi, "authorization", true,
       "https://integrate.api.nvidia.com"},
      {"github", {"GITHUB_TOKEN", "GH_TOKEN"}, false, ApiStyle::kNone, "authorization", true, ""},
      // Anything else: a token handed to the agent, or (with base_url) an OpenAI-compatible
      // server such as Ollama, vLLM or llama.cpp, keyless or with a Bearer key.
      {"generic", {}, false, ApiStyle::kOpenAi, "authorization", true, ""},
  };
  return kProfiles;
}

const Profile* find(const std::string& type) {
  for (const auto& p : all())
    if (p.type == type) return &p;
  return nullptr;
}

std::string type_names() {
  std::string out;
  for (const auto& p : all()) out += (out.empty() ? "" : "|") + p.type;
  return out;
}

std::map<std::string, std::string> discover(const Profile& p, const std::map<std::string, std::string>& env) {
  std::map<std::string, std::string> out;
  for (const auto& name : p.env_vars) {
    auto it = env.find(name);
    if (it == env.end() || it->second.empty()) continue;
    out[name] = it->second;
    break;  // aliases of one credential: the first present wins
  }
  return out;
}

std::optional<std::string> backend_key(const Profile& p, const std::map<std::string, std::string>& credentials) {
  for (const auto& name : p.env_vars)
    if (auto it = credentials.find(name); it != credentials.end()) return it->second;
  if (auto it = credentials.find("API_KEY"); it != credentials.end()) return it->second;
  if (credentials.size() == 1) return credentials.begin()->second;
  return std::nullopt;
}

std::string mask(const std::string& secret) {
  if (secret.size() < 12) return "****";
  return secret.substr(0, 3) + "****" + secret.substr(secret.size() - 4);
}

std::string check_name(const std::string& name) {
  if (name.empty() || name.size() > 63) return "must be 1 to 63 characters";
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) return "must start with a letter or digit";
  for (char c : name)
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
      return "may contain only lowercase letters, digits, '-' and '_'";
  return "";
}

std::string check_credential_key(const std::string& key) {
  if (key.empty()) return "must not be empty";
  if (std::isdigit(static_cast<unsigned char>(key[0]))) return "must not start with a digit";
  for (char c : key)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      return "must be an environment variable name (letters, digits, '_')";
  return "";
}

}  // namespace bulwark::providers
