#include "cli/client.h"

#include "shared/error.h"
#include "shared/pki.h"

namespace bulwark::cli {

namespace {
bool is_https(const std::string& url) { return url.rfind("https://", 0) == 0; }
}  // namespace

void check_tls_files(const std::string& url, const TlsFiles& tls) {
  if (!is_https(url)) return;
  if (tls.client_cert.empty() != tls.client_key.empty())
    throw CliError{kUsage, tls.client_cert.empty() ? "--client-key needs --client-cert (BULWARK_CLIENT_CERT) too"
                                                   : "--client-cert needs --client-key (BULWARK_CLIENT_KEY) too"};
  try {
    if (!tls.ca_cert.empty()) pki::check_ca_file(tls.ca_cert, "--ca-cert");
    pki::check_cert_and_key(tls.client_cert, tls.client_key, "--client-cert", "--client-key");
  } catch (const Error& e) {
    throw CliError{kUsage, e.field() + ": " + e.what()};
  }
}

httplib::Client make_http_client(const std::string& url, const TlsFiles& tls) {
  check_tls_files(url, tls);
  bool https = is_https(url);
  httplib::Client http = https && !tls.client_cert.empty() ? httplib::Client(url, tls.client_cert, tls.client_key) : httplib::Client(url);
  if (!http.is_valid()) throw CliError{kUsage, "--gateway '" + url + "' is not a URL like http://127.0.0.1:8080"};
  if (https) {
    if (!tls.ca_cert.empty()) http.set_ca_cert_path(tls.ca_cert.c_str());
    http.enable_server_certificate_verification(true);
  }
  http.set_tcp_nodelay(true);
  return http;
}

std::string unreachable_message(const std::string& url, httplib::Error e) {
  std::string m = "cannot reach the gateway at " + url + " (" + httplib::to_string(e) + ")";
  if (e == httplib::Error::SSLServerVerification)
    return m + ": its certificate is not signed by the CA you trust: pass --ca-cert (BULWARK_CA_CERT) with the gateway's ca.crt";
  // Under TLS 1.3 a refused client certificate shows only at the first write or read.
  if (e == httplib::Error::SSLConnection || (is_https(url) && (e == httplib::Error::Read || e == httplib::Error::Write)))
    return m + ": the TLS handshake failed: check --ca-cert, and that --client-cert/--client-key (BULWARK_CLIENT_CERT, "
               "BULWARK_CLIENT_KEY) were issued by the gateway's CA";
  return m + ": start it with scripts/up, or point --gateway / BULWARK_GATEWAY at it";
}

GatewayClient::GatewayClient(const std::string& url, const std::string& token, const TlsFiles& tls)
    : url_(url), http_(make_http_client(url, tls)) {
  if (!token.empty()) http_.set_bearer_token_auth(token.c_str());
  has_token_ = !token.empty();
  http_.set_connection_timeout(5);
  http_.set_read_timeout(60);
}

nlohmann::json GatewayClient::check(const std::string& what, const httplib::Result& r) {
  if (!r) throw CliError{kUnreachable, unreachable_message(url_, r.error())};
  if (r->status == 204) return nlohmann::json();  // a delete that has nothing to say
  nlohmann::json body = nlohmann::json::parse(r->body, nullptr, false);
  if (r->status >= 200 && r->status < 300) {
    if (body.is_discarded()) throw CliError{kFailure, what + ": the gateway sent a non-JSON reply"};
    return body;
  }
  std::string msg = "HTTP " + std::to_string(r->status);
  if (!body.is_discarded() && body.contains("error")) {
    const auto& e = body["error"];
    msg = e.value("message", msg);
    if (e.contains("field") && !e["field"].get<std::string>().empty()) msg += " [field: " + e["field"].get<std::string>() + "]";
  }
  if (r->status == 401 && !has_token_)
    msg += " (no token sent: pass --token, set BULWARK_TOKEN, or point --token-file at one)";
  throw CliError{r->status == 404 ? kNotFound : r->status == 401 || r->status == 403 ? kDenied : kFailure, what + ": " + msg};
}

nlohmann::json GatewayClient::get(const std::string& path) { return check("GET " + path, http_.Get(path)); }
nlohmann::json GatewayClient::post(const std::string& path, const nlohmann::json& body) {
  return check("POST " + path, http_.Post(path, body.dump(), "application/json"));
}
nlohmann::json GatewayClient::put(const std::string& path, const nlohmann::json& body) {
  return check("PUT " + path, http_.Put(path, body.dump(), "application/json"));
}
nlohmann::json GatewayClient::patch(const std::string& path, const nlohmann::json& body) {
  return check("PATCH " + path, http_.Patch(path, body.dump(), "application/json"));
}
nlohmann::json GatewayClient::del(const std::string& path) { return check("DELETE " + path, http_.Delete(path)); }

}  // namespace bulwark::cli
