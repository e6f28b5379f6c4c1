#include "supervisor/proxy/binary_identity.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <memory>
#include <thread>
#include <unordered_set>

#include "shared/error.h"
#include "shared/process.h"

namespace bulwark::proxy {
namespace {

constexpr size_t kMaxChain = 64;          // deeper than any real process tree; stops a loop
constexpr size_t kMaxHashCache = 4096;    // file versions remembered; forgotten ones are rehashed
constexpr size_t kHashChunk = 64 * 1024;
constexpr int kDiagTimeoutMs = 1000;      // the kernel answers at once; this only bounds a lost reply

struct CloseDir {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, CloseDir>;

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

template <class T>
bool parse_hex(std::string_view s, T* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 16);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

// "0100007F:1F90" -> address bytes and port. The kernel prints each 32-bit word of the address
// as the native-endian integer holding the network-order bytes, so copying the parsed integer's
// bytes back out restores network order on any host.
bool parse_hex_endpoint(std::string_view s, std::array<uint8_t, 16>* addr, uint16_t* port) {
  size_t colon = s.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view a = s.substr(0, colon);
  if (!parse_hex(s.substr(colon + 1), port)) return false;
  addr->fill(0);
  if (a.size() == 8) {
    uint32_t w;
    if (!parse_hex(a, &w)) return false;
    (*addr)[10] = 0xff;
    (*addr)[11] = 0xff;
    std::memcpy(addr->data() + 12, &w, 4);
    return true;
  }
  if (a.size() != 32) return false;
  for (size_t i = 0; i < 4; ++i) {
    uint32_t w;
    if (!parse_hex(a.substr(i * 8, 8), &w)) return false;
    std::memcpy(addr->data() + i * 4, &w, 4);
  }
  return true;
}

// The whole of a (small, /proc) file, or errno.
int read_text(const std::string& path, std::string* out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno;
  out->clear();
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return 0;
    out->append(buf, static_cast<size_t>(n));
  }
}

int read_link(const std::string& path, std::string* out) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  if (n < 0) return errno;
  out->assign(buf, static_cast<size_t>(n));
  return 0;
}

std::string why_unreadable(const std::string& what, int err) {
  std::string s = errno_text(what, err);
  if (err == EACCES || err == EPERM)
    s += " (the supervisor needs root with CAP_SYS_PTRACE to read other users' processes)";
  return s;
}

// SHA-256 of everything readable from fd, raw bytes; empty with *error on failure.
std::string sha256_fd(int fd, std::string* error) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    *error = "cannot start a SHA-256 digest";
    return {};
  }
  std::vector<char> buf(kHashChunk);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = errno_text("read executable", errno);
      return {};
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) {
    *error = "cannot finish a SHA-256 digest";
    return {};
  }
  return std::string(reinterpret_cast<char*>(md), len);
}

// An inet_diag request: the header and the request, back to back as the kernel reads them.
struct DiagRequest {
  nlmsghdr hdr;
  inet_diag_req_v2 req;
};
static_assert(sizeof(DiagRequest) == NLMSG_LENGTH(sizeof(inet_diag_req_v2)));

std::string diag_bytes(DiagRequest m) {
  return std::string(reinterpret_cast<const char*>(&m), sizeof m);
}

bool is_v4(const std::array<uint8_t, 16>& mapped) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(mapped.data(), kPrefix, sizeof kPrefix) == 0;
}

// An inet_diag address field as TcpEntry bytes: an AF_INET reply holds the IPv4 address in its
// first word, an AF_INET6 one all 16 bytes.
std::array<uint8_t, 16> diag_addr(uint8_t family, const __be32 (&a)[4]) {
  std::array<uint8_t, 16> out{};
  if (family == AF_INET) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, &a[0], 4);
  } else {
    std::memcpy(out.data(), a, 16);
  }
  return out;
}

std::string endpoint_text(const asio::ip::tcp::endpoint& e) {
  return e.address().to_string() + ":" + std::to_string(e.port());
}

