// The gateway over TLS with client certificates (mTLS), black box: gateway-api started with
// --tls auto on a fresh state directory creates the PKI; the bulwark CLI with the CA and its
// client certificate creates, lists, execs in, connects to (wss://) and deletes a real podman
// sandbox; curl without a client certificate, with one from another CA, and plain HTTP are all
// refused; a restarted gateway keeps the same CA.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "shared/pki.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using nlohmann::json;

namespace {

ProcessResult run(const std::vector<std::string>& argv) {
  return run_process(argv);
}

// The CLI with stdin from /dev/null (connect would otherwise read the test runner's terminal).
ProcessResult cli(const std::string& gateway, const std::vector<std::string>& tls, const std::vector<std::string>& args) {
  std::string cmd = "exec";
  auto quote = [](const std::string& a) {
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::vector<std::string> argv = {bin("bulwark"), "--gateway", gateway};
  argv.insert(argv.end(), tls.begin(), tls.end());
  argv.insert(argv.end(), args.begin(), args.end());
  for (const auto& a : argv) cmd += " " + quote(a);
  return run({"sh", "-c", cmd + " </dev/null"});
}

int mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE_MESSAGE(::stat(path.c_str(), &st) == 0, path);
  return st.st_mode & 07777;
}

// curl's exit code and the HTTP status it saw ("000" = no HTTP answer at all).
ProcessResult curl(const std::vector<std::string>& args, const std::string& url) {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(url);
  return run(argv);
}
}  // namespace

