#include "supervisor/exec_control.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "shared/error.h"

namespace bulwark::supervisor {

std::string join_fields(const std::vector<std::string>& fields) {
  std::string out;
  for (const auto& f : fields) out.append(f).push_back('\0');
  return out;
}

std::vector<std::string> split_fields(std::string_view packet) {
  if (packet.empty() || packet.back() != '\0') throw Error(Code::kInvalidArgument, "control packet does not end in NUL");
  std::vector<std::string> out;
  for (size_t at = 0; at < packet.size();) {
    size_t nul = packet.find('\0', at);
    out.emplace_back(packet.substr(at, nul - at));
    at = nul + 1;
  }
  return out;
}

uint64_t parse_u64(const std::string& s, const char* what) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
    throw Error(Code::kInvalidArgument, std::string("control packet: bad ") + what + " '" + s + "'");
  return std::stoull(s);
}

std::string encode_spawn(const SpawnRequest& r) {
  std::vector<std::string> f = {"spawn", std::to_string(r.id), r.tty ? "1" : "0", r.workdir, std::to_string(r.argv.size())};
  f.insert(f.end(), r.argv.begin(), r.argv.end());
  f.insert(f.end(), r.env.begin(), r.env.end());
  for (const auto& s : f)
    if (s.find('\0') != std::string::npos) throw Error(Code::kInvalidArgument, "command, env and workdir must not contain NUL bytes");
  std::string out = join_fields(f);
  if (out.size() > kMaxControlMessage)
    throw Error(Code::kInvalidArgument, "command and env together are over " + std::to_string(kMaxControlMessage) + " bytes");
  return out;
}

SpawnRequest decode_spawn(const std::vector<std::string>& f) {
  if (f.size() < 5 || f[0] != "spawn") throw Error(Code::kInvalidArgument, "control packet: not a spawn request");
  SpawnRequest r;
  r.id = parse_u64(f[1], "id");
  if (f[2] != "0" && f[2] != "1") throw Error(Code::kInvalidArgument, "control packet: bad tty flag");
  r.tty = f[2] == "1";
  r.workdir = f[3];
  uint64_t argc = parse_u64(f[4], "argc");
  if (argc == 0 || argc > f.size() - 5) throw Error(Code::kInvalidArgument, "control packet: bad argc");
  r.argv.assign(f.begin() + 5, f.begin() + 5 + static_cast<long>(argc));
  r.env.assign(f.begin() + 5 + static_cast<long>(argc), f.end());
  return r;
}

std::vector<std::string> merge_env(std::vector<std::string> base, const std::vector<std::string>& extra) {
  for (const auto& e : extra) {
    std::string key = e.substr(0, e.find('=') + 1);
    std::erase_if(base, [&](const std::string& b) { return b.rfind(key, 0) == 0; });
    base.push_back(e);
  }
  return base;
}

void send_packet(int sock, const std::string& data, const std::vector<int>& fds) {
  if (fds.size() > 4) throw Error(Code::kInternal, "send_packet: at most 4 fds");
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(data.size())) throw Error(Code::kInternal, errno_text("send on the exec control socket", errno));
}

std::string recv_packet(int sock, std::vector<Fd>* fds) {
  std::string buf(kMaxControlMessage + 1, '\0');
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw Error(Code::kInternal, errno_text("receive on the exec control socket", errno));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (fds) fds->emplace_back(fd);
      else Fd close_it(fd);
    }
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) throw Error(Code::kInternal, "exec control packet truncated");
  buf.resize(static_cast<size_t>(n));
  return buf;
}

}  // namespace bulwark::supervisor
