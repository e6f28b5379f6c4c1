#pragma once
// The provider environment of a sandbox: once at launch the supervisor asks gateway-api
// (bulwark.provider.env.<sandbox_id>, ProviderEnvRequest -> ProviderEnvReply) for the variables of
// the non-inference providers attached to it (GITHUB_TOKEN, ...), and merges them into the
// AGENT's environment only: never the supervisor's own, never a file. They reach the agent's init
// over its release pipe (contain.h). Only variable and provider names are ever logged.
#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "shared/bus.h"

namespace bulwark::supervisor {

enum class ProviderEnvMode {
  kAuto,      // ask; nobody answering (no responders) or "not_found" means none; other failures warn
  kRequired,  // ask, retrying on unavailable and timeouts up to required_for; then fail the launch
  kOff,       // do not ask
};
// "auto" | "required" | "off"; throws Error(kInvalidArgument) for anything else.
ProviderEnvMode parse_provider_env_mode(const std::string& s);

struct ProviderEnvOptions {
  ProviderEnvMode mode = ProviderEnvMode::kAuto;
  std::chrono::milliseconds request_timeout{5000};  // one request
  std::chrono::milliseconds required_for{30000};    // kRequired: keep retrying this long
  std::chrono::milliseconds retry_every{500};
};

struct ProviderEnv {
  std::map<std::string, std::string> env;
  std::vector<std::string> providers;  // names only, for the log
};

// Asks the gateway as opts.mode says. An empty result when there is nothing (or kOff). Throws
// Error (with the reason for the launch failure) only in kRequired mode.
ProviderEnv fetch_provider_env(Bus& bus, const std::string& sandbox_id, const ProviderEnvOptions& opts);

// Names a provider may not set: what the supervisor controls (BULWARK_*, the proxy and CA
// variables, which keep the agent on the proxy and its TLS on the sandbox CA) and what changes
// how programs load (PATH, LD_*).
bool reserved_env_name(std::string_view name);

struct EnvMerge {
  std::vector<std::string> env;      // "K=V" entries: env with the provider's variables set
  std::vector<std::string> set;      // the names set (sorted), for the log
  std::vector<std::string> refused;  // "NAME: why", for the log (never a value)
};
// Pure. Each provider variable replaces an entry of the same name in env, unless its name is
// reserved or not an environment variable name ([A-Za-z_][A-Za-z0-9_]*), or its value holds a
// NUL byte (it could not be passed to exec).
EnvMerge merge_provider_env(std::vector<std::string> env, const std::map<std::string, std::string>& provider_env);

}  // namespace bulwark::supervisor
