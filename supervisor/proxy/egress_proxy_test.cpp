// The egress proxy over real loopback sockets: upstream servers on 127.0.0.1 (plain and TLS),
// clients speaking raw HTTP/1.1 (and TLS) to the proxy, and the real curl binary. The proxy
// identifies callers through the real /proc with this test process as the agent's "init", so the
// caller is this executable, or curl with this executable as an ancestor.
#include "supervisor/proxy/egress_proxy.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "shared/error.h"
#include "shared/policy.h"
#include "shared/policy_engine.h"
#include "shared/process.h"
#include "shared/util.h"
#include "supervisor/proxy/sandbox_ca.h"
#include "tests/support/test_pki.h"

using namespace bulwark::proxy;
using bulwark::Fd;
using bulwark::testing::TestPki;
using Engine = std::shared_ptr<const bulwark::policy::CompiledPolicy>;
using Json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A client of the proxy on a plain blocking socket. Reads time out (and throw) after `timeout`.
class Client {
 public:
  explicit Client(uint16_t port, std::chrono::seconds timeout = 5s) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (!fd_) throw std::runtime_error(bulwark::errno_text("socket", errno));
    timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a = loopback(port);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error(bulwark::errno_text("connect to the proxy", errno));
  }

  void send(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd_.get(), s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) throw std::runtime_error(bulwark::errno_text("send", errno));
      s.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Everything up to and including `marker`.
  std::string read_until(std::string_view marker) {
    for (;;) {
      size_t at = buf_.find(marker);
      if (at != std::string::npos) {
        std::string out = buf_.substr(0, at + marker.size());
        buf_.erase(0, at + marker.size());
        return out;
      }
      if (!fill()) throw std::runtime_error("connection ended before \"" + std::string(marker) + "\"; got: " + buf_);
    }
  }

  std::string read_exact(size_t n) {
    while (buf_.size() < n)
      if (!fill()) throw std::runtime_error("connection ended after " + std::to_string(buf_.size()) + " bytes");
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  std::string read_to_eof() {
    while (fill()) {
    }
    return std::exchange(buf_, {});
  }

  void shutdown_write() { ::shutdown(fd_.get(), SHUT_WR); }

  int fd() const { return fd_.get(); }

  uint16_t local_port() const {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }

 private:
  // False at EOF; throws on a timeout or a reset (the proxy must close cleanly, not reset).
  bool fill() {
    char b[16384];
    ssize_t n = ::recv(fd_.get(), b, sizeof b, 0);
    if (n > 0) {
      buf_.append(b, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == EAGAIN) throw std::runtime_error("timed out reading from the proxy; got so far: " + buf_);
    throw std::runtime_error(bulwark::errno_text("recv", errno) + "; got so far: " + buf_);
  }

  Fd fd_;
  std::string buf_;
};

struct Response {
  std::string head;  // status line and headers
  std::string body;
  int status = 0;
};

// Reads a whole response up to the close the proxy ends it with.
Response read_response(Client& c) {
  Response r;
  r.head = c.read_until("\r\n\r\n");
  r.body = c.read_to_eof();
  r.status = std::stoi(r.head.substr(9, 3));
  return r;
}

// An upstream TCP echo server (Asio, one thread). Echoes until EOF, then half-closes back.
class EchoServer {
 public:
  EchoServer() {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~EchoServer() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::atomic<int> accepted{0};

 private:
  using tcp = asio::ip::tcp;
  void accept() {
    acceptor_.async_accept([this](asio::error_code ec, tcp::socket s) {
      if (ec) return;
      ++accepted;
      echo(std::make_shared<tcp::socket>(std::move(s)), std::make_shared<std::array<char, 16384>>());
      accept();
    });
  }
  static void echo(std::shared_ptr<tcp::socket> s, std::shared_ptr<std::array<char, 16384>> buf) {
    s->async_read_some(asio::buffer(*buf), [s, buf](asio::error_code ec, size_t n) {
      if (ec) {
        asio::error_code ignored;
        s->shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      asio::async_write(*s, asio::buffer(buf->data(), n), [s, buf](asio::error_code ec, size_t) {
        if (!ec) echo(s, buf);
      });
    });
  }
  asio::io_context io_;
  tcp::acceptor acceptor_{io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::thread thread_;
};

// An upstream HTTP server on a plain socket: one connection at a time, records each request (head
// and Content-Length body), answers with a fixed response and closes.
class HttpServer {
 public:
  explicit HttpServer(std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Upstream: yes\r\n\r\nhello")
      : response_(std::move(response)), fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_.get(), 16) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error(bulwark::errno_text("test http server", errno));
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~HttpServer() {
    ::shutdown(fd_.get(), SHUT_RDWR);  // wakes the blocked accept()
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::vector<std::string> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    for (;;) {
      Fd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) return;
      timeval tv{5, 0};
      ::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string req;
      char b[4096];
      auto more = [&] {
        ssize_t n = ::recv(c.get(), b, sizeof b, 0);
        if (n > 0) req.append(b, static_cast<size_t>(n));
        return n > 0;
      };
      while (req.find("\r\n\r\n") == std::string::npos && more()) {
      }
      size_t end = req.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::string lower = req.substr(0, end);
        for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t cl = lower.find("\r\ncontent-length:");
        size_t body = cl == std::string::npos ? 0 : std::stoul(lower.substr(cl + 17));
        while (req.size() < end + 4 + body && more()) {
        }
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(req);
      }
      ::send(c.get(), response_.data(), response_.size(), MSG_NOSIGNAL);
    }
  }
  std::string response_;
  Fd fd_;
  uint16_t port_ = 0;
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::thread thread_;
};


// --- TLS: a test PKI for the "operator's" upstream, a keep-alive upstream, a TLS client -------

using SslPtr = std::unique_ptr<SSL, OsslFree<SSL_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OsslFree<SSL_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, OsslFree<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OsslFree<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, OsslFree<BIO_free_all>>;

// An upstream HTTP/1.1 server with keep-alive, plain or TLS: a thread per connection, each
// request recorded (head and body, Content-Length or chunked) and answered
// "200 ok <method> <path>" with a Content-Length.
class KeepAliveServer {
 public:
  explicit KeepAliveServer(SSL_CTX* tls = nullptr) : tls_(tls), fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_.get(), 16) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error(bulwark::errno_text("test keep-alive server", errno));
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~KeepAliveServer() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    acceptor_.join();
    std::vector<std::thread> conns;
    {
      std::lock_guard lock(mu_);  // not held while joining: serve() takes it to record
      conns.swap(conns_);
    }
    for (auto& t : conns) t.join();
  }
  uint16_t port() const { return port_; }
  std::vector<std::string> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  int connections() const { return accepted_; }

 private:
  void accept_loop() {
    for (;;) {
      int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      ++accepted_;
      std::lock_guard lock(mu_);
      conns_.emplace_back([this, c] { serve(Fd(c)); });
    }
  }

  void serve(Fd c) {
    timeval tv{5, 0};
    ::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SslPtr ssl;
    if (tls_) {
      ssl.reset(SSL_new(tls_));
      SSL_set_fd(ssl.get(), c.get());
      if (SSL_accept(ssl.get()) != 1) {
        ERR_clear_error();
        return;  // the proxy refused our certificate: nothing to serve
      }
    }
    auto recv_some = [&](std::string& buf) {
      char b[4096];
      int n = ssl ? SSL_read(ssl.get(), b, sizeof b) : static_cast<int>(::recv(c.get(), b, sizeof b, 0));
      if (n > 0) buf.append(b, static_cast<size_t>(n));
      return n > 0;
    };
    auto send_all = [&](const std::string& s) {
      if (ssl)
        SSL_write(ssl.get(), s.data(), static_cast<int>(s.size()));
      else
        ::send(c.get(), s.data(), s.size(), MSG_NOSIGNAL);
    };
    std::string buf;
    for (;;) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos)
        if (!recv_some(buf)) return;
      std::string lower = buf.substr(0, end);
      for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      size_t total = end + 4;
      if (lower.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
        size_t last;
        while ((last = buf.find("0\r\n\r\n", end + 4)) == std::string::npos)
          if (!recv_some(buf)) return;
        total = last + 5;
      } else if (size_t cl = lower.find("\r\ncontent-length:"); cl != std::string::npos) {
        total += std::stoul(lower.substr(cl + 17));
        while (buf.size() < total)
          if (!recv_some(buf)) return;
      }
      std::string req = buf.substr(0, total);
      buf.erase(0, total);
      {
        std::lock_guard lock(mu_);
        requests_.push_back(req);
      }
      std::string line = req.substr(0, req.find(" HTTP/"));
      std::string body = "ok " + line;
      send_all("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
    }
  }

  SSL_CTX* tls_;
  Fd fd_;
  uint16_t port_ = 0;
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> conns_;
  std::vector<std::string> requests_;
  std::atomic<int> accepted_{0};
};

