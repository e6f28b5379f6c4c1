#include "cli/client.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include "cli/connect_ops.h"
#include "shared/pki.h"
#include "shared/util.h"

using namespace bulwark;
using namespace bulwark::cli;

namespace {
std::string usage_error(const std::string& url, const TlsFiles& tls) {
  try {
    check_tls_files(url, tls);
  } catch (const CliError& e) {
    CHECK(e.exit_code == kUsage);
    return e.message;
  }
  return "";
}
}  // namespace

TEST_CASE("check_tls_files names the flag of a bad file and ignores http://") {
  TempDir tmp("cli-tls-test");
  pki::Options o;
  o.client_identities = {"cli-admin"};
  auto p = pki::ensure_pki(tmp.file("pki"), o).paths;
  const std::string url = "https://127.0.0.1:8443";
  TlsFiles good{p.ca_cert, p.client_cert("cli-admin"), p.client_key("cli-admin")};
  CHECK(usage_error(url, good) == "");
  CHECK(usage_error(url, {p.ca_cert, "", ""}) == "");
  CHECK(usage_error("http://127.0.0.1:8080", {tmp.file("missing.crt"), "", ""}) == "");

  CHECK(usage_error(url, {tmp.file("missing.crt"), "", ""}).rfind("--ca-cert: open certificate " + tmp.file("missing.crt"), 0) == 0);
  CHECK(usage_error(url, {p.ca_cert, tmp.file("nope.crt"), p.client_key("cli-admin")}).rfind("--client-cert:", 0) == 0);
  CHECK(usage_error(url, {p.ca_cert, p.client_cert("cli-admin"), p.ca_cert}).rfind("--client-key:", 0) == 0);
  CHECK(usage_error(url, {p.ca_cert, p.client_cert("cli-admin"), p.gateway_key}).find("is not the key of") != std::string::npos);
  CHECK(usage_error(url, {p.ca_cert, p.client_cert("cli-admin"), ""}) == "--client-cert needs --client-key (BULWARK_CLIENT_KEY) too");
  CHECK(usage_error(url, {p.ca_cert, "", p.client_key("cli-admin")}) == "--client-key needs --client-cert (BULWARK_CLIENT_CERT) too");

  // The client is made (nothing is dialled) and a bad file stops it before any connection.
  CHECK(make_http_client(url, good).is_valid());
  CHECK_THROWS_AS(GatewayClient(url, "", {tmp.file("missing.crt"), "", ""}), CliError);
}

TEST_CASE("unreachable_message points TLS failures at the TLS flags") {
  CHECK(unreachable_message("https://gw:8443", httplib::Error::SSLServerVerification).find("--ca-cert") != std::string::npos);
  CHECK(unreachable_message("https://gw:8443", httplib::Error::SSLConnection).find("--client-cert") != std::string::npos);
  CHECK(unreachable_message("https://gw:8443", httplib::Error::Write).find("TLS handshake") != std::string::npos);
  CHECK(unreachable_message("http://gw:8080", httplib::Error::Write).find("TLS") == std::string::npos);
  CHECK(unreachable_message("http://gw:8080", httplib::Error::Connection).find("scripts/up") != std::string::npos);
}

TEST_CASE("connect_endpoint: https:// gateways connect over wss:// on port + 1") {
  auto e = connect_endpoint("https://gw.example.test:8443", -1);
  CHECK(e.tls);
  CHECK(e.host == "gw.example.test");
  CHECK(e.port == "8444");
  CHECK(connect_endpoint("https://gw.example.test", -1).port == "444");
  CHECK(connect_endpoint("https://[::1]:9000", 9100).host == "::1");
  CHECK(connect_endpoint("https://[::1]:9000", 9100).port == "9100");
  CHECK_FALSE(connect_endpoint("http://127.0.0.1:8080", -1).tls);
}
