// The egress proxy over real loopback sockets: upstream servers on 127.0.0.1, clients speaking
// raw HTTP/1.1 to the proxy (and the real curl binary).
#include "supervisor/proxy/egress_proxy.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "shared/error.h"
#include "shared/process.h"

using namespace bulwark::proxy;
using bulwark::Fd;
using namespace std::chrono_literals;

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

EgressProxy::Options test_options() {
  EgressProxy::Options o;
  o.listen_address = "127.0.0.1";
  o.listen_port = 0;
  o.connect_timeout = 5s;
  return o;
}

// The way a test lets the proxy reach servers on 127.0.0.1: by address, explicitly.
Decision allow_loopback(std::string rule = "test-allow") {
  return Decision{true, std::move(rule), "allowed by the test", false, {"127.0.0.1/32"}};
}

// A running proxy that records every reported decision.
struct TestProxy {
  explicit TestProxy(DecideFn decide, EgressProxy::Options opts = test_options())
      : proxy(std::move(opts), std::move(decide), [this](const Request& r, const Decision& d) {
          std::lock_guard lock(mu);
          reports.emplace_back(r, d);
        }) {
    proxy.run_in_thread();
  }
  std::vector<std::pair<Request, Decision>> decisions() {
    std::lock_guard lock(mu);
    return reports;
  }
  uint16_t port() const { return proxy.port(); }

  std::mutex mu;
  std::vector<std::pair<Request, Decision>> reports;
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

}  // namespace

TEST_CASE("CONNECT allowed: the tunnel carries bytes both ways, early bytes and half-close included") {
  EchoServer upstream;
  TestProxy p([](const Request&) { return allow_loopback(); });
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

  auto d = p.decisions();
  REQUIRE(d.size() == 1);
  CHECK(d[0].second.allow);
  CHECK(d[0].second.rule == "test-allow");
  CHECK(d[0].first.method == "CONNECT");
  CHECK(d[0].first.host == "127.0.0.1");
  CHECK(d[0].first.port == upstream.port());
  CHECK(d[0].first.path.empty());
  CHECK(d[0].first.client_addr == "127.0.0.1");
  CHECK(d[0].first.client_port == c.local_port());
  CHECK(eventually([&] { return p.proxy.active_connections() == 0; }));
}

TEST_CASE("CONNECT denied: 403 naming the rule and the reason, connection closed, deny reported") {
  std::vector<Request> asked;
  TestProxy p([&](const Request& r) {
    asked.push_back(r);
    return Decision{false, "default-deny", "no network_policies entry allows it"};
  });
  Client c(p.port());
  c.send(connect_line("evil.example:443"));
  Response r = read_response(c);
  CHECK(r.status == 403);
  CHECK(contains(r.head, "HTTP/1.1 403 Forbidden\r\n"));
  CHECK(contains(r.head, "Content-Type: text/plain"));
  CHECK(contains(r.head, "Connection: close"));
  CHECK(r.body ==
        "bulwark: connection to evil.example:443 denied by policy rule \"default-deny\" (no network_policies entry "
        "allows it)\n");

  auto d = p.decisions();
  REQUIRE(d.size() == 1);
  CHECK_FALSE(d[0].second.allow);
  CHECK(d[0].second.rule == "default-deny");
  CHECK(d[0].first.host == "evil.example");
  CHECK(d[0].first.port == 443);
  REQUIRE(asked.size() == 1);  // decided once; a denied name is never even resolved
}

TEST_CASE("absolute-form GET allowed: upstream sees origin-form without Proxy-* headers; the client gets the "
          "response") {
  HttpServer upstream;
  TestProxy p([](const Request&) { return allow_loopback(); });
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

  auto d = p.decisions();
  REQUIRE(d.size() == 1);
  CHECK(d[0].first.method == "GET");
  CHECK(d[0].first.path == "/path/x?q=1");
  CHECK(d[0].first.port == upstream.port());
}

TEST_CASE("a forwarded POST carries its body; interim 1xx responses pass through") {
  HttpServer upstream(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: keep-alive\r\n"
      "Keep-Alive: timeout=5\r\n\r\nok");
  TestProxy p([](const Request&) { return allow_loopback(); });
  Client c(p.port());
  c.send("POST http://127.0.0.1:" + std::to_string(upstream.port()) +
         "/submit HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world");
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
  TestProxy p([](const Request&) { return allow_loopback(); });
  {
    HttpServer upstream("SSH-2.0-OpenSSH_9.2\r\n\r\n");
    Client c(p.port());
    c.send("GET http://127.0.0.1:" + std::to_string(upstream.port()) + "/ HTTP/1.1\r\n\r\n");
    Response r = read_response(c);
    CHECK(r.status == 502);
    CHECK(contains(r.body, "sent a malformed response"));
  }
  {
    HttpServer upstream("");
    Client c(p.port());
    c.send("GET http://127.0.0.1:" + std::to_string(upstream.port()) + "/ HTTP/1.1\r\n\r\n");
    Response r = read_response(c);
    CHECK(r.status == 502);
    CHECK(contains(r.body, "closed the connection without sending a complete response"));
  }
}

