#include "supervisor/provider_env.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "bulwark/v1/inference.pb.h"
#include "shared/subjects.h"

namespace bulwark::supervisor {

ProviderEnvMode parse_provider_env_mode(const std::string& s) {
  if (s == "auto") return ProviderEnvMode::kAuto;
  if (s == "required") return ProviderEnvMode::kRequired;
  if (s == "off") return ProviderEnvMode::kOff;
  throw Error(Code::kInvalidArgument, "--provider-env must be auto, required or off, not \"" + s + "\"",
              "provider-env");
}

namespace {

bool transient(const Error& e) { return e.code() == Code::kUnavailable || e.code() == Code::kTimeout; }

bool env_name(std::string_view n) {
  if (n.empty() || (n[0] >= '0' && n[0] <= '9')) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

}  // namespace

bool reserved_env_name(std::string_view name) {
  const std::string n = upper(name);  // http_proxy and HTTP_PROXY alike
  static constexpr std::string_view kReserved[] = {
      "PATH",          "HTTP_PROXY",          "HTTPS_PROXY",    "ALL_PROXY",      "NO_PROXY",
      "SSL_CERT_FILE", "SSL_CERT_DIR",        "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
      "GIT_SSL_CAINFO", "NODE_OPTIONS"};
  if (std::find(std::begin(kReserved), std::end(kReserved), n) != std::end(kReserved)) return true;
  return n.rfind("BULWARK_", 0) == 0 || n.rfind("LD_", 0) == 0;
}

EnvMerge merge_provider_env(std::vector<std::string> env, const std::map<std::string, std::string>& provider_env) {
  EnvMerge out;
  for (const auto& [name, value] : provider_env) {
    if (!env_name(name)) {
      out.refused.push_back(name + ": not an environment variable name");
      continue;
    }
    if (reserved_env_name(name)) {
      out.refused.push_back(name + ": reserved for the supervisor");
      continue;
    }
    if (value.find('\0') != std::string::npos) {
      out.refused.push_back(name + ": the value holds a NUL byte");
      continue;
    }
    const std::string prefix = name + "=";
    std::erase_if(env, [&](const std::string& e) { return e.rfind(prefix, 0) == 0; });
    env.push_back(prefix + value);
    out.set.push_back(name);  // std::map order: sorted
  }
  out.env = std::move(env);
  return out;
}

ProviderEnv fetch_provider_env(Bus& bus, const std::string& sandbox_id, const ProviderEnvOptions& opts) {
  ProviderEnv out;
  if (opts.mode == ProviderEnvMode::kOff) return out;
  const std::string subject = subjects::provider_env(sandbox_id);
  v1::ProviderEnvRequest req;
  req.set_sandbox_id(sandbox_id);
  const auto deadline = std::chrono::steady_clock::now() + opts.required_for;
  for (int attempt = 1;; ++attempt) {
    try {
      auto reply = bus.request<v1::ProviderEnvReply>(subject, req, opts.request_timeout);
      for (const auto& [k, v] : reply.env()) out.env[k] = v;
      out.providers.assign(reply.providers().begin(), reply.providers().end());
      return out;
    } catch (const Error& e) {
      if (opts.mode == ProviderEnvMode::kAuto) {
        if (e.code() == Code::kNotFound || dynamic_cast<const NoResponders*>(&e)) {
          spdlog::debug("sandbox {}: no provider environment: {}", sandbox_id, e.what());
        } else {
          spdlog::warn("sandbox {}: no provider environment (--provider-env auto goes on without): {}", sandbox_id,
                       e.what());
        }
        return out;
      }
      // required
      if (!transient(e))
        throw Error(e.code(), "the sandbox's provider environment is required and gateway-api refused it: " +
                                  std::string(e.what()));
      if (std::chrono::steady_clock::now() + opts.retry_every >= deadline)
        throw Error(Code::kUnavailable,
                    "the sandbox's provider environment is required and gateway-api did not provide it within " +
                        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(opts.required_for).count()) +
                        " s (" + std::to_string(attempt) + " attempts; last: " + e.what() + ")");
      spdlog::info("sandbox {}: provider environment not available yet ({}); retrying", sandbox_id, e.what());
      std::this_thread::sleep_for(opts.retry_every);
    }
  }
}

}  // namespace bulwark::supervisor
