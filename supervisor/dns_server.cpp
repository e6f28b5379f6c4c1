#include "supervisor/dns_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

#include "shared/error.h"
#include "shared/policy_engine.h"
#include "supervisor/dns.h"
#include "supervisor/netns.h"

namespace bulwark::supervisor {
namespace {

constexpr auto kTcpTimeoutMs = 2000;  // a TCP client gets this long to send its one query
constexpr int kRefusedPerSecond = 20;

Fd bound(int type, uint32_t addr_be, uint16_t port) {
  Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (!fd) throw Error(Code::kInternal, errno_text("DNS socket", errno));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = addr_be;
  a.sin_port = htons(port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw Error(Code::kUnavailable, errno_text("DNS responder: bind " + ip_to_string(addr_be) + ":" + std::to_string(port), errno));
  return fd;
}

uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// Reads exactly n bytes within the deadline.
bool read_full(int fd, char* buf, size_t n, int timeout_ms) {
  size_t got = 0;
  while (got < n) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

DnsResponder::DnsResponder(Options o, std::shared_ptr<const policy::CompiledPolicy> policy)
    : o_(std::move(o)), policy_(std::move(policy)) {
  if (!policy_) throw Error(Code::kInvalidArgument, "the DNS responder needs a policy", "policy");
  udp_ = bound(SOCK_DGRAM, o_.listen_addr_be, o_.port);
  port_ = port_of(udp_.get());
  tcp_ = bound(SOCK_STREAM, o_.listen_addr_be, port_);
  if (::listen(tcp_.get(), 64) != 0) throw Error(Code::kInternal, errno_text("DNS responder: listen", errno));
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw Error(Code::kInternal, errno_text("pipe", errno));
  stop_[0].reset(p[0]);
  stop_[1].reset(p[1]);
  thread_ = std::thread([this] { loop(); });
}

DnsResponder::~DnsResponder() {
  if (stop_[1]) (void)!::write(stop_[1].get(), "x", 1);
  if (thread_.joinable()) thread_.join();
}

void DnsResponder::set_policy(std::shared_ptr<const policy::CompiledPolicy> policy) {
  if (!policy) throw Error(Code::kInvalidArgument, "set_policy: the policy is null", "policy");
  std::lock_guard lock(mu_);
  policy_ = std::move(policy);
}

std::string DnsResponder::answer(std::string_view msg) {
  DnsParse parse = parse_dns_query(msg);
  if (!parse.query) return parse.has_id ? dns_error_response(parse.id, parse.rcode) : std::string();
  const DnsQuery& q = *parse.query;
  std::shared_ptr<const policy::CompiledPolicy> policy;
  {
    std::lock_guard lock(mu_);
    policy = policy_;
  }
  if (q.qclass != 1) return dns_response(q, kRcodeRefused, {}, 0);
  if (q.name == "inference.local") {
    // Served by the proxy itself, at the supervisor's address.
    asio::ip::address_v4 a(ntohl(o_.listen_addr_be));
    return dns_response(q, kRcodeNoError, {asio::ip::address(a)}, o_.ttl);
  }
  if (!policy->names_host(q.name)) {
    auto now = std::chrono::steady_clock::now();
    if (now - window_ > std::chrono::seconds(1)) {
      window_ = now;
      refused_in_window_ = 0;
    }
    if (++refused_in_window_ <= kRefusedPerSecond && o_.on_refused) {
      try {
        o_.on_refused(printable_name(q.name), q.qtype);
      } catch (const std::exception& e) {
        spdlog::error("DNS responder: reporting a refused name failed: {}", e.what());
      }
    }
    return dns_response(q, kRcodeNxDomain, {}, 0);
  }
  // The sandbox has no IPv6 (the agent's namespace turns it off): AAAA is answered empty so
  // clients go straight to IPv4. Other types of an allowed name: empty too.
  if (q.qtype != kTypeA) return dns_response(q, kRcodeNoError, {}, o_.ttl);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(q.name.c_str(), nullptr, &hints, &res);
  if (rc != 0) return dns_response(q, rc == EAI_NONAME || rc == EAI_NODATA ? kRcodeNxDomain : kRcodeServFail, {}, 0);
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> owned(res, ::freeaddrinfo);
  std::vector<asio::ip::address> addrs;
  for (auto* r = res; r; r = r->ai_next) {
    auto* sin = reinterpret_cast<sockaddr_in*>(r->ai_addr);
    asio::ip::address a = asio::ip::address_v4(ntohl(sin->sin_addr.s_addr));
    if (std::find(addrs.begin(), addrs.end(), a) == addrs.end()) addrs.push_back(a);
  }
  if (o_.names) o_.names->record(q.name, addrs);
  return dns_response(q, kRcodeNoError, addrs, o_.ttl);
}

void DnsResponder::serve_tcp(int fd) {
  unsigned char len[2];
  if (!read_full(fd, reinterpret_cast<char*>(len), 2, kTcpTimeoutMs)) return;
  size_t n = static_cast<size_t>((len[0] << 8) | len[1]);
  std::string msg(n, '\0');
  if (!read_full(fd, msg.data(), n, kTcpTimeoutMs)) return;
  std::string out = answer(msg);
  if (out.empty() || out.size() > 0xffff) return;
  std::string framed;
  framed += static_cast<char>(out.size() >> 8);
  framed += static_cast<char>(out.size() & 0xff);
  framed += out;
  (void)!::send(fd, framed.data(), framed.size(), MSG_NOSIGNAL);
}

void DnsResponder::loop() {
  std::vector<char> buf(65536);
  for (;;) {
    pollfd fds[3] = {{udp_.get(), POLLIN, 0}, {tcp_.get(), POLLIN, 0}, {stop_[0].get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[2].revents) return;
    try {
      if (fds[0].revents & POLLIN) {
        sockaddr_in from{};
        socklen_t flen = sizeof from;
        ssize_t n = ::recvfrom(udp_.get(), buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &flen);
        if (n > 0) {
          std::string out = answer(std::string_view(buf.data(), static_cast<size_t>(n)));
          if (out.size() > 512) {
            // Too big for plain UDP: the header alone, truncated (TC), and the client retries on TCP.
            out.resize(12);
            out[2] = static_cast<char>(out[2] | 0x02);
            std::fill(out.begin() + 4, out.end(), '\0');
          }
          if (!out.empty())
            (void)!::sendto(udp_.get(), out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
        }
      }
      if (fds[1].revents & POLLIN) {
        Fd c(::accept4(tcp_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (c) serve_tcp(c.get());
      }
    } catch (const std::exception& e) {
      spdlog::error("DNS responder: {}", e.what());  // one bad message must not end DNS for the sandbox
    }
  }
}

}  // namespace bulwark::supervisor