// Creates the netlink socket in the namespace netns names. setns changes only the calling thread's
// namespace, so a thread of its own enters it, creates the socket (which keeps the namespace it
// was made in for life) and exits; the proxy's threads stay where they are.
Fd diag_socket_in(const std::string& netns) {
  Fd ns(::open(netns.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) throw Error(Code::kInternal, errno_text("open " + netns, errno));
  auto make = [] { return Fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)); };
  struct stat target {}, own {};
  if (::fstat(ns.get(), &target) != 0) throw Error(Code::kInternal, errno_text("fstat " + netns, errno));
  // Already there (tests, or a proxy sharing the agent's namespace): no setns, so no CAP_SYS_ADMIN.
  if (::stat("/proc/thread-self/ns/net", &own) == 0 && own.st_dev == target.st_dev && own.st_ino == target.st_ino) {
    Fd s = make();
    if (!s) throw Error(Code::kInternal, errno_text("create a NETLINK_SOCK_DIAG socket", errno));
    return s;
  }
  Fd result;
  std::string error;
  std::thread t([&] {
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
      int err = errno;
      error = errno_text("enter the network namespace " + netns, err);
      if (err == EPERM) error += " (needs CAP_SYS_ADMIN)";
      return;
    }
    result = make();
    if (!result) error = errno_text("create a NETLINK_SOCK_DIAG socket in " + netns, errno);
  });
  t.join();  // the thread, and its namespace change, end here
  if (!result) throw Error(Code::kInternal, error);
  return result;
}

}  // namespace

std::optional<TcpEntry> parse_tcp_line(std::string_view line) {
  auto f = fields(line);
  // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
  if (f.size() < 10 || f[0].empty() || f[0].back() != ':') return std::nullopt;
  TcpEntry e;
  if (!parse_hex_endpoint(f[1], &e.local, &e.local_port) || !parse_hex_endpoint(f[2], &e.remote, &e.remote_port))
    return std::nullopt;
  if (!parse_hex(f[3], &e.state)) return std::nullopt;
  auto [end, ec] = std::from_chars(f[9].data(), f[9].data() + f[9].size(), e.inode);
  if (ec != std::errc() || end != f[9].data() + f[9].size()) return std::nullopt;
  return e;
}

std::optional<pid_t> parse_status_ppid(std::string_view status) {
  size_t at = 0;
  for (;;) {
    size_t eol = std::min(status.find('\n', at), status.size());
    std::string_view line = status.substr(at, eol - at);
    if (line.rfind("PPid:", 0) == 0) {
      line.remove_prefix(5);
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      pid_t p = 0;
      auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), p);
      if (ec != std::errc() || end != line.data() + line.size() || p < 0) return std::nullopt;
      return p;
    }
    if (eol >= status.size()) return std::nullopt;
    at = eol + 1;
  }
}

std::optional<uint64_t> parse_socket_link(std::string_view t) {
  constexpr std::string_view kPrefix = "socket:[";
  if (t.size() <= kPrefix.size() + 1 || t.substr(0, kPrefix.size()) != kPrefix || t.back() != ']') return std::nullopt;
  std::string_view digits = t.substr(kPrefix.size(), t.size() - kPrefix.size() - 1);
  uint64_t inode = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), inode);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return inode;
}

std::array<uint8_t, 16> mapped_bytes(const asio::ip::address& a) {
  if (a.is_v6()) return a.to_v6().to_bytes();
  return asio::ip::make_address_v6(asio::ip::v4_mapped, a.to_v4()).to_bytes();
}

std::string strip_deleted(std::string path) {
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.size() > kDeleted.size() && path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0)
    path.resize(path.size() - kDeleted.size());
  return path;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto u = static_cast<unsigned char>(c);
    out += kHex[u >> 4];
    out += kHex[u & 15];
  }
  return out;
}

std::string build_diag_request(const asio::ip::tcp::endpoint& src, const asio::ip::tcp::endpoint& dst, uint32_t seq) {
  DiagRequest m{};
  m.hdr.nlmsg_len = sizeof m;
  m.hdr.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  m.hdr.nlmsg_flags = NLM_F_REQUEST;  // no NLM_F_DUMP: an exact lookup, one reply
  m.hdr.nlmsg_seq = seq;
  m.req.sdiag_protocol = IPPROTO_TCP;
  m.req.idiag_states = ~0u;
  m.req.id.idiag_sport = htons(src.port());
  m.req.id.idiag_dport = htons(dst.port());
  // Without NOCOOKIE the kernel compares the socket's cookie with this field and, as no socket's
  // cookie is 0, reports every socket as not found.
  m.req.id.idiag_cookie[0] = m.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  const auto s = mapped_bytes(src.address()), d = mapped_bytes(dst.address());
  if (is_v4(s) && is_v4(d)) {
    m.req.sdiag_family = AF_INET;
    std::memcpy(&m.req.id.idiag_src[0], s.data() + 12, 4);
    std::memcpy(&m.req.id.idiag_dst[0], d.data() + 12, 4);
  } else {
    m.req.sdiag_family = AF_INET6;
    std::memcpy(m.req.id.idiag_src, s.data(), 16);
    std::memcpy(m.req.id.idiag_dst, d.data(), 16);
  }
  return diag_bytes(m);
}

