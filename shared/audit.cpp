#include "shared/audit.h"

#include <linux/audit.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "shared/error.h"

namespace bulwark::audit {
namespace {

Fd control_socket() {
  Fd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT));
  if (!s) throw Error(Code::kUnavailable, errno_text("audit: socket(NETLINK_AUDIT)", errno));
  timeval tv{2, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return s;
}

// Sends one request and returns the reply payload of the given type (or an ack/error).
std::vector<char> request(int sock, uint16_t type, const void* payload, size_t len, uint16_t want_type) {
  std::vector<char> msg(NLMSG_SPACE(len), 0);
  auto* h = reinterpret_cast<nlmsghdr*>(msg.data());
  h->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(len));
  h->nlmsg_type = type;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  h->nlmsg_seq = 1;
  if (len) std::memcpy(NLMSG_DATA(h), payload, len);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock, msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    throw Error(Code::kUnavailable, errno_text("audit: send request " + std::to_string(type), errno));
  }
  std::vector<char> buf(8192);
  for (int i = 0; i < 4; ++i) {
    ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
    if (n < 0) throw Error(Code::kUnavailable, errno_text("audit: read the reply to " + std::to_string(type), errno));
    for (auto* r = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(r, static_cast<unsigned>(n)); r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_type == NLMSG_ERROR) {
        int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
        if (err != 0) throw Error(Code::kPermissionDenied, errno_text("audit: request " + std::to_string(type), err));
        if (want_type == NLMSG_ERROR) return {};
        continue;
      }
      if (r->nlmsg_type == want_type) {
        auto* d = static_cast<char*>(NLMSG_DATA(r));
        return std::vector<char>(d, d + (r->nlmsg_len - NLMSG_HDRLEN));
      }
    }
  }
  throw Error(Code::kUnavailable, "audit: no reply to request " + std::to_string(type));
}

}  // namespace

bool enabled() {
  Fd s = control_socket();
  auto reply = request(s.get(), AUDIT_GET, nullptr, 0, AUDIT_GET);
  audit_status st{};
  std::memcpy(&st, reply.data(), std::min(reply.size(), sizeof st));
  return st.enabled != 0;
}

std::string ensure_enabled() {
  try {
    if (enabled()) return "";
    Fd s = control_socket();
    audit_status st{};
    st.mask = AUDIT_STATUS_ENABLED;
    st.enabled = 1;
    request(s.get(), AUDIT_SET, &st, sizeof st, NLMSG_ERROR);
    return enabled() ? "" : "audit: the kernel did not switch audit on";
  } catch (const std::exception& e) {
    return e.what();
  }
}

Fd open_reader() {
  Fd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT));
  if (!s) throw Error(Code::kUnavailable, errno_text("audit: socket(NETLINK_AUDIT)", errno));
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = 1u << (AUDIT_NLGRP_READLOG - 1);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw Error(Code::kPermissionDenied, errno_text("audit: join the read-log group (needs CAP_AUDIT_READ)", errno));
  }
  int big = 1 << 20;  // a burst of denials must not overflow the queue
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  return s;
}

void read_records(int sock, int stop_fd, const std::function<void(int, const std::string&)>& on_record) {
  std::vector<char> buf(64 * 1024);
  bool stopping = false;
  std::chrono::steady_clock::time_point give_up{};
  for (;;) {
    pollfd fds[2] = {{sock, POLLIN, 0}, {stopping ? -1 : stop_fd, POLLIN, 0}};
    // Once asked to stop, keep reading until the log is quiet for 50 ms, but never past 500 ms:
    // the kernel's audit thread delivers records a little after the system call that caused
    // them, and on a busy host the stream (every sandbox's records) is never quiet.
    if (stopping && std::chrono::steady_clock::now() >= give_up) return;
    int ready = ::poll(fds, 2, stopping ? 50 : -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (ready == 0) return;
    if (fds[1].revents) {
      stopping = true;
      give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
      continue;
    }
    ssize_t n = ::recv(sock, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS) continue;  // ENOBUFS: records lost, go on
      return;
    }
    // One record per datagram. Its nlmsg_len cannot be trusted: audit sets it to the payload's
    // length without the header (a quirk kept for compatibility), so take the datagram's size.
    if (n < static_cast<ssize_t>(NLMSG_HDRLEN)) continue;
    const auto* r = reinterpret_cast<const nlmsghdr*>(buf.data());
    std::string text(buf.data() + NLMSG_HDRLEN, static_cast<size_t>(n) - NLMSG_HDRLEN);
    while (!text.empty() && (text.back() == '\0' || text.back() == '\n')) text.pop_back();
    if (auto p = text.find("): "); text.rfind("audit(", 0) == 0 && p != std::string::npos) text.erase(0, p + 3);
    on_record(r->nlmsg_type, text);
  }
}

}  // namespace bulwark::audit
