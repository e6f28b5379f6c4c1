#pragma once
// The control channel between the supervisor and the agent's init (a SOCK_SEQPACKET pair made
// before the clone, see contain.h): the supervisor asks init to fork a command confined exactly
// like the agent (init already is: same namespaces, Landlock domain, uid, and the child loads the
// same seccomp filter), passing the child's stdin/stdout/stderr (or a PTY slave) with SCM_RIGHTS;
// init answers with the child's pid and later its exit code. One message per packet, fields
// separated by NUL bytes:
//
//   supervisor -> init   spawn ID TTY WORKDIR ARGC ARGV... ENV...    (+ 3 fds, or 1 for a tty)
//                        kill ID SIGNAL                              (to the child's process group)
//   init -> supervisor   started ID PID | exited ID CODE | agent CODE (the agent ended; keep_after_exit)
//
// The encoding is pure (tested in exec_control_test.cpp); the socket helpers below only move it.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/process.h"

namespace bulwark::supervisor {

// At most this much per packet (argv and env of an exec): well under a unix socket's buffer.
inline constexpr size_t kMaxControlMessage = 128 * 1024;

struct SpawnRequest {
  uint64_t id = 0;
  bool tty = false;
  std::string workdir;             // "" = the agent's
  std::vector<std::string> argv;
  std::vector<std::string> env;    // "K=V", added over the agent's environment
};

std::string join_fields(const std::vector<std::string>& fields);
// Throws Error(kInvalidArgument) on a packet that does not end in NUL.
std::vector<std::string> split_fields(std::string_view packet);

std::string encode_spawn(const SpawnRequest& r);
// fields as split_fields returns them (fields[0] == "spawn"). Throws Error(kInvalidArgument).
SpawnRequest decode_spawn(const std::vector<std::string>& fields);
// The agent's environment with the request's entries over it (same name: the request wins).
std::vector<std::string> merge_env(std::vector<std::string> base, const std::vector<std::string>& extra);
uint64_t parse_u64(const std::string& s, const char* what);

// One packet with up to 4 file descriptors. Throws Error with errno.
void send_packet(int sock, const std::string& data, const std::vector<int>& fds = {});
// The next packet (received fds are close-on-exec); empty when the peer closed. EINTR retried.
std::string recv_packet(int sock, std::vector<Fd>* fds = nullptr);

}  // namespace bulwark::supervisor
