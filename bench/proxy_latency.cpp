// The latency the egress proxy adds to one small HTTP request, next to the same request sent
// directly to the same server, measured in the same run. Everything is on loopback in this one
// process: cpp-httplib upstream servers (plain and HTTPS, in their own threads), an in-process
// bulwark::proxy::EgressProxy whose "agent init" is this process (so callers are identified through
// the real /proc, as in a sandbox), and a blocking-socket client that sends the very same bytes
// whichever way it goes. The timed span is from before connect() (or before the request, on a
// kept-alive connection) until the last byte of the response body has been read.
//
// Modes are interleaved (round robin, the starting mode rotating each round) so background load
// hits every mode alike; fresh-connection modes and keep-alive modes run in two separate phases so
// a kept-alive connection never sits idle for 10 ms (cpp-httplib's keep-alive loop polls for 10 ms,
// then sleeps 1 ms: a request landing in that sleep would wait for it).
//
// Usage: bench_proxy_latency [iterations]   (default 1000 per mode, after 50 warm-up rounds)
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "shared/error.h"
#include "shared/policy.h"
#include "shared/policy_engine.h"
#include "shared/process.h"
#include "shared/util.h"
#include "supervisor/proxy/egress_proxy.h"
#include "supervisor/proxy/sandbox_ca.h"
#include "tests/support/test_pki.h"

using namespace bulwark;
using namespace bulwark::proxy;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

const std::string kBody(64, 'x');  // the small response body
constexpr int kWarmup = 50;

using SslPtr = std::unique_ptr<SSL, OsslFree<SSL_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OsslFree<SSL_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, OsslFree<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OsslFree<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, OsslFree<BIO_free_all>>;

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

// A client TLS context trusting only `ca` (the test CA for direct HTTPS, the sandbox CA through
// the proxy). No session cache: every fresh connection pays a full handshake, either way.
SslCtxPtr client_ctx(X509* ca) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  check(ctx != nullptr, "SSL_CTX_new");
  check(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca) == 1, "X509_STORE_add_cert");
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  return ctx;
}

// --- upstream: a cpp-httplib server (plain or TLS) on 127.0.0.1 in its own thread -----------

