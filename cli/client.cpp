#include "cli/client.h"

namespace bulwark::cli {

GatewayClient::GatewayClient(const std::string& url, const std::string& token) : url_(url), http_(url) {
  if (!http_.is_valid()) throw CliError{kUsage, "--gateway '" + url + "' is not a URL like http://127.0.0.1:8080"};
  if (!token.empty()) http_.set_bearer_token_auth(token.c_str());
  has_token_ = !token.empty();
  http_.set_connection_timeout(5);
  http_.set_read_timeout(60);
}

nlohmann::json GatewayClient::check(const std::string& what, const httplib::Result& r) {
  if (!r)
    throw CliError{kUnreachable, "cannot reach the gateway at " + url_ + " (" + httplib::to_string(r.error()) +
                                     "): start it with scripts/up, or point --gateway / BULWARK_GATEWAY at it"};
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
