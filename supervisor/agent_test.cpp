#include <doctest/doctest.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "supervisor/agent.h"

using namespace bulwark::supervisor;

TEST_CASE("the agent does not inherit the supervisor's BULWARK_ settings") {
  const char* env[] = {"BULWARK_NATS_URL=nats://x", "HOME=/root", "BULWARK_SANDBOX_ID=1", nullptr};
  auto out = agent_environment(const_cast<char**>(env));
  CHECK(out.size() == 2);
  CHECK(out[0] == "HOME=/root");
  CHECK(out[1].rfind("PATH=", 0) == 0);
}

TEST_CASE("output is relayed line by line, a partial last line included, long lines split") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  std::string data = "one\ntwo\n" + std::string(10, 'x') + "\nlast";
  REQUIRE(::write(p[1], data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  ::close(p[1]);
  std::vector<std::string> lines;
  relay_lines(p[0], 8, [&](const std::string& l) { lines.push_back(l); });
  ::close(p[0]);
  CHECK(lines == std::vector<std::string>{"one", "two", "xxxxxxxx", "xx", "last"});
}

TEST_CASE("a tty's lines lose the carriage return its output processing added") {
  CHECK(tty_line("tty-yes\r") == "tty-yes");
  CHECK(tty_line("24 80") == "24 80");
  CHECK(tty_line("") == "");
  CHECK(tty_line("a\rb") == "a\rb");  // only the terminal's own, at the end
}

TEST_CASE("the agent's pseudo-terminal: the slave is a tty of the asked size, the master reads its output") {
  Pty p = open_pty(33, 101);
  CHECK(::isatty(p.slave.get()) == 1);
  winsize ws{};
  REQUIRE(::ioctl(p.slave.get(), TIOCGWINSZ, &ws) == 0);
  CHECK(ws.ws_row == 33);
  CHECK(ws.ws_col == 101);
  REQUIRE(::write(p.slave.get(), "hello\n", 6) == 6);
  p.slave.reset();  // the last slave closed: the master reads the rest, then EIO ends the relay
  std::vector<std::string> lines;
  relay_lines(p.master.get(), 1024, [&](const std::string& l) { lines.push_back(tty_line(l)); });
  CHECK(lines == std::vector<std::string>{"hello"});
}
