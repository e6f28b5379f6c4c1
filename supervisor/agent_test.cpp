#include <doctest/doctest.h>
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