// The agent's side of an inspected tunnel: TLS over a Client's socket (after its CONNECT was
// answered), trusting only `ca`, checking the name.
class TlsClient {
 public:
  TlsClient(int fd, X509* ca, const std::string& host) : ctx_(SSL_CTX_new(TLS_client_method())) {
    REQUIRE(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx_.get()), ca) == 1);
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    ssl_.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl_.get(), fd);
    in6_addr ip;
    if (::inet_pton(AF_INET, host.c_str(), &ip) == 1 || ::inet_pton(AF_INET6, host.c_str(), &ip) == 1) {
      REQUIRE(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), host.c_str()) == 1);
    } else {
      SSL_set_tlsext_host_name(ssl_.get(), host.c_str());
      SSL_set1_host(ssl_.get(), host.c_str());
    }
    ok = SSL_connect(ssl_.get()) == 1;
    verify = SSL_get_verify_result(ssl_.get());
    ERR_clear_error();
  }
  void send(std::string_view s) { REQUIRE(SSL_write(ssl_.get(), s.data(), static_cast<int>(s.size())) == static_cast<int>(s.size())); }
  // One response framed by its Content-Length.
  Response read_response() {
    Response r;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) throw std::runtime_error("TLS connection ended before a response head; got: " + buf_);
    r.head = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    r.status = std::stoi(r.head.substr(9, 3));
    std::string lower = r.head;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    size_t cl = lower.find("\r\ncontent-length:");
    size_t n = cl == std::string::npos ? 0 : std::stoul(lower.substr(cl + 17));
    while (buf_.size() < n)
      if (!fill()) throw std::runtime_error("TLS connection ended inside a response body");
    r.body = buf_.substr(0, n);
    buf_.erase(0, n);
    return r;
  }
  // True when the proxy ends the connection (close_notify or EOF) with nothing more sent.
  bool ends() { return !fill() && buf_.empty(); }
  std::string read_until(std::string_view marker) {
    for (;;) {
      size_t at = buf_.find(marker);
      if (at != std::string::npos) {
        std::string out = buf_.substr(0, at + marker.size());
        buf_.erase(0, at + marker.size());
        return out;
      }
      if (!fill()) throw std::runtime_error("TLS connection ended before \"" + std::string(marker) + "\"; got: " + buf_);
    }
  }
  std::string read_exact(size_t n) {
    while (buf_.size() < n)
      if (!fill()) throw std::runtime_error("TLS connection ended after " + std::to_string(buf_.size()) + " bytes");
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }
  std::string read_to_eof() {
    while (fill()) {
    }
    return std::exchange(buf_, {});
  }

  bool ok = false;
  long verify = -1;

 private:
  bool fill() {
    char b[16384];
    int n = SSL_read(ssl_.get(), b, sizeof b);
    ERR_clear_error();
    if (n <= 0) return false;
    buf_.append(b, static_cast<size_t>(n));
    return true;
  }
  SslCtxPtr ctx_;
  SslPtr ssl_;
  std::string buf_;
};

// --- the proxy under test -------------------------------------------------------------------

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

// network: the inside of network_policies.
Engine compile(const std::string& network) {
  return bulwark::policy::CompiledPolicy::compile(
      bulwark::policy::parse_policy("version: 1\nnetwork_policies:\n" + network, "test-policy.yaml"));
}

// Policy "test": one endpoint host:port (plus `extra` endpoint lines, indented 8) for
// `binaries`: by default this test executable, and curl (run by the tests through a shell).
Engine allow(const std::string& host, uint16_t port, const std::string& extra = "",
             const std::vector<std::string>& binaries = {self_exe(), "/usr/bin/curl"}) {
  std::string list;
  for (const auto& b : binaries) list += "      - path: \"" + b + "\"\n";
  return compile("  test:\n    endpoints:\n      - host: \"" + host + "\"\n        port: " + std::to_string(port) + "\n" +
                 extra + "    binaries:\n" + list);
}

EgressProxy::Options test_options() {
  EgressProxy::Options o;
  o.listen_address = "127.0.0.1";
  o.listen_port = 0;
  o.connect_timeout = 5s;
  o.agent_init_pid = ::getpid();  // this process and its children are "the sandbox"
  return o;
}

// A running proxy that records every event.
struct TestProxy {
  explicit TestProxy(Engine policy, EgressProxy::Options opts = test_options(), uint64_t version = 1)
      : proxy(std::move(opts), std::move(policy), version, [this](const Event& e) {
          std::lock_guard lock(mu);
          log.push_back(e);
        }) {
    proxy.run_in_thread();
  }
  std::vector<Event> events() {
    std::lock_guard lock(mu);
    return log;
  }
  uint16_t port() const { return proxy.port(); }

  std::mutex mu;
  std::vector<Event> log;
  EgressProxy proxy;
};

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

std::string connect_line(const std::string& authority) {
  return "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n";
}

uint16_t unused_port() {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = loopback(0);
  socklen_t len = sizeof a;
  REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
  return ntohs(a.sin_port);  // closed on return: nothing listens there
}

int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

// Runs a shell command, returning its stdout and exit code.
std::pair<std::string, int> run(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  REQUIRE_MESSAGE(p, "popen failed for: ", cmd);
  std::string out;
  char b[4096];
  size_t n;
  while ((n = std::fread(b, 1, sizeof b, p.get())) > 0) out.append(b, n);
  int status = ::pclose(p.release());
  return {out, bulwark::exit_code_of(status)};
}

// The "error" object of a 403 body, after checking the response is the proxy's JSON denial.
Json denial(const Response& r) {
  CHECK(r.status == 403);
  CHECK(contains(r.head, "Content-Type: application/json\r\n"));
  CHECK(contains(r.head, "Connection: close\r\n"));
  Json j = Json::parse(r.body);
  CHECK(j["error"]["code"] == "policy_denied");
  return j["error"];
}

void require_curl() {
  if (run("command -v curl").second != 0) FAIL("curl is not installed: install curl (scripts/install-deps does)");
}

}  // namespace

// --- L4: tunnels, forwarding, addresses, limits (the proxy's transport) ------------------------

TEST_CASE("CONNECT allowed: the tunnel carries bytes both ways, early bytes and half-close included") {
  EchoServer upstream;
  TestProxy p(allow("127.0.0.1", upstream.port()));
  std::string authority = "127.0.0.1:" + std::to_string(upstream.port());

  Client c(p.port());
  // A client may send its first bytes (a TLS ClientHello) right behind the CONNECT head.
  c.send(connect_line(authority) + "early|");
  CHECK(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  CHECK(c.read_exact(6) == "early|");
  c.send("ping\n");
  CHECK(c.read_until("\n") == "ping\n");

  // 4 MiB through the tunnel and back, written while being read.
  std::string bulk(4 << 20, '\0');
  for (size_t i = 0; i < bulk.size(); ++i) bulk[i] = static_cast<char>(i * 7 + i / 4096);
  std::thread writer([&] { c.send(bulk); });
  std::string back = c.read_exact(bulk.size());
  writer.join();
  CHECK(back == bulk);

  // Our half-close reaches the upstream, whose half-close comes back as EOF.
  c.shutdown_write();
  CHECK(c.read_to_eof().empty());

  auto e = p.events();
  REQUIRE(e.size() == 1);
  CHECK(e[0].allowed);
  CHECK_FALSE(e[0].audit);
  CHECK(e[0].rule == "network_policies.test.endpoints[0]");
  CHECK(e[0].method == "CONNECT");
  CHECK(e[0].host == "127.0.0.1");
  CHECK(e[0].port == upstream.port());
  CHECK(e[0].path.empty());
  CHECK(e[0].binary == self_exe());  // identified through /proc: this very test executable
  CHECK(e[0].pid == ::getpid());
  CHECK(e[0].policy_version == 1);
  CHECK(e[0].client_addr == "127.0.0.1");
  CHECK(e[0].client_port == c.local_port());
  CHECK(eventually([&] { return p.proxy.active_connections() == 0; }));
}

TEST_CASE("an unknown host is denied: 403 JSON naming the rule, the reason and the policy version") {
  TestProxy p(allow("api.example.com", 443), test_options(), 7);
  Client c(p.port());
  c.send(connect_line("evil.example:443"));
  Response r = read_response(c);
  CHECK(contains(r.head, "HTTP/1.1 403 Forbidden\r\n"));
  Json err = denial(r);
  CHECK(err["rule"] == "bulwark:default-deny");
  CHECK(err["policy_version"] == 7);
  CHECK(err["message"] ==
        "bulwark: CONNECT evil.example:443 denied by network policy version 7: no network_policies endpoint allows "
        "evil.example:443");

  auto e = p.events();
  REQUIRE(e.size() == 1);
  CHECK_FALSE(e[0].allowed);
  CHECK(e[0].rule == "bulwark:default-deny");
  CHECK(e[0].host == "evil.example");
  CHECK(e[0].port == 443);
  CHECK(e[0].method == "CONNECT");
  CHECK(e[0].binary == self_exe());
  CHECK(e[0].policy_version == 7);
  CHECK(e[0].reason == "no network_policies endpoint allows evil.example:443");
}

TEST_CASE("absolute-form GET allowed: upstream sees origin-form without Proxy-* headers; the client gets the "
          "response") {
  HttpServer upstream;
  TestProxy p(allow("127.0.0.1", upstream.port()));
  std::string base = "http://127.0.0.1:" + std::to_string(upstream.port());

  Client c(p.port());
  c.send("GET " + base + "/path/x?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Connection: keep-alive\r\n"
         "Proxy-Authorization: Basic dXNlcjpwdw==\r\nUser-Agent: test/1\r\nAccept: */*\r\n\r\n");
  Response r = read_response(c);
  CHECK(r.status == 200);
  CHECK(contains(r.head, "X-Upstream: yes\r\n"));
  CHECK(contains(r.head, "Connection: close\r\n"));
  CHECK(r.body == "hello");

  auto reqs = upstream.requests();
  REQUIRE(reqs.size() == 1);
  const std::string& got = reqs[0];
  CHECK(got.rfind("GET /path/x?q=1 HTTP/1.1\r\n", 0) == 0);
  CHECK(contains(got, "\r\nHost: 127.0.0.1:" + std::to_string(upstream.port()) + "\r\n"));
  CHECK(contains(got, "\r\nUser-Agent: test/1\r\n"));
  CHECK(contains(got, "\r\nAccept: */*\r\n"));
  CHECK(contains(got, "\r\nConnection: close\r\n"));
  CHECK_FALSE(contains(got, "Proxy-"));
  CHECK_FALSE(contains(got, "keep-alive"));

  auto e = p.events();
  REQUIRE(e.size() == 1);
  CHECK(e[0].allowed);
  CHECK(e[0].method == "GET");
  CHECK(e[0].path == "/path/x?q=1");
  CHECK(e[0].port == upstream.port());
}

TEST_CASE("a forwarded POST carries its body; interim 1xx responses pass through; nothing rides behind it") {
  HttpServer upstream(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
      "Keep-Alive: timeout=5\r\n\r\nok");
  TestProxy p(allow("127.0.0.1", upstream.port()));
  Client c(p.port());
  // A second request pipelined behind the first must not reach the upstream unjudged.
  c.send("POST http://127.0.0.1:" + std::to_string(upstream.port()) +
         "/submit HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello worldDELETE /x HTTP/1.1\r\n\r\n");
  CHECK(c.read_until("\r\n\r\n") == "HTTP/1.1 100 Continue\r\n\r\n");
  Response r = read_response(c);
  CHECK(r.status == 201);
  CHECK(r.head == "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
  CHECK(r.body == "ok");
  auto reqs = upstream.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].rfind("POST /submit HTTP/1.1\r\n", 0) == 0);
  CHECK(reqs[0].substr(reqs[0].size() - 15) == "\r\n\r\nhello world");
}

