#include "supervisor/proxy/binary_identity.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <memory>
#include <unordered_set>

#include "shared/error.h"
#include "shared/process.h"

namespace bulwark::proxy {
namespace {

constexpr size_t kRecentPids = 32;
constexpr size_t kMaxChain = 64;          // deeper than any real process tree; stops a loop
constexpr size_t kMaxHashCache = 4096;    // file versions remembered; forgotten ones are rehashed
constexpr size_t kHashChunk = 64 * 1024;

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

std::optional<uint64_t> BinaryIdentifier::find_inode(const asio::ip::tcp::endpoint& peer,
                                                     const asio::ip::tcp::endpoint& local, std::string* error) const {
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

std::optional<pid_t> BinaryIdentifier::find_holder(uint64_t inode) {
  const std::string link = "socket:[" + std::to_string(inode) + "]";
  std::vector<pid_t> recent;
  {
    std::lock_guard lock(mu_);
    recent = recent_;
  }
  auto remember = [&](pid_t pid) {
    std::lock_guard lock(mu_);
    std::erase(recent_, pid);
    recent_.insert(recent_.begin(), pid);
    if (recent_.size() > kRecentPids) recent_.pop_back();
  };
  // An agent's connections come from few processes: try those first. A recent pid may belong to
  // another process by now, which does no harm: holding this very socket is what is checked.
  std::unordered_set<pid_t> tried;
  for (pid_t pid : recent) {
    tried.insert(pid);
    if (holds(pid, link)) {
      remember(pid);
      return pid;
    }
  }
  for (pid_t pid : descendants()) {
    if (tried.count(pid)) continue;
    if (holds(pid, link)) {
      remember(pid);
      return pid;
    }
  }
  return std::nullopt;
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
  auto pid = find_holder(*inode);
  if (!pid) {
    c.error = "no process in the sandbox holds socket:[" + std::to_string(*inode) +
              "] (it may have exited, or its /proc/<pid>/fd is unreadable without CAP_SYS_PTRACE)";
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