TEST_CASE("loopback is blocked even when the policy allowed the host, unless its address is in allowed_ips") {
  EchoServer upstream;
  std::string port = std::to_string(upstream.port());
  TestProxy p([](const Request&) {
    Decision d{true, "allow-everything", "test", true, {"10.0.0.0/8"}};  // private allowed, loopback not listed
    return d;
  });

  for (const std::string& authority : {"127.0.0.1:" + port, "[::1]:" + port, "localhost:" + port}) {
    CAPTURE(authority);
    Client c(p.port());
    c.send(connect_line(authority));
    Response r = read_response(c);
    CHECK(r.status == 403);
    CHECK(contains(r.body, "denied by policy rule \"bulwark:always-blocked\""));
    CHECK(contains(r.body, "is a loopback address, which is always blocked unless the policy lists it in allowed_ips"));
  }
  {
    Client c(p.port());
    c.send("GET http://127.0.0.1:" + port + "/ HTTP/1.1\r\n\r\n");  // forwarded requests too
    Response r = read_response(c);
    CHECK(r.status == 403);
    CHECK(contains(r.body, "127.0.0.1 is a loopback address"));
  }
  {
    Client c(p.port());
    c.send(connect_line("169.254.169.254:80"));
    Response r = read_response(c);
    CHECK(r.status == 403);
    CHECK(contains(r.body, "169.254.169.254 is the cloud metadata service"));
  }
  CHECK(upstream.accepted == 0);  // never dialled

  auto d = p.decisions();
  REQUIRE(d.size() == 5);
  for (const auto& [req, dec] : d) {
    CAPTURE(req.host);
    CHECK_FALSE(dec.allow);  // the enforced outcome is reported, not the overridden allow
    CHECK(dec.rule == "bulwark:always-blocked");
  }
  CHECK(contains(d[2].second.reason, "localhost: "));
}

TEST_CASE("the proxy refuses to dial itself, even when its address is allowed") {
  TestProxy p([](const Request&) { return allow_loopback(); });
  Client c(p.port());
  c.send(connect_line("127.0.0.1:" + std::to_string(p.port())));
  Response r = read_response(c);
  CHECK(r.status == 403);
  CHECK(contains(r.body, "rule \"bulwark:proxy-loop\" (127.0.0.1:" + std::to_string(p.port()) +
                             " is this egress proxy itself)"));
}

TEST_CASE("private addresses are refused unless the decision sets allow_private") {
  TestProxy p([](const Request&) { return Decision{true, "allow-host", "test"}; });
  Client c(p.port());
  c.send(connect_line("192.168.1.10:443"));
  Response r = read_response(c);
  CHECK(r.status == 403);
  CHECK(contains(r.body, "rule \"bulwark:private-address\" (192.168.1.10 is a private address"));
  auto d = p.decisions();
  REQUIRE(d.size() == 1);
  CHECK(d[0].second.rule == "bulwark:private-address");
}

TEST_CASE("malformed requests get 400 naming the fault; oversized heads get 431; no decision is asked") {
  int asked = 0;
  TestProxy p([&](const Request&) {
    ++asked;
    return allow_loopback();
  });
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
  CHECK(asked == 0);
  CHECK(p.decisions().empty());
}