TEST_CASE("an upstream that answers garbage or nothing gets the client a 502") {
  HttpServer garbage("SSH-2.0-OpenSSH_9.2\r\n\r\n");
  HttpServer silent("");
  TestProxy p(compile("  test:\n    endpoints:\n      - { host: 127.0.0.1, ports: [" + std::to_string(garbage.port()) +
                      ", " + std::to_string(silent.port()) + "] }\n    binaries: [{ path: \"" + self_exe() + "\" }]\n"));
  {
    Client c(p.port());
    c.send("GET http://127.0.0.1:" + std::to_string(garbage.port()) + "/ HTTP/1.1\r\n\r\n");
    Response r = read_response(c);
    CHECK(r.status == 502);
    CHECK(contains(r.body, "sent a malformed response"));
  }
  {
    Client c(p.port());
    c.send("GET http://127.0.0.1:" + std::to_string(silent.port()) + "/ HTTP/1.1\r\n\r\n");
    Response r = read_response(c);
    CHECK(r.status == 502);
    CHECK(contains(r.body, "closed the connection without sending a complete response"));
  }
}

TEST_CASE("loopback and metadata are blocked even when the policy allows the host, unless a rule names them") {
  EchoServer upstream;
  std::string port = std::to_string(upstream.port());
  // localhost by name (its addresses are loopback), and a hostless endpoint for 10/8 only.
  TestProxy p(compile("  test:\n    endpoints:\n      - { host: localhost, port: " + port +
                      " }\n      - { ports: [" + port + ", 80], allowed_ips: [10.0.0.0/8] }\n    binaries: [{ path: \"" +
                      self_exe() + "\" }]\n"));

  for (const std::string& authority : {"127.0.0.1:" + port, "[::1]:" + port, "localhost:" + port}) {
    CAPTURE(authority);
    Client c(p.port());
    c.send(connect_line(authority));
    Json err = denial(read_response(c));
    CHECK(err["rule"] == "bulwark:always-blocked");
    CHECK(contains(err["message"].get<std::string>(),
                   "is a loopback address, which is always blocked unless a rule names this address as its host"));
  }
  {
    Client c(p.port());
    c.send("GET http://127.0.0.1:" + port + "/ HTTP/1.1\r\n\r\n");  // forwarded requests too
    Json err = denial(read_response(c));
    CHECK(contains(err["message"].get<std::string>(), "127.0.0.1 is a loopback address"));
  }
  {
    Client c(p.port());
    c.send(connect_line("169.254.169.254:80"));
    Json err = denial(read_response(c));
    CHECK(contains(err["message"].get<std::string>(), "169.254.169.254 is the cloud metadata service"));
  }
  CHECK(upstream.accepted == 0);  // never dialled

  auto e = p.events();
  REQUIRE(e.size() == 5);
  for (const auto& ev : e) {
    CAPTURE(ev.host);
    CHECK_FALSE(ev.allowed);  // the enforced outcome is reported, not the overridden allow
    CHECK(ev.rule == "bulwark:always-blocked");
  }
  CHECK(contains(e[2].reason, "localhost: "));

  // Naming the address in the rule is what lets it through.
  TestProxy named(allow("127.0.0.1", upstream.port()));
  Client c(named.port());
  c.send(connect_line("127.0.0.1:" + port) + "x");
  CHECK(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  CHECK(c.read_exact(1) == "x");
}

TEST_CASE("the proxy refuses to dial itself, even when its address is allowed") {
  TestProxy p(allow("api.example.com", 443));
  p.proxy.set_policy(allow("127.0.0.1", p.port()), 2);  // its port is known only now
  Client c(p.port());
  c.send(connect_line("127.0.0.1:" + std::to_string(p.port())));
  Json err = denial(read_response(c));
  CHECK(err["rule"] == "bulwark:proxy-loop");
  CHECK(contains(err["message"].get<std::string>(), "127.0.0.1:" + std::to_string(p.port()) + " is this egress proxy itself"));
}

TEST_CASE("private addresses need the rule to name the host or the address") {
  TestProxy p(compile("  test:\n    endpoints:\n      - { host: \"*.corp.example\", port: 443 }\n"
                      "      - { port: 443, allowed_ips: [10.0.0.0/8] }\n    binaries: [{ path: \"" +
                      self_exe() + "\" }]\n"));
  {
    Client c(p.port());
    c.send(connect_line("192.168.1.10:443"));  // only the hostless 10/8 endpoint matches: outside it
    Json err = denial(read_response(c));
    CHECK(err["rule"] == "bulwark:private-address");
    CHECK(contains(err["message"].get<std::string>(), "192.168.1.10 is a private address"));
  }
  {
    Client c(p.port());
    c.send(connect_line("11.0.0.1:443"));  // public, but a hostless endpoint allows only its allowed_ips
    Json err = denial(read_response(c));
    CHECK(err["rule"] == "bulwark:outside-allowed-ips");
    CHECK(contains(err["message"].get<std::string>(),
                   "11.0.0.1 is not in the allowed_ips of network_policies.test.endpoints[1]"));
  }
}

TEST_CASE("malformed requests get 400 naming the fault; oversized heads get 431; no event") {
  TestProxy p(allow("h", 80));
  struct Case {
    std::string send;
    int status;
    std::string says;
  };
  std::vector<Case> cases = {
      {"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, "a proxy needs an absolute URL"},
      {"CONNECT example.com HTTP/1.1\r\n\r\n", 400, "no port"},
      {"GET http://h/ HTTP/1.1\r\nBroken header\r\n\r\n", 400, "header line without a colon"},
      {"GET http://h/ HTTP/3\r\n\r\n", 400, "unsupported HTTP version"},
      // Refused as soon as it is seen, without waiting for a head that will never come.
      {std::string("\x16\x03\x01\x00\xa5\x01\x00\x00", 8), 400, "TLS"},
      {"GET http://h/ HTTP/1.1\r\nX-Big: " + std::string(70 * 1024, 'a'), 431, "exceed 65536 bytes"},
  };
  for (const auto& tc : cases) {
    CAPTURE(tc.says);
    Client c(p.port());
    c.send(tc.send);
    Response r = read_response(c);  // throws on a reset: the proxy lingers instead of resetting
    CHECK(r.status == tc.status);
    CHECK(contains(r.body, tc.says));
    CHECK(r.body.rfind("bulwark: ", 0) == 0);
  }
  CHECK(p.events().empty());
}

TEST_CASE("upstream connect failure and unresolvable names give 502 with the reason") {
  uint16_t port = unused_port();
  TestProxy p(compile("  test:\n    endpoints:\n      - { host: 127.0.0.1, port: " + std::to_string(port) +
                      " }\n      - { host: does-not-exist.invalid, port: 443 }\n    binaries: [{ path: \"" + self_exe() +
                      "\" }]\n"));
  {
    Client c(p.port());
    c.send(connect_line("127.0.0.1:" + std::to_string(port)));
    Response r = read_response(c);
    CHECK(r.status == 502);
    CHECK(contains(r.body, "bulwark: cannot connect to 127.0.0.1:" + std::to_string(port) + ": 127.0.0.1:" +
                               std::to_string(port) + ": Connection refused"));
  }
  {
    Client c(p.port(), 10s);
    c.send(connect_line("does-not-exist.invalid:443"));
    Response r = read_response(c);
    // .invalid never resolves (RFC 6761); with no DNS server reachable the lookup may time out instead.
    if (r.status == 502)
      CHECK(contains(r.body, "bulwark: cannot resolve does-not-exist.invalid ("));
    else
      CHECK(r.status == 504);
  }
}

TEST_CASE("timeouts: a silent client, and an idle tunnel, are closed; traffic keeps a tunnel open") {
  EchoServer upstream;
  auto opts = test_options();
  opts.header_timeout = 300ms;
  opts.idle_timeout = 400ms;
  TestProxy p(allow("127.0.0.1", upstream.port()), opts);
  {
    Client c(p.port());
    c.send("CONNECT 127.0.0.1:");  // and then nothing
    auto start = std::chrono::steady_clock::now();
    CHECK(c.read_to_eof().empty());
    CHECK(std::chrono::steady_clock::now() - start < 3s);
  }
  {
    Client c(p.port());
    c.send(connect_line("127.0.0.1:" + std::to_string(upstream.port())));
    c.read_until("\r\n\r\n");
    for (int i = 0; i < 8; ++i) {  // 800 ms of traffic, twice the idle timeout
      std::this_thread::sleep_for(100ms);
      c.send("x");
      CHECK(c.read_exact(1) == "x");
    }
    auto start = std::chrono::steady_clock::now();
    CHECK(c.read_to_eof().empty());  // now silent: closed after the idle timeout
    auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= 300ms);
    CHECK(waited < 3s);
  }
  CHECK(eventually([&] { return p.proxy.active_connections() == 0; }));
}

TEST_CASE("200 concurrent CONNECT tunnels, each identified, all work on the proxy's one event loop") {
  constexpr int kTunnels = 200;
  // Each tunnel costs four descriptors in this process (client, proxy x2, echo server).
  rlimit lim{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
  if (lim.rlim_cur < 4096 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = std::min<rlim_t>(4096, lim.rlim_max);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lim) == 0);
  }
  REQUIRE_MESSAGE(lim.rlim_cur >= 4 * kTunnels + 64, "RLIMIT_NOFILE too low for this test: ", lim.rlim_cur);

  EchoServer upstream;
  TestProxy p(allow("127.0.0.1", upstream.port()));
  std::string authority = "127.0.0.1:" + std::to_string(upstream.port());
  {
    // Warm up once so every helper thread exists before counting threads.
    Client c(p.port());
    c.send(connect_line(authority));
    c.read_until("\r\n\r\n");
  }
  REQUIRE(eventually([&] { return p.proxy.active_connections() == 0; }));
  int threads_before = thread_count();

  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kTunnels; ++i) {
    clients.push_back(std::make_unique<Client>(p.port(), 30s));
    clients.back()->send(connect_line(authority));
  }
  for (auto& c : clients) CHECK(c->read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  // All open at once, served without a thread each.
  CHECK(p.proxy.active_connections() == kTunnels);
  CHECK(thread_count() == threads_before);

  for (int i = 0; i < kTunnels; ++i) clients[i]->send("tunnel " + std::to_string(i) + "\n");
  for (int i = 0; i < kTunnels; ++i) CHECK(clients[i]->read_until("\n") == "tunnel " + std::to_string(i) + "\n");
  CHECK(upstream.accepted == kTunnels + 1);
  auto e = p.events();
  CHECK(e.size() == kTunnels + 1);
  CHECK(std::all_of(e.begin(), e.end(), [](const Event& ev) { return ev.allowed && ev.binary == self_exe(); }));

  clients.clear();
  CHECK(eventually([&] { return p.proxy.active_connections() == 0; }));
}

