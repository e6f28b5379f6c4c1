#include "supervisor/agent.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "shared/error.h"
#include "shared/util.h"

namespace bulwark::supervisor {

std::vector<std::string> agent_environment(char** env) {
  std::vector<std::string> out;
  bool has_path = false;
  for (char** e = env; e && *e; ++e) {
    std::string kv(*e);
    if (kv.rfind("BULWARK_", 0) == 0) continue;
    if (kv.rfind("PATH=", 0) == 0) has_path = true;
    out.push_back(std::move(kv));
  }
  if (!has_path) out.emplace_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  return out;
}

void relay_lines(int fd, size_t max_line, const std::function<void(const std::string&)>& on_line) {
  auto emit = [&](const std::string& line) {
    for (size_t i = 0; i < line.size() || i == 0; i += max_line) on_line(line.substr(i, max_line));
  };
  std::string pending;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    for (;;) {
      size_t nl = pending.find('\n', start);
      if (nl == std::string::npos) break;
      emit(pending.substr(start, nl - start));
      start = nl + 1;
    }
    pending.erase(0, start);
    while (pending.size() >= max_line) {
      on_line(pending.substr(0, max_line));
      pending.erase(0, max_line);
    }
  }
  if (!pending.empty()) emit(pending);
}

std::string tty_line(std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

Pty open_pty(unsigned rows, unsigned cols) {
  Pty p;
  p.master.reset(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!p.master || ::grantpt(p.master.get()) != 0 || ::unlockpt(p.master.get()) != 0)
    throw Error(Code::kUnavailable, errno_text("open a pseudo-terminal for the agent (spec.tty; is /dev/pts mounted?)", errno));
  char name[128];
  if (::ptsname_r(p.master.get(), name, sizeof name) != 0) throw Error(Code::kInternal, errno_text("ptsname", errno));
  p.slave.reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!p.slave) throw Error(Code::kInternal, errno_text(std::string("open ") + name, errno));
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(rows);
  ws.ws_col = static_cast<unsigned short>(cols);
  if (::ioctl(p.master.get(), TIOCSWINSZ, &ws) != 0) throw Error(Code::kInternal, errno_text("TIOCSWINSZ", errno));
  return p;
}

}  // namespace bulwark::supervisor