template <class S>
class Upstream {
 public:
  template <class... A>
  explicit Upstream(A&&... args) : srv_(std::forward<A>(args)...) {
    check(srv_.is_valid(), "cpp-httplib server is not valid (TLS setup?)");
    srv_.set_tcp_nodelay(true);  // headers and body go out as two writes: no Nagle stall between them
    // Accepted sockets inherit SO_LINGER {1, 0} from the listener: the server's close (after the
    // response, which on loopback is already in the reader's queue) is a reset, not a FIN, and
    // leaves no TIME_WAIT entry. See Conn for why that matters.
    srv_.set_socket_options([](socket_t sock) {
      httplib::default_socket_options(sock);
      linger lg{1, 0};
      ::setsockopt(sock, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    });
    srv_.set_keep_alive_max_count(100000000);
    srv_.set_keep_alive_timeout(60);
    srv_.Get("/small", [](const httplib::Request&, httplib::Response& res) { res.set_content(kBody, "text/plain"); });
    int port = srv_.bind_to_any_port("127.0.0.1");
    check(port > 0, "cpp-httplib: cannot bind 127.0.0.1");
    port_ = static_cast<uint16_t>(port);
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
    for (int i = 0; i < 500 && !srv_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ~Upstream() {
    srv_.stop();
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  S srv_;
  uint16_t port_ = 0;
  std::thread thread_;
};

// --- the client: a blocking socket, optionally TLS, reading responses framed by Content-Length --

class Conn {
 public:
  explicit Conn(uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    check(static_cast<bool>(fd_), errno_text("socket", errno));
    int one = 1;
    ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{10, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    // Closed with a reset once the response has been read (untimed), so the client's end leaves
    // no TIME_WAIT entry behind. The bench opens hundreds of connections a second; their TIME_WAIT
    // entries (60 s each) would swell the TCP table that identifying every caller reads (see
    // tcp_table_read_us), and the proxied rows would slow down as the run goes on.
    linger lg{1, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    check(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0,
          errno_text("connect to 127.0.0.1:" + std::to_string(port), errno));
  }

  // TLS over this connection (directly, or inside an answered CONNECT), verifying IP 127.0.0.1.
  void start_tls(SSL_CTX* ctx) {
    check(buf_.empty(), "bytes left over before the TLS handshake");
    ssl_.reset(SSL_new(ctx));
    SSL_set_fd(ssl_.get(), fd_.get());
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), "127.0.0.1");
    if (SSL_connect(ssl_.get()) != 1) {
      char err[256];
      ERR_error_string_n(ERR_get_error(), err, sizeof err);
      throw std::runtime_error(std::string("TLS handshake failed: ") + err + " (verify: " +
                               X509_verify_cert_error_string(SSL_get_verify_result(ssl_.get())) + ")");
    }
  }

  void send(std::string_view s) {
    if (ssl_) {
      check(SSL_write(ssl_.get(), s.data(), static_cast<int>(s.size())) == static_cast<int>(s.size()), "SSL_write");
      return;
    }
    while (!s.empty()) {
      ssize_t n = ::send(fd_.get(), s.data(), s.size(), MSG_NOSIGNAL);
      check(n > 0, errno_text("send", errno));
      s.remove_prefix(static_cast<size_t>(n));
    }
  }

  std::string read_head() {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      check(fill(), "connection ended before a response head; got: " + buf_);
    std::string head = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    return head;
  }

  // Reads one response; throws unless it is 200 with the expected body.
  void read_ok_response() {
    std::string head = read_head();
    std::string lower = head;
    for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::string body;
    if (size_t cl = lower.find("\r\ncontent-length:"); cl != std::string::npos) {
      size_t n = std::stoul(lower.substr(cl + 17));
      while (buf_.size() < n) check(fill(), "connection ended inside a response body");
      body = buf_.substr(0, n);
      buf_.erase(0, n);
    } else {
      check(lower.find("transfer-encoding") == std::string::npos, "unexpected chunked response: " + head);
      while (fill()) {
      }
      body = std::exchange(buf_, {});
    }
    if (head.compare(0, 12, "HTTP/1.1 200") != 0 || body != kBody)
      throw std::runtime_error("unexpected response:\n" + head + body);
  }

 private:
  bool fill() {
    char b[16384];
    ssize_t n;
    if (ssl_) {
      int r = SSL_read(ssl_.get(), b, sizeof b);
      ERR_clear_error();
      n = r;
    } else {
      n = ::recv(fd_.get(), b, sizeof b, 0);
    }
    if (n <= 0) return false;
    buf_.append(b, static_cast<size_t>(n));
    return true;
  }

  Fd fd_;       // destroyed after ssl_
  SslPtr ssl_;
  std::string buf_;
};

std::string get_request(uint16_t port, bool close, bool absolute = false) {
  std::string authority = "127.0.0.1:" + std::to_string(port);
  return std::string("GET ") + (absolute ? "http://" + authority : "") + "/small HTTP/1.1\r\nHost: " + authority +
         "\r\nUser-Agent: bench\r\nAccept: */*\r\n" + (close ? "Connection: close\r\n" : "") + "\r\n";
}

// A CONNECT through the proxy, answered 200: the connection is then the tunnel.
std::unique_ptr<Conn> tunnel(uint16_t proxy_port, uint16_t target) {
  auto c = std::make_unique<Conn>(proxy_port);
  std::string authority = "127.0.0.1:" + std::to_string(target);
  c->send("CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n\r\n");
  std::string head = c->read_head();
  if (head.compare(0, 12, "HTTP/1.1 200") != 0) throw std::runtime_error("CONNECT refused:\n" + head);
  return c;
}

double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

struct Mode {
  std::string label;
  std::function<void()> run;  // one request, timed by the caller
  std::vector<double> us;
};

// Runs `rounds` rounds of every mode, round robin, starting each round one mode further on.
void run_interleaved(std::vector<Mode*>& modes, int rounds, bool record) {
  for (int r = 0; r < rounds; ++r)
    for (size_t k = 0; k < modes.size(); ++k) {
      Mode& m = *modes[(static_cast<size_t>(r) + k) % modes.size()];
      auto t0 = Clock::now();
      m.run();
      double us = us_since(t0);
      if (record) m.us.push_back(us);
    }
}

// What identifying a caller reads first: this network namespace's TCP table. Median of 21 reads.
double tcp_table_read_us() {
  std::vector<double> v;
  for (int i = 0; i < 21; ++i) {
    auto t0 = Clock::now();
    Fd fd(::open("/proc/self/net/tcp", O_RDONLY | O_CLOEXEC));
    char b[65536];
    while (::read(fd.get(), b, sizeof b) > 0) {
    }
    v.push_back(us_since(t0));
  }
  return percentile(v, 0.5);
}

std::string read_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line.empty() ? "?" : line;
}

size_t tcp_table_lines() {
  size_t n = 0;
  for (const char* f : {"/proc/self/net/tcp", "/proc/self/net/tcp6"}) {
    std::ifstream in(f);
    std::string line;
    for (bool header = true; std::getline(in, line); header = false)
      if (!header) ++n;
  }
  return n;
}

void print_row(const Mode& m, const Mode* base) {
  double p50 = percentile(m.us, 0.5), p99 = percentile(m.us, 0.99);
  if (!base) {
    std::printf("  %-58s %8.0f %8.0f %7s %7s %8s\n", m.label.c_str(), p50, p99, "1.00", "1.00", "");
    return;
  }
  double b50 = percentile(base->us, 0.5), b99 = percentile(base->us, 0.99);
  std::printf("  %-58s %8.0f %8.0f %7.2f %7.2f %+8.0f\n", m.label.c_str(), p50, p99, p50 / b50, p99 / b99, p50 - b50);
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  if (n < 10) n = 1000;
  ::signal(SIGPIPE, SIG_IGN);
  try {
    TempDir dir("bulwark-bench-proxy");
    bulwark::testing::TestPki pki("Bulwark bench upstream CA");

    Upstream<httplib::Server> l7_server, l4_server;  // identical servers: one per endpoint kind
    Upstream<httplib::SSLServer> tls_server(pki.leaf.get(), pki.leaf_key.get());
    const uint16_t p7 = l7_server.port(), p4 = l4_server.port(), ptls = tls_server.port();

    std::string self = fs::read_symlink("/proc/self/exe").string();
    std::string yaml = "version: 1\nnetwork_policies:\n  bench:\n    endpoints:\n"
                       "      - host: \"127.0.0.1\"\n        port: " + std::to_string(p7) + "\n"
                       "        protocol: rest\n        rules:\n          - allow: { method: GET, path: /small }\n"
                       "      - host: \"127.0.0.1\"\n        port: " + std::to_string(p4) + "\n"
                       "      - host: \"127.0.0.1\"\n        port: " + std::to_string(ptls) + "\n"
                       "        protocol: rest\n        rules:\n          - allow: { method: GET, path: /small }\n"
                       "    binaries:\n      - path: \"" + self + "\"\n";
    auto compiled = policy::CompiledPolicy::compile(policy::parse_policy(yaml, "bench.yaml"));

    std::atomic<long> allowed{0}, denied{0};
    std::mutex mu;
    std::string first_denial;
    auto on_event = [&](const Event& e) {
      if (e.allowed) {
        ++allowed;
        return;
      }
      ++denied;
      std::lock_guard lock(mu);
      if (first_denial.empty()) first_denial = e.rule + ": " + e.reason;
    };

    auto ca = std::make_shared<SandboxCa>(SandboxCa::generate("bench"));
    EgressProxy::Options o;
    o.listen_address = "127.0.0.1";
    o.listen_port = 0;
    o.agent_init_pid = ::getpid();  // this process is "the sandbox": callers identified through /proc
    o.ca = ca;
    o.upstream_ca_file = pki.ca_file;
    o.connect_timeout = std::chrono::seconds(5);
    EgressProxy proxy(o, compiled, 1, on_event);
    proxy.run_in_thread();
    // The same proxy told who calls (identify override): what the /proc identification costs.
    EgressProxy::Options known = o;
    pid_t me = ::getpid();
    known.identify = [me, self](const asio::ip::tcp::endpoint&, const asio::ip::tcp::endpoint&) {
      return Caller{me, {self}, "", false};
    };
    EgressProxy proxy_known(known, compiled, 1, on_event);
    proxy_known.run_in_thread();
    const uint16_t pp = proxy.port(), pk = proxy_known.port();

    SslCtxPtr direct_tls = client_ctx(pki.ca.get()), sandbox_tls = client_ctx(ca->cert());
    size_t table_before = tcp_table_lines();
    double read_before = tcp_table_read_us();

    // Phase 1: a fresh connection per request.
    Mode f_direct{"baseline: direct GET", [&] {
                    Conn c(p4);
                    c.send(get_request(p4, true));
                    c.read_ok_response();
                  }};
    Mode f_abs{"proxy: absolute-form http:// (L7, rule checked)", [&] {
                 Conn c(pp);
                 c.send(get_request(p7, true, true));
                 c.read_ok_response();
               }};
    Mode f_abs_known{"proxy: absolute-form, caller given (no identification)", [&] {
                       Conn c(pk);
                       c.send(get_request(p7, true, true));
                       c.read_ok_response();
                     }};
    Mode f_connect{"proxy: CONNECT tunnel (L4) + GET", [&] {
                     auto c = tunnel(pp, p4);
                     c->send(get_request(p4, true));
                     c->read_ok_response();
                   }};
    Mode f_tls_direct{"baseline: direct HTTPS GET (TLS handshake)", [&] {
                        Conn c(ptls);
                        c.start_tls(direct_tls.get());
                        c.send(get_request(ptls, true));
                        c.read_ok_response();
                      }};
    Mode f_tls_proxy{"proxy: inspected CONNECT, TLS terminated + re-encrypted", [&] {
                       auto c = tunnel(pp, ptls);
                       c->start_tls(sandbox_tls.get());
                       c->send(get_request(ptls, true));
                       c->read_ok_response();
                     }};

    // Phase 2: one connection kept alive per mode; each request timed on its own.
    std::unique_ptr<Conn> ka_direct, ka_l4, ka_l7, ka_tls_direct, ka_tls_proxy;
    auto open_keepalive = [&] {
      ka_direct = std::make_unique<Conn>(p4);
      ka_l4 = tunnel(pp, p4);
      ka_l7 = tunnel(pp, p7);  // inspected endpoint, plain HTTP inside the tunnel
      ka_tls_direct = std::make_unique<Conn>(ptls);
      ka_tls_direct->start_tls(direct_tls.get());
      ka_tls_proxy = tunnel(pp, ptls);
      ka_tls_proxy->start_tls(sandbox_tls.get());
    };
    auto ka = [](std::unique_ptr<Conn>& c, uint16_t port) {
      c->send(get_request(port, false));
      c->read_ok_response();
    };
    Mode k_direct{"baseline: direct GET", [&] { ka(ka_direct, p4); }};
    Mode k_l4{"proxy: CONNECT tunnel (L4)", [&] { ka(ka_l4, p4); }};
    Mode k_l7{"proxy: inspected CONNECT, plain HTTP (L7 per request)", [&] { ka(ka_l7, p7); }};
    Mode k_tls_direct{"baseline: direct HTTPS GET", [&] { ka(ka_tls_direct, ptls); }};
    Mode k_tls_proxy{"proxy: inspected CONNECT, TLS terminated + re-encrypted", [&] { ka(ka_tls_proxy, ptls); }};

    std::vector<Mode*> fresh{&f_direct, &f_abs, &f_abs_known, &f_connect, &f_tls_direct, &f_tls_proxy};
    std::vector<Mode*> kept{&k_direct, &k_l4, &k_l7, &k_tls_direct, &k_tls_proxy};
    run_interleaved(fresh, kWarmup, false);
    run_interleaved(fresh, n, true);
    size_t table_after_fresh = tcp_table_lines();
    double read_after_fresh = tcp_table_read_us();
    open_keepalive();
    run_interleaved(kept, kWarmup, false);
    run_interleaved(kept, n, true);

    std::printf("proxy_latency (n=%d per mode after %d warm-up rounds, %zu-byte body, loopback; microseconds)\n", n,
                kWarmup, kBody.size());
    std::printf("  %-58s %8s %8s %7s %7s %8s\n", "", "p50", "p99", "x p50", "x p99", "+p50");
    std::printf("fresh TCP connection per request\n");
    print_row(f_direct, nullptr);
    print_row(f_abs, &f_direct);
    print_row(f_abs_known, &f_direct);
    print_row(f_connect, &f_direct);
    std::printf("keep-alive connection (tunnel opened once), per request\n");
    print_row(k_direct, nullptr);
    print_row(k_l4, &k_direct);
    print_row(k_l7, &k_direct);
    std::printf("HTTPS, fresh connection per request (handshakes included)\n");
    print_row(f_tls_direct, nullptr);
    print_row(f_tls_proxy, &f_tls_direct);
    std::printf("HTTPS, keep-alive connection, per request\n");
    print_row(k_tls_direct, nullptr);
    print_row(k_tls_proxy, &k_tls_direct);
    std::printf("proxy events: %ld allowed, %ld denied%s%s\n", allowed.load(), denied.load(),
                first_denial.empty() ? "" : "; first denial: ", first_denial.c_str());
    std::printf("identification asks sock_diag for the one socket; its fallback, reading /proc/<init>/net/tcp, would cost "
                "%.0f us with %zu sockets before the fresh phase, %.0f us with %zu after it (net.ipv4.tcp_ehash_entries=%s: "
                "the kernel walks every bucket)\n",
                read_before, table_before, read_after_fresh, table_after_fresh,
                read_line("/proc/sys/net/ipv4/tcp_ehash_entries").c_str());
    ka_direct.reset();
    ka_l4.reset();
    ka_l7.reset();
    ka_tls_direct.reset();
    ka_tls_proxy.reset();
    proxy.stop();
    proxy_known.stop();
    return denied.load() == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_proxy_latency: %s\n", e.what());
    return 1;
  }
}