TEST_CASE("clients that vanish at any step leave no connection behind") {
  EchoServer upstream;
  TestProxy p(allow("127.0.0.1", upstream.port()));
  std::string authority = "127.0.0.1:" + std::to_string(upstream.port());
  auto reset = [](Client& c) {
    linger l{1, 0};  // close with a reset instead of a FIN
    ::setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  };
  { Client c(p.port()); }  // connects, says nothing, leaves
  {
    Client c(p.port());
    c.send("CONNECT 127.0.0.1");  // half a head
  }
  {
    Client c(p.port());
    c.send("GET /bad HTTP/1.1\r\n\r\n");  // leaves without reading its 400
    reset(c);
  }
  {
    Client c(p.port());
    c.send(connect_line(authority));
    c.read_until("\r\n\r\n");
    c.send("data in flight");
    reset(c);  // resets mid-tunnel
  }
  {
    Client c(p.port());
    c.send(connect_line(authority) + std::string(1 << 20, 'z'));  // a megabyte, never read back
  }
  CHECK(eventually([&] { return p.proxy.active_connections() == 0; }));
  // And the proxy still serves.
  Client c(p.port());
  c.send(connect_line(authority) + "alive\n");
  c.read_until("\r\n\r\n");
  CHECK(c.read_until("\n") == "alive\n");
}

TEST_CASE("beyond max_connections new clients get 503") {
  EchoServer upstream;
  auto opts = test_options();
  opts.max_connections = 2;
  TestProxy p(allow("127.0.0.1", upstream.port()), opts);
  std::string authority = "127.0.0.1:" + std::to_string(upstream.port());
  Client a(p.port()), b(p.port());
  for (Client* c : {&a, &b}) {
    c->send(connect_line(authority));
    c->read_until("\r\n\r\n");
  }
  Client third(p.port());
  Response r = read_response(third);
  CHECK(r.status == 503);
  CHECK(contains(r.body, "limit of 2 connections"));
}

TEST_CASE("the real curl works through the proxy, plain and tunnelled, identified as curl") {
  require_curl();
  HttpServer upstream;
  TestProxy p(allow("127.0.0.1", upstream.port()));
  // --noproxy '' so a NO_PROXY in the environment cannot make curl bypass the proxy.
  std::string curl = "curl -sS --max-time 10 --noproxy '' -x http://127.0.0.1:" + std::to_string(p.port()) + " ";
  std::string url = "http://127.0.0.1:" + std::to_string(upstream.port());

  auto [out, code] = run(curl + url + "/via-curl");
  CHECK(code == 0);
  CHECK(out == "hello");
  auto [tunnelled, code2] = run(curl + "-p " + url + "/via-connect");  // -p: CONNECT even for http://
  CHECK(code2 == 0);
  CHECK(tunnelled == "hello");
  auto [denied, code3] = run(curl + "-w ' status=%{http_code}' http://evil.example/");
  CHECK(code3 == 0);
  CHECK(contains(denied, "\"code\":\"policy_denied\""));
  CHECK(contains(denied, "denied by network policy version 1: no network_policies endpoint allows evil.example:80"));
  CHECK(contains(denied, "status=403"));

  auto reqs = upstream.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].rfind("GET /via-curl HTTP/1.1\r\n", 0) == 0);
  CHECK_FALSE(contains(reqs[0], "Proxy-"));
  CHECK(reqs[1].rfind("GET /via-connect HTTP/1.1\r\n", 0) == 0);
  auto e = p.events();
  REQUIRE(e.size() == 3);
  CHECK(e[0].method == "GET");
  CHECK(e[1].method == "CONNECT");
  CHECK_FALSE(e[2].allowed);
  CHECK(e[0].binary == "/usr/bin/curl");
  CHECK(e[0].pid != ::getpid());
}

