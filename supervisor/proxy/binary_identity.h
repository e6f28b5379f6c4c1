#pragma once
// Which program opened a connection to the egress proxy, and whether it is still the program
// that first used its path.
//
// The proxy runs in the supervisor, in the parent PID and network namespaces of the agent. For
// an accepted connection it looks the client's socket up by its exact address and port pair with
// a sock_diag query on a netlink socket opened in init's network namespace (or, when that socket
// cannot be made, by reading /proc/<init>/net/tcp and tcp6, which costs milliseconds: the kernel
// walks its whole TCP hash to print it), takes the socket's inode, finds the process holding
// `socket:[inode]` among init and its descendants (/proc/<pid>/fd), and reads that process's
// executable and its ancestors' up to, not including, init (/proc/<pid>/exe, PPid from
// /proc/<pid>/status). Init is left out because it runs the supervisor's own code, not the agent's.
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
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shared/process.h"

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

// An exact NETLINK_SOCK_DIAG (inet_diag) request for the TCP socket whose own end is src and whose
// other end is dst, as seen in the namespace the query is sent in: nlmsghdr + inet_diag_req_v2.
// Both addresses IPv4 (or IPv4-mapped) ask as AF_INET; the kernel's lookup also finds an IPv6
// socket connected to a mapped address that way.
std::string build_diag_request(const asio::ip::tcp::endpoint& src, const asio::ip::tcp::endpoint& dst, uint32_t seq);

// The dump request that checks the kernel answers TCP sock_diag at all (states = 0: it walks no
// table and returns nothing but NLMSG_DONE, or an error when tcp_diag is missing).
std::string build_diag_probe(uint32_t seq);

struct DiagReply {
  enum class Kind {
    kPending,   // no message with this seq in the buffer: read on
    kFound,     // inode set
    kNotFound,  // no such connection, or only a closed one (inode 0), a listener, another tuple
    kDone,      // the end of a dump, without error (the probe's answer)
    kError,     // error set (an errno)
  };
  Kind kind = Kind::kPending;
  uint64_t inode = 0;
  int error = 0;
};

// Reads one recv()'d buffer of netlink messages for the reply to request seq. A socket is found
// only when the reply names exactly src -> dst and is not a listener: for a tuple with no
// connection the kernel's lookup falls back to a listener bound to src's address and port.
DiagReply parse_diag_reply(std::string_view buf, uint32_t seq, const asio::ip::tcp::endpoint& src,
                           const asio::ip::tcp::endpoint& dst);

// A NETLINK_SOCK_DIAG socket in one network namespace. Thread-safe: queries are serialised (each
// is a single hash lookup in the kernel, a few microseconds).
class SockDiag {
 public:
  // Opens the socket in the namespace of netns (a /proc/<pid>/ns/net path) and checks that the
  // kernel answers TCP queries on it. Throws Error saying why not.
  static std::unique_ptr<SockDiag> open(const std::string& netns);

  // The inode of the TCP socket src -> dst in that namespace. nullopt with *error empty when there
  // is no such socket; nullopt with *error set when the query failed.
  std::optional<uint64_t> inode_of(const asio::ip::tcp::endpoint& src, const asio::ip::tcp::endpoint& dst,
                                   std::string* error);

 private:
  explicit SockDiag(Fd fd) : fd_(std::move(fd)) {}
  // Sends request and reads until the reply to seq (stale replies to earlier, timed-out queries
  // are skipped). Call with mu_ held.
  DiagReply query(const std::string& request, uint32_t seq, const asio::ip::tcp::endpoint& src,
                  const asio::ip::tcp::endpoint& dst, std::string* error);

  Fd fd_;
  std::mutex mu_;
  uint32_t seq_ = 0;
  std::array<char, 8192> buf_{};  // netlink's advice: at least 8 KiB, or replies are truncated
};

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

  // Whether sockets are found with sock_diag (false: by reading /proc/<init>/net/tcp). Opens the
  // sock_diag socket if no lookup has yet.
  bool uses_sock_diag();

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
                                     std::string* error);
  std::optional<uint64_t> find_inode_in_table(const asio::ip::tcp::endpoint& peer,
                                              const asio::ip::tcp::endpoint& local, std::string* error) const;
  SockDiag* sock_diag();  // null: fall back to the table
  // The one process holding the socket; nullopt with *error when none or several do.
  std::optional<pid_t> find_holder(uint64_t inode, std::string* error);
  bool holds(pid_t pid, const std::string& link) const;
  std::vector<pid_t> descendants() const;
  // Checks (and on first use pins) the executable of pid, known by path. Empty = fine.
  std::string check_pin(pid_t pid, const std::string& path, bool* changed);

  pid_t init_;
  std::string proc_;
  std::once_flag diag_once_;
  std::unique_ptr<SockDiag> diag_;  // set once under diag_once_, then only read
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::string> pins_;        // path -> SHA-256
  std::unordered_map<FileKey, std::string, FileKeyHash> hashes_;  // file version -> SHA-256
};

}  // namespace bulwark::proxy