std::string build_diag_probe(uint32_t seq) {
  DiagRequest m{};
  m.hdr.nlmsg_len = sizeof m;
  m.hdr.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  m.hdr.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  m.hdr.nlmsg_seq = seq;
  m.req.sdiag_family = AF_INET;
  m.req.sdiag_protocol = IPPROTO_TCP;
  m.req.idiag_states = 0;  // no state wanted: the kernel skips the table walk
  return diag_bytes(m);
}

DiagReply parse_diag_reply(std::string_view buf, uint32_t seq, const asio::ip::tcp::endpoint& src,
                           const asio::ip::tcp::endpoint& dst) {
  using Kind = DiagReply::Kind;
  // The buffer need not be aligned for these structs: each is copied out before use.
  for (size_t at = 0; at + sizeof(nlmsghdr) <= buf.size();) {
    nlmsghdr h;
    std::memcpy(&h, buf.data() + at, sizeof h);
    if (h.nlmsg_len < sizeof h || h.nlmsg_len > buf.size() - at) return {Kind::kError, 0, EBADMSG};
    std::string_view payload = buf.substr(at + NLMSG_HDRLEN, h.nlmsg_len - std::min<size_t>(h.nlmsg_len, NLMSG_HDRLEN));
    at += NLMSG_ALIGN(h.nlmsg_len);
    if (h.nlmsg_seq != seq) continue;  // a late reply to an earlier query
    switch (h.nlmsg_type) {
      case NLMSG_ERROR: {
        int err = 0;
        if (payload.size() < sizeof err) return {Kind::kError, 0, EBADMSG};
        std::memcpy(&err, payload.data(), sizeof err);
        if (err == 0 || err == -ENOENT) return {Kind::kNotFound, 0, 0};
        return {Kind::kError, 0, -err};
      }
      case NLMSG_DONE: {  // the end of a dump (the probe): its payload is the dump's error, if any
        int err = 0;
        if (payload.size() >= sizeof err) std::memcpy(&err, payload.data(), sizeof err);
        if (err < 0) return {Kind::kError, 0, -err};
        return {Kind::kDone, 0, 0};
      }
      case SOCK_DIAG_BY_FAMILY: {
        inet_diag_msg m;
        if (payload.size() < sizeof m) return {Kind::kError, 0, EBADMSG};
        std::memcpy(&m, payload.data(), sizeof m);
        if (m.idiag_family != AF_INET && m.idiag_family != AF_INET6) return {Kind::kError, 0, EBADMSG};
        // The kernel's lookup falls back to a listener on src when no connection matches: only
        // the exact pair counts. Inode 0: closed (TIME_WAIT, or orphaned while it finishes).
        bool exact = m.idiag_state != TCP_LISTEN && ntohs(m.id.idiag_sport) == src.port() &&
                     ntohs(m.id.idiag_dport) == dst.port() &&
                     diag_addr(m.idiag_family, m.id.idiag_src) == mapped_bytes(src.address()) &&
                     diag_addr(m.idiag_family, m.id.idiag_dst) == mapped_bytes(dst.address());
        if (!exact || m.idiag_inode == 0) return {Kind::kNotFound, 0, 0};
        return {Kind::kFound, m.idiag_inode, 0};
      }
      default:
        continue;  // NLMSG_NOOP and the like
    }
  }
  return {};
}