TEST_CASE("the gateway over mTLS: PKI on first start, the CLI end to end, refusals, the same CA after a restart") {
  require_binary("curl", "curl");
  Suite s({.gateway_args = {"--tls", "auto"}});
  // --tls auto with no --tls-dir: the PKI goes beside --db.
  const auto p = pki::paths(s.file("pki"));
  for (const auto& f : {p.ca_cert, p.gateway_cert, p.nats_cert, p.client_cert("cli-admin"), p.client_cert("scheduler")})
    CHECK_MESSAGE(mode_of(f) == 0644, f);
  for (const auto& f : {p.ca_key, p.gateway_key, p.nats_key, p.client_key("cli-admin"), p.client_key("driver-podman")})
    CHECK_MESSAGE(mode_of(f) == 0600, f);
  CHECK(mode_of(p.dir) == 0700);
  const std::string log = read_file(s.file("gateway-api.log"));
  CHECK_MESSAGE(log.find("PKI: created") != std::string::npos, log);
  CHECK_MESSAGE(log.find("REST API on https://") != std::string::npos, log);
  const std::string fingerprint = pki::cert_fingerprint(p.ca_cert);

  const std::string port = s.gateway_url().substr(s.gateway_url().rfind(':') + 1);
  const std::string connect_port = std::to_string(std::stoi(port) + 1);
  const std::string https = "https://127.0.0.1:" + port;
  const std::vector<std::string> tls = {"--ca-cert", p.ca_cert, "--client-cert", p.client_cert("cli-admin"), "--client-key",
                                        p.client_key("cli-admin")};
  const std::vector<std::string> curl_tls = {"--cacert", p.ca_cert, "--cert", p.client_cert("cli-admin"), "--key",
                                             p.client_key("cli-admin")};

  {  // curl: the right client certificate gets answers; none, a foreign one, or plain HTTP get no HTTP at all
    auto ok = curl(curl_tls, https + "/healthz");
    CHECK_MESSAGE(ok.out == "200", ok.err);
    // The server certificate names localhost too.
    auto by_name = curl(curl_tls, "https://localhost:" + port + "/healthz");
    CHECK_MESSAGE(by_name.out == "200", by_name.err);
    // Tokens still authorize: the channel alone is not enough for the API.
    CHECK(curl(curl_tls, https + "/v1/sandboxes").out == "401");
    CHECK(curl([&] {
            auto a = curl_tls;
            a.insert(a.end(), {"-H", "Authorization: Bearer " + s.admin_token()});
            return a;
          }(), https + "/v1/sandboxes").out == "200");

    auto none = curl({"--cacert", p.ca_cert}, https + "/healthz");
    CHECK(none.code != 0);
    CHECK_MESSAGE(none.out == "000", none.err);

    TempDir other("tls-other-ca");
    pki::Options o;
    o.client_identities = {"cli-admin"};
    auto theirs = pki::ensure_pki(other.file("pki"), o).paths;
    REQUIRE(pki::cert_fingerprint(theirs.ca_cert) != fingerprint);
    auto foreign = curl({"--cacert", p.ca_cert, "--cert", theirs.client_cert("cli-admin"), "--key", theirs.client_key("cli-admin")},
                        https + "/healthz");
    CHECK(foreign.code != 0);
    CHECK_MESSAGE(foreign.out == "000", foreign.err);
    // And the gateway's certificate is not trusted by a client that trusts only the other CA.
    auto wrong_ca = curl({"--cacert", theirs.ca_cert, "--cert", p.client_cert("cli-admin"), "--key", p.client_key("cli-admin")},
                         https + "/healthz");
    CHECK(wrong_ca.code != 0);
    CHECK(wrong_ca.out == "000");

    auto plain = curl({}, "http://127.0.0.1:" + port + "/healthz");
    CHECK(plain.code != 0);
    CHECK_MESSAGE(plain.out == "000", plain.err);

    // The connect listener speaks TLS with client certificates too: refused without one, and
    // with one it answers HTTP (a JSON refusal: this is no WebSocket upgrade).
    auto ws_none = curl({"--cacert", p.ca_cert}, "https://127.0.0.1:" + connect_port + "/v1/sandboxes/x/connect");
    CHECK(ws_none.code != 0);
    CHECK(ws_none.out == "000");
    auto ws_ok = curl(curl_tls, "https://127.0.0.1:" + connect_port + "/v1/sandboxes/x/connect");
    CHECK_MESSAGE(ws_ok.out != "000", ws_ok.err);
  }

  {  // the CLI: create, exec, connect, list and delete a podman sandbox over https:// and wss://
    auto c = cli(https, tls, {"sandbox", "create", "--name", "tls-a", "--timeout", "60"});
    REQUIRE_MESSAGE(c.code == 0, c.out, c.err, s.logs_of("gateway-api"), s.logs_of("driver-podman"));
    auto e = cli(https, tls, {"sandbox", "exec", "tls-a", "--", "echo", "exec-over-tls"});
    CHECK_MESSAGE(e.code == 0, e.err);
    CHECK(e.out.find("exec-over-tls") != std::string::npos);
    auto w = cli(https, tls, {"sandbox", "connect", "tls-a", "--", "sh", "-c", "echo connect-over-wss; exit 3"});
    CHECK_MESSAGE(w.code == 3, w.out, w.err);
    CHECK_MESSAGE(w.out.find("connect-over-wss") != std::string::npos, w.out, w.err);
    auto l = cli("https://localhost:" + port, tls, {"sandbox", "list", "-o", "json"});
    REQUIRE_MESSAGE(l.code == 0, l.err);
    CHECK(l.out.find("\"tls-a\"") != std::string::npos);

    // Without the client certificate: the handshake fails, and the CLI says which flags to check.
    auto anon = cli(https, {"--ca-cert", p.ca_cert}, {"sandbox", "list"});
    CHECK(anon.code == 4);
    CHECK_MESSAGE(anon.err.find("--client-cert") != std::string::npos, anon.err);
    auto anon_ws = cli(https, {"--ca-cert", p.ca_cert}, {"sandbox", "connect", "tls-a"});
    CHECK(anon_ws.code == 4);
    CHECK_MESSAGE(anon_ws.err.find("TLS handshake") != std::string::npos, anon_ws.err);
    // A bad path is a usage error naming the flag, before anything is dialled.
    auto bad = cli(https, {"--ca-cert", p.ca_cert, "--client-cert", s.file("nope.crt"), "--client-key", p.client_key("cli-admin")},
                   {"sandbox", "list"});
    CHECK(bad.code == 2);
    CHECK_MESSAGE(bad.err.find("--client-cert: open certificate " + s.file("nope.crt")) != std::string::npos, bad.err);
    // The environment variables work like the flags.
    auto env = run({"env", "BULWARK_CA_CERT=" + p.ca_cert, "BULWARK_CLIENT_CERT=" + p.client_cert("cli-admin"),
                    "BULWARK_CLIENT_KEY=" + p.client_key("cli-admin"), bin("bulwark"), "--gateway", https, "sandbox", "get", "tls-a",
                    "-o", "json"});
    CHECK_MESSAGE(env.code == 0, env.err);
    CHECK(json::parse(env.out, nullptr, false).value("phase", "") == "READY");

    auto d = cli(https, tls, {"sandbox", "delete", "tls-a"});
    CHECK_MESSAGE(d.code == 0, d.err);
  }

  {  // a restarted gateway reuses the PKI: same CA, same server certificate
    const std::string server_fp = pki::cert_fingerprint(p.gateway_cert);
    s.stop_gateway(SIGTERM);
    s.start_gateway();
    CHECK(pki::cert_fingerprint(p.ca_cert) == fingerprint);
    CHECK(pki::cert_fingerprint(p.gateway_cert) == server_fp);
    auto l = cli(https, tls, {"sandbox", "list"});
    CHECK_MESSAGE(l.code == 0, l.err);
    // The second start created nothing: "PKI: created" appears once in the log.
    const std::string log2 = read_file(s.file("gateway-api.log"));  // appended across restarts
    size_t first = log2.find("PKI: created");
    CHECK(first != std::string::npos);
    CHECK(log2.find("PKI: created", first + 1) == std::string::npos);
  }
}
