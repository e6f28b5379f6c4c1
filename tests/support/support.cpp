#include "tests/support/support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "shared/error.h"

namespace bulwark::testing {


namespace {
// Binds 127.0.0.1:port (0: any) and returns the port bound, or -1.
int bind_loopback(int port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  socklen_t len = sizeof a;
  if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return -1;
  return ntohs(a.sin_port);
}
}  // namespace

int free_port() {
  // The port after it must be free too: gateway-api's connect listener defaults to its HTTP port
  // + 1, and outgoing connections take ports from the same ephemeral range.
  for (int attempt = 0; attempt < 100; ++attempt) {
    int p = bind_loopback(0);
    if (p < 0) throw Error(Code::kInternal, errno_text("bind a free port", errno));
    if (p < 65535 && bind_loopback(p + 1) == p + 1) return p;
  }
  throw Error(Code::kInternal, "found no free loopback port whose next port is free too");
}

bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void require_binary(const std::string& name, const std::string& package) {
  std::string cmd = "command -v " + name + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    throw Error(Code::kFailedPrecondition,
                name + " is not installed: run scripts/install-deps (or apt-get install -y " + package + ")");
}

NatsServer::NatsServer(std::string extra_conf) : dir_("bulwark-nats"), extra_conf_(std::move(extra_conf)) {
  require_binary("nats-server", "nats-server");
  start();
}

void NatsServer::start() {
  port_ = free_port();
  url_ = "nats://127.0.0.1:" + std::to_string(port_);
  // As deploy/nats/nats.conf: inference requests travel as one message of up to 4 MiB.
  std::ofstream(dir_.file("nats.conf")) << "max_payload: 8MB\n" << extra_conf_;
  proc_ = Process::spawn({.argv = {"nats-server", "-c", dir_.file("nats.conf"), "-a", "127.0.0.1", "-p",
                                   std::to_string(port_), "-js", "-sd", dir_.file("js")},
                          .output_file = dir_.file("nats.log")});
  if (!wait_until([&] { return port_open(port_); }, std::chrono::seconds(10)))
    throw Error(Code::kUnavailable, "nats-server did not start: " + read_file(dir_.file("nats.log")));
}

std::string NatsServer::log() const { return read_file(dir_.file("nats.log")); }

void NatsServer::restart() {
  proc_.stop();
  int port = port_;
  proc_ = Process::spawn({.argv = {"nats-server", "-c", dir_.file("nats.conf"), "-a", "127.0.0.1", "-p",
                                   std::to_string(port), "-js", "-sd", dir_.file("js")},
                          .output_file = dir_.file("nats.log")});
  if (!wait_until([&] { return port_open(port); }, std::chrono::seconds(10)))
    throw Error(Code::kUnavailable, "nats-server did not restart");
}

}  // namespace bulwark::testing
