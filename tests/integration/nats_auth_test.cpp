// NATS in operator mode with TLS (docs/security.md, "NATS"): every service connects with its own
// credentials, a sandbox gets credentials for its own subjects only, and nats-server, the real
// verifier, refuses everything else: another sandbox's subjects, a wildcard subscription, a
// connection without credentials, a connection without TLS.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

#include "services/driver-podman/podman_client.h"
#include "shared/nats_auth.h"
#include "shared/process.h"
#include "tests/integration/policies.h"
#include "tests/integration/suite.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// What nats-server told a raw libnats connection asynchronously (permission violations arrive
// this way, not as the result of the publish or subscribe call).
struct Errors {
  std::mutex mu;
  std::vector<std::string> texts;
  static void on_error(natsConnection* nc, natsSubscription*, natsStatus s, void* closure) {
    auto* self = static_cast<Errors*>(closure);
    const char* txt = nullptr;
    natsConnection_GetLastError(nc, &txt);
    std::lock_guard lock(self->mu);
    self->texts.push_back(std::string(natsStatus_GetText(s)) + ": " + (txt ? txt : ""));
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& t : texts) out += t + "\n";
    return out;
  }
  bool has(const std::string& needle) {
    std::lock_guard lock(mu);
    for (const auto& t : texts)
      if (t.find(needle) != std::string::npos) return true;
    return false;
  }
};

// A libnats connection as a sandbox would make it: the credentials' text (jwt + seed) through
// callbacks, and TLS with the suite's CA unless plain.
struct RawConn {
  nats_auth::Creds creds;
  NonceSigner signer;
  Errors errors;
  NatsPtr<natsConnection> nc;
  natsStatus status = NATS_OK;
  std::string last_error;

  static natsStatus jwt_cb(char** jwt, char**, void* c) {
    *jwt = strdup(static_cast<RawConn*>(c)->creds.jwt.c_str());
    return NATS_OK;
  }

  RawConn(const std::string& url, const std::string& creds_text, const std::string& ca_file) {
    natsOptions* raw = nullptr;
    REQUIRE(natsOptions_Create(&raw) == NATS_OK);
    NatsPtr<natsOptions> o(raw);
    natsOptions_SetURL(o.get(), url.c_str());
    natsOptions_SetTimeout(o.get(), 3000);
    natsOptions_SetAllowReconnect(o.get(), false);
    natsOptions_SetErrorHandler(o.get(), Errors::on_error, &errors);
    if (!creds_text.empty()) {
      creds = nats_auth::parse_creds(creds_text);
      signer.seed = creds.seed;
      REQUIRE(natsOptions_SetUserCredentialsCallbacks(o.get(), jwt_cb, this, NonceSigner::callback, &signer) == NATS_OK);
    }
    if (!ca_file.empty()) {
      REQUIRE(natsOptions_SetSecure(o.get(), true) == NATS_OK);
      REQUIRE(natsOptions_LoadCATrustedCertificates(o.get(), ca_file.c_str()) == NATS_OK);
    }
    natsConnection* c = nullptr;
    status = creds_text.empty() ? natsConnection_Connect(&c, o.get()) : signer.connect(&c, o.get());
    if (status == NATS_OK) nc.reset(c);
    const char* txt = nats_GetLastError(nullptr);
    last_error = std::string(natsStatus_GetText(status)) + (txt ? std::string(": ") + txt : "");
  }
  ~RawConn() {
    if (nc) natsConnection_Close(nc.get());
  }
  // Round trip to the server: every violation of what was sent before has then been reported.
  void settle() {
    natsConnection_FlushTimeout(nc.get(), 3000);
    std::this_thread::sleep_for(200ms);  // the error handler runs on libnats' own thread
  }
};

