#include "supervisor/agent.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

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

}  // namespace bulwark::supervisor
