#pragma once
// The CLI's view of the gateway's REST API: plain HTTP + JSON, as any CI system would use it.
#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace bulwark::cli {

// Exit codes (docs/cli.md).
enum Exit : int {
  kOk = 0,
  kFailure = 1,          // the gateway refused or failed the request
  kUsage = 2,            // bad flags or arguments
  kNotFound = 3,         // no such sandbox, provider or route table
  kUnreachable = 4,      // no gateway at that URL
  kSandboxFailed = 5,    // the sandbox ended FAILED
  kTimedOut = 6,         // waiting for a phase took too long
  kDenied = 7,           // 401/403: no token, a bad, revoked or expired one, or a scope that does not allow it
};

// A failed call: the exit code to use and a message that says what to do.
struct CliError {
  int exit_code;
  std::string message;
};

class GatewayClient {
 public:
  // token: an API token sent as Authorization: Bearer (docs/security.md); "" sends none.
  explicit GatewayClient(const std::string& url, const std::string& token = {});
  nlohmann::json get(const std::string& path);
  nlohmann::json post(const std::string& path, const nlohmann::json& body);
  nlohmann::json del(const std::string& path);
  nlohmann::json put(const std::string& path, const nlohmann::json& body);
  nlohmann::json patch(const std::string& path, const nlohmann::json& body);
  // Waiting requests (policy --wait) may take longer than the default read timeout.
  void set_read_timeout(std::chrono::seconds s) { http_.set_read_timeout(s); }

 private:
  nlohmann::json check(const std::string& what, const httplib::Result& r);
  std::string url_;
  httplib::Client http_;
  bool has_token_ = false;
};

}  // namespace bulwark::cli