TEST_CASE("a throwing event callback does not break the proxy; a null policy is refused") {
  EchoServer upstream;
  EgressProxy proxy(test_options(), allow("127.0.0.1", upstream.port()), 1,
                    [](const Event&) { throw std::runtime_error("bus down"); });
  proxy.run_in_thread();
  Client c(proxy.port());
  c.send(connect_line("127.0.0.1:" + std::to_string(upstream.port())));
  CHECK(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  c.send("still\n");
  CHECK(c.read_until("\n") == "still\n");
  CHECK_THROWS_AS(EgressProxy(test_options(), nullptr, 1, nullptr), bulwark::Error);
  CHECK_THROWS_AS(proxy.set_policy(nullptr, 2), bulwark::Error);
  auto no_pid = test_options();
  no_pid.agent_init_pid = 0;
  CHECK_THROWS_WITH_AS(EgressProxy(no_pid, allow("h", 1), 1, nullptr),
                       "the egress proxy needs the agent's init pid to identify callers", bulwark::Error);
}

TEST_CASE("stop() closes open tunnels and returns; setup errors name the address") {
  EchoServer upstream;
  auto p = std::make_unique<TestProxy>(allow("127.0.0.1", upstream.port()));
  Client c(p->port());
  c.send(connect_line("127.0.0.1:" + std::to_string(upstream.port())));
  c.read_until("\r\n\r\n");
  auto start = std::chrono::steady_clock::now();
  p->proxy.stop();
  p->proxy.stop();  // idempotent
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(c.read_to_eof().empty());
  CHECK_THROWS_AS(p->proxy.run_in_thread(), bulwark::Error);

  // Never run: destroyed cleanly all the same.
  { EgressProxy idle(test_options(), allow("h", 1), 1, nullptr); }

  auto opts = test_options();
  opts.listen_address = "not-an-ip";
  CHECK_THROWS_WITH_AS(EgressProxy(opts, allow("h", 1), 1, nullptr),
                       "egress proxy listen address \"not-an-ip\" is not an IP address", bulwark::Error);
  opts = test_options();
  TestProxy other(allow("h", 1));
  opts.listen_port = other.port();  // taken
  try {
    EgressProxy clash(opts, allow("h", 1), 1, nullptr);
    FAIL("binding a port in use should throw");
  } catch (const bulwark::Error& e) {
    CHECK(contains(e.what(), "egress proxy cannot listen on 127.0.0.1:" + std::to_string(other.port()) + ": bind: "));
  }
}

// --- who is calling -------------------------------------------------------------------------

TEST_CASE("a binary the policy does not list is denied, naming the binary") {
  EchoServer upstream;
  TestProxy p(allow("127.0.0.1", upstream.port(), "", {"/usr/bin/curl"}));
  Client c(p.port());
  c.send(connect_line("127.0.0.1:" + std::to_string(upstream.port())));
  Json err = denial(read_response(c));
  CHECK(err["rule"] == "network_policies.test.endpoints[0]");
  CHECK(contains(err["message"].get<std::string>(), "binary " + self_exe() + " is not allowed to reach 127.0.0.1:" +
                                                         std::to_string(upstream.port()) +
                                                         " by network_policies.test (binaries: /usr/bin/curl)"));
  auto e = p.events();
  REQUIRE(e.size() == 1);
  CHECK_FALSE(e[0].allowed);
  CHECK(e[0].binary == self_exe());
  CHECK(upstream.accepted == 0);
}

TEST_CASE("a caller that cannot be identified is denied") {
  EchoServer upstream;
  auto opts = test_options();
  opts.identify = [](const asio::ip::tcp::endpoint&, const asio::ip::tcp::endpoint&) {
    return Caller{0, {}, "test: not in the agent's TCP table", false};
  };
  TestProxy p(allow("127.0.0.1", upstream.port()), opts);
  Client c(p.port());
  c.send(connect_line("127.0.0.1:" + std::to_string(upstream.port())));
  Json err = denial(read_response(c));
  CHECK(err["rule"] == "bulwark:unidentified-caller");
  CHECK(contains(err["message"].get<std::string>(),
                 "cannot tell which program opened this connection: test: not in the agent's TCP table"));
  auto e = p.events();
  REQUIRE(e.size() == 1);
  CHECK(e[0].binary.empty());
  CHECK(upstream.accepted == 0);
}

TEST_CASE("a binary changed since its first use is denied (SHA-256 pinned through /proc/<pid>/exe)") {
  require_curl();
  HttpServer upstream;
  fs::path dir = fs::temp_directory_path() / ("bulwark-proxy-pin-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path copy = dir / "curl";
  fs::copy_file("/usr/bin/curl", copy, fs::copy_options::overwrite_existing);
  TestProxy p(allow("127.0.0.1", upstream.port(), "", {copy.string()}));
  std::string cmd = copy.string() + " -sS --max-time 10 --noproxy '' -x http://127.0.0.1:" + std::to_string(p.port()) +
                    " -w ' status=%{http_code}' http://127.0.0.1:" + std::to_string(upstream.port()) + "/x";

  auto [first, code] = run(cmd);
  CHECK(code == 0);
  CHECK(first == "hello status=200");

  std::ofstream(copy, std::ios::app | std::ios::binary) << "tampered";  // same path, other bytes
  auto [second, code2] = run(cmd);
  CHECK(code2 == 0);
  CHECK(contains(second, "status=403"));
  CHECK(contains(second, "\"rule\":\"bulwark:binary-changed\""));
  CHECK(contains(second, "binary changed since first use: " + copy.string()));
  CHECK(upstream.requests().size() == 1);
  auto e = p.events();
  REQUIRE(e.size() == 2);
  CHECK(e[0].allowed);
  CHECK(e[0].binary == copy.string());
  CHECK_FALSE(e[1].allowed);
  CHECK(e[1].rule == "bulwark:binary-changed");
  fs::remove_all(dir);
}

// --- L7: method and path ----------------------------------------------------------------------

TEST_CASE("plain http:// to a read-only endpoint: GET passes, POST gets 403 naming the rule") {
  HttpServer upstream;
  TestProxy p(allow("127.0.0.1", upstream.port(), "        protocol: rest\n        access: read-only\n"));
  std::string base = "http://127.0.0.1:" + std::to_string(upstream.port());
  {
    Client c(p.port());
    c.send("GET " + base + "/repos/x HTTP/1.1\r\n\r\n");
    Response r = read_response(c);
    CHECK(r.status == 200);
    CHECK(r.body == "hello");
  }
  {
    Client c(p.port());
    c.send("POST " + base + "/repos/x HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody");
    Json err = denial(read_response(c));
    CHECK(err["rule"] == "network_policies.test.endpoints[0]");
    CHECK(err["policy_version"] == 1);
    CHECK(contains(err["message"].get<std::string>(),
                   "POST /repos/x not permitted by network_policies.test.endpoints[0]: access read-only (GET, HEAD, "
                   "OPTIONS) does not allow it"));
  }
  auto reqs = upstream.requests();
  REQUIRE(reqs.size() == 1);  // the POST never left
  CHECK(reqs[0].rfind("GET /repos/x HTTP/1.1\r\n", 0) == 0);
  auto e = p.events();
  REQUIRE(e.size() == 2);
  CHECK(e[0].allowed);
  CHECK(e[0].rule == "network_policies.test.endpoints[0].access=read-only");
  CHECK(e[0].path == "/repos/x");
  CHECK_FALSE(e[1].allowed);
  CHECK(e[1].method == "POST");
  CHECK(e[1].path == "/repos/x");
  CHECK(e[1].binary == self_exe());
}

TEST_CASE("paths are judged and forwarded canonical: /repos/../admin is /admin") {
  HttpServer upstream;
  TestProxy p(allow("127.0.0.1", upstream.port(),
                    "        protocol: rest\n        rules:\n          - allow: { method: GET, path: \"/repos/**\" }\n"));
  std::string base = "http://127.0.0.1:" + std::to_string(upstream.port());
  for (const char* disguise : {"/repos/../admin", "/repos/%2e%2e/admin", "/repos/..;/admin", "/repos/%2E%2E%2Fadmin"}) {
    CAPTURE(disguise);
    Client c(p.port());
    c.send("GET " + base + disguise + " HTTP/1.1\r\n\r\n");
    Json err = denial(read_response(c));
    CHECK(err["rule"] == "network_policies.test.endpoints[0]");
  }
  {
    Client c(p.port());
    c.send("GET " + base + "/repos/a/./b//c?x=1 HTTP/1.1\r\n\r\n");
    CHECK(read_response(c).status == 200);
  }
  auto reqs = upstream.requests();
  REQUIRE(reqs.size() == 1);
  CHECK(reqs[0].rfind("GET /repos/a/b/c?x=1 HTTP/1.1\r\n", 0) == 0);  // what was judged is what is sent
  auto e = p.events();
  REQUIRE(e.size() == 5);
  CHECK(e[0].path == "/admin");
  CHECK(e[4].path == "/repos/a/b/c");
}

TEST_CASE("enforcement: audit lets a violation through and reports it as an audit event") {
  HttpServer upstream;
  TestProxy p(compile("  test:\n    endpoints:\n      - host: 127.0.0.1\n        port: " +
                      std::to_string(upstream.port()) +
                      "\n        protocol: rest\n        enforcement: audit\n        access: read-only\n"
                      "    binaries: [{ path: /usr/bin/wget }]\n"));
  Client c(p.port());
  c.send("POST http://127.0.0.1:" + std::to_string(upstream.port()) + "/x HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
  Response r = read_response(c);
  CHECK(r.status == 200);
  REQUIRE(upstream.requests().size() == 1);
  CHECK(upstream.requests()[0].rfind("POST /x HTTP/1.1\r\n", 0) == 0);
  auto e = p.events();
  REQUIRE(e.size() == 1);
  CHECK(e[0].allowed);
  CHECK(e[0].audit);
  CHECK(e[0].rule == "network_policies.test.endpoints[0]");
  CHECK(e[0].reason.rfind("enforcement: audit, would deny: POST /x not permitted", 0) == 0);

  // At L4 too: the binary (this test, not wget) is let through, flagged.
  EchoServer echo;
  TestProxy l4(compile("  test:\n    endpoints:\n      - { host: 127.0.0.1, port: " + std::to_string(echo.port()) +
                       ", enforcement: audit }\n    binaries: [{ path: /usr/bin/wget }]\n"));
  Client t(l4.port());
  t.send(connect_line("127.0.0.1:" + std::to_string(echo.port())));
  CHECK(t.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  auto le = l4.events();
  REQUIRE(le.size() == 1);
  CHECK(le[0].allowed);
  CHECK(le[0].audit);
  CHECK(contains(le[0].reason, "binary " + self_exe() + " is not allowed"));
}

TEST_CASE("plain HTTP inside an inspected CONNECT: keep-alive, chunked bodies re-encoded, each request judged") {
  KeepAliveServer upstream;
  auto opts = test_options();
  opts.ca = std::make_shared<SandboxCa>(SandboxCa::generate("proxy-test"));  // not used: the client speaks no TLS
  TestProxy p(allow("127.0.0.1", upstream.port(),
                    "        protocol: rest\n        rules:\n          - allow: { method: GET, path: \"/repos/**\" }\n"
                    "          - allow: { method: POST, path: \"/repos/**\" }\n"),
              opts);
  Client c(p.port());
  c.send(connect_line("127.0.0.1:" + std::to_string(upstream.port())));
  CHECK(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  // Three requests at once (pipelined): the third is denied after the first two are answered.
  c.send("POST /repos/a HTTP/1.1\r\nHost: whatever\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n"
         "X-Trailer: 1\r\n\r\nGET /repos/b HTTP/1.1\r\nHost: whatever\r\n\r\nDELETE /repos/a HTTP/1.1\r\n\r\n");
  Response one{c.read_until("ok POST /repos/a"), "", 200};
  CHECK(contains(one.head, "HTTP/1.1 200 OK\r\n"));
  CHECK(contains(c.read_until("ok GET /repos/b"), "HTTP/1.1 200 OK\r\n"));
  Json err = denial(read_response(c));
  CHECK(err["rule"] == "network_policies.test.endpoints[0]");
  CHECK(contains(err["message"].get<std::string>(), "DELETE /repos/a not permitted"));

  auto reqs = upstream.requests();
  REQUIRE(reqs.size() == 2);
  std::string host = "127.0.0.1:" + std::to_string(upstream.port());
  CHECK(reqs[0] == "POST /repos/a HTTP/1.1\r\nHost: " + host +
                       "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
  CHECK(reqs[1] == "GET /repos/b HTTP/1.1\r\nHost: " + host + "\r\n\r\n");
  CHECK(upstream.connections() == 1);
  auto e = p.events();
  REQUIRE(e.size() == 4);  // CONNECT, POST, GET, DELETE
  CHECK(e[0].method == "CONNECT");
  CHECK(e[3].method == "DELETE");
  CHECK_FALSE(e[3].allowed);
}

// --- L7 inside TLS ----------------------------------------------------------------------------

struct TlsSetup {
  TestPki pki;
  SslCtxPtr upstream_ctx{pki.server_ctx().release()};
  KeepAliveServer upstream{upstream_ctx.get()};
  std::shared_ptr<SandboxCa> ca = std::make_shared<SandboxCa>(SandboxCa::generate("proxy-test"));
  EgressProxy::Options opts() const {
    auto o = test_options();
    o.ca = ca;
    o.upstream_ca_file = pki.ca_file;
    return o;
  }
  // By address: loopback is reachable only through a rule naming it as its host (and the
  // certificates carry IP:127.0.0.1).
  std::string authority() const { return "127.0.0.1:" + std::to_string(upstream.port()); }
  // GET /repos/** allowed.
  Engine policy(const std::string& rules = "          - allow: { method: GET, path: \"/repos/**\" }\n") const {
    return allow("127.0.0.1", upstream.port(), "        protocol: rest\n        rules:\n" + rules);
  }
};

TEST_CASE("TLS inspected: keep-alive requests are checked one by one; the second is denied while the first passed") {
  TlsSetup s;
  TestProxy p(s.policy(), s.opts());
  Client c(p.port());
  c.send(connect_line(s.authority()));
  REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  TlsClient t(c.fd(), s.ca->cert(), "127.0.0.1");  // trusts only the sandbox CA
  REQUIRE(t.ok);
  CHECK(t.verify == X509_V_OK);

  t.send("GET /repos/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  Response first = t.read_response();
  CHECK(first.status == 200);
  CHECK(first.body == "ok GET /repos/a");
  t.send("POST /repos/a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc");
  Json err = denial(t.read_response());
  CHECK(err["rule"] == "network_policies.test.endpoints[0]");
  CHECK(contains(err["message"].get<std::string>(), "POST /repos/a not permitted by network_policies.test.endpoints[0]"));
  CHECK(t.ends());

  auto reqs = s.upstream.requests();
  REQUIRE(reqs.size() == 1);  // only the GET reached the upstream, re-encrypted
  CHECK(reqs[0] == "GET /repos/a HTTP/1.1\r\nHost: " + s.authority() + "\r\n\r\n");
  auto e = p.events();
  REQUIRE(e.size() == 3);
  CHECK(e[0].method == "CONNECT");
  CHECK(e[1].allowed);
  CHECK(e[1].rule == "network_policies.test.endpoints[0].rules[0]");
  CHECK(e[1].path == "/repos/a");
  CHECK_FALSE(e[2].allowed);
  CHECK(e[2].method == "POST");
  CHECK(e[2].binary == self_exe());
}

TEST_CASE("TLS inspected with the real curl: the sandbox CA is trusted, two URLs share one tunnel, the second is "
          "denied") {
  require_curl();
  TlsSetup s;
  TestProxy p(s.policy(), s.opts());
  std::string ca_file = s.pki.dir.file("sandbox-ca.pem");
  std::ofstream(ca_file) << s.ca->cert_pem();
  std::string base = "https://" + s.authority();
  auto [out, code] = run("curl -sS --max-time 10 --noproxy '' --cacert " + ca_file + " -x http://127.0.0.1:" +
                         std::to_string(p.port()) + " -w ' status=%{http_code}\\n' " + base + "/repos/x " + base +
                         "/admin");
  CHECK(code == 0);
  CHECK(contains(out, "ok GET /repos/x status=200\n"));
  CHECK(contains(out, "status=403\n"));
  CHECK(contains(out, "GET " + s.authority() + "/admin denied by network policy version 1"));
  CHECK(s.upstream.connections() == 1);
  CHECK(s.upstream.requests().size() == 1);
}

TEST_CASE("TLS inspected: an upstream certificate the proxy does not trust gets the client a 502") {
  TlsSetup s;
  auto opts = s.opts();
  opts.upstream_ca_file = "";  // system roots only: the test CA is unknown
  TestProxy p(s.policy(), opts);
  Client c(p.port());
  c.send(connect_line(s.authority()));
  REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  TlsClient t(c.fd(), s.ca->cert(), "127.0.0.1");
  REQUIRE(t.ok);
  t.send("GET /repos/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  Response r = t.read_response();
  CHECK(r.status == 502);
  CHECK(contains(r.body, "bulwark: TLS to " + s.authority() + " failed: certificate verify failed"));
  CHECK(s.upstream.requests().empty());
}

TEST_CASE("an inspected endpoint with no sandbox CA cannot be tunnelled: denied up front") {
  TlsSetup s;
  auto opts = s.opts();
  opts.ca = nullptr;
  TestProxy p(s.policy(), opts);
  Client c(p.port());
  c.send(connect_line(s.authority()));
  Json err = denial(read_response(c));
  CHECK(contains(err["message"].get<std::string>(), "needs TLS interception, and this proxy has no sandbox CA"));
}

// --- live policy changes ------------------------------------------------------------------------

TEST_CASE("set_policy: new connections, the next request of an open inspected connection, and open tunnels") {
  TlsSetup s;
  EchoServer echo;
  auto both = [&](const std::string& tls_rules) {
    return compile("  test:\n    endpoints:\n      - host: 127.0.0.1\n        port: " +
                   std::to_string(s.upstream.port()) + "\n        protocol: rest\n        rules:\n" + tls_rules +
                   "      - { host: 127.0.0.1, port: " + std::to_string(echo.port()) + " }\n    binaries: [{ path: \"" +
                   self_exe() + "\" }]\n");
  };
  TestProxy p(both("          - allow: { method: GET, path: \"/repos/**\" }\n"), s.opts(), 1);

  // Open under version 1: an inspected keep-alive connection and a blind tunnel.
  Client inspected(p.port());
  inspected.send(connect_line(s.authority()));
  REQUIRE(inspected.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  TlsClient t(inspected.fd(), s.ca->cert(), "127.0.0.1");
  REQUIRE(t.ok);
  t.send("GET /repos/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  CHECK(t.read_response().status == 200);
  Client tunnel(p.port());
  tunnel.send(connect_line("127.0.0.1:" + std::to_string(echo.port())) + "1");
  REQUIRE(tunnel.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  CHECK(tunnel.read_exact(1) == "1");

  // Version 2: GET only on /status, and the echo endpoint gone.
  p.proxy.set_policy(allow("127.0.0.1", s.upstream.port(),
                           "        protocol: rest\n        rules:\n"
                           "          - allow: { method: GET, path: /status }\n"),
                     2);
  CHECK(p.proxy.policy_version() == 2);
  CHECK(tunnel.read_to_eof().empty());  // the sweep closed the tunnel the new policy no longer allows

  t.send("GET /repos/a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");  // same connection, judged by version 2
  Json err = denial(t.read_response());
  CHECK(err["policy_version"] == 2);
  CHECK(contains(err["message"].get<std::string>(), "denied by network policy version 2"));

  Client fresh(p.port());
  fresh.send(connect_line("127.0.0.1:" + std::to_string(echo.port())));
  Json err2 = denial(read_response(fresh));
  CHECK(err2["policy_version"] == 2);
  CHECK(err2["rule"] == "bulwark:default-deny");

  auto e = p.events();
  auto closed = std::find_if(e.begin(), e.end(), [](const Event& ev) {
    return !ev.allowed && contains(ev.reason, "no longer allows this open tunnel");
  });
  REQUIRE(closed != e.end());
  CHECK(closed->policy_version == 2);
  CHECK(closed->port == echo.port());
}

// --- inference.local --------------------------------------------------------------------------

namespace {

// A stand-in for the privacy-router client: records each request and answers it from a thread of
// its own (as the NATS client does, never on the proxy's thread), following the test's script.
struct StubInference {
  using Script = std::function<void(const InferenceRequest&, InferenceSink&, StubInference&)>;
  explicit StubInference(Script s) : script(std::move(s)) {}
  ~StubInference() {
    std::vector<std::thread> all;
    {
      std::lock_guard lock(mu);
      all.swap(threads);
    }
    for (auto& t : all) t.join();
  }
  InferenceFn fn() {
    return [this](InferenceRequest r, std::shared_ptr<InferenceSink> sink) {
      sink->on_cancel([this] { ++cancels; });
      std::lock_guard lock(mu);
      requests.push_back(r);
      threads.emplace_back([this, r = std::move(r), sink] { script(r, *sink, *this); });
    };
  }
  std::vector<InferenceRequest> seen() {
    std::lock_guard lock(mu);
    return requests;
  }

  Script script;
  std::atomic<int> cancels{0};
  std::atomic<bool> last_sent{false}, finished{false};
  std::mutex mu;
  std::vector<InferenceRequest> requests;
  std::vector<std::thread> threads;
};

// Answers "<method> <path> <body>" as JSON-ish text in two chunks.
void echo_reply(const InferenceRequest& r, InferenceSink& s, StubInference&) {
  s.head(200, {{"Content-Type", "text/plain"}, {"Content-Length", "999"}, {"X-Router", "stub"}});
  s.chunk(r.method + " " + r.path);
  s.chunk(" " + r.body);
  s.end("");
}

Engine nothing_allowed() { return bulwark::policy::CompiledPolicy::compile(bulwark::policy::Policy{}); }

std::string header_value(const std::string& head, const std::string& name) {
  std::string lower = head, key = "\r\n" + name + ":";
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (auto& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  size_t at = lower.find(key);
  if (at == std::string::npos) return "";
  size_t start = at + key.size(), end = head.find("\r\n", start);
  std::string v = head.substr(start, end - start);
  while (!v.empty() && v.front() == ' ') v.erase(0, 1);
  return v;
}

// A chunked response read whole (head, then chunks up to the last one); C is Client or TlsClient.
template <class C>
Response read_chunked(C& c) {
  Response r;
  r.head = c.read_until("\r\n\r\n");
  r.status = std::stoi(r.head.substr(9, 3));
  REQUIRE(header_value(r.head, "Transfer-Encoding") == "chunked");
  for (;;) {
    std::string line = c.read_until("\r\n");
    size_t n = std::stoul(line, nullptr, 16);
    if (n == 0) {
      CHECK(c.read_exact(2) == "\r\n");
      return r;
    }
    r.body += c.read_exact(n);
    CHECK(c.read_exact(2) == "\r\n");
  }
}

struct InferenceSetup {
  std::shared_ptr<SandboxCa> ca = std::make_shared<SandboxCa>(SandboxCa::generate("inference-test"));
  EgressProxy::Options opts(StubInference& stub) const {
    auto o = test_options();
    o.ca = ca;
    o.inference = stub.fn();
    return o;
  }
};

}  // namespace

TEST_CASE("inference.local: served before the policy (which allows nothing), TLS for inference.local from the "
          "sandbox CA, no denial") {
  InferenceSetup s;
  StubInference stub(echo_reply);
  TestProxy p(nothing_allowed(), s.opts(stub));
  Client c(p.port());
  c.send(connect_line("inference.local:443"));
  REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  TlsClient t(c.fd(), s.ca->cert(), "inference.local");  // trusts only the sandbox CA, checks the name
  REQUIRE(t.ok);
  CHECK(t.verify == X509_V_OK);
  t.send("POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: inference.local\r\nAuthorization: Bearer fake\r\n"
         "Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"model\":1}");
  Response r = read_chunked(t);
  CHECK(r.status == 200);
  CHECK(r.body == "POST /v1/chat/completions?x=1 {\"model\":1}");
  CHECK(header_value(r.head, "X-Router") == "stub");
  CHECK(header_value(r.head, "Content-Length").empty());  // the handler's framing is replaced

  auto seen = stub.seen();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "POST");
  CHECK(seen[0].path == "/v1/chat/completions?x=1");
  CHECK(seen[0].body == "{\"model\":1}");
  CHECK(seen[0].binary == self_exe());
  CHECK(seen[0].pid == ::getpid());
  bool has_auth = false, has_length = false;
  for (const auto& h : seen[0].headers) {
    has_auth |= h.name == "Authorization" && h.value == "Bearer fake";
    has_length |= h.name == "Content-Length";
  }
  CHECK(has_auth);
  CHECK_FALSE(has_length);

  // The same policy still denies everything else.
  Client other(p.port());
  other.send(connect_line("api.example.com:443"));
  CHECK(read_response(other).status == 403);

  auto e = p.events();
  REQUIRE(e.size() == 2);
  CHECK(e[0].allowed);
  CHECK(e[0].rule == kInferenceRule);
  CHECK(e[0].host == "inference.local");
  CHECK(e[0].path == "/v1/chat/completions?x=1");
  CHECK_FALSE(e[1].allowed);
  CHECK(e[1].host == "api.example.com");
  CHECK(std::none_of(e.begin(), e.end(), [](const Event& ev) { return !ev.allowed && ev.host == "inference.local"; }));
}

TEST_CASE("inference.local: a streamed response reaches the client chunk by chunk, not buffered") {
  InferenceSetup s;
  StubInference stub([](const InferenceRequest&, InferenceSink& sink, StubInference& st) {
    sink.head(200, {{"Content-Type", "text/event-stream"}});
    for (int i = 1; i <= 3; ++i) {
      if (i == 3) st.last_sent = true;
      sink.chunk("data: " + std::to_string(i) + "\n\n");
      if (i < 3) std::this_thread::sleep_for(100ms);
    }
    sink.end("");
  });
  TestProxy p(nothing_allowed(), s.opts(stub));
  Client c(p.port());
  c.send(connect_line("inference.local:443"));
  REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  TlsClient t(c.fd(), s.ca->cert(), "inference.local");
  REQUIRE(t.ok);
  t.send("POST /v1/messages HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 2\r\n\r\n{}");
  std::string head = t.read_until("\r\n\r\n");
  CHECK(contains(head, "HTTP/1.1 200 OK\r\n"));
  CHECK(header_value(head, "Content-Type") == "text/event-stream");
  CHECK(contains(t.read_until("data: 1\n\n"), "data: 1"));
  CHECK_FALSE(stub.last_sent);  // the first event arrived while the stub was still streaming
  CHECK(contains(t.read_until("data: 3\n\n\r\n"), "data: 2\n\n"));
  CHECK(t.read_until("\r\n\r\n") == "0\r\n\r\n");
}

TEST_CASE("inference.local: two requests on one keep-alive connection; a chunked request body arrives decoded") {
  InferenceSetup s;
  StubInference stub(echo_reply);
  TestProxy p(nothing_allowed(), s.opts(stub));
  Client c(p.port());
  c.send(connect_line("inference.local:443"));
  REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  TlsClient t(c.fd(), s.ca->cert(), "inference.local");
  REQUIRE(t.ok);
  t.send("GET /v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n");
  Response first = read_chunked(t);
  CHECK(first.status == 200);
  CHECK(first.body == "GET /v1/models ");
  t.send("POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3;ext=x\r\n{\"a\r\n4\r\n\":1}\r\n0\r\nX-Trailer: t\r\n\r\n");
  Response second = read_chunked(t);
  CHECK(second.body == "POST /v1/chat/completions {\"a\":1}");
  auto seen = stub.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].body == "{\"a\":1}");
  for (const auto& h : seen[1].headers) CHECK(h.name != "Transfer-Encoding");
  CHECK(p.proxy.active_connections() == 1);  // one connection carried both
}

TEST_CASE("inference.local: plain http:// absolute-form requests are served the same way") {
  StubInference stub(echo_reply);
  auto opts = test_options();
  opts.inference = stub.fn();  // no CA needed for plain HTTP
  TestProxy p(nothing_allowed(), opts);
  Client c(p.port());
  c.send("POST http://inference.local/v1/messages?beta=true HTTP/1.1\r\nHost: inference.local\r\n"
         "Content-Length: 2\r\n\r\n{}");
  Response r = read_chunked(c);
  CHECK(r.status == 200);
  CHECK(r.body == "POST /v1/messages?beta=true {}");
  CHECK(header_value(r.head, "Connection") == "close");
  CHECK(c.read_to_eof().empty());
  REQUIRE(stub.seen().size() == 1);
  CHECK(stub.seen()[0].path == "/v1/messages?beta=true");
}

TEST_CASE("inference.local: a request over the size limit gets 413 JSON naming the limit, never reaching the "
          "handler") {
  InferenceSetup s;
  StubInference stub(echo_reply);
  auto opts = s.opts(stub);
  opts.inference_max_request_bytes = 1000;
  TestProxy p(nothing_allowed(), opts);
  auto check_413 = [](const Response& r) {
    CHECK(r.status == 413);
    CHECK(header_value(r.head, "Content-Type") == "application/json");
    Json j = Json::parse(r.body);
    CHECK(j["error"]["code"] == "payload_too_large");
    CHECK(contains(j["error"]["message"].get<std::string>(), "limit 1000 bytes"));
  };
  {
    // Declared too large: refused before the body is read.
    Client c(p.port());
    c.send("POST http://inference.local/v1/messages HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 5000\r\n\r\n");
    check_413(read_response(c));
  }
  {
    // Chunked, growing past the limit, inside TLS.
    Client c(p.port());
    c.send(connect_line("inference.local:443"));
    REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
    TlsClient t(c.fd(), s.ca->cert(), "inference.local");
    REQUIRE(t.ok);
    std::string part(400, 'x');
    t.send("POST /v1/messages HTTP/1.1\r\nHost: inference.local\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; ++i) t.send("190\r\n" + part + "\r\n");
    Response r = t.read_response();
    check_413(r);
  }
  CHECK(stub.seen().empty());
}

TEST_CASE("inference.local: end(error) after the head truncates the body; before it, 502 JSON") {
  InferenceSetup s;
  StubInference stub([](const InferenceRequest& r, InferenceSink& sink, StubInference&) {
    if (r.path == "/early") {
      sink.end("the backend refused the connection");
      return;
    }
    sink.head(200, {{"Content-Type", "text/event-stream"}});
    sink.chunk("data: partial\n\n");
    sink.end("the backend went away");
  });
  TestProxy p(nothing_allowed(), s.opts(stub));
  {
    Client c(p.port());
    c.send(connect_line("inference.local:443"));
    REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
    TlsClient t(c.fd(), s.ca->cert(), "inference.local");
    REQUIRE(t.ok);
    t.send("POST /early HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 0\r\n\r\n");
    Response r = t.read_response();
    CHECK(r.status == 502);
    Json j = Json::parse(r.body);
    CHECK(j["error"]["code"] == "bad_gateway");
    CHECK(contains(j["error"]["message"].get<std::string>(), "the backend refused the connection"));
    // The connection stays usable: the next request is answered.
    t.send("POST /late HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 0\r\n\r\n");
    std::string head = t.read_until("\r\n\r\n");
    CHECK(contains(head, "HTTP/1.1 200 OK\r\n"));
    std::string rest = t.read_to_eof();
    CHECK(contains(rest, "data: partial"));
    CHECK_FALSE(contains(rest, "0\r\n\r\n"));  // no last chunk: the client sees a truncated body
  }
  CHECK(eventually([&] { return p.proxy.active_connections() == 0; }));
}

TEST_CASE("inference.local: a client that leaves mid-stream cancels the call; nothing is left behind") {
  InferenceSetup s;
  StubInference stub([](const InferenceRequest&, InferenceSink& sink, StubInference& st) {
    sink.head(200, {{"Content-Type", "text/event-stream"}});
    for (int i = 0; i < 500 && !sink.cancelled(); ++i) {
      sink.chunk("data: tick\n\n");
      std::this_thread::sleep_for(10ms);
    }
    sink.end("");  // inert once cancelled
    st.finished = true;
  });
  TestProxy p(nothing_allowed(), s.opts(stub));
  {
    Client c(p.port());
    c.send(connect_line("inference.local:443"));
    REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
    TlsClient t(c.fd(), s.ca->cert(), "inference.local");
    REQUIRE(t.ok);
    t.send("POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 0\r\n\r\n");
    t.read_until("data: tick\n\n");
  }  // gone, without a word
  CHECK(eventually([&] { return stub.cancels == 1; }));
  CHECK(eventually([&] { return stub.finished.load(); }));
  CHECK(eventually([&] { return p.proxy.active_connections() == 0; }));
  // A plain-HTTP client too, before any answer (the call is still waiting for its first byte).
  StubInference slow([](const InferenceRequest&, InferenceSink& sink, StubInference& st) {
    for (int i = 0; i < 500 && !sink.cancelled(); ++i) std::this_thread::sleep_for(10ms);
    st.finished = true;
  });
  auto opts = test_options();
  opts.inference = slow.fn();
  TestProxy q(nothing_allowed(), opts);
  {
    Client c(q.port());
    c.send("POST http://inference.local/v1/messages HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 0\r\n\r\n");
    REQUIRE(eventually([&] { return slow.seen().size() == 1; }));
  }
  CHECK(eventually([&] { return slow.cancels == 1; }));
  CHECK(eventually([&] { return slow.finished.load(); }));
}

TEST_CASE("inference.local: a client that does not read gets its call cut once too much waits for it") {
  InferenceSetup s;
  StubInference stub([](const InferenceRequest&, InferenceSink& sink, StubInference& st) {
    sink.head(200, {{"Content-Type", "application/octet-stream"}});
    std::string block(64 * 1024, 'z');
    for (int i = 0; i < 4000 && !sink.cancelled(); ++i) {
      sink.chunk(block);
      std::this_thread::sleep_for(1ms);
    }
    st.finished = true;
  });
  auto opts = s.opts(stub);
  opts.inference_max_buffered_bytes = 256 * 1024;
  TestProxy p(nothing_allowed(), opts);
  Client c(p.port(), 20s);
  c.send(connect_line("inference.local:443"));
  REQUIRE(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  TlsClient t(c.fd(), s.ca->cert(), "inference.local");
  REQUIRE(t.ok);
  t.send("GET /v1/big HTTP/1.1\r\nHost: inference.local\r\n\r\n");
  // Not reading: the kernel's buffers fill, then the proxy's, then the call is cut.
  CHECK(eventually([&] { return stub.cancels == 1; }, 15000ms));
  CHECK(eventually([&] { return stub.finished.load(); }, 15000ms));
  CHECK(stub.seen().size() == 1);
}

TEST_CASE("inference.local: an unidentified caller is still served; no handler answers 503") {
  InferenceSetup s;
  StubInference stub(echo_reply);
  auto opts = s.opts(stub);
  opts.identify = [](const asio::ip::tcp::endpoint&, const asio::ip::tcp::endpoint&) {
    Caller c;
    c.error = "no such socket";
    return c;
  };
  {
    TestProxy p(nothing_allowed(), opts);
    Client c(p.port());
    c.send("GET http://inference.local/v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n");
    CHECK(read_chunked(c).status == 200);
    REQUIRE(stub.seen().size() == 1);
    CHECK(stub.seen()[0].binary.empty());
    auto e = p.events();
    REQUIRE(e.size() == 1);
    CHECK(e[0].allowed);
  }
  opts.inference = nullptr;
  opts.inference_unavailable_reason = "the supervisor runs without NATS";
  TestProxy p(nothing_allowed(), opts);
  Client c(p.port());
  c.send("GET http://inference.local/v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n");
  Response r = read_chunked(c);
  CHECK(r.status == 503);
  Json j = Json::parse(r.body);
  CHECK(j["error"]["code"] == "unavailable");
  CHECK(contains(j["error"]["message"].get<std::string>(), "the supervisor runs without NATS"));
}

TEST_CASE("inference.local with the real curl: trusted through the sandbox CA, streamed, never resolved") {
  require_curl();
  InferenceSetup s;
  StubInference stub([](const InferenceRequest& r, InferenceSink& sink, StubInference&) {
    sink.head(200, {{"Content-Type", "application/json"}});
    sink.chunk("{\"object\":\"list\",");
    std::this_thread::sleep_for(20ms);
    sink.chunk("\"path\":\"" + r.path + "\"}");
    sink.end("");
  });
  TestProxy p(nothing_allowed(), s.opts(stub));
  bulwark::TempDir dir("inference-curl");
  std::string ca_file = dir.file("sandbox-ca.pem");
  std::ofstream(ca_file) << s.ca->cert_pem();
  auto [out, code] = run("curl -sS -N --max-time 10 --noproxy '' --cacert " + ca_file + " -x http://127.0.0.1:" +
                         std::to_string(p.port()) + " https://inference.local/v1/models https://inference.local/v1/x");
  CHECK(code == 0);
  CHECK(out == "{\"object\":\"list\",\"path\":\"/v1/models\"}{\"object\":\"list\",\"path\":\"/v1/x\"}");
  CHECK(p.proxy.active_connections() <= 1);
}

// --- transparent egress: what only the proxy's side decides --------------------------------------

namespace {
// A transparent proxy whose every connection was "going to" `dest`, its caller this executable
// (the kernel's SO_ORIGINAL_DST and the agent's TCP table are replaced).
EgressProxy::Options transparent_options(EgressProxy::Options o, const asio::ip::tcp::endpoint& dest) {
  o.transparent = true;
  o.transparent_port = 0;
  o.transparent_sniff_timeout = 200ms;
  o.original_destination = [dest](int) { return dest; };
  o.identify = [](const asio::ip::tcp::endpoint&, const asio::ip::tcp::endpoint&) {
    Caller c;
    c.pid = ::getpid();
    c.exe_chain = {self_exe()};
    return c;
  };
  return o;
}
}  // namespace

TEST_CASE("transparent: a connection to the proxy's own address on 443 is inference.local, TLS from the sandbox CA") {
  InferenceSetup s;
  StubInference stub(echo_reply);
  TestProxy p(nothing_allowed(),
              transparent_options(s.opts(stub), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 443)));
  Client c(p.proxy.transparent_port());
  TlsClient t(c.fd(), s.ca->cert(), "inference.local");  // no CONNECT: the client believes it reached the server
  REQUIRE(t.ok);
  CHECK(t.verify == X509_V_OK);
  t.send("POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 2\r\n\r\n{}");
  Response r = read_chunked(t);
  CHECK(r.status == 200);
  CHECK(r.body == "POST /v1/chat/completions {}");
  REQUIRE(stub.seen().size() == 1);
  auto e = p.events();
  REQUIRE(e.size() == 1);
  CHECK(e[0].allowed);
  CHECK(e[0].rule == kInferenceRule);
  CHECK(e[0].host == "inference.local");
  CHECK(e[0].transparent);
}

TEST_CASE("transparent: plain HTTP to the proxy's own address on 80 is inference.local too; another port of it is not") {
  InferenceSetup s;
  StubInference stub(echo_reply);
  {
    TestProxy p(nothing_allowed(),
                transparent_options(s.opts(stub), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 80)));
    Client c(p.proxy.transparent_port());
    c.send("GET /v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n");
    Response r = read_chunked(c);
    CHECK(r.status == 200);
    CHECK(r.body == "GET /v1/models ");
  }
  // Port 8080 of the same address is nothing special: decided by the policy (which allows nothing).
  TestProxy p(nothing_allowed(),
              transparent_options(s.opts(stub), asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 8080)));
  Client c(p.proxy.transparent_port());
  c.send("GET /v1/models HTTP/1.1\r\nHost: inference.local\r\n\r\n");
  CHECK(read_response(c).status == 403);
  CHECK(stub.seen().size() == 1);
}

TEST_CASE("transparent: a nameless connection is named by what the sandbox's DNS answered for its address") {
  // A service on this host's own (non-loopback) address: loopback could only be opened by naming
  // the address itself, and this test is about names.
  std::string host_ip;
  {
    ifaddrs* ifs = nullptr;
    REQUIRE(::getifaddrs(&ifs) == 0);
    for (auto* i = ifs; i && host_ip.empty(); i = i->ifa_next) {
      if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
      auto a = asio::ip::address_v4(ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr));
      if (!a.is_loopback()) host_ip = a.to_string();
    }
    ::freeifaddrs(ifs);
  }
  REQUIRE_MESSAGE(!host_ip.empty(), "this test needs a non-loopback IPv4 address on the host");
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address(host_ip), 0));
  const uint16_t port = acceptor.local_endpoint().port();
  std::thread server([&] {
    asio::error_code ec;
    auto sock = acceptor.accept(ec);
    if (ec) return;
    char buf[64];
    size_t n = sock.read_some(asio::buffer(buf), ec);
    if (!ec) asio::write(sock, asio::buffer(buf, n), ec);
  });
  auto dest = asio::ip::tcp::endpoint(asio::ip::make_address(host_ip), port);
  // cache.invalid never resolves: only the DNS answer can name the address.
  auto policy = allow("cache.invalid", port, "        protocol: tcp\n");
  std::vector<std::string> asked;
  auto o = transparent_options(test_options(), dest);
  o.names_for_address = [&asked](const asio::ip::address& a) {
    asked.push_back(a.to_string());
    return std::vector<std::string>{"other.invalid", "cache.invalid"};
  };
  {
    TestProxy p(policy, o);
    Client c(p.proxy.transparent_port());
    // Sends nothing first (a server-speaks-first protocol): decided after the sniff timeout.
    std::this_thread::sleep_for(300ms);
    c.send("ping\n");
    CHECK(c.read_until("\n") == "ping\n");
    auto e = p.events();
    REQUIRE(e.size() == 1);
    CHECK(e[0].allowed);
    CHECK(e[0].host == "cache.invalid");
    CHECK(e[0].rule == "network_policies.test.endpoints[0]");
  }
  server.join();
  CHECK(asked == std::vector<std::string>{host_ip});
  // Without that answer the address is all there is: denied, nothing dialled.
  o.names_for_address = [](const asio::ip::address&) { return std::vector<std::string>{}; };
  TestProxy p(policy, o);
  Client c(p.proxy.transparent_port());
  c.send("ping\n");
  std::string got;
  try {
    got = c.read_to_eof();
  } catch (const std::exception& ex) {
    CHECK_MESSAGE(std::string(ex.what()).find("reset") != std::string::npos, ex.what());  // refused with a reset
  }
  CHECK(got.empty());
  auto e = p.events();
  REQUIRE(e.size() == 1);
  CHECK_FALSE(e[0].allowed);
  CHECK(e[0].host == host_ip);
  CHECK(e[0].rule == "bulwark:default-deny");
}