std::unique_ptr<SockDiag> SockDiag::open(const std::string& netns) {
  Fd fd = diag_socket_in(netns);
  // A lost reply (it cannot happen short of an overrun) must not hold an identify worker forever.
  timeval tv{kDiagTimeoutMs / 1000, (kDiagTimeoutMs % 1000) * 1000};
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
    throw Error(Code::kInternal, errno_text("set a receive timeout on the sock_diag socket", errno));
  std::unique_ptr<SockDiag> d(new SockDiag(std::move(fd)));
  // An exact query answers ENOENT both for "no such socket" and for "no TCP sock_diag in this
  // kernel" (tcp_diag not built or loadable): ask once now, so that ENOENT later means the first.
  std::lock_guard lock(d->mu_);
  std::string error;
  uint32_t seq = ++d->seq_;
  DiagReply r = d->query(build_diag_probe(seq), seq, {}, {}, &error);
  if (r.kind != DiagReply::Kind::kDone) {
    if (error.empty()) error = r.kind == DiagReply::Kind::kNotFound ? errno_text("sock_diag", ENOENT) : "unexpected reply";
    throw Error(Code::kInternal, "the kernel does not answer TCP sock_diag queries (is tcp_diag built?): " + error);
  }
  return d;
}

DiagReply SockDiag::query(const std::string& request, uint32_t seq, const asio::ip::tcp::endpoint& src,
                          const asio::ip::tcp::endpoint& dst, std::string* error) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;  // nl_pid 0: the kernel
  for (;;) {
    ssize_t n = ::sendto(fd_.get(), request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
                         sizeof kernel);
    if (n >= 0) break;
    int err = errno;
    if (err == EINTR) continue;
    *error = errno_text("send a sock_diag query", err);
    return {DiagReply::Kind::kError, 0, err};
  }
  for (;;) {
    sockaddr_nl from{};
    iovec iov{buf_.data(), buf_.size()};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = ::recvmsg(fd_.get(), &msg, 0);
    if (n < 0) {
      int err = errno;
      if (err == EINTR) continue;
      *error = err == EAGAIN || err == EWOULDBLOCK
                   ? "no sock_diag reply within " + std::to_string(kDiagTimeoutMs) + " ms"
                   : errno_text("read a sock_diag reply", err);
      return {DiagReply::Kind::kError, 0, err};
    }
    if (msg.msg_flags & MSG_TRUNC) {
      *error = "a sock_diag reply was larger than " + std::to_string(buf_.size()) + " bytes";
      return {DiagReply::Kind::kError, 0, EMSGSIZE};
    }
    if (from.nl_pid != 0) continue;  // only the kernel answers queries
    DiagReply r = parse_diag_reply(std::string_view(buf_.data(), static_cast<size_t>(n)), seq, src, dst);
    if (r.kind == DiagReply::Kind::kPending) continue;
    if (r.kind == DiagReply::Kind::kError) *error = errno_text("sock_diag", r.error);
    return r;
  }
}

std::optional<uint64_t> SockDiag::inode_of(const asio::ip::tcp::endpoint& src, const asio::ip::tcp::endpoint& dst,
                                           std::string* error) {
  std::lock_guard lock(mu_);
  uint32_t seq = ++seq_;
  std::string why;
  DiagReply r = query(build_diag_request(src, dst, seq), seq, src, dst, &why);
  if (r.kind == DiagReply::Kind::kFound) return r.inode;
  if (r.kind == DiagReply::Kind::kError)
    *error = "cannot look up the socket " + endpoint_text(src) + " -> " + endpoint_text(dst) + ": " + why;
  return std::nullopt;
}

