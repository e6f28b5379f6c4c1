#pragma once
// Which program opened a connection to the egress proxy, and whether it is still the program
// that first used its path.
//
// The proxy runs in the supervisor, in the parent PID and network namespaces of the agent. For
// an accepted connection it finds the client's socket in the agent's TCP table
// (/proc/<init>/net/tcp, tcp6: the table of init's network namespace) by its address and port,
// takes the socket's inode, finds the process holding `socket:[inode]` among init and its
// descendants (/proc/<pid>/fd), and reads that process's executable and its ancestors' up to,
// not including, init (/proc/<pid>/exe, PPid from /proc/<pid>/status). Init is left out because
// it runs the supervisor's own code, not the agent's.
//
// Trust on first use: the first time a path is seen, the SHA-256 of its content (read through
// /proc/<pid>/exe, so the bytes hashed are the ones the process runs, whatever the path holds now)
// is pinned; a later process whose executable at that path hashes differently is refused.
//
// Reading another user's /proc/<pid>/exe and /proc/<pid>/fd needs ptrace read access: the
// supervisor must be root with CAP_SYS_PTRACE (a container must be given it).
#include <sys/types.h>

#include <array>
#include <asio/ip/tcp.hpp>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bulwark::proxy {

// --- pure parsing, unit-tested without /proc -------------------------------------------------

// One line of /proc/net/tcp or /proc/net/tcp6. Addresses are always 16 bytes: an IPv4 address
// as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one comparison serves both tables.
struct TcpEntry {
  std::array<uint8_t, 16> local{}, remote{};
  uint16_t local_port = 0, remote_port = 0;
  int state = 0;  // 1 = ESTABLISHED
  uint64_t inode = 0;
};

// nullopt for the header line and anything malformed.
std::optional<TcpEntry> parse_tcp_line(std::string_view line);

// The PPid: field of a /proc/<pid>/status text.
std::optional<pid_t> parse_status_ppid(std::string_view status);

// The inode of a /proc/<pid>/fd link target "socket:[12345]"; nullopt for anything else.
std::optional<uint64_t> parse_socket_link(std::string_view target);

// An address as TcpEntry stores it.
std::array<uint8_t, 16> mapped_bytes(const asio::ip::address& a);

// readlink's text for a deleted executable ends in " (deleted)": the path it was run from.
std::string strip_deleted(std::string path);

// Lower-case hex of a byte string (for digests in messages).
std::string to_hex(std::string_view bytes);

// --- the caller ----------------------------------------------------------------------------

struct Caller {
  pid_t pid = 0;
  // [its executable, its parent's, ...] up to the child of init, as /proc/<pid>/exe names them
  // (just [init's] for a connection from init itself).
  std::vector<std::string> exe_chain;
  // Empty when identified. Otherwise why not, for the 403 and the event.
  std::string error;
  // Set when error is a pin mismatch ("binary changed since first use"), so the proxy can name
  // a distinct rule.
  bool changed = false;
};

// Finds and pins callers for one agent. Thread-safe: the proxy calls it from worker threads.
class BinaryIdentifier {
 public:
  // init: the agent's init as this process sees it. proc: the procfs mount to read (tests).
  explicit BinaryIdentifier(pid_t init, std::string proc = "/proc");

  // peer: the client's address as the proxy's accepted socket sees it; local: the proxy's end.
  Caller identify(const asio::ip::tcp::endpoint& peer, const asio::ip::tcp::endpoint& local);

  // SHA-256 pins so far (path -> raw digest), for tests and diagnostics.
  std::unordered_map<std::string, std::string> pins() const;

 private:
  struct FileKey {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns, ctime_ns;
    bool operator==(const FileKey&) const = default;
  };
  struct FileKeyHash {
    size_t operator()(const FileKey& k) const;
  };

  std::optional<uint64_t> find_inode(const asio::ip::tcp::endpoint& peer, const asio::ip::tcp::endpoint& local,
                                     std::string* error) const;
  std::optional<pid_t> find_holder(uint64_t inode);
  bool holds(pid_t pid, const std::string& link) const;
  std::vector<pid_t> descendants() const;
  // Checks (and on first use pins) the executable of pid, known by path. Empty = fine.
  std::string check_pin(pid_t pid, const std::string& path, bool* changed);

  pid_t init_;
  std::string proc_;
  mutable std::mutex mu_;
  std::vector<pid_t> recent_;  // pids that held callers' sockets lately, tried before a full scan
  std::unordered_map<std::string, std::string> pins_;        // path -> SHA-256
  std::unordered_map<FileKey, std::string, FileKeyHash> hashes_;  // file version -> SHA-256
};

}  // namespace bulwark::proxy
