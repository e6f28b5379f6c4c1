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

// TLS for an https:// gateway (docs/security.md, PKI): PEM files, "" = not given. ca_cert: the
// CA that signed the gateway's certificate (default: the system roots); client_cert + client_key:
// the certificate the gateway asks for under mTLS. Ignored for http:// gateways.
struct TlsFiles {
  std::string ca_cert, client_cert, client_key;
};

// Checks what an https:// URL will use before any connection: each given file readable and
// parseable, the key matching the certificate, both or neither of cert and key. Throws
// CliError(kUsage) naming the flag (--ca-cert, --client-cert, --client-key).
void check_tls_files(const std::string& url, const TlsFiles& tls);

// An HTTP client for url (http:// or https://) with tls applied, TCP_NODELAY, and server
// certificate verification on. Throws CliError(kUsage) for a bad URL or TLS file.
httplib::Client make_http_client(const std::string& url, const TlsFiles& tls);

// The message for a call that got no HTTP answer; TLS failures say which flag to check.
std::string unreachable_message(const std::string& url, httplib::Error e);

class GatewayClient {
 public:
  // token: an API token sent as Authorization: Bearer (docs/security.md); "" sends none.
  explicit GatewayClient(const std::string& url, const std::string& token = {}, const TlsFiles& tls = {});
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