size_t BinaryIdentifier::FileKeyHash::operator()(const FileKey& k) const {
  size_t h = std::hash<uint64_t>()(static_cast<uint64_t>(k.ino));
  for (uint64_t v : {static_cast<uint64_t>(k.dev), static_cast<uint64_t>(k.size), static_cast<uint64_t>(k.mtime_ns),
                     static_cast<uint64_t>(k.ctime_ns)})
    h ^= std::hash<uint64_t>()(v) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

BinaryIdentifier::BinaryIdentifier(pid_t init, std::string proc) : init_(init), proc_(std::move(proc)) {
  if (init_ <= 0) throw Error(Code::kInvalidArgument, "binary identification needs the agent's init pid", "init");
}

std::unordered_map<std::string, std::string> BinaryIdentifier::pins() const {
  std::lock_guard lock(mu_);
  return pins_;
}

SockDiag* BinaryIdentifier::sock_diag() {
  std::call_once(diag_once_, [this] {
    std::string netns = proc_ + "/" + std::to_string(init_) + "/ns/net";
    try {
      diag_ = SockDiag::open(netns);
    } catch (const std::exception& e) {
      spdlog::warn("identifying callers by reading {}/{}/net/tcp (about 3 ms per connection, more with many "
                   "sockets on the host) instead of sock_diag: {}",
                   proc_, init_, e.what());
    }
  });
  return diag_.get();
}

bool BinaryIdentifier::uses_sock_diag() { return sock_diag() != nullptr; }

std::optional<uint64_t> BinaryIdentifier::find_inode(const asio::ip::tcp::endpoint& peer,
                                                     const asio::ip::tcp::endpoint& local, std::string* error) {
  SockDiag* diag = sock_diag();
  if (!diag) return find_inode_in_table(peer, local, error);
  // Inside the agent's namespace the client's socket runs from its own end, the peer we accepted,
  // to the proxy's address: no NAT lies between the two namespaces.
  auto inode = diag->inode_of(peer, local, error);
  if (!inode && error->empty())
    *error = "no socket from " + endpoint_text(peer) + " to " + endpoint_text(local) +
             " in the TCP table of the agent's network namespace (sock_diag lookup): the connection does not "
             "come from the sandbox";
  return inode;
}

std::optional<uint64_t> BinaryIdentifier::find_inode_in_table(const asio::ip::tcp::endpoint& peer,
                                                              const asio::ip::tcp::endpoint& local,
                                                              std::string* error) const {
  const auto peer_addr = mapped_bytes(peer.address());
  const auto local_addr = mapped_bytes(local.address());
  std::string last_error;
  bool read_any = false;
  for (const char* table : {"tcp", "tcp6"}) {
    std::string path = proc_ + "/" + std::to_string(init_) + "/net/" + table;
    std::string text;
    if (int err = read_text(path, &text); err != 0) {
      // tcp6 is absent when IPv6 is off in the kernel; only both missing is a failure.
      last_error = errno_text("read " + path, err);
      continue;
    }
    read_any = true;
    std::string_view rest = text;
    while (!rest.empty()) {
      size_t eol = std::min(rest.find('\n'), rest.size());
      auto e = parse_tcp_line(rest.substr(0, eol));
      rest.remove_prefix(std::min(eol + 1, rest.size()));
      // The client's socket: its local end is the peer we accepted, its remote end is us.
      if (e && e->inode != 0 && e->local_port == peer.port() && e->remote_port == local.port() &&
          e->local == peer_addr && e->remote == local_addr)
        return e->inode;
    }
  }
  if (!read_any) {
    *error = "cannot read the agent's TCP table: " + last_error;
    return std::nullopt;
  }
  *error = "no socket from " + peer.address().to_string() + ":" + std::to_string(peer.port()) + " to " +
           local.address().to_string() + ":" + std::to_string(local.port()) +
           " in the TCP table of the agent's network namespace (" + proc_ + "/" + std::to_string(init_) +
           "/net/tcp): the connection does not come from the sandbox";
  return std::nullopt;
}

bool BinaryIdentifier::holds(pid_t pid, const std::string& link) const {
  std::string dir = proc_ + "/" + std::to_string(pid) + "/fd";
  DirPtr d(::opendir(dir.c_str()));
  if (!d) return false;
  char buf[64];
  while (dirent* ent = ::readdir(d.get())) {
    if (ent->d_name[0] == '.') continue;
    ssize_t n = ::readlinkat(::dirfd(d.get()), ent->d_name, buf, sizeof buf);
    if (n > 0 && std::string_view(buf, static_cast<size_t>(n)) == link) return true;
  }
  return false;
}

// Init and every process below it: in a sandbox, the agent's whole PID namespace (orphans are
// reparented to init). PPid is world-readable, unlike the fds searched next.
std::vector<pid_t> BinaryIdentifier::descendants() const {
  std::unordered_map<pid_t, std::vector<pid_t>> children;
  DirPtr d(::opendir(proc_.c_str()));
  if (d) {
    std::string status;
    while (dirent* ent = ::readdir(d.get())) {
      pid_t pid = 0;
      std::string_view name = ent->d_name;
      auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
      if (ec != std::errc() || end != name.data() + name.size() || pid == init_) continue;
      if (read_text(proc_ + "/" + std::string(name) + "/status", &status) != 0) continue;
      if (auto ppid = parse_status_ppid(status)) children[*ppid].push_back(pid);
    }
  }
  std::vector<pid_t> out{init_};
  for (size_t i = 0; i < out.size(); ++i)
    if (auto it = children.find(out[i]); it != children.end())
      out.insert(out.end(), it->second.begin(), it->second.end());
  return out;
}

std::optional<pid_t> BinaryIdentifier::find_holder(uint64_t inode, std::string* error) {
  const std::string link = "socket:[" + std::to_string(inode) + "]";
  // Every process is checked, not the first holder found: a socket held by several processes
  // (inherited across fork, or passed over a unix socket) could be sent on by any of them, so no
  // one binary's grant may speak for it. Such a connection is refused.
  std::vector<pid_t> holders;
  for (pid_t pid : descendants())
    if (holds(pid, link)) holders.push_back(pid);
  if (holders.size() > 1) {
    std::string list;
    for (pid_t p : holders) list += (list.empty() ? "" : ", ") + std::to_string(p);
    *error = "socket:[" + std::to_string(inode) + "] is held by several processes (" + list +
             "): any of them could send on it, so no single program's grant applies";
    return std::nullopt;
  }
  if (holders.empty()) {
    *error = "no process in the sandbox holds socket:[" + std::to_string(inode) +
             "] (it may have exited, or its /proc/<pid>/fd is unreadable without CAP_SYS_PTRACE)";
    return std::nullopt;
  }
  return holders.front();
}

std::string BinaryIdentifier::check_pin(pid_t pid, const std::string& path, bool* changed) {
  std::string exe = proc_ + "/" + std::to_string(pid) + "/exe";
  Fd fd(::open(exe.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return why_unreadable("open " + exe, errno);
  // The file opened must be the one readlink named: an exec in between would pin one program's
  // hash under another's path.
  std::string again;
  if (int err = read_link(exe, &again); err != 0) return why_unreadable("readlink " + exe, err);
  if (strip_deleted(again) != path) return "process " + std::to_string(pid) + " changed its executable while being identified";
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_text("fstat " + exe, errno);
  FileKey key{st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec,
              st.st_ctim.tv_sec * 1'000'000'000LL + st.st_ctim.tv_nsec};
  std::string digest;
  {
    std::lock_guard lock(mu_);
    if (auto it = hashes_.find(key); it != hashes_.end()) digest = it->second;
  }
  if (digest.empty()) {
    // Outside the lock: hashing a large executable takes a while, and other callers need not wait.
    std::string error;
    digest = sha256_fd(fd.get(), &error);
    if (digest.empty()) return error + " (" + path + ")";
    std::lock_guard lock(mu_);
    if (hashes_.size() >= kMaxHashCache) hashes_.clear();
    hashes_.emplace(key, digest);
  }
  std::lock_guard lock(mu_);
  auto [it, first_use] = pins_.emplace(path, digest);
  if (first_use || it->second == digest) return {};
  *changed = true;
  return "binary changed since first use: " + path + " (sha256 pinned " + to_hex(it->second).substr(0, 16) +
         "..., now " + to_hex(digest).substr(0, 16) + "...)";
}

Caller BinaryIdentifier::identify(const asio::ip::tcp::endpoint& peer, const asio::ip::tcp::endpoint& local) {
  Caller c;
  std::string error;
  auto inode = find_inode(peer, local, &error);
  if (!inode) {
    c.error = error;
    return c;
  }
  auto pid = find_holder(*inode, &error);
  if (!pid) {
    c.error = error;
    return c;
  }
  c.pid = *pid;
  std::vector<pid_t> pids;
  for (pid_t p = *pid; pids.size() < kMaxChain;) {
    // Init runs the supervisor's own code, never the agent's: a caller's chain stops below it
    // (else a pattern matching the supervisor's path would grant every process). Only a
    // connection from init itself is attributed to init.
    if (p == init_ && !pids.empty()) break;
    std::string path;
    std::string exe = proc_ + "/" + std::to_string(p) + "/exe";
    if (int err = read_link(exe, &path); err != 0) {
      if (pids.empty()) {
        c.error = why_unreadable("readlink " + exe, err);
        return c;
      }
      break;  // an unreadable ancestor ends the chain: fewer grants, never more
    }
    pids.push_back(p);
    c.exe_chain.push_back(strip_deleted(std::move(path)));
    if (p == init_) break;
    std::string status;
    if (read_text(proc_ + "/" + std::to_string(p) + "/status", &status) != 0) break;
    auto ppid = parse_status_ppid(status);
    if (!ppid || *ppid <= 0) break;
    p = *ppid;
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    std::string why = check_pin(pids[i], c.exe_chain[i], &c.changed);
    if (!why.empty()) {
      c.error = why;
      return c;
    }
  }
  return c;
}

}  // namespace bulwark::proxy