// What nats-server answers a client that speaks plain text on its TLS-only port.
std::string plain_text_exchange(int port) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(s);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  std::string got;
  auto read_some = [&] {
    char buf[4096];
    pollfd p{s.get(), POLLIN, 0};
    while (::poll(&p, 1, 2000) > 0) {
      ssize_t n = ::read(s.get(), buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
      if (got.find("\r\n", got.rfind("INFO") == std::string::npos ? 0 : got.rfind("INFO")) != std::string::npos) break;
    }
  };
  read_some();  // INFO (tls_required)
  const std::string hello = "CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false}\r\nPING\r\n";
  (void)!::write(s.get(), hello.data(), hello.size());
  read_some();
  return got;
}

// The permission violations nats-server logged: what a failing check most likely hit.
std::string violations(Suite& suite) {
  std::string out, log = suite.nats().log();
  size_t at = 0;
  while ((at = log.find("Violation", at)) != std::string::npos) {
    size_t b = log.rfind('\n', at), e = log.find('\n', at);
    out += log.substr(b == std::string::npos ? 0 : b + 1, e == std::string::npos ? e : e - b) ;
    at = e == std::string::npos ? log.size() : e;
  }
  return out;
}

}  // namespace

TEST_CASE("NATS operator mode with TLS: per-service users, per-sandbox credentials, refusals") {
  Suite suite({.secure_nats = true});
  suite.start_router();  // the fifth service, on its own credentials too

  auto s = suite.create({{"name", "nats-auth"}, {"policy", kGoodPolicy}});  // sleep infinity
  std::string id = s["sandbox_id"];
  s = suite.wait_phase(id, {"READY", "FAILED", "EXITED"}, 60s);
  REQUIRE_MESSAGE(s["phase"] == "READY", s.dump(2));
  CHECK(s.value("supervisor_checked_in", false));

  // The supervisor got its own credentials (minted by the gateway) and the CA in its environment.
  podman::PodmanClient podman(podman_socket());
  auto inspect = podman.inspect_container("bulwark-" + id);
  REQUIRE(inspect);
  std::string creds;
  bool has_ca = false;
  for (const auto& e : (*inspect)["Config"]["Env"]) {
    std::string kv = e.get<std::string>();
    if (kv.rfind("BULWARK_NATS_CREDS=", 0) == 0) creds = kv.substr(19);
    if (kv.rfind("BULWARK_NATS_CA=-----BEGIN CERTIFICATE", 0) == 0) has_ca = true;
  }
  REQUIRE_MESSAGE(!creds.empty(), "no BULWARK_NATS_CREDS in the container's environment");
  CHECK(has_ca);
  auto claims = nats_auth::verified_claims(nats_auth::parse_creds(creds).jwt);
  CHECK(claims["name"] == "sandbox-" + id);
  // The account's signing seed never reaches a sandbox.
  std::string seed = nats_auth::read_text_file(suite.nats_auth_dir() + "/account.seed", "seed");
  for (const auto& e : (*inspect)["Config"]["Env"]) CHECK(e.get<std::string>().find(seed) == std::string::npos);

  // The supervisor works under those credentials: a policy change reaches it through its KV watch
  // and it acknowledges on its own subject; exec answers through the relay.
  auto c = suite.client();
  std::string v2 = kGoodPolicy + "network_policies:\n  web:\n    endpoints:\n      - { host: example.com, port: 443 }\n"
                                 "    binaries:\n      - { path: /bin/busybox }\n";
  auto put = c.Put("/v1/sandboxes/" + id + "/policy", json{{"yaml", v2}, {"wait_ms", 20000}}.dump(), "application/json");
  REQUIRE(put);
  CHECK_MESSAGE(put->status == 200, put->body);
  CHECK_MESSAGE(json::parse(put->body).value("acknowledged", false), put->body, "\n", violations(suite));
  auto ex = c.Post("/v1/sandboxes/" + id + "/exec", json{{"command", {"sh", "-c", "echo hi; exit 3"}}}.dump(), "application/json");
  REQUIRE(ex);
  REQUIRE_MESSAGE(ex->status == 200, ex->body);
  auto exj = json::parse(ex->body);
  CHECK(exj.value("exit_code", -1) == 3);
  CHECK(exj.value("stdout", "") == "hi\n");

  const std::string other = "fedcba9876543210";
  {  // the sandbox's credentials allow its own subjects and nothing of another sandbox
    RawConn conn(suite.nats_url(), creds, suite.nats_ca());
    REQUIRE_MESSAGE(conn.status == NATS_OK, conn.last_error);
    // Its own subjects: no violation.
    natsSubscription* own = nullptr;
    CHECK(natsConnection_SubscribeSync(&own, conn.nc.get(), ("bulwark.exec." + id + ".x").c_str()) == NATS_OK);
    NatsPtr<natsSubscription> own_sub(own);
    CHECK(natsConnection_PublishString(conn.nc.get(), ("bulwark.policy.ack." + id).c_str(), "") == NATS_OK);
    conn.settle();
    CHECK_MESSAGE(!conn.errors.has("Permissions Violation"), conn.errors.all());

    // Another sandbox's state, exec and inference subjects: refused by the server.
    for (const std::string& subject :
         {"bulwark.sandbox." + other + ".state", "bulwark.inference.call." + other, "bulwark.policy.ack." + other,
          std::string("bulwark.sched.place")}) {
      CHECK(natsConnection_PublishString(conn.nc.get(), subject.c_str(), "x") == NATS_OK);  // async: the server answers -ERR
      conn.settle();
      CHECK_MESSAGE(conn.errors.has("Permissions Violation for Publish to \"" + subject + "\""), conn.errors.all());
    }
    // One at a time: the error handler reads the connection's last error, which the next -ERR replaces.
    std::vector<NatsPtr<natsSubscription>> subs;
    for (const std::string& subject : {std::string("bulwark.>"), "bulwark.exec." + other + ".>", std::string("_INBOX.>")}) {
      natsSubscription* sub = nullptr;
      CHECK(natsConnection_SubscribeSync(&sub, conn.nc.get(), subject.c_str()) == NATS_OK);  // async, as above
      subs.emplace_back(sub);
      conn.settle();
      CHECK_MESSAGE(conn.errors.has("Permissions Violation for Subscription to \"" + subject + "\""), conn.errors.all());
    }
  }

  {  // a connection without credentials is refused
    RawConn conn(suite.nats_url(), "", suite.nats_ca());
    CHECK(conn.status != NATS_OK);
    CHECK_MESSAGE(conn.last_error.find("Authorization Violation") != std::string::npos, conn.last_error);
  }

  {  // a plain (non-TLS) connection is refused
    // libnats refuses on its own once the server says TLS is required...
    RawConn conn(suite.nats_url(), creds, "");
    CHECK(conn.status != NATS_OK);
    // ...and so does nats-server when a client speaks plain text anyway: no PONG.
    std::string answer = plain_text_exchange(suite.nats().port());
    CHECK_MESSAGE(answer.find("\"tls_required\":true") != std::string::npos, answer);
    CHECK_MESSAGE(answer.find("PONG") == std::string::npos, answer);
  }

  {  // a service's credentials do not reach beyond its subjects
    std::string sched = nats_auth::read_text_file(suite.nats_auth_dir() + "/scheduler.creds", "creds");
    RawConn conn(suite.nats_url(), sched, suite.nats_ca());
    auto log = suite.nats().log();
    REQUIRE_MESSAGE(conn.status == NATS_OK, conn.last_error, "\n", log.substr(log.size() > 3000 ? log.size() - 3000 : 0));
    std::string exec = "bulwark.exec." + id + ".0000000000000000";
    CHECK(natsConnection_PublishString(conn.nc.get(), exec.c_str(), "x") == NATS_OK);
    conn.settle();
    CHECK_MESSAGE(conn.errors.has("Permissions Violation for Publish to \"" + exec + "\""), conn.errors.all());
  }

  // Every service and the supervisor worked within their permissions: the only violations
  // nats-server logged are the ones provoked above (by unnamed connections). Bulwark's own
  // connections are named bulwark-<service>.
  std::string v = violations(suite);
  CHECK_MESSAGE(v.find(":bulwark-") == std::string::npos, v);
  CHECK(v.find("Violation") != std::string::npos);  // the provoked ones are there
}