TEST_CASE("upstream connect failure and unresolvable names give 502 with the reason") {
  TestProxy p([](const Request&) { return allow_loopback(); });
  {
    uint16_t port = unused_port();
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
  TestProxy p([](const Request&) { return allow_loopback(); }, opts);
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

TEST_CASE("200 concurrent CONNECT tunnels all work on the proxy's one thread") {
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
  TestProxy p([](const Request&) { return allow_loopback(); });
  std::string authority = "127.0.0.1:" + std::to_string(upstream.port());
  {
    // Warm up once so the resolver's helper thread exists before counting threads.
    Client c(p.port());
    c.send(connect_line(authority));
    c.read_until("\r\n\r\n");
  }
  REQUIRE(eventually([&] { return p.proxy.active_connections() == 0; }));
  int threads_before = thread_count();

  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kTunnels; ++i) {
    clients.push_back(std::make_unique<Client>(p.port()));
    clients.back()->send(connect_line(authority));
  }
  for (auto& c : clients) CHECK(c->read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
  // All open at once, served without a thread each.
  CHECK(p.proxy.active_connections() == kTunnels);
  CHECK(thread_count() == threads_before);

  for (int i = 0; i < kTunnels; ++i) clients[i]->send("tunnel " + std::to_string(i) + "\n");
  for (int i = 0; i < kTunnels; ++i) CHECK(clients[i]->read_until("\n") == "tunnel " + std::to_string(i) + "\n");
  CHECK(upstream.accepted == kTunnels + 1);
  CHECK(p.decisions().size() == kTunnels + 1);

  clients.clear();
  CHECK(eventually([&] { return p.proxy.active_connections() == 0; }));
}

TEST_CASE("clients that vanish at any step leave no connection behind") {
  EchoServer upstream;
  TestProxy p([](const Request&) { return allow_loopback(); });
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
  TestProxy p([](const Request&) { return allow_loopback(); }, opts);
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

TEST_CASE("the real curl works through the proxy, plain and tunnelled, and sees the 403") {
  if (run("command -v curl").second != 0) FAIL("curl is not installed: install curl (scripts/install-deps does)");
  HttpServer upstream;
  TestProxy p([](const Request& r) {
    if (r.host == "evil.example") return Decision{false, "default-deny", "no network_policies entry allows it"};
    return allow_loopback();
  });
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
  CHECK(contains(denied, "bulwark: connection to evil.example:80 denied by policy rule \"default-deny\""));
  CHECK(contains(denied, "status=403"));

  auto reqs = upstream.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(reqs[0].rfind("GET /via-curl HTTP/1.1\r\n", 0) == 0);
  CHECK_FALSE(contains(reqs[0], "Proxy-"));
  CHECK(reqs[1].rfind("GET /via-connect HTTP/1.1\r\n", 0) == 0);
  auto d = p.decisions();
  REQUIRE(d.size() == 3);
  CHECK(d[0].first.method == "GET");
  CHECK(d[1].first.method == "CONNECT");
  CHECK_FALSE(d[2].second.allow);
}

TEST_CASE("a throwing decision function denies; a throwing report callback does not break the proxy") {
  EchoServer upstream;
  {
    EgressProxy proxy(test_options(), [](const Request&) -> Decision { throw std::runtime_error("policy store gone"); },
                      nullptr);
    proxy.run_in_thread();
    Client c(proxy.port());
    c.send(connect_line("example.com:443"));
    Response r = read_response(c);
    CHECK(r.status == 403);
    CHECK(contains(r.body, "rule \"bulwark:policy-error\" (the policy check failed: policy store gone)"));
  }
  {
    EgressProxy proxy(test_options(), [](const Request&) { return allow_loopback(); },
                      [](const Request&, const Decision&) { throw std::runtime_error("bus down"); });
    proxy.run_in_thread();
    Client c(proxy.port());
    c.send(connect_line("127.0.0.1:" + std::to_string(upstream.port())));
    CHECK(c.read_until("\r\n\r\n") == "HTTP/1.1 200 Connection established\r\n\r\n");
    c.send("still\n");
    CHECK(c.read_until("\n") == "still\n");
  }
}

TEST_CASE("stop() closes open tunnels and returns; setup errors name the address") {
  EchoServer upstream;
  auto p = std::make_unique<TestProxy>([](const Request&) { return allow_loopback(); });
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
  { EgressProxy idle(test_options(), [](const Request&) { return Decision{}; }, nullptr); }

  auto opts = test_options();
  opts.listen_address = "not-an-ip";
  CHECK_THROWS_WITH_AS(EgressProxy(opts, [](const Request&) { return Decision{}; }, nullptr),
                       "egress proxy listen address \"not-an-ip\" is not an IP address", bulwark::Error);
  opts = test_options();
  TestProxy other([](const Request&) { return Decision{}; });
  opts.listen_port = other.port();  // taken
  try {
    EgressProxy clash(opts, [](const Request&) { return Decision{}; }, nullptr);
    FAIL("binding a port in use should throw");
  } catch (const bulwark::Error& e) {
    CHECK(contains(e.what(), "egress proxy cannot listen on 127.0.0.1:" + std::to_string(other.port()) + ": bind: "));
  }
}
